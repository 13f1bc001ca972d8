//! What the engines did over a window, read from vLLM's counters at the same scrapes: how
//! many steps in how long (the engine step beside every prediction), the work in them
//! (prompt tokens computed, tokens decoded, the requests' mean lengths), and how that time
//! compares with a profile's step costs for the same work.
//!
//! The last is the question a missed prediction raises first: did the server step at the
//! speed the profile says (then the miss is the scheduling, the queue, the front end) or
//! not (a server slower or faster than when it was fitted, or a cost the model lacks)? The
//! engine step alone cannot say: a predicted run that schedules other batches has other
//! steps. Here the profile prices the measured cell's own work. Means stand in for
//! distributions (a decoding sequence's context is the mean prompt plus half the mean
//! output). Between steps an engine may idle: with one engine, the time no request was in
//! flight at the client (`idle_s`) is taken out of its span; with more, it stays in. Reading
//! the predicted run the same way, whose steps cost exactly the profile's, gives the factor
//! that reading adds at that load, and `speed` divides it out.

use crate::record::CompactRecord;
use crate::server_metrics::MetricRow;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const STEPS: &str = "vllm:iteration_tokens_total_count";
/// The counters read beside the step count, in `EngineWork`'s order.
const COUNTERS: [&str; 7] = [
    "vllm:iteration_tokens_total_sum",
    "vllm:prompt_tokens_total",
    "vllm:prefix_cache_hits_total",
    "vllm:generation_tokens_total",
    "vllm:request_prompt_tokens_count",
    "vllm:request_prompt_tokens_sum",
    "vllm:request_generation_tokens_sum",
];

/// The engines' steps and work over a window, summed over engines. A counter is `None`
/// unless every engine that stepped had it at each of its step-counted scrapes (a sum over
/// some engines' scrapes and all engines' span would be no figure).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineWork {
    /// The time each engine's scrapes span, summed over the engines, seconds.
    pub span_s: f64,
    /// The earliest and latest of the engines' scrapes counted, and how many engines
    /// stepped (with one, the span is `[first_ns, last_ns]`).
    pub first_ns: u64,
    pub last_ns: u64,
    pub engines: usize,
    /// Of the span, the time no request was in flight at the client: the engine had
    /// nothing to step (one engine only; `with_idle`).
    #[serde(default)]
    pub idle_s: Option<f64>,
    /// Steps that produced output (vLLM does not count a step that only advanced a
    /// chunked prefill).
    pub steps: f64,
    /// Tokens the counted steps processed (`vllm:iteration_tokens_total_sum`).
    pub step_tokens: Option<f64>,
    /// Prompt tokens of the requests prefilled, cached ones included.
    pub prompt_tokens: Option<f64>,
    /// Of those, found in the prefix cache.
    pub cached_tokens: Option<f64>,
    pub output_tokens: Option<f64>,
    /// Requests finished, their prompt tokens and output tokens (the lengths' means).
    pub finished: Option<f64>,
    pub finished_prompt_tokens: Option<f64>,
    pub finished_output_tokens: Option<f64>,
}

impl EngineWork {
    /// The mean time per counted step, ms (idle time included: on a prediction's side too).
    pub fn step_ms(&self) -> f64 {
        self.span_s * 1e3 / self.steps
    }

    /// With the idle time of a one-engine server's span from the cell's records (the same
    /// clock as the scrapes); a server of more engines is left as it is (one engine may
    /// idle while the client waits on another).
    pub fn with_idle(mut self, records: &[CompactRecord]) -> EngineWork {
        if self.engines == 1 {
            self.idle_s = Some(idle_ns(records, self.first_ns, self.last_ns) as f64 / 1e9);
        }
        self
    }

    /// The span the engines had work in, seconds.
    fn busy_s(&self) -> f64 {
        self.span_s - self.idle_s.unwrap_or(0.0)
    }

    pub fn tokens_per_step(&self) -> Option<f64> {
        Some(self.step_tokens? / self.steps)
    }
}

/// The engines' work over `[from_ns, to_ns]`: per engine, the scrapes inside the window
/// that carry the step count (an engine needs two, and a step between them); each counter's
/// growth over those same scrapes. A counter that falls between two scrapes was reset (the
/// server restarted) and counts from zero, as Prometheus' `increase` does. `None` for a
/// server without vLLM's step counter, or when no engine stepped in the window.
pub fn engine_work(rows: &[MetricRow], from_ns: u64, to_ns: u64) -> Option<EngineWork> {
    const N: usize = COUNTERS.len() + 1;
    // per engine (endpoint, engine label), per scrape: the step count and each counter,
    // summed over their other labels
    type Scrapes = BTreeMap<u64, [Option<f64>; N]>;
    let mut engines: BTreeMap<(u32, Option<&str>), Scrapes> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.t_ns >= from_ns && r.t_ns <= to_ns) {
        let Some(i) = std::iter::once(STEPS)
            .chain(COUNTERS)
            .position(|n| n == r.name)
        else {
            continue;
        };
        let at = engines
            .entry((r.endpoint, r.engine.as_deref()))
            .or_default()
            .entry(r.t_ns)
            .or_insert([None; N]);
        at[i] = Some(at[i].unwrap_or(0.0) + r.value);
    }
    let mut span_ns = 0u64;
    let (mut first_ns, mut last_ns, mut stepped) = (u64::MAX, 0u64, 0usize);
    let mut steps = 0.0;
    let mut counters: [Option<f64>; COUNTERS.len()] = [Some(0.0); COUNTERS.len()];
    for scrapes in engines.values() {
        let counted: Vec<(&u64, &[Option<f64>; N])> =
            scrapes.iter().filter(|(_, v)| v[0].is_some()).collect();
        let (Some(first), Some(last)) = (counted.first(), counted.last()) else {
            continue;
        };
        let n = increase(counted.iter().filter_map(|(_, v)| v[0]));
        if n <= 0.0 {
            continue;
        }
        span_ns += last.0 - first.0;
        (first_ns, last_ns) = (first_ns.min(*first.0), last_ns.max(*last.0));
        stepped += 1;
        steps += n;
        for (i, total) in counters.iter_mut().enumerate() {
            let values: Option<Vec<f64>> = counted.iter().map(|(_, v)| v[i + 1]).collect();
            *total = total.zip(values).map(|(t, v)| t + increase(v.into_iter()));
        }
    }
    let [
        step_tokens,
        prompt_tokens,
        cached_tokens,
        output_tokens,
        finished,
        fp,
        fo,
    ] = counters;
    (steps > 0.0).then_some(EngineWork {
        span_s: span_ns as f64 / 1e9,
        first_ns,
        last_ns,
        engines: stepped,
        idle_s: None,
        steps,
        step_tokens,
        prompt_tokens,
        cached_tokens,
        output_tokens,
        finished,
        finished_prompt_tokens: fp,
        finished_output_tokens: fo,
    })
}

/// The time within `[from_ns, to_ns]` when no request of `records` was in flight (between
/// its send and its end).
fn idle_ns(records: &[CompactRecord], from_ns: u64, to_ns: u64) -> u64 {
    let mut spans: Vec<(u64, u64)> = records
        .iter()
        .map(|r| (r.t_send_ns.max(from_ns), r.t_end_ns.min(to_ns)))
        .filter(|(a, b)| a < b)
        .collect();
    spans.sort_unstable();
    let (mut idle, mut covered_to) = (0u64, from_ns);
    for (a, b) in spans {
        idle += a.saturating_sub(covered_to);
        covered_to = covered_to.max(b);
    }
    idle + to_ns.saturating_sub(covered_to)
}

/// A counter's growth over its samples in time order; a fall is a reset (counted from 0).
fn increase(values: impl Iterator<Item = f64>) -> f64 {
    let mut values = values;
    let Some(mut prev) = values.next() else {
        return 0.0;
    };
    let mut grown = 0.0;
    for v in values {
        grown += if v >= prev { v - prev } else { v };
        prev = v;
    }
    grown
}

/// A profile's step costs (the simulator's step model: `vllm_sim::profile::Profile`),
/// seconds each.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepCosts {
    /// Per step.
    pub c0_s: f64,
    /// Per prompt token computed.
    pub c_pf_s: f64,
    /// Per (prompt token, token it attends to) pair.
    pub c_pf_attn_s: f64,
    /// Per decoding sequence per step.
    pub c_dec_s: f64,
    /// Per context token of a decoding sequence per step.
    pub c_kv_s: f64,
}

impl StepCosts {
    /// What the profile's steps would take for `w`'s work, seconds; `None` when the server
    /// did not count what that needs, or no request finished to give the mean lengths.
    ///
    /// Prefills are the prompt tokens over the mean prompt; each yields the first output
    /// token, the rest of the output tokens are decoding sequences' steps, each over a
    /// context of the mean prompt plus half the mean output. A prompt of `p` tokens with
    /// `c` of them cached computes `p − c` attending to `c` and to those before them.
    pub fn seconds(&self, w: &EngineWork) -> Option<f64> {
        let finished = w.finished.filter(|&n| n > 0.0)?;
        let (p, o) = (
            w.finished_prompt_tokens? / finished,
            w.finished_output_tokens? / finished,
        );
        let prompts = w.prompt_tokens?;
        let prefills = if p > 0.0 { prompts / p } else { 0.0 };
        let cached = w.cached_tokens.unwrap_or(0.0).min(prompts);
        let computed = prompts - cached;
        let c = if prefills > 0.0 {
            cached / prefills
        } else {
            0.0
        };
        let per_prompt = p - c;
        let pairs = prefills * (per_prompt * c + per_prompt * (per_prompt + 1.0) / 2.0);
        let decoding = (w.output_tokens? - prefills).max(0.0);
        let context = decoding * (p + o / 2.0);
        Some(
            w.steps * self.c0_s
                + computed * self.c_pf_s
                + pairs * self.c_pf_attn_s
                + decoding * self.c_dec_s
                + context * self.c_kv_s,
        )
    }

    /// The engines' busy time over what these costs give for the same work (1: the
    /// profile's speed; 1.2: 20% slower; idle time included where it is not known);
    /// `None` when unknown.
    pub fn time_ratio(&self, w: &EngineWork) -> Option<f64> {
        let model = self.seconds(w).filter(|&s| s > 0.0)?;
        Some(w.busy_s() / model)
    }
}

/// The server's speed against the profile for the measured work: the measured time ratio
/// over the predicted run's (the same reading of steps that cost exactly the profile's),
/// so what the reading itself adds at that load (idle time, means for distributions)
/// cancels. 1.2: the server's steps took 20% longer than the profile's for the same work.
pub fn speed(measured_ratio: f64, predicted_ratio: f64) -> f64 {
    measured_ratio / predicted_ratio
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server_metrics::tests::row;

    /// Two scrapes of one engine: `steps` steps in 1 s and the counters' growth.
    fn window(steps: f64, grown: [f64; 7]) -> Vec<MetricRow> {
        let mut rows = vec![row(1, "0", STEPS, 10.0), row(2, "0", STEPS, 10.0 + steps)];
        for (name, g) in COUNTERS.iter().zip(grown) {
            rows.push(row(1, "0", name, 1_000.0));
            rows.push(row(2, "0", name, 1_000.0 + g));
        }
        rows
    }

    const COSTS: StepCosts = StepCosts {
        c0_s: 0.005,
        c_pf_s: 50e-6,
        c_pf_attn_s: 10e-9,
        c_dec_s: 300e-6,
        c_kv_s: 500e-9,
    };

    #[test]
    fn the_profile_prices_the_work_the_counters_saw() {
        // 100 steps; 4 prompts of 200 tokens (50 cached each), their first tokens and 396
        // more; finished: 2 requests of 200 in, 100 out
        let w = engine_work(
            &window(100.0, [0.0, 800.0, 200.0, 400.0, 2.0, 400.0, 200.0]),
            0,
            u64::MAX,
        )
        .unwrap();
        assert_eq!((w.span_s, w.steps), (1.0, 100.0));
        let pairs = 4.0 * (150.0 * 50.0 + 150.0 * 151.0 / 2.0);
        let want = 100.0 * 0.005
            + 600.0 * 50e-6
            + pairs * 10e-9
            + 396.0 * 300e-6
            + 396.0 * (200.0 + 50.0) * 500e-9;
        let got = COSTS.seconds(&w).unwrap();
        assert!((got - want).abs() < 1e-12, "{got} against {want}");
        assert_eq!(COSTS.time_ratio(&w), Some(1.0 / want));
        assert_eq!(speed(1.3, 1.04), 1.25);
    }

    /// A request in flight from `send_s` to `end_s`.
    fn request(send_s: f64, end_s: f64) -> CompactRecord {
        use crate::record::{EventSpan, RequestRecord, TokenSource};
        RequestRecord {
            id: 0,
            t_intended_ns: (send_s * 1e9) as u64,
            t_send_ns: (send_s * 1e9) as u64,
            t_end_ns: (end_s * 1e9) as u64,
            connect_ns: None,
            content_events: EventSpan {
                count: 1,
                first_ns: 0,
                last_ns: 0,
            },
            content_event_tokens: (),
            input_tokens: 1,
            server_prompt_tokens: None,
            max_tokens: 1,
            output_tokens: 1,
            output_tokens_source: TokenSource::Usage,
            finish_reason: None,
            error: None,
            resent: 0,
            turn: None,
        }
    }

    #[test]
    fn a_lone_engines_idle_time_is_when_nothing_was_in_flight() {
        let w = engine_work(
            &window(100.0, [0.0, 800.0, 0.0, 400.0, 2.0, 400.0, 200.0]),
            0,
            u64::MAX,
        )
        .unwrap();
        // the span is 1–2 s: in flight 0.5–1.2 and 1.1–1.5 (overlapping), 1.7–1.8 and
        // 1.9–2.5: idle 1.5–1.7 and 1.8–1.9
        let records = [(0.5, 1.2), (1.1, 1.5), (1.7, 1.8), (1.9, 2.5)].map(|(a, b)| request(a, b));
        let idle = w.with_idle(&records).idle_s.unwrap();
        assert!((idle - 0.3).abs() < 1e-9, "{idle}");
        // the busy time is what is priced: 0.7 s
        let busy = w.with_idle(&records);
        let ratio = COSTS.time_ratio(&busy).unwrap() / COSTS.time_ratio(&w).unwrap();
        assert!((ratio - 0.7).abs() < 1e-9, "{ratio}");
        // nothing in flight: all of it idle; two engines: not known
        assert_eq!(w.with_idle(&[]).idle_s, Some(1.0));
        let two = EngineWork { engines: 2, ..w };
        assert_eq!(two.with_idle(&records).idle_s, None);
    }

    #[test]
    fn without_a_counter_or_a_finished_request_the_price_is_unknown() {
        let none_finished = window(100.0, [0.0, 800.0, 0.0, 400.0, 0.0, 0.0, 0.0]);
        let w = engine_work(&none_finished, 0, u64::MAX).unwrap();
        assert_eq!(COSTS.seconds(&w), None);
        // an engine without the prompt counter at one of its scrapes: unknown, not partial
        let mut rows = window(100.0, [0.0, 800.0, 0.0, 400.0, 2.0, 400.0, 200.0]);
        rows.retain(|r| !(r.name == COUNTERS[1] && r.t_ns == 2_000_000_000));
        let w = engine_work(&rows, 0, u64::MAX).unwrap();
        assert_eq!(w.prompt_tokens, None);
        assert_eq!(COSTS.seconds(&w), None);
        // the cache counter is the one a server may lack: then nothing was cached
        let mut rows = window(100.0, [0.0, 800.0, 0.0, 400.0, 2.0, 400.0, 200.0]);
        rows.retain(|r| r.name != COUNTERS[2]);
        let w = engine_work(&rows, 0, u64::MAX).unwrap();
        assert_eq!(w.cached_tokens, None);
        assert!(COSTS.seconds(&w).is_some());
    }
}
