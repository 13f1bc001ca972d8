//! The figures that need every content event, not just a request's first and last: the
//! pooled inter-token latency, the peak output tokens per second, and how many tokens the
//! events carried (when the server said, `continuous_usage_stats`). Records are streamed
//! (twice: exact ITL percentiles take two passes, `stats::exact`), so memory does not grow
//! with the number of tokens. Pure: the caller says where the records come from.

use super::Window;
use crate::record::RequestRecord;
use crate::stats::Distribution;
use crate::stats::exact::FirstPass;
use serde::Serialize;

/// How many tokens the content events carried, over the events of the window's successful
/// requests whose server reported it. One event of k tokens is one ITL gap, not k: this
/// says how far "per event" is from "per token".
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EventTokens {
    /// Events with a known token count.
    pub events: u64,
    pub tokens: u64,
    /// Events that carried more than one token.
    pub multi_token_events: u64,
    pub max_tokens_per_event: u32,
}

impl EventTokens {
    pub fn mean(&self) -> f64 {
        self.tokens as f64 / self.events.max(1) as f64
    }

    pub fn multi_token_share(&self) -> f64 {
        self.multi_token_events as f64 / self.events.max(1) as f64
    }
}

/// Inter-token latency over the window, and the busiest second of content events.
#[derive(Debug, Clone, Default)]
pub struct EventFigures {
    pub itl_ms: Option<Distribution>,
    /// The most content events (≈ tokens) that arrived in any one-second bucket of the
    /// run, as `vllm bench serve` reports its "peak output token throughput".
    pub max_output_tokens_per_s: f64,
    /// Content events of successful requests in each whole second of the run (the series
    /// the peak is the maximum of; `timeseries.parquet` plots it).
    pub content_events_per_s: Vec<u64>,
    /// `None` when no request in the window had its events' token counts.
    pub event_tokens: Option<EventTokens>,
    /// Output tokens that arrived inside the window's first and second half, from every
    /// request (finished or not): the server's work rate, whatever the requests' fate.
    pub window_tokens: [f64; 2],
}

/// Tokens each content event of `r` carried, when one figure holds for all of them: its
/// total `usage` spread over its events (a chat stream's events can carry two), else one.
/// `None` when the server said per event (`content_event_tokens`).
fn tokens_per_event(r: &RequestRecord) -> Option<f64> {
    let n = r.content_events.len();
    if r.content_event_tokens.len() == n && n > 0 {
        return None;
    }
    Some(
        match r.output_tokens_source {
            crate::record::TokenSource::Usage if n > 0 => r.output_tokens as f64 / n as f64,
            _ => 1.0,
        }
        .max(0.0),
    )
}

/// Compute the event figures of the records `stream` yields: `stream(f)` must call `f` once
/// per full record, and is called twice (the same records both times). The ITL takes the
/// successful requests sent inside `window`; the peak counts every successful request.
pub fn event_figures<S, E>(
    mut stream: S,
    window: Window,
    percentiles: &[f64],
) -> Result<EventFigures, E>
where
    S: FnMut(&mut dyn FnMut(&RequestRecord)) -> Result<(), E>,
{
    let mut itl = FirstPass::default();
    let mut per_second: Vec<u64> = Vec::new();
    let mut tokens = EventTokens::default();
    let mut window_tokens = [0.0f64; 2];
    let mid = window.start_ns + (window.end_ns.saturating_sub(window.start_ns)) / 2;
    stream(&mut |r| {
        let spread = tokens_per_event(r);
        for (k, off) in r.content_events.iter().enumerate() {
            let t = r.t_send_ns + off;
            if window.contains(t) {
                let n = spread.unwrap_or_else(|| r.content_event_tokens[k] as f64);
                window_tokens[(t >= mid) as usize] += n;
            }
        }
        if !r.is_ok() {
            return;
        }
        for off in &r.content_events {
            let s = ((r.t_send_ns + off) / 1_000_000_000) as usize;
            if s >= per_second.len() {
                per_second.resize(s + 1, 0);
            }
            per_second[s] += 1;
        }
        if window.contains(r.t_send_ns) {
            r.itls_ns().for_each(|g| itl.record(g));
            if r.content_event_tokens.len() == r.content_events.len() {
                for &k in &r.content_event_tokens {
                    tokens.events += 1;
                    tokens.tokens += k as u64;
                    tokens.multi_token_events += (k > 1) as u64;
                    tokens.max_tokens_per_event = tokens.max_tokens_per_event.max(k);
                }
            }
        }
    })?;
    let event_tokens = (tokens.events > 0).then_some(tokens);
    let max_output_tokens_per_s = per_second.iter().copied().max().unwrap_or(0) as f64;
    let Some(mut second) = itl.plan(percentiles, 1e6) else {
        return Ok(EventFigures {
            itl_ms: None,
            max_output_tokens_per_s,
            content_events_per_s: per_second,
            event_tokens,
            window_tokens,
        });
    };
    stream(&mut |r| {
        if r.is_ok() && window.contains(r.t_send_ns) {
            r.itls_ns().for_each(|g| second.record(g));
        }
    })?;
    Ok(EventFigures {
        itl_ms: Some(second.finish()),
        max_output_tokens_per_s,
        content_events_per_s: per_second,
        event_tokens,
        window_tokens,
    })
}
