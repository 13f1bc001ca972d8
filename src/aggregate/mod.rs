//! The aggregate stage (`aggregate DIR`, and the end of `run`): rebuild every cell's
//! figures from its raw records (`requests.parquet` and `events.parquet`, or the
//! `requests.jsonl` journal of a cell that never wrote them; `server_metrics.parquet`), read
//! through the `parquet` crate, never from a counter kept while running, and write the
//! experiment-wide tables: `runs.parquet` (one row per cell) and `timeseries.parquet`
//! (per-second client and server series, keyed by cell).

mod tables;

use crate::experiment::cell_plan::LoadPlan;
use crate::experiment::{self, Cell, Experiment, Plan};
use crate::store::cell_report::{CellReport, StoredSummary};
use crate::store::layout::{CellDir, RunDir};
use crate::store::{parquet, records};
use anyhow::{Context, Result};
use loadtest_analysis::analysis::CellInput;
use loadtest_analysis::analysis::search::{self, SearchFinding};
use loadtest_analysis::record::CompactRecord;
use loadtest_analysis::server_metrics::{MetricRow, ServerStats, server_stats};
use loadtest_analysis::summary::goodput::Slo;
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
    /// The wall-clock time (Unix ns) of the cell's clock zero, when the cell recorded it.
    pub clock_zero_unix_ns: Option<i64>,
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

/// The experiment and plan a results folder ran: its `experiment.yaml`, and the probe cells
/// of its searches replayed in the order they were made.
pub fn load_plan(dir: &RunDir) -> Result<(Experiment, Plan)> {
    let (experiment, mut plan) = experiment::load(&dir.experiment(), &[]).with_context(|| {
        format!(
            "`{}` is not a results folder of `vllm-loadtest run`",
            dir.root().display()
        )
    })?;
    let probes = dir.read_search()?;
    plan.replay_probes(
        probes
            .iter()
            .map(|p| (p.search.as_str(), p.cell.as_str(), p.rate)),
    )
    .with_context(|| format!("`{}`", dir.search_json().display()))?;
    Ok((experiment, plan))
}

/// What search `s` has measured: its probes that ran to the end (a probe that measured
/// nothing counts, as a failing rate; an interrupted one does not, it runs again).
pub fn search_inputs(dir: &RunDir, plan: &Plan, s: usize) -> Result<Vec<CellInput>> {
    let mut out = Vec::new();
    for &i in &plan.searches[s].probes {
        let c = &plan.cells[i];
        if finished(dir.cell(&c.id).read_status().as_deref())
            && let Some(d) = read_cell(dir, plan, c)?
        {
            out.push(d.input);
        }
    }
    Ok(out)
}

fn finished(status: Option<&str>) -> bool {
    matches!(status, Some("complete" | "no_completions"))
}

pub fn aggregate(dir: &RunDir) -> Result<Aggregated> {
    let (experiment, plan) = load_plan(dir)?;
    // one cell per core: reading back a cell's events is most of this stage's time
    let mut cells = Vec::new();
    for data in loadtest_base::par::map(&plan.cells, |c| read_cell(dir, &plan, c)) {
        cells.extend(data?);
    }
    let first = plan
        .cells
        .first()
        .or(plan.searches.first().map(|s| &s.template))
        .map(|c| &c.plan.slo);
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

/// Who a cell is, for the analysis: its id, server configuration and matrix values.
pub struct CellIdent {
    pub id: String,
    pub group: String,
    pub family: String,
    pub dp: u32,
    pub matrix: BTreeMap<String, String>,
    /// Requests per arrival: a conversation's turns (multi_turn), else 1. The analysis
    /// counts requests, so the offered rate is the arrival rate times this.
    pub turns: u32,
}

/// One cell's figures recomputed from its raw records, with what its run stored beside
/// them; `None` for a cell that never started.
fn read_cell(dir: &RunDir, plan: &Plan, c: &Cell) -> Result<Option<CellData>> {
    let ident = CellIdent {
        id: c.id.clone(),
        group: plan.groups[c.group].id.clone(),
        family: family_of(c),
        dp: c.plan.server.dp as u32,
        matrix: c
            .matrix_values
            .iter()
            .map(|(k, v)| (k.to_string(), experiment::plan::scalar(v)))
            .collect(),
        turns: c.plan.workload.prompts.turns(),
    };
    let cdir = dir.cell(&c.id);
    let Some(r) = read_cell_dir(&cdir, &c.plan.load, c.repeat, &c.plan.slo.slos, ident)? else {
        return Ok(None);
    };
    Ok(Some(CellData {
        cell: c.clone(),
        summary: r.summary,
        input: r.input,
        status: r.status,
        content_events_per_s: r.content_events_per_s,
        client_rss_per_request_bytes: r.client_rss_per_request_bytes,
        clock_zero_unix_ns: r.clock_zero_unix_ns,
    }))
}

/// A cell folder read back: its summary recomputed, its analysis input, its status.
pub struct CellRead {
    pub summary: RunSummary,
    pub input: CellInput,
    pub status: String,
    pub content_events_per_s: Vec<u64>,
    pub client_rss_per_request_bytes: Option<f64>,
    pub clock_zero_unix_ns: Option<i64>,
}

/// Any cell folder (a `run` cell, a `bench` probe) read back with the load plan it ran;
/// `None` when it never started.
pub fn read_cell_dir(
    cdir: &CellDir,
    load: &LoadPlan,
    repeat: u32,
    slos: &[Slo],
    ident: CellIdent,
) -> Result<Option<CellRead>> {
    if !records::exist(cdir) {
        // a cell that ended wrote its records first: their loss is not a cell never run
        if let Some(status) = cdir.read_status().filter(|s| finished(Some(s))) {
            let missing: Vec<String> = [cdir.requests_parquet(), cdir.events_parquet()]
                .iter()
                .filter(|p| !p.exists())
                .map(|p| format!("`{}`", p.display()))
                .collect();
            anyhow::bail!(
                "cell folder `{}` says `{status}` but its raw records are gone: {} missing\nhint: restore them from a copy, or remove the cell folder and `vllm-loadtest run --resume` the run to measure it again",
                cdir.root().display(),
                missing.join(" and ")
            );
        }
        return Ok(None);
    }
    let records = records::read_compact(cdir)?;
    let arrival = load.arrival;
    let stored = cdir.read_report();
    // stored by the run; for a cell that crashed before its summary was written, the
    // schedule's requests without a record
    let not_sent = match &stored {
        Some(r) => r.summary.not_sent,
        None => {
            let scheduled = load.schedule(repeat)?.len();
            scheduled.saturating_sub(records.len()) as u64
        }
    };
    let window = summary::resolve_window(load.window_s, &records);
    let mut events =
        summary::event_figures(|f| records::for_each_of(cdir, &records, f), window, &[])?;
    let scope = summary::Scope {
        window,
        offered_rate: arrival.rate(),
        slos,
        percentiles: &[],
    };
    let content_events_per_s = std::mem::take(&mut events.content_events_per_s);
    let s = summary::summarize(&records, events, not_sent, scope);
    let status = cdir.read_status().unwrap_or_else(|| "incomplete".into());
    // in requests per second, as achieved is: a conversation of k turns is k requests
    let offered = arrival.rate() * f64::from(ident.turns.max(1));
    let mut input = analysis_input(
        ident,
        offered,
        &s,
        &status,
        stored.as_ref(),
        &records,
        &cdir.read_metrics(),
    );
    input.schedule =
        (!offered.is_finite()).then(|| arrival.offered_label(offered, load.max_concurrency));
    Ok(Some(CellRead {
        summary: s,
        input,
        status,
        content_events_per_s,
        client_rss_per_request_bytes: stored
            .as_ref()
            .and_then(|r| r.client.rss_growth_per_request_bytes),
        clock_zero_unix_ns: stored.as_ref().and_then(|r| r.clock_zero_unix_ns),
    }))
}

/// What the analysis needs of a cell: its figures, its accounting, the client's own usage,
/// the backlog over the window, the server's metrics, and why it measured nothing if so.
fn analysis_input(
    ident: CellIdent,
    offered_rate: f64,
    s: &RunSummary,
    status: &str,
    stored: Option<&CellReport<StoredSummary>>,
    records: &[CompactRecord],
    metrics: &[MetricRow],
) -> CellInput {
    let server: Option<ServerStats> = (!metrics.is_empty()).then(|| {
        let mut st = server_stats(metrics, s.window.start_ns, s.window.end_ns);
        st.engine_work = st.engine_work.map(|w| w.with_idle(records, ident.dp));
        st
    });
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
        id: ident.id,
        group: ident.group,
        family: ident.family,
        dp: ident.dp,
        offered_rate,
        schedule: None,
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
        tpot_p99_ms: l.tpot_ms.as_ref().map(|d| d.p99),
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
        matrix: ident.matrix,
        per_turn: s.per_turn.clone(),
        shards_apart: stored
            .and_then(|r| r.shards.as_ref())
            .map(|sh| sh.apart.clone())
            .unwrap_or_default(),
    }
}

/// Each search's answer from its finished probes (the cells already read).
fn search_findings(a: &Aggregated) -> Vec<SearchFinding> {
    a.plan
        .searches
        .iter()
        .map(|s| {
            let probes: Vec<CellInput> = a
                .cells
                .iter()
                .filter(|d| s.probes.contains(&d.cell.index) && finished(Some(d.status.as_str())))
                .map(|d| d.input.clone())
                .collect();
            SearchFinding {
                search: s.id.clone(),
                group: a.plan.groups[s.group].id.clone(),
                answer: search::answer(&s.spec, &probes, a.slo_target),
            }
        })
        .collect()
}

/// Aggregate, analyse, and write `runs.parquet`, `timeseries.parquet`, `analysis.json`.
pub fn write_all(dir: &RunDir) -> Result<(Aggregated, loadtest_analysis::analysis::Analysis)> {
    let a = aggregate(dir)?;
    let inputs: Vec<CellInput> = a.cells.iter().map(|c| c.input.clone()).collect();
    let mut analysis = loadtest_analysis::analysis::analyze(&inputs, a.slo_target);
    analysis.searches = search_findings(&a);
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
