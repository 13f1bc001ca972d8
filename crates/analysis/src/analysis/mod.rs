//! What the numbers mean: per server configuration the saturation point, the plateau and the
//! latency before and after; goodput; scaling across DP sizes (speedup, efficiency, a
//! Universal Scalability Law fit only from configurations that saturated); and validity
//! verdicts on every cell. Pure: tables in, findings out; no IO, no async.

pub mod prediction;
pub mod ramp;
pub mod saturation;
pub mod scaling;
pub mod search;
pub mod usl;
pub mod verdicts;

#[cfg(test)]
mod tests;

use crate::server_metrics::ServerStats;
use crate::stats::survival::Figure;
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
    /// For a cell without one offered rate (`offered_rate` infinite), how it sent
    /// (`Arrival::offered_label`: `closed 90`, `ramp 2→24`, `trace 1×`): what its tables
    /// show instead of `inf`.
    pub schedule: Option<String>,
    /// Requests that actually arrived in the measurement window, per second: what the server
    /// was asked to complete there (the nominal rate plus sampling noise).
    pub arrival_rate: f64,
    /// Achieved throughput (req/s), see `RunSummary::achieved`.
    pub achieved_rate: f64,
    /// How: `mean_of_completions_and_token_rate`, `output_token_rate`, or `completions`.
    pub achieved_from: &'static str,
    /// The output-token rate rose > 10% from the window's first half to its second: the
    /// server was still filling its batch, so the rate is not its steady state.
    pub token_rate_rising: bool,
    pub output_throughput: f64,
    /// Over every window request, the unfinished right-censored (lower bounds flagged).
    pub ttft_p50_ms: Option<Figure>,
    pub ttft_p99_ms: Option<Figure>,
    pub e2el_p50_ms: Option<Figure>,
    /// Of the successful requests (compared with the server's own histogram).
    pub ttft_mean_ms: Option<f64>,
    pub tpot_p50_ms: Option<f64>,
    pub tpot_p99_ms: Option<f64>,
    pub slo_attainment: Option<f64>,
    pub sent: u64,
    pub measured: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Window requests cut off before they finished.
    pub measured_cut: u64,
    pub truncated: u64,
    /// The cell measured nothing usable, and why: no request of its window succeeded, or
    /// the server was lost during it (status `failed`). It says nothing about capacity.
    pub no_completions: Option<String>,
    pub send_lag_p99_ms: Option<f64>,
    pub client_cpu_share: Option<f64>,
    /// p99 and max lateness of the client's event loop (ms).
    pub client_loop_lag_p99_ms: Option<f64>,
    pub client_loop_lag_max_ms: Option<f64>,
    /// When sending ended (s from the cell's start) and when its schedule said it would.
    pub sending_s: Option<f64>,
    pub planned_sending_s: Option<f64>,
    pub window_s: f64,
    /// Growth of the client's backlog (requests in flight), per second, over the window, and
    /// its mean.
    pub backlog_slope_per_s: Option<f64>,
    pub backlog_mean: Option<f64>,
    pub server: Option<ServerStats>,
    pub matrix: BTreeMap<String, String>,
    /// Multi-turn conversations: the cell's requests turn by turn (empty otherwise).
    pub per_turn: Vec<crate::summary::turns::TurnFigures>,
    /// A cell merged from shards: why they may not have run as one load point (empty: they
    /// did, or it was not sharded).
    pub shards_apart: Vec<String>,
}

/// A load point of one server configuration (repeats averaged).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Point {
    pub offered: f64,
    pub arrival: f64,
    pub achieved: f64,
    pub ttft_p50_ms: Option<Figure>,
    pub ttft_p99_ms: Option<Figure>,
    pub tpot_p50_ms: Option<f64>,
    pub tpot_p99_ms: Option<f64>,
    /// The client's mean TTFT of successful requests (what the server's phase means add up
    /// to, less the front end and the network).
    pub ttft_mean_ms: Option<f64>,
    /// The server's queue, prefill and decode means (all engines), when it exports them.
    pub phases: Option<crate::latency_breakdown::Phases>,
    /// The output-token rate was still rising in some cell of the point (not steady).
    pub token_rate_rising: bool,
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
    /// Cells left out because no request of their window succeeded (unknown, not 0 req/s),
    /// with why.
    pub without_completions: Vec<(String, String)>,
    /// A `search:` experiment's answers, one per search (filled by the caller, who knows
    /// which cells were whose probes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub searches: Vec<search::SearchFinding>,
}

impl CellInput {
    /// One of the figures `compare` shows, by its name there (`achieved req/s`, `output
    /// tok/s`, `TTFT p50 ms`, `TTFT p99 ms`, `TPOT p50 ms`, `TPOT p99 ms`, `E2EL p50 ms`,
    /// `SLO attainment`; a prediction's judgement also `engine step ms`): none for a cell without a completion (unknown, not 0), and a
    /// latency known only as a lower bound carries its flag.
    pub fn figure(&self, name: &str) -> Option<Figure> {
        if self.no_completions.is_some() {
            return None;
        }
        let known = |v: Option<f64>| v.map(Figure::known);
        match name {
            "achieved req/s" => known(Some(self.achieved_rate)),
            "output tok/s" => known(Some(self.output_throughput)),
            "TTFT p50 ms" => self.ttft_p50_ms,
            "TTFT p99 ms" => self.ttft_p99_ms,
            "TPOT p50 ms" => known(self.tpot_p50_ms),
            "TPOT p99 ms" => known(self.tpot_p99_ms),
            "E2EL p50 ms" => self.e2el_p50_ms,
            "SLO attainment" => known(self.slo_attainment),
            // the server's own count (`engine_work`): beside TPOT, it
            // tells a step-cost miss from a scheduling or delivery one
            "engine step ms" => known(self.server.as_ref().and_then(|s| s.engine_step_ms)),
            _ => None,
        }
    }
}

/// Analyse all cells of an experiment.
pub fn analyze(cells: &[CellInput], slo_target: f64) -> Analysis {
    let mut groups: BTreeMap<(String, String, u32), Vec<&CellInput>> = BTreeMap::new();
    // Saturation is read along the offered rate; a cell without one (all at once, or a
    // closed loop of `max_concurrency`) has no place on that axis.
    // A cell with no completion has no throughput or latency to place: unknown, not zero.
    for c in cells
        .iter()
        .filter(|c| c.offered_rate.is_finite() && c.no_completions.is_none())
    {
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
    let mut verdicts = verdicts::judge(cells, &found);
    // a scaling figure is not built on a cell the tool itself flagged
    let tainted: Vec<&str> = cells
        .iter()
        .zip(&verdicts)
        .filter(|(_, v)| v.verdicts.iter().any(verdicts::Verdict::taints_throughput))
        .map(|(c, _)| c.group.as_str())
        .collect();
    let scaling = scaling::analyze(&found, &tainted);
    verdicts::flag_super_linear(&mut verdicts, cells, &scaling);
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
        without_completions: cells
            .iter()
            .filter_map(|c| Some((c.id.clone(), c.no_completions.clone()?)))
            .collect(),
        searches: Vec::new(),
    }
}
