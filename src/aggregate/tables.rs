//! The experiment-wide tables the aggregate stage writes: `runs.parquet` (one row per cell:
//! matrix values, every figure, the verdicts) and `timeseries.parquet` (per-second client
//! and server series, keyed by cell).

use super::{Aggregated, CellData, in_flight_series};
use crate::experiment;
use crate::store::layout::RunDir;
use crate::store::parquet::{Column, Table};
use crate::store::records;
use anyhow::Result;
use loadtest_analysis::server_metrics::ServerStats;
use loadtest_analysis::stats::survival::{Figure, Survival};
use std::collections::BTreeMap;

/// `runs.parquet`: one row per cell, matrix values and every figure.
pub fn runs_table(a: &Aggregated, verdicts: &BTreeMap<String, String>) -> Table {
    let rows = &a.cells;
    let mut t = Table::default();
    identity_columns(&mut t, a);
    accounting_columns(&mut t, rows);
    rate_columns(&mut t, rows);
    latency_columns(&mut t, rows);
    client_and_server_columns(&mut t, rows, verdicts);
    t
}

fn s(rows: &[CellData], f: impl Fn(&CellData) -> Option<String>) -> Column {
    Column::Str(rows.iter().map(f).collect())
}

fn n(rows: &[CellData], f: impl Fn(&CellData) -> Option<f64>) -> Column {
    Column::F64(rows.iter().map(f).collect())
}

fn i(rows: &[CellData], f: impl Fn(&CellData) -> Option<i64>) -> Column {
    Column::I64(rows.iter().map(f).collect())
}

/// Which cell: its id, server configuration, repeat, status, matrix values, load point.
fn identity_columns(t: &mut Table, a: &Aggregated) {
    let rows = &a.cells;
    t.push("cell", s(rows, |c| Some(c.cell.id.clone())));
    t.push("server_config", s(rows, |c| Some(c.input.group.clone())));
    t.push("repeat", i(rows, |c| Some(c.cell.repeat as i64)));
    t.push("status", s(rows, |c| Some(c.status.clone())));
    // the cell's clock zero on the wall clock: `window_start_s` and the cells' `*_ns`
    // times count from it
    t.push(
        "started_at",
        Column::Timestamp(rows.iter().map(|c| c.clock_zero_unix_ns).collect()),
    );
    let keys: Vec<&str> = a.experiment.matrix.iter().map(|(k, _)| *k).collect();
    for k in keys {
        let value = |c: &'_ CellData| {
            c.cell
                .matrix_values
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.clone())
        };
        let values: Vec<Option<serde_yaml::Value>> = rows.iter().map(value).collect();
        t.push(k, matrix_column(k, values.iter().map(Option::as_ref)));
    }
    t.push("dp_size", i(rows, |c| Some(c.input.dp as i64)));
    t.push(
        "offered_rate_rps",
        n(rows, |c| {
            Some(c.input.offered_rate).filter(|r| r.is_finite())
        }),
    );
    t.push(
        "window_start_s",
        n(rows, |c| Some(c.summary.window.start_ns as f64 / 1e9)),
    );
    t.push(
        "window_end_s",
        n(rows, |c| Some(c.summary.window.end_ns as f64 / 1e9)),
    );
}

/// The one accounting: sent = ok + failed (by kind) + cancelled (by reason), and what
/// the window measured.
fn accounting_columns(t: &mut Table, rows: &[CellData]) {
    t.push("sent", i(rows, |c| Some(c.summary.sent as i64)));
    t.push("ok", i(rows, |c| Some(c.summary.ok as i64)));
    t.push("failed", i(rows, |c| Some(c.summary.failed as i64)));
    t.push("cancelled", i(rows, |c| Some(c.summary.cancelled as i64)));
    for kind in loadtest_analysis::record::ErrorKind::ALL {
        if kind == loadtest_analysis::record::ErrorKind::Cancelled {
            continue;
        }
        let k = kind.as_str();
        t.push(
            &format!("failed_{k}"),
            i(rows, |c| {
                Some(c.summary.errors_by_kind.get(k).copied().unwrap_or(0) as i64)
            }),
        );
    }
    // every reason a cell has, so the columns add up to `cancelled` (records written
    // before reasons were kept say `unknown`)
    let mut reasons: Vec<&str> = loadtest_analysis::record::CancelReason::ALL
        .iter()
        .map(|r| r.as_str())
        .collect();
    for c in rows {
        for r in c.summary.cancelled_by_reason.keys() {
            if !reasons.contains(r) {
                reasons.push(r);
            }
        }
    }
    for r in reasons {
        t.push(
            &format!("cancelled_{r}"),
            i(rows, |c| {
                Some(c.summary.cancelled_by_reason.get(r).copied().unwrap_or(0) as i64)
            }),
        );
    }
    t.push("not_sent", i(rows, |c| Some(c.summary.not_sent as i64)));
    t.push("resent", i(rows, |c| Some(c.summary.resent as i64)));
    t.push(
        "measured_ok",
        i(rows, |c| Some(c.summary.measured_ok as i64)),
    );
    t.push(
        "measured_cut",
        i(rows, |c| Some(c.summary.measured_cut as i64)),
    );
    t.push("measured", i(rows, |c| Some(c.summary.measured as i64)));
    t.push(
        "completions_in_window",
        i(rows, |c| Some(c.summary.completions_in_window as i64)),
    );
}

/// Rates: sent, completed, from tokens, the throughput and goodput figures.
fn rate_columns(t: &mut Table, rows: &[CellData]) {
    t.push(
        "achieved_send_rate_rps",
        n(rows, |c| {
            Some(c.summary.achieved_send_rate).filter(|r| r.is_finite())
        }),
    );
    // no figure from nothing: a cell without a completion has no throughput (null)
    t.push(
        "request_throughput_from",
        s(rows, |c| {
            c.summary.achieved().map(|(_, from)| from.to_string())
        }),
    );
    t.push(
        "completion_rate_rps",
        n(rows, |c| {
            Some(c.summary.completion_rate).filter(|_| !c.summary.no_completions())
        }),
    );
    t.push(
        "token_rate_rps",
        n(rows, |c| {
            c.summary.token_rate.as_ref().map(|t| t.request_rate)
        }),
    );
    t.push(
        "token_rate_rising",
        Column::Bool(
            rows.iter()
                .map(|c| c.summary.token_rate.as_ref().map(|r| r.still_rising()))
                .collect(),
        ),
    );
    t.push(
        "request_throughput_rps",
        n(rows, |c| c.summary.request_throughput),
    );
    t.push(
        "output_throughput_tps",
        n(rows, |c| c.summary.output_throughput),
    );
    t.push(
        "total_token_throughput_tps",
        n(rows, |c| c.summary.total_token_throughput),
    );
    t.push(
        "request_goodput_rps",
        n(rows, |c| c.summary.request_goodput),
    );
    t.push("slo_attainment", n(rows, |c| c.summary.slo_attainment));
}

/// Latencies: ours over every window request (right-censored, with lower-bound flags), then
/// vLLM's over the successful ones.
fn latency_columns(t: &mut Table, rows: &[CellData]) {
    // ours, over every window request: a figure only known as a lower bound is stored
    // with its flag column (`…_lower_bound`)
    type PickAll = for<'c> fn(&'c CellData) -> Option<&'c Survival>;
    let every: [(&str, PickAll); 3] = [
        ("ttft", |c| c.summary.every_request.ttft_ms.as_ref()),
        ("e2el", |c| c.summary.every_request.e2el_ms.as_ref()),
        ("ttft_from_intended", |c| {
            c.summary.every_request.ttft_from_intended_ms.as_ref()
        }),
    ];
    type StatAll = fn(&Survival) -> Figure;
    let stats_all: [(&str, StatAll); 5] = [
        ("mean", |d| d.mean),
        ("p50", |d| d.p50),
        ("p90", |d| d.p90),
        ("p99", |d| d.p99),
        ("max", |d| d.max),
    ];
    for (name, get) in every {
        t.push(
            &format!("{name}_censored"),
            i(rows, |c| get(c).map(|d| d.censored as i64)),
        );
        for (stat, pick) in stats_all {
            t.push(
                &format!("{name}_{stat}_ms"),
                n(rows, |c| get(c).map(|d| pick(d).value)),
            );
            t.push(
                &format!("{name}_{stat}_ms_lower_bound"),
                Column::Bool(
                    rows.iter()
                        .map(|c| get(c).map(|d| pick(d).lower_bound))
                        .collect(),
                ),
            );
        }
    }
    // vLLM's meaning: the window's successful requests only
    type Pick = for<'c> fn(&'c CellData) -> Option<&'c loadtest_analysis::stats::Distribution>;
    let dists: [(&str, Pick); 5] = [
        ("completed_ttft", |c| c.summary.latencies.ttft_ms.as_ref()),
        ("completed_e2el", |c| c.summary.latencies.e2el_ms.as_ref()),
        ("tpot", |c| c.summary.latencies.tpot_ms.as_ref()),
        ("itl", |c| c.summary.latencies.itl_ms.as_ref()),
        ("queue_delay", |c| {
            c.summary.latencies.queue_delay_ms.as_ref()
        }),
    ];
    type Stat = fn(&loadtest_analysis::stats::Distribution) -> f64;
    let stats: [(&str, Stat); 5] = [
        ("mean", |d| d.mean),
        ("p50", |d| d.p50),
        ("p90", |d| d.p90),
        ("p99", |d| d.p99),
        ("max", |d| d.max),
    ];
    for (name, get) in dists {
        for (stat, pick) in stats {
            t.push(&format!("{name}_{stat}_ms"), n(rows, |c| get(c).map(pick)));
        }
    }
}

/// The client's own usage, token events, backlog, the server's metrics, and the verdicts.
fn client_and_server_columns(
    t: &mut Table,
    rows: &[CellData],
    verdicts: &BTreeMap<String, String>,
) {
    t.push("client_cpu_share", n(rows, |c| c.input.client_cpu_share));
    t.push(
        "client_loop_lag_p99_ms",
        n(rows, |c| c.input.client_loop_lag_p99_ms),
    );
    t.push(
        "client_rss_per_request_bytes",
        n(rows, |c| c.client_rss_per_request_bytes),
    );
    // null unless the cell asked for continuous_usage_stats
    t.push(
        "tokens_per_event_mean",
        n(rows, |c| c.summary.event_tokens.as_ref().map(|t| t.mean())),
    );
    t.push(
        "multi_token_event_share",
        n(rows, |c| {
            c.summary
                .event_tokens
                .as_ref()
                .map(|t| t.multi_token_share())
        }),
    );
    t.push(
        "backlog_slope_per_s",
        n(rows, |c| c.input.backlog_slope_per_s),
    );
    type ServerFigure = fn(&ServerStats) -> Option<f64>;
    let server: [(&str, ServerFigure); 10] = [
        ("server_waiting_slope_per_s", |s| s.waiting_slope_per_s),
        ("server_waiting_max", |s| s.waiting_max),
        ("server_kv_usage_max", |s| s.kv_usage_max),
        ("server_ttft_mean_ms", |s| s.server_ttft_mean_ms),
        ("server_preemptions", |s| s.preemptions),
        // tokens, from vLLM's counters; the rate is null when they are absent or flat
        ("server_prefix_cache_queries", |s| s.prefix_cache_queries),
        ("server_prefix_cache_hits", |s| s.prefix_cache_hits),
        ("server_prefix_cache_hit_rate", |s| {
            s.prefix_cache_hit_rate()
        }),
        // the engines' mean step over the window (idle time between steps included)
        ("server_engine_step_ms", |s| s.engine_step_ms),
        ("server_tokens_per_step", |s| s.tokens_per_step),
    ];
    for (name, pick) in server {
        t.push(name, n(rows, |c| c.input.server.as_ref().and_then(pick)));
    }
    t.push(
        "verdicts",
        s(rows, |c| {
            verdicts.get(&c.cell.id).cloned().filter(|v| !v.is_empty())
        }),
    );
}

/// A matrix dimension as a typed column, by the field's declared kind: integers for an
/// integer field (`dp`, `max_num_seqs`), numbers for a number or a rate (`inf` included,
/// so a rate is a double in every experiment, whatever its grid), text otherwise; so
/// `df.request_rate > 10` works and sorting gives 5, 10, 20, 40.
fn matrix_column<'a>(
    name: &str,
    values: impl Iterator<Item = Option<&'a serde_yaml::Value>>,
) -> Column {
    use experiment::fields::Kind;
    use serde_yaml::Value;
    let vs: Vec<Option<&Value>> = values.collect();
    let number = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if s == "inf" => Some(f64::INFINITY),
        _ => None,
    };
    let kind = experiment::fields::find(name).map(|(_, f)| f.kind);
    let integers = matches!(kind, Some(Kind::Int(_)))
        || (kind.is_none() && vs.iter().flatten().all(|v| v.as_i64().is_some()));
    if integers && vs.iter().flatten().all(|v| v.as_i64().is_some()) {
        Column::I64(vs.iter().map(|v| v.and_then(Value::as_i64)).collect())
    } else if vs.iter().flatten().all(|v| number(v).is_some()) {
        Column::F64(vs.iter().map(|v| v.and_then(number)).collect())
    } else {
        Column::Str(vs.iter().map(|v| v.map(experiment::plan::scalar)).collect())
    }
}

/// `timeseries.parquet`: per-second series per cell (long format).
pub fn timeseries_table(dir: &RunDir, a: &Aggregated) -> Result<Table> {
    let (mut cell, mut t_s, mut at, mut series, mut engine, mut value) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut push = |c: &str, zero: Option<i64>, t: f64, s: &str, e: Option<String>, v: f64| {
        cell.push(Some(c.to_string()));
        t_s.push(Some(t));
        at.push(zero.map(|z| z + (t * 1e9).round() as i64));
        series.push(Some(s.to_string()));
        engine.push(e);
        value.push(Some(v));
    };
    for c in &a.cells {
        let cdir = dir.cell(&c.cell.id);
        let records = records::read_compact(&cdir)?;
        let z = c.clock_zero_unix_ns;
        let end_s = records
            .iter()
            .map(|r| r.t_end_ns)
            .max()
            .unwrap_or(0)
            .div_ceil(1_000_000_000);
        let mut offered = vec![0u64; end_s as usize + 1];
        let mut sent = vec![0u64; end_s as usize + 1];
        let mut done = vec![0u64; end_s as usize + 1];
        let mut ttfts: Vec<Vec<f64>> = vec![Vec::new(); end_s as usize + 1];
        for r in &records {
            let s = (r.t_send_ns / 1_000_000_000) as usize;
            sent[s] += 1;
            // by intended time: the schedule's rate (a ramp's, a trace's) beside what was done
            if let Some(o) = offered.get_mut((r.t_intended_ns / 1_000_000_000) as usize) {
                *o += 1;
            }
            if r.is_ok() {
                done[(r.t_end_ns / 1_000_000_000) as usize] += 1;
            }
            if let Some(t) = r.ttft_ns() {
                ttfts[s].push(t as f64 / 1e6);
            }
        }
        for (sec, inflight) in in_flight_series(&records, 0, end_s) {
            let i = sec as usize;
            let id = c.cell.id.as_str();
            push(id, z, sec as f64, "offered", None, offered[i] as f64);
            push(id, z, sec as f64, "sent", None, sent[i] as f64);
            push(id, z, sec as f64, "completed", None, done[i] as f64);
            push(id, z, sec as f64, "in_flight", None, inflight);
            // counted in the cell's event pass (successful requests, as the peak)
            let events = c.content_events_per_s.get(i).copied().unwrap_or(0);
            push(id, z, sec as f64, "content_events", None, events as f64);
            if let Some(d) =
                loadtest_analysis::stats::Distribution::from_values(std::mem::take(&mut ttfts[i]))
            {
                push(id, z, sec as f64, "ttft_p50_ms", None, d.p50);
            }
        }
        for m in cdir.read_metrics() {
            let name = match m.name.as_str() {
                "vllm:num_requests_running" => "server_running",
                "vllm:num_requests_waiting" => "server_waiting",
                "vllm:kv_cache_usage_perc" => "server_kv_usage",
                _ => continue,
            };
            let eng = Some(format!(
                "{}:{}",
                m.endpoint,
                m.engine.clone().unwrap_or_default()
            ));
            push(&c.cell.id, z, m.t_ns as f64 / 1e9, name, eng, m.value);
        }
    }
    let mut t = Table::default();
    t.push("cell", Column::Str(cell));
    t.push("t_s", Column::F64(t_s));
    t.push("at", Column::Timestamp(at));
    t.push("series", Column::Str(series));
    t.push("engine", Column::Str(engine));
    t.push("value", Column::F64(value));
    Ok(t)
}
