//! The aggregate stage (`aggregate DIR`, and the end of `run`): rebuild every cell's figures from its raw records (`requests.jsonl`,
//! `server_metrics.jsonl`), never from a counter kept while running, and write the
//! experiment-wide tables: `runs.parquet` (one row per cell) and `timeseries.parquet`
//! (per-second client and server series, keyed by cell).

mod tables;

use crate::experiment::{self, Cell, Experiment, Plan};
use crate::store::cell_report::{CellReport, StoredSummary};
use crate::store::jsonl;
use crate::store::layout::RunDir;
use crate::store::parquet;
use anyhow::{Context, Result};
use loadtest_analysis::analysis::CellInput;
use loadtest_analysis::record::CompactRecord;
use loadtest_analysis::server_metrics::{MetricRow, ServerStats, server_stats};
use loadtest_analysis::summary::{self, RunSummary};
use std::collections::BTreeMap;

pub struct CellData {
    pub cell: Cell,
    pub summary: RunSummary,
    pub input: CellInput,
    pub status: String,
    /// Client memory gained per request sent (`summary.json`), when the cell recorded it.
    pub client_rss_per_request_bytes: Option<f64>,
    /// Content events of successful requests per whole second (from the event pass).
    pub content_events_per_s: Vec<u64>,
}

pub struct Aggregated {
    pub experiment: Experiment,
    pub plan: Plan,
    pub cells: Vec<CellData>,
    pub slo_target: f64,
    pub has_slos: bool,
}

/// Requests in flight at each whole second of `[from, to)`: sent at or before it and not
/// yet ended. As an end never precedes its send, that is #sends ≤ t − #ends ≤ t (two
/// sorted lists, not a scan of every record per second).
fn in_flight_series(records: &[CompactRecord], from_s: u64, to_s: u64) -> Vec<(u64, f64)> {
    let mut sends: Vec<u64> = records.iter().map(|r| r.t_send_ns).collect();
    let mut ends: Vec<u64> = records.iter().map(|r| r.t_end_ns).collect();
    sends.sort_unstable();
    ends.sort_unstable();
    (from_s..to_s)
        .map(|s| {
            let t = s * 1_000_000_000;
            let started = sends.partition_point(|&x| x <= t);
            let ended = ends.partition_point(|&x| x <= t);
            (s, started.saturating_sub(ended) as f64)
        })
        .collect()
}

fn slope(points: &[(u64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0 as f64).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 as f64 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 as f64 - mx).powi(2)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The server parameters of a cell other than `dp`, as a family key.
fn family_of(c: &Cell) -> String {
    let parts: Vec<String> = c
        .matrix_values
        .iter()
        .filter(|(k, _)| {
            *k != "dp" && experiment::fields::find(k).is_some_and(|(s, _)| s.name == "server")
        })
        .map(|(k, v)| format!("{k}={}", experiment::plan::scalar(v)))
        .collect();
    if parts.is_empty() {
        "all".into()
    } else {
        parts.join(",")
    }
}

pub fn aggregate(dir: &RunDir) -> Result<Aggregated> {
    let (experiment, plan) = experiment::load(&dir.experiment(), &[]).with_context(|| {
        format!(
            "`{}` is not a results folder of `vllm-loadtest run`",
            dir.root().display()
        )
    })?;
    let mut cells = Vec::new();
    for c in &plan.cells {
        if let Some(data) = read_cell(dir, &plan, c)? {
            cells.push(data);
        }
    }
    let first = plan.cells.first().map(|c| &c.plan.slo);
    let target = first.map_or(0.9, |s| s.target);
    let has_slos = first.is_some_and(|s| !s.slos.is_empty());
    Ok(Aggregated {
        experiment,
        plan,
        cells,
        slo_target: target,
        has_slos,
    })
}

/// One cell's figures recomputed from its raw records, with what its run stored beside
/// them; `None` for a cell that never started.
fn read_cell(dir: &RunDir, plan: &Plan, c: &Cell) -> Result<Option<CellData>> {
    let cdir = dir.cell(&c.id);
    let raw = cdir.requests_jsonl();
    if !raw.exists() {
        return Ok(None);
    }
    let (records, _torn) = jsonl::read_compact(&raw)?;
    let load = &c.plan.load;
    let arrival = load.arrival;
    let stored = cdir.read_report();
    // stored by the run; for a cell that crashed before its summary was written, the
    // schedule's requests without a record
    let not_sent = match &stored {
        Some(r) => r.summary.not_sent,
        None => {
            let scheduled = load.schedule(c.repeat)?.len();
            scheduled.saturating_sub(records.len()) as u64
        }
    };
    let window = summary::resolve_window(load.window_s, &records);
    let slos = &c.plan.slo.slos;
    let mut events = summary::event_figures(
        |f| {
            jsonl::for_each(&raw, |r| {
                f(&r);
                Ok(())
            })
            .map(drop)
        },
        window,
        &[],
    )?;
    let scope = summary::Scope {
        window,
        offered_rate: arrival.rate(),
        slos,
        percentiles: &[],
    };
    let content_events_per_s = std::mem::take(&mut events.content_events_per_s);
    let s = summary::summarize(&records, events, not_sent, scope);
    let status = cdir.read_status().unwrap_or_else(|| "incomplete".into());
    let input = analysis_input(
        plan,
        c,
        &s,
        &status,
        stored.as_ref(),
        &records,
        &cdir.read_metrics(),
    );
    Ok(Some(CellData {
        cell: c.clone(),
        summary: s,
        input,
        status,
        content_events_per_s,
        client_rss_per_request_bytes: stored
            .as_ref()
            .and_then(|r| r.client.rss_growth_per_request_bytes),
    }))
}

/// What the analysis needs of a cell: its figures, its accounting, the client's own usage,
/// the backlog over the window, the server's metrics, and why it measured nothing if so.
fn analysis_input(
    plan: &Plan,
    c: &Cell,
    s: &RunSummary,
    status: &str,
    stored: Option<&CellReport<StoredSummary>>,
    records: &[CompactRecord],
    metrics: &[MetricRow],
) -> CellInput {
    let server: Option<ServerStats> =
        (!metrics.is_empty()).then(|| server_stats(metrics, s.window.start_ns, s.window.end_ns));
    let (w0, w1) = (
        s.window.start_ns / 1_000_000_000,
        s.window.end_ns.div_ceil(1_000_000_000),
    );
    let series = in_flight_series(records, w0, w1);
    let backlog = slope(&series);
    let backlog_mean =
        (!series.is_empty()).then(|| series.iter().map(|p| p.1).sum::<f64>() / series.len() as f64);
    let l = &s.latencies;
    let every = &s.every_request;
    let client = stored.map(|r| &r.client);
    // a cell without a completion is left out of the analysis (no_completions below)
    let (achieved_rate, achieved_from) = s.achieved().unwrap_or((0.0, "none"));
    CellInput {
        id: c.id.clone(),
        group: plan.groups[c.group].id.clone(),
        family: family_of(c),
        dp: c.plan.server.dp as u32,
        // in requests per second, as achieved is: a conversation of k turns is k requests
        offered_rate: c.plan.load.arrival.rate() * f64::from(c.plan.workload.prompts.turns()),
        arrival_rate: s.measured as f64 / s.window_s.max(1e-9),
        achieved_rate,
        achieved_from,
        token_rate_rising: s.token_rate.as_ref().is_some_and(|t| t.still_rising()),
        output_throughput: s.output_throughput.unwrap_or(0.0),
        ttft_p50_ms: every.ttft_ms.as_ref().map(|d| d.p50),
        ttft_p99_ms: every.ttft_ms.as_ref().map(|d| d.p99),
        e2el_p50_ms: every.e2el_ms.as_ref().map(|d| d.p50),
        ttft_mean_ms: l.ttft_ms.as_ref().map(|d| d.mean),
        tpot_p50_ms: l.tpot_ms.as_ref().map(|d| d.p50),
        slo_attainment: s.slo_attainment,
        sent: s.sent,
        measured: s.measured,
        failed: s.failed,
        cancelled: s.cancelled,
        measured_cut: s.measured_cut,
        truncated: s.errors_by_kind.get("truncated").copied().unwrap_or(0),
        no_completions: match status {
            "failed" => Some(
                stored
                    .and_then(|r| r.failure_reason.clone())
                    .unwrap_or_else(|| "the server failed during the cell".into()),
            ),
            // a partial window's rate is not the load point's
            "interrupted" => {
                Some("interrupted: its figures cover only what ran before the signal".into())
            }
            _ => s.no_completions().then(|| summary::why_no_completions(s)),
        },
        send_lag_p99_ms: l.queue_delay_ms.as_ref().map(|d| d.p99),
        client_cpu_share: client.map(|c| c.cpu_share_of_threads),
        client_loop_lag_p99_ms: client.and_then(|c| c.loop_lag_p99_ms),
        client_loop_lag_max_ms: client.and_then(|c| c.loop_lag_max_ms),
        sending_s: client.map(|c| c.sending_s),
        planned_sending_s: client.and_then(|c| c.planned_sending_s),
        window_s: s.window_s,
        backlog_slope_per_s: backlog,
        backlog_mean,
        server,
        matrix: c
            .matrix_values
            .iter()
            .map(|(k, v)| (k.to_string(), experiment::plan::scalar(v)))
            .collect(),
        per_turn: s.per_turn.clone(),
    }
}

/// Aggregate, analyse, and write `runs.parquet`, `timeseries.parquet`, `analysis.json`.
pub fn write_all(dir: &RunDir) -> Result<(Aggregated, loadtest_analysis::analysis::Analysis)> {
    let a = aggregate(dir)?;
    let inputs: Vec<CellInput> = a.cells.iter().map(|c| c.input.clone()).collect();
    let analysis = loadtest_analysis::analysis::analyze(&inputs, a.slo_target);
    let verdicts: BTreeMap<String, String> = analysis
        .verdicts
        .iter()
        .map(|v| (v.cell.clone(), v.describe_all()))
        .collect();
    parquet::write(&dir.runs_parquet(), &tables::runs_table(&a, &verdicts))?;
    parquet::write(
        &dir.timeseries_parquet(),
        &tables::timeseries_table(dir, &a)?,
    )?;
    std::fs::write(dir.analysis_json(), serde_json::to_vec_pretty(&analysis)?)?;
    Ok((a, analysis))
}
