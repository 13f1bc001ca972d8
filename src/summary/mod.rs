//! The figures of one load point, computed from its raw records (DESIGN §3). Pure: no IO.
//!
//! The measurement window: latency distributions take the requests *sent* inside it,
//! throughputs count what *completed* (or the content events that arrived) inside it, over
//! its length. Without warm-up or cool-down the window is the whole run, from t = 0 to the
//! last response, which is what `vllm bench serve` reports as its duration.
//!
//! Per-request figures come from the compact records held in memory; the two that need
//! every content event (ITL, peak tokens/s) from [`events`], which streams the full records.

pub mod events;
pub mod goodput;

use crate::record::{CompactRecord, ContentEvents, RequestRecord, TokenCounts};
use crate::stats::Distribution;
pub use events::{EventFigures, event_figures};
use goodput::Slo;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Window {
    pub start_ns: u64,
    pub end_ns: u64,
}

impl Window {
    pub fn len_s(&self) -> f64 {
        self.end_ns.saturating_sub(self.start_ns) as f64 / 1e9
    }

    fn contains(&self, t: u64) -> bool {
        t >= self.start_ns && t < self.end_ns
    }
}

/// Latency distributions, in milliseconds.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Latencies {
    pub ttft_ms: Option<Distribution>,
    pub tpot_ms: Option<Distribution>,
    pub itl_ms: Option<Distribution>,
    pub e2el_ms: Option<Distribution>,
    pub queue_delay_ms: Option<Distribution>,
    pub ttft_from_intended_ms: Option<Distribution>,
    pub e2el_from_intended_ms: Option<Distribution>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub window: Window,
    pub window_s: f64,
    /// Requests written to a socket, and how they ended: `sent = ok + failed + cancelled`.
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Scheduled but never sent (the run was interrupted first).
    pub not_sent: u64,
    pub errors_by_kind: BTreeMap<&'static str, u64>,
    /// Requests sent inside the window (the population of the latency figures).
    pub measured: u64,
    /// Successful requests that completed inside the window.
    pub completed: u64,
    pub total_input_tokens: u64,
    pub total_output_tokens: u64,
    pub offered_rate: f64,
    pub achieved_send_rate: f64,
    pub request_throughput: f64,
    pub output_throughput: f64,
    pub total_token_throughput: f64,
    pub request_goodput: Option<f64>,
    pub slo_attainment: Option<f64>,
    pub max_output_tokens_per_s: f64,
    /// Tokens per content event, when the server reported them (`continuous_usage_stats`).
    pub event_tokens: Option<events::EventTokens>,
    pub max_concurrent_requests: u64,
    /// Share of successful requests whose token count came from the server's `usage`.
    pub usage_coverage: f64,
    pub latencies: Latencies,
}

/// What a summary covers and how it judges: the window, the schedule's offered rate, the
/// SLOs for goodput, and percentiles wanted beyond the standard ones.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub window: Window,
    pub offered_rate: f64,
    pub slos: &'a [Slo],
    pub percentiles: &'a [f64],
}

/// The whole run as a window: from t = 0 up to and including the last response's end.
pub fn whole_run<E: ContentEvents, K: TokenCounts>(records: &[RequestRecord<E, K>]) -> Window {
    Window {
        start_ns: 0,
        end_ns: records.iter().map(|r| r.t_end_ns).max().unwrap_or(0) + 1,
    }
}

/// The window a cell was configured with (`(start_s, end_s)` from its warm-up and
/// cool-down), or the whole run when it has none.
pub fn resolve_window<E: ContentEvents, K: TokenCounts>(
    window_s: Option<(f64, f64)>,
    records: &[RequestRecord<E, K>],
) -> Window {
    match window_s {
        Some((s, e)) => Window {
            start_ns: (s * 1e9) as u64,
            end_ns: (e * 1e9) as u64,
        },
        None => whole_run(records),
    }
}

/// Summarise full records held in memory (tests, small re-analyses): the event figures are
/// streamed from the same slice.
pub fn summarize_records(
    records: &[RequestRecord],
    not_sent: u64,
    window: Option<Window>,
    offered_rate: f64,
    slos: &[Slo],
) -> RunSummary {
    let window = window.unwrap_or_else(|| whole_run(records));
    let ev = event_figures(
        |f| {
            records.iter().for_each(&mut *f);
            Ok::<(), std::convert::Infallible>(())
        },
        window,
        &[],
    )
    .unwrap_or_else(|never| match never {});
    let compact: Vec<CompactRecord> = records
        .iter()
        .cloned()
        .map(RequestRecord::into_compact)
        .collect();
    let scope = Scope {
        window,
        offered_rate,
        slos,
        percentiles: &[],
    };
    summarize(&compact, ev, not_sent, scope)
}

/// Summarise `records` over `scope.window`; `events` are the figures that needed every
/// content event (see [`event_figures`]), computed over the same records and window.
pub fn summarize(
    records: &[CompactRecord],
    events: EventFigures,
    not_sent: u64,
    scope: Scope,
) -> RunSummary {
    let Scope {
        window,
        offered_rate,
        slos,
        percentiles,
    } = scope;
    let sent = records.len() as u64;
    let ok = records.iter().filter(|r| r.is_ok()).count() as u64;
    let cancelled = records.iter().filter(|r| r.is_cancelled()).count() as u64;
    let mut errors_by_kind = BTreeMap::new();
    for r in records {
        if let Some(e) = &r.error {
            *errors_by_kind.entry(e.kind.as_str()).or_insert(0) += 1;
        }
    }
    let in_window: Vec<&CompactRecord> = records
        .iter()
        .filter(|r| window.contains(r.t_send_ns))
        .collect();
    let ok_in: Vec<&CompactRecord> = in_window.iter().copied().filter(|r| r.is_ok()).collect();
    let completed_in: Vec<&CompactRecord> = records
        .iter()
        .filter(|r| r.is_ok() && window.contains(r.t_end_ns))
        .collect();
    let window_s = window.len_s();
    let total_input_tokens: u64 = completed_in.iter().map(|r| r.input_tokens as u64).sum();
    let total_output_tokens: u64 = completed_in.iter().map(|r| r.output_tokens as u64).sum();
    let ms = |ns: f64| ns / 1e6;
    let dist = |v: Vec<f64>| Distribution::from_values_with(v, percentiles);
    let latencies = Latencies {
        ttft_ms: dist(
            ok_in
                .iter()
                .filter_map(|r| r.ttft_ns())
                .map(|t| ms(t as f64))
                .collect(),
        ),
        tpot_ms: dist(ok_in.iter().filter_map(|r| r.tpot_ns()).map(ms).collect()),
        itl_ms: events.itl_ms,
        e2el_ms: dist(
            ok_in
                .iter()
                .filter_map(|r| r.e2e_ns())
                .map(|t| ms(t as f64))
                .collect(),
        ),
        queue_delay_ms: dist(
            in_window
                .iter()
                .map(|r| ms(r.queue_delay_ns() as f64))
                .collect(),
        ),
        ttft_from_intended_ms: dist(
            ok_in
                .iter()
                .filter_map(|r| r.ttft_ns().map(|t| ms((t + r.queue_delay_ns()) as f64)))
                .collect(),
        ),
        e2el_from_intended_ms: dist(
            ok_in
                .iter()
                .filter_map(|r| r.e2e_ns().map(|t| ms((t + r.queue_delay_ns()) as f64)))
                .collect(),
        ),
    };
    let (request_goodput, slo_attainment) = if slos.is_empty() {
        (None, None)
    } else {
        let good_completed = completed_in
            .iter()
            .filter(|r| goodput::meets(r, slos))
            .count();
        let good_measured = in_window.iter().filter(|r| goodput::meets(r, slos)).count();
        (
            Some(good_completed as f64 / window_s),
            (!in_window.is_empty()).then(|| good_measured as f64 / in_window.len() as f64),
        )
    };
    let usage_n = ok_in
        .iter()
        .filter(|r| r.output_tokens_source == crate::record::TokenSource::Usage)
        .count();
    RunSummary {
        window,
        window_s,
        sent,
        ok,
        failed: sent - ok - cancelled,
        cancelled,
        not_sent,
        errors_by_kind,
        measured: in_window.len() as u64,
        completed: completed_in.len() as u64,
        total_input_tokens,
        total_output_tokens,
        offered_rate,
        achieved_send_rate: send_rate(&in_window),
        request_throughput: completed_in.len() as f64 / window_s,
        output_throughput: total_output_tokens as f64 / window_s,
        total_token_throughput: (total_input_tokens + total_output_tokens) as f64 / window_s,
        request_goodput,
        slo_attainment,
        max_output_tokens_per_s: events.max_output_tokens_per_s,
        event_tokens: events.event_tokens,
        max_concurrent_requests: peak_concurrency(records),
        usage_coverage: if ok_in.is_empty() {
            0.0
        } else {
            usage_n as f64 / ok_in.len() as f64
        },
        latencies,
    }
}

/// Sends per second between the first and the last send of the window's requests.
fn send_rate(rs: &[&CompactRecord]) -> f64 {
    let (Some(lo), Some(hi)) = (
        rs.iter().map(|r| r.t_send_ns).min(),
        rs.iter().map(|r| r.t_send_ns).max(),
    ) else {
        return 0.0;
    };
    if hi == lo {
        return f64::INFINITY;
    }
    (rs.len() - 1) as f64 / ((hi - lo) as f64 / 1e9)
}

/// The most requests in flight at any instant (send to end).
fn peak_concurrency(records: &[CompactRecord]) -> u64 {
    let mut edges: Vec<(u64, i64)> = records
        .iter()
        .flat_map(|r| [(r.t_send_ns, 1), (r.t_end_ns, -1)])
        .collect();
    // ends before starts at the same instant: back-to-back requests do not overlap
    edges.sort_by_key(|&(t, d)| (t, d));
    let (mut cur, mut peak) = (0i64, 0i64);
    for (_, d) in edges {
        cur += d;
        peak = peak.max(cur);
    }
    peak as u64
}

/// `sent = ok + failed + cancelled`, and failures by kind add up: the invariant every
/// output asserts before it prints.
pub fn check_accounting(s: &RunSummary) -> Result<(), String> {
    let by_kind: u64 = s.errors_by_kind.values().sum();
    if s.sent != s.ok + s.failed + s.cancelled || by_kind != s.failed + s.cancelled {
        return Err(format!(
            "accounting mismatch: sent {} != ok {} + failed {} + cancelled {} (errors by kind {by_kind})",
            s.sent, s.ok, s.failed, s.cancelled
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
