//! The figures of one load point, computed from its raw records (DESIGN §3). Pure: no IO.
//!
//! The measurement window: latency distributions take the requests *sent* inside it,
//! throughputs count what *completed* (or the content events that arrived) inside it, over
//! its length. Without warm-up or cool-down the window is the whole run, from t = 0 to the
//! last response, which is what `vllm bench serve` reports as its duration.
//!
//! Two kinds of latency figure, never mixed up:
//! - [`EveryRequest`], ours: every request sent in the window, a cut-off one (drain limit,
//!   request timeout, Ctrl-C) right-censored at its cut, through the product-limit
//!   estimator (`stats::survival`); a percentile in censored mass is a flagged lower bound.
//! - [`Latencies`], vLLM's meaning: the window's *successful* requests only, as `vllm bench
//!   serve` reports them (its `summary.json` keys and table). At overload these are the
//!   survivors and read low; outputs say so.
//!
//! Throughput likewise: `request_throughput` is vLLM's (completions in the window / its
//! length), and [`TokenRate`] is the server's work rate (output tokens that arrived in the
//! window / its length / the mean output length), which counts the work of requests still
//! running at either edge of the window. The capacity figure the analysis uses combines
//! the two ([`RunSummary::achieved`] says how and why).
//!
//! Per-request figures come from the compact records held in memory; the two that need
//! every content event (ITL, peak tokens/s) from [`events`], which streams the full records.

pub mod events;
pub mod goodput;
pub mod turns;

use crate::record::{CompactRecord, ContentEvents, RequestRecord, TokenCounts};
use crate::stats::Distribution;
use crate::stats::survival::{Observation, Survival};
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

/// Latency distributions of the window's successful requests (vLLM's meaning), in ms.
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

/// Latencies over every request sent in the window (ms): a request cut off before its
/// first token counts toward TTFT as "at least its time to the cut", one cut before its
/// end toward E2E likewise. Requests that failed (refused, HTTP error, broken stream,
/// truncated) are in the error counts, not here, except for a first token they did get.
#[derive(Debug, Clone, Serialize, Default)]
pub struct EveryRequest {
    pub ttft_ms: Option<Survival>,
    pub e2el_ms: Option<Survival>,
    pub ttft_from_intended_ms: Option<Survival>,
    pub e2el_from_intended_ms: Option<Survival>,
}

/// The server's work rate over the window, as requests per second: output tokens that
/// arrived in the window (from every request, finished or not) / window / mean output
/// tokens of the window's successful requests. In steady state it equals the completion
/// rate; unlike completions in a window, it does not miss the requests still running at
/// the window's edges (a request as long as the window is counted for what it produced).
#[derive(Debug, Clone, Serialize)]
pub struct TokenRate {
    pub request_rate: f64,
    pub output_tokens: f64,
    pub mean_output_tokens: f64,
    /// Output tokens per second in the window's first and second half.
    pub half_rates_tps: [f64; 2],
}

impl TokenRate {
    /// The second half produced > 10% more than the first: the server was still filling
    /// its batch when the window began, so the rate is not its steady state.
    pub fn still_rising(&self) -> bool {
        let [a, b] = self.half_rates_tps;
        a < 0.9 * b
    }
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
    /// Requests sent a second time because the server closed a reused connection before
    /// answering (each still one request in `sent`).
    pub resent: u64,
    /// Unsuccessful requests by kind (`cancelled` among them).
    pub errors_by_kind: BTreeMap<&'static str, u64>,
    /// Cancelled requests by what stopped them; adds up to `cancelled`.
    pub cancelled_by_reason: BTreeMap<&'static str, u64>,
    /// Requests sent inside the window (the population of the latency figures).
    pub measured: u64,
    /// Of those, the ones that succeeded. Zero: the cell has no completion to speak of.
    pub measured_ok: u64,
    /// Of those, the ones cut off before they finished (latencies right-censored).
    pub measured_cut: u64,
    /// Successful requests that *ended* inside the window, and that per second of it.
    pub completions_in_window: u64,
    pub completion_rate: f64,
    /// Prompt and generated tokens of the window's successful requests.
    pub total_input_tokens: u64,
    pub total_output_tokens: u64,
    pub offered_rate: f64,
    pub achieved_send_rate: f64,
    /// Throughputs over the window; `None` without a successful request (no figure from
    /// nothing). Requests per second as [`RunSummary::achieved`] explains, and how.
    pub request_throughput: Option<f64>,
    pub request_throughput_from: &'static str,
    /// Output tokens that arrived in the window per second of it (from every request).
    pub output_throughput: Option<f64>,
    /// Output plus the prompts of the requests per second (request throughput × mean prompt).
    pub total_token_throughput: Option<f64>,
    /// Request throughput × the share of window requests that met every SLO.
    pub request_goodput: Option<f64>,
    pub slo_attainment: Option<f64>,
    pub max_output_tokens_per_s: f64,
    /// Tokens per content event, when the server reported them (`continuous_usage_stats`).
    pub event_tokens: Option<events::EventTokens>,
    pub max_concurrent_requests: u64,
    /// Share of successful requests whose token count came from the server's `usage`.
    pub usage_coverage: f64,
    /// Throughput from the output-token rate (`None` without a successful request).
    pub token_rate: Option<TokenRate>,
    /// vLLM's figures: successful requests only.
    pub latencies: Latencies,
    /// Ours: every request of the window, the unfinished right-censored.
    pub every_request: EveryRequest,
    /// Multi-turn conversations: the window's requests turn by turn (empty otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_turn: Vec<turns::TurnFigures>,
}

impl RunSummary {
    /// No request sent in the window succeeded: there is no latency or throughput to
    /// report, only why.
    pub fn no_completions(&self) -> bool {
        self.measured_ok == 0
    }

    /// Achieved throughput (req/s) and how it was measured (see `achieved`); `None`
    /// without a successful request in the window.
    pub fn achieved(&self) -> Option<(f64, &'static str)> {
        self.request_throughput
            .map(|r| (r, self.request_throughput_from))
    }
}

/// Achieved throughput over the window, and how it was taken.
///
/// Near saturation a window of a minute holds only a few "generations" of a full batch, and
/// the two direct counts miss in opposite directions: completions credit a request only
/// when it ends (the batch's first wave, still running, is missed), the output-token rate
/// only for its decoded tokens (a wave whose prefills ran before the window is
/// over-credited). Their mean cancels the two edge effects: in virtual time, over 15 windows
/// of the saturation example, the mean stayed within 2.5% of the long-run capacity where
/// either alone missed by up to 25%. When the window is not twice a request's time in the
/// batch (first to last token: queueing excluded, as a saturated queue grows without
/// bound), completions say little and the token rate stands alone.
fn achieved(
    completion_rate: f64,
    token_rate: Option<&TokenRate>,
    latencies: &Latencies,
    window_s: f64,
) -> (f64, &'static str) {
    let Some(t) = token_rate else {
        return (completion_rate, "completions");
    };
    let in_batch_s = latencies.tpot_ms.as_ref().map_or(0.0, |tpot| {
        tpot.p50 * (t.mean_output_tokens - 1.0).max(0.0) / 1000.0
    });
    if in_batch_s > window_s / 2.0 {
        (t.request_rate, "output_token_rate")
    } else {
        (
            (t.request_rate + completion_rate) / 2.0,
            "mean_of_completions_and_token_rate",
        )
    }
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
    let compact: Vec<CompactRecord> = records.iter().map(RequestRecord::to_compact).collect();
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
    let (errors_by_kind, cancelled_by_reason) = errors_by_kind_and_reason(records);
    let in_window: Vec<&CompactRecord> = records
        .iter()
        .filter(|r| window.contains(r.t_send_ns))
        .collect();
    let ok_in: Vec<&CompactRecord> = in_window.iter().copied().filter(|r| r.is_ok()).collect();
    let completed_in = records
        .iter()
        .filter(|r| r.is_ok() && window.contains(r.t_end_ns))
        .count();
    let window_s = window.len_s();
    let total_input_tokens: u64 = ok_in.iter().map(|r| r.input_tokens as u64).sum();
    let total_output_tokens: u64 = ok_in.iter().map(|r| r.output_tokens as u64).sum();
    let latencies = latencies(&in_window, &ok_in, events.itl_ms, percentiles);
    let token_rate = token_rate(&ok_in, events.window_tokens, window_s);
    let completion_rate = completed_in as f64 / window_s;
    let (request_throughput, request_throughput_from) = match (ok_in.is_empty(), &token_rate) {
        (true, _) => (None, "none"),
        (false, t) => {
            let (r, from) = achieved(completion_rate, t.as_ref(), &latencies, window_s);
            (Some(r), from)
        }
    };
    let output_throughput = request_throughput.map(|_| match &token_rate {
        Some(t) => t.output_tokens / window_s,
        None => total_output_tokens as f64 / window_s,
    });
    let mean_input = total_input_tokens as f64 / ok_in.len().max(1) as f64;
    let slo_attainment = (!slos.is_empty() && !in_window.is_empty()).then(|| {
        in_window.iter().filter(|r| goodput::meets(r, slos)).count() as f64 / in_window.len() as f64
    });
    RunSummary {
        window,
        window_s,
        sent,
        ok,
        failed: sent - ok - cancelled,
        cancelled,
        not_sent,
        resent: records.iter().filter(|r| r.resent > 0).count() as u64,
        errors_by_kind,
        cancelled_by_reason,
        measured: in_window.len() as u64,
        measured_ok: ok_in.len() as u64,
        measured_cut: in_window.iter().filter(|r| r.is_cut()).count() as u64,
        completions_in_window: completed_in as u64,
        completion_rate,
        total_input_tokens,
        total_output_tokens,
        offered_rate,
        achieved_send_rate: send_rate(&in_window),
        request_throughput,
        request_throughput_from,
        output_throughput,
        total_token_throughput: request_throughput
            .zip(output_throughput)
            .map(|(r, o)| o + r * mean_input),
        request_goodput: request_throughput.zip(slo_attainment).map(|(r, a)| r * a),
        slo_attainment,
        max_output_tokens_per_s: events.max_output_tokens_per_s,
        event_tokens: events.event_tokens,
        max_concurrent_requests: peak_concurrency(records),
        usage_coverage: usage_coverage(&ok_in),
        token_rate,
        every_request: every_request(&in_window, percentiles),
        per_turn: turns::per_turn(&in_window),
        latencies,
    }
}

/// Unsuccessful requests by kind, and cancelled ones by what stopped them.
fn errors_by_kind_and_reason(
    records: &[CompactRecord],
) -> (BTreeMap<&'static str, u64>, BTreeMap<&'static str, u64>) {
    let mut errors_by_kind = BTreeMap::new();
    let mut cancelled_by_reason = BTreeMap::new();
    for r in records {
        if let Some(e) = &r.error {
            *errors_by_kind.entry(e.kind.as_str()).or_insert(0) += 1;
            if e.kind == crate::record::ErrorKind::Cancelled {
                let reason = e.cancel_reason.map_or("unknown", |c| c.as_str());
                *cancelled_by_reason.entry(reason).or_insert(0) += 1;
            }
        }
    }
    (errors_by_kind, cancelled_by_reason)
}

/// vLLM's latency figures: the window's successful requests (`ok_in`), except the send
/// lag, which every request sent in the window (`in_window`) has.
fn latencies(
    in_window: &[&CompactRecord],
    ok_in: &[&CompactRecord],
    itl_ms: Option<Distribution>,
    percentiles: &[f64],
) -> Latencies {
    let ms = |ns: f64| ns / 1e6;
    let dist = |v: Vec<f64>| Distribution::from_values_with(v, percentiles);
    Latencies {
        ttft_ms: dist(
            ok_in
                .iter()
                .filter_map(|r| r.ttft_ns())
                .map(|t| ms(t as f64))
                .collect(),
        ),
        tpot_ms: dist(ok_in.iter().filter_map(|r| r.tpot_ns()).map(ms).collect()),
        itl_ms,
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
    }
}

/// Share of successful requests whose token count came from the server's `usage`.
fn usage_coverage(ok_in: &[&CompactRecord]) -> f64 {
    if ok_in.is_empty() {
        return 0.0;
    }
    let usage_n = ok_in
        .iter()
        .filter(|r| r.output_tokens_source == crate::record::TokenSource::Usage)
        .count();
    usage_n as f64 / ok_in.len() as f64
}

/// Every window request into the product-limit estimator: finished ones at their time, cut
/// ones at their time to the cut; failed ones only where they got so far (a first token).
fn every_request(in_window: &[&CompactRecord], percentiles: &[f64]) -> EveryRequest {
    let ms = |ns: u64| ns as f64 / 1e6;
    let ttft = |r: &CompactRecord| match r.ttft_ns() {
        Some(t) => Some(Observation::done(ms(t))),
        None => r.is_cut().then(|| Observation::cut(ms(r.follow_up_ns()))),
    };
    let e2e = |r: &CompactRecord| match r.e2e_ns() {
        Some(t) if r.is_ok() => Some(Observation::done(ms(t))),
        _ => r.is_cut().then(|| Observation::cut(ms(r.follow_up_ns()))),
    };
    let late = |r: &CompactRecord, o: Observation| Observation {
        value: o.value + ms(r.queue_delay_ns()),
        ..o
    };
    let est = |f: &dyn Fn(&CompactRecord) -> Option<Observation>| {
        Survival::from_observations(in_window.iter().filter_map(|r| f(r)).collect(), percentiles)
    };
    EveryRequest {
        ttft_ms: est(&ttft),
        e2el_ms: est(&e2e),
        ttft_from_intended_ms: est(&|r| ttft(r).map(|o| late(r, o))),
        e2el_from_intended_ms: est(&|r| e2e(r).map(|o| late(r, o))),
    }
}

/// The output-token rate over the window as requests per second (see [`TokenRate`]).
fn token_rate(ok_in: &[&CompactRecord], halves: [f64; 2], window_s: f64) -> Option<TokenRate> {
    if ok_in.is_empty() || window_s <= 0.0 {
        return None;
    }
    let mean = ok_in.iter().map(|r| r.output_tokens as f64).sum::<f64>() / ok_in.len() as f64;
    if mean <= 0.0 {
        return None;
    }
    let tokens = halves[0] + halves[1];
    Some(TokenRate {
        request_rate: tokens / window_s / mean,
        output_tokens: tokens,
        mean_output_tokens: mean,
        half_rates_tps: halves.map(|h| h / (window_s / 2.0)),
    })
}

/// Why no request of the window succeeded, in words a user can act on (for a cell with
/// [`RunSummary::no_completions`]).
pub fn why_no_completions(s: &RunSummary) -> String {
    let kind = |k: &str| s.errors_by_kind.get(k).copied().unwrap_or(0);
    let reason = |k: &str| s.cancelled_by_reason.get(k).copied().unwrap_or(0);
    let failed = s.sent.saturating_sub(s.ok);
    let got_tokens = s
        .every_request
        .ttft_ms
        .as_ref()
        .is_some_and(|t| t.count > t.censored);
    if s.measured == 0 {
        "no request was sent inside the measurement window".into()
    } else if reason("interrupted") > 0 {
        "interrupted before any request of the window finished".into()
    } else if failed > 0 && kind("connect") == failed {
        "every request failed to connect: the server is down or not listening".into()
    } else if failed > 0 && kind("http_status") == failed {
        "the server answered every request with an HTTP error".into()
    } else if reason("drain_limit") > 0 && got_tokens {
        "requests were still streaming when the drain limit cut them: their outputs take longer than the run allows (raise `drain_timeout_s`, or shorten the outputs)".into()
    } else if reason("drain_limit") > 0 {
        "no request got a first token before the drain limit: the server is overloaded or stalled"
            .into()
    } else if kind("timeout") > 0 {
        "requests hit the request timeout before they finished (raise `request_timeout_s`?)".into()
    } else {
        let kinds: Vec<String> = s
            .errors_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        format!("every request failed ({})", kinds.join(", "))
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
    let by_reason: u64 = s.cancelled_by_reason.values().sum();
    if s.sent != s.ok + s.failed + s.cancelled
        || by_kind != s.failed + s.cancelled
        || by_reason != s.cancelled
    {
        return Err(format!(
            "accounting mismatch: sent {} != ok {} + failed {} + cancelled {} (errors by kind {by_kind})",
            s.sent, s.ok, s.failed, s.cancelled
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
