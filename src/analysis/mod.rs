//! What the numbers mean: per server configuration the saturation point, the plateau and the
//! latency before and after; goodput; scaling across DP sizes (speedup, efficiency, a
//! Universal Scalability Law fit only from configurations that saturated); and validity
//! verdicts on every cell. Pure: tables in, findings out; no IO, no async.

pub mod saturation;
pub mod scaling;
pub mod usl;
pub mod verdicts;

#[cfg(test)]
mod tests;

use crate::monitor::metrics::ServerStats;
use serde::Serialize;
use std::collections::BTreeMap;

/// One measured cell, as the analysis needs it.
#[derive(Debug, Clone, Serialize)]
pub struct CellInput {
    pub id: String,
    /// Server configuration (group) id, and its parameters other than `dp`.
    pub group: String,
    pub family: String,
    pub dp: u32,
    pub offered_rate: f64,
    /// Requests that actually arrived in the measurement window, per second: what the server
    /// was asked to complete there (the nominal rate plus sampling noise).
    pub arrival_rate: f64,
    pub achieved_rate: f64,
    pub output_throughput: f64,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub ttft_mean_ms: Option<f64>,
    pub tpot_p50_ms: Option<f64>,
    pub e2el_p50_ms: Option<f64>,
    pub slo_attainment: Option<f64>,
    pub sent: u64,
    pub measured: u64,
    pub failed: u64,
    pub truncated: u64,
    pub send_lag_p99_ms: Option<f64>,
    pub client_cpu_share: Option<f64>,
    /// p99 lateness of the client's event loop (ms).
    pub client_loop_lag_p99_ms: Option<f64>,
    pub window_s: f64,
    /// Growth of the client's backlog (requests in flight), per second, over the window, and
    /// its mean.
    pub backlog_slope_per_s: Option<f64>,
    pub backlog_mean: Option<f64>,
    pub server: Option<ServerStats>,
    pub matrix: BTreeMap<String, String>,
}

/// A load point of one server configuration (repeats averaged).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Point {
    pub offered: f64,
    pub arrival: f64,
    pub achieved: f64,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub tpot_p50_ms: Option<f64>,
    pub slo_attainment: Option<f64>,
    pub queue_growing: bool,
    pub engines_idle_queue: bool,
    pub cells: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Analysis {
    pub groups: Vec<saturation::GroupFinding>,
    pub scaling: Vec<scaling::ScalingFinding>,
    pub verdicts: Vec<verdicts::CellVerdicts>,
    pub slo_target: f64,
    /// Cells left out of the saturation analysis: sent all at once or as a closed loop, they
    /// have no offered rate.
    pub without_offered_rate: Vec<String>,
}

/// Analyse all cells of an experiment.
pub fn analyze(cells: &[CellInput], slo_target: f64) -> Analysis {
    let mut groups: BTreeMap<(String, String, u32), Vec<&CellInput>> = BTreeMap::new();
    // Saturation is read along the offered rate; a cell without one (all at once, or a
    // closed loop of `max_concurrency`) has no place on that axis.
    for c in cells.iter().filter(|c| c.offered_rate.is_finite()) {
        groups
            .entry((c.family.clone(), c.group.clone(), c.dp))
            .or_default()
            .push(c);
    }
    let mut found: Vec<saturation::GroupFinding> = groups
        .into_iter()
        .map(|((family, group, dp), cs)| {
            saturation::analyze_group(&group, &family, dp, &cs, slo_target)
        })
        .collect();
    found.sort_by(|a, b| (a.family.as_str(), a.dp).cmp(&(b.family.as_str(), b.dp)));
    let scaling = scaling::analyze(&found);
    let verdicts = verdicts::judge(cells, &found);
    Analysis {
        groups: found,
        scaling,
        verdicts,
        slo_target,
        without_offered_rate: cells
            .iter()
            .filter(|c| !c.offered_rate.is_finite())
            .map(|c| c.id.clone())
            .collect(),
    }
}
