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
//! output). Between steps an engine may idle: that time is taken out of its span, exactly
//! for one engine (the time no request was in flight at the client), and from the running
//! and waiting gauges at each scrape for more (sampled). Reading the predicted run the same
//! way, whose steps cost exactly the profile's, gives the factor the reading itself adds at
//! that load, and `speed` divides it out.

use crate::record::CompactRecord;
use crate::server_metrics::MetricRow;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The step count: the scrapes that carry it bound each engine's span.
const STEPS: &str = "vllm:iteration_tokens_total_count";

/// The counters read over the same scrapes, by their place in `EngineWork::counters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    StepTokens,
    PromptTokens,
    CacheHits,
    ExternalCacheHits,
    OutputTokens,
    Finished,
    FinishedPromptTokens,
    FinishedOutputTokens,
}

impl Counter {
    const ALL: [Counter; 8] = [
        Counter::StepTokens,
        Counter::PromptTokens,
        Counter::CacheHits,
        Counter::ExternalCacheHits,
        Counter::OutputTokens,
        Counter::Finished,
        Counter::FinishedPromptTokens,
        Counter::FinishedOutputTokens,
    ];

    fn of(name: &str) -> Option<Counter> {
        Some(match name {
            "vllm:iteration_tokens_total_sum" => Counter::StepTokens,
            "vllm:prompt_tokens_total" => Counter::PromptTokens,
            "vllm:prefix_cache_hits_total" => Counter::CacheHits,
            "vllm:external_prefix_cache_hits_total" => Counter::ExternalCacheHits,
            "vllm:generation_tokens_total" => Counter::OutputTokens,
            "vllm:request_prompt_tokens_count" => Counter::Finished,
            "vllm:request_prompt_tokens_sum" => Counter::FinishedPromptTokens,
            "vllm:request_generation_tokens_sum" => Counter::FinishedOutputTokens,
            _ => return None,
        })
    }
}

/// The engines' steps and work over a window, summed over engines. A counter is `None`
/// unless each of its series was scraped at every step-counted scrape of its engine (a
/// sum over some scrapes and the whole span would be no figure).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineWork {
    /// The time each engine's scrapes span, summed over the engines, seconds.
    pub span_s: f64,
    /// The earliest of the engines' step-counted scrapes.
    pub first_ns: u64,
    /// The latest of them (with one engine, its span is `[first_ns, last_ns]`).
    pub last_ns: u64,
    /// Engines that stepped in the window.
    pub engines: usize,
    /// Steps that produced output (vLLM does not count a step that only advanced a
    /// chunked prefill).
    pub steps: f64,
    /// Of the span, the time the engines had nothing to step (`with_idle`); `None`: not
    /// known, and left in.
    #[serde(default)]
    pub idle_s: Option<f64>,
    /// The idle time as the running and waiting gauges sample it: each engine's span times
    /// its share of the scrapes in it with neither running nor waiting; `None` without the
    /// gauges.
    #[serde(default)]
    pub sampled_idle_s: Option<f64>,
    /// Tokens the counted steps processed (`vllm:iteration_tokens_total_sum`; `None` if
    /// any engine that stepped did not have it at each of its scrapes).
    pub step_tokens: Option<f64>,
    /// Prompt tokens of the requests whose first token came (cached ones included).
    pub prompt_tokens: Option<f64>,
    /// Of those, found in the prefix cache (local and, where counted, external).
    pub cached_tokens: Option<f64>,
    /// Output tokens produced.
    pub output_tokens: Option<f64>,
    /// Requests finished.
    pub finished: Option<f64>,
    /// The finished requests' prompt tokens (their mean length).
    pub finished_prompt_tokens: Option<f64>,
    /// The finished requests' output tokens (their mean length).
    pub finished_output_tokens: Option<f64>,
}

impl EngineWork {
    /// The mean time per counted step, ms (idle time included: on a prediction's side too).
    pub fn step_ms(&self) -> f64 {
        self.span_s * 1e3 / self.steps
    }

    pub fn tokens_per_step(&self) -> Option<f64> {
        Some(self.step_tokens? / self.steps)
    }

    /// With the engines' idle time for a server of `dp` engines: for one, exactly, the time
    /// within the span no request of `records` (the same clock as the scrapes) was in
    /// flight; for more, the gauges' sample (one engine may idle while the client waits on
    /// another). The same rule on both sides of a prediction, whatever engines stepped.
    pub fn with_idle(mut self, records: &[CompactRecord], dp: u32) -> EngineWork {
        self.idle_s = if dp == 1 {
            Some(idle_ns(records, self.first_ns, self.last_ns) as f64 / 1e9)
        } else {
            self.sampled_idle_s
        };
        self
    }

    /// The span the engines had work in, seconds.
    fn busy_s(&self) -> f64 {
        self.span_s - self.idle_s.unwrap_or(0.0)
    }
}

/// One engine's step-counted scrapes and its counters' series there.
#[derive(Default)]
struct Engine<'a> {
    /// Scrape time → the step count (summed over its series).
    steps: BTreeMap<u64, f64>,
    /// (counter, series labels) → scrape time → value.
    series: BTreeMap<(usize, &'a str), BTreeMap<u64, f64>>,
    /// Scrape time → running + waiting.
    occupied: BTreeMap<u64, f64>,
}

/// The engines' work over `[from_ns, to_ns]`: per engine, the scrapes inside the window
/// that carry the step count (an engine needs two, and a step between them); each counter
/// series' growth over those same scrapes, then summed (Prometheus' `sum(increase())`). A
/// series that falls between two scrapes was reset (the server restarted) and counts from
/// zero. `None` for a server without vLLM's step counter, or when no engine stepped.
pub fn engine_work(rows: &[MetricRow], from_ns: u64, to_ns: u64) -> Option<EngineWork> {
    let mut engines: BTreeMap<(u32, Option<&str>), Engine> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.t_ns >= from_ns && r.t_ns <= to_ns) {
        let engine = || (r.endpoint, r.engine.as_deref());
        match r.name.as_str() {
            STEPS => {
                let e = engines.entry(engine()).or_default();
                *e.steps.entry(r.t_ns).or_default() += r.value;
            }
            "vllm:num_requests_running" | "vllm:num_requests_waiting" => {
                let e = engines.entry(engine()).or_default();
                *e.occupied.entry(r.t_ns).or_default() += r.value;
            }
            name => {
                if let Some(c) = Counter::of(name) {
                    let e = engines.entry(engine()).or_default();
                    let s = e.series.entry((c as usize, r.labels.as_str())).or_default();
                    s.insert(r.t_ns, r.value);
                }
            }
        }
    }
    let mut w = EngineWork {
        first_ns: u64::MAX,
        sampled_idle_s: Some(0.0),
        ..EngineWork::default()
    };
    let mut counters: [Option<f64>; Counter::ALL.len()] = [Some(0.0); Counter::ALL.len()];
    for e in engines.values() {
        let (Some((&first, _)), Some((&last, _))) =
            (e.steps.first_key_value(), e.steps.last_key_value())
        else {
            continue;
        };
        let n = increase(e.steps.values().copied());
        if n <= 0.0 {
            continue;
        }
        let span_ns = last - first;
        w.span_s += span_ns as f64 / 1e9;
        (w.first_ns, w.last_ns) = (w.first_ns.min(first), w.last_ns.max(last));
        w.engines += 1;
        w.steps += n;
        w.sampled_idle_s = w
            .sampled_idle_s
            .zip(idle_share(e, first, last))
            .map(|(s, share)| s + share * span_ns as f64 / 1e9);
        for (i, total) in counters.iter_mut().enumerate() {
            *total = total.zip(counter_growth(e, i)).map(|(t, g)| t + g);
        }
    }
    if w.steps <= 0.0 {
        return None;
    }
    let at = |c: Counter| counters[c as usize];
    w.step_tokens = at(Counter::StepTokens);
    w.prompt_tokens = at(Counter::PromptTokens);
    w.cached_tokens = match (at(Counter::CacheHits), at(Counter::ExternalCacheHits)) {
        // the external counter is the one a server without a KV connector may lack
        (Some(local), external) => Some(local + external.unwrap_or(0.0)),
        (None, _) => None,
    };
    w.output_tokens = at(Counter::OutputTokens);
    w.finished = at(Counter::Finished);
    w.finished_prompt_tokens = at(Counter::FinishedPromptTokens);
    w.finished_output_tokens = at(Counter::FinishedOutputTokens);
    Some(w)
}

/// Counter `i`'s growth over the engine's step-counted scrapes, its series summed; `None`
/// when a series lacks one of those scrapes, or the engine has none.
fn counter_growth(e: &Engine, i: usize) -> Option<f64> {
    let mut grown = None;
    for ((c, _), values) in e.series.range((i, "")..) {
        if *c != i {
            break;
        }
        let at: Option<Vec<f64>> = e.steps.keys().map(|t| values.get(t).copied()).collect();
        grown = Some(grown.unwrap_or(0.0) + increase(at?.into_iter()));
    }
    grown
}

/// The share of the engine's gauge scrapes over `[first, last]` at which it had nothing
/// running or waiting (every scrape carries the gauges, also where the counters are not
/// kept); `None` without them.
fn idle_share(e: &Engine, first: u64, last: u64) -> Option<f64> {
    let at: Vec<bool> = e
        .occupied
        .range(first..=last)
        .map(|(_, &n)| n == 0.0)
        .collect();
    (!at.is_empty()).then(|| at.iter().filter(|&&i| i).count() as f64 / at.len() as f64)
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
    /// token, the rest of the output tokens are decoding sequences' steps, the one making
    /// token `g` (from 0) over a context of the prompt and `g − 1` tokens, on average the
    /// mean prompt plus (mean output − 2) / 2. A prompt of `p` tokens with `c` of them
    /// cached computes `p − c` attending to `c` and to those before them.
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
        let context = decoding * (p + ((o - 2.0) / 2.0).max(0.0));
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
    /// `None` when unknown, or when either time is not a positive figure.
    pub fn time_ratio(&self, w: &EngineWork) -> Option<f64> {
        let model = self.seconds(w).filter(|&s| s > 0.0)?;
        let busy = w.busy_s();
        (busy > 0.0).then(|| busy / model).filter(|r| r.is_finite())
    }
}

/// The server's speed against the profile for the measured work: the measured time ratio
/// over the predicted run's (the same reading of steps that cost exactly the profile's),
/// so what the reading itself adds at that load cancels. 1.2: the server's steps took 20%
/// longer than the profile's for the same work. `None` unless both are positive figures.
pub fn speed(measured_ratio: f64, predicted_ratio: f64) -> Option<f64> {
    let s = measured_ratio / predicted_ratio;
    (s.is_finite() && s > 0.0).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server_metrics::tests::row;

    /// The counters in `Counter::ALL`'s order.
    const NAMES: [&str; 8] = [
        "vllm:iteration_tokens_total_sum",
        "vllm:prompt_tokens_total",
        "vllm:prefix_cache_hits_total",
        "vllm:external_prefix_cache_hits_total",
        "vllm:generation_tokens_total",
        "vllm:request_prompt_tokens_count",
        "vllm:request_prompt_tokens_sum",
        "vllm:request_generation_tokens_sum",
    ];

    /// Two scrapes of one engine: `steps` steps in 1 s and the counters' growth.
    fn window(steps: f64, grown: [f64; 8]) -> Vec<MetricRow> {
        let mut rows = vec![row(1, "0", STEPS, 10.0), row(2, "0", STEPS, 10.0 + steps)];
        for (name, g) in NAMES.iter().zip(grown) {
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
    fn the_names_are_the_counters() {
        for (name, c) in NAMES.iter().zip(Counter::ALL) {
            assert_eq!(Counter::of(name), Some(c));
            assert_eq!(Counter::ALL[c as usize], c);
        }
    }

    #[test]
    fn the_profile_prices_the_work_the_counters_saw() {
        // 100 steps; 4 prompts of 200 tokens (40 cached each, 10 of them from an external
        // cache), their first tokens and 396 more; finished: 2 requests of 200 in, 100 out
        let w = engine_work(
            &window(100.0, [0.0, 800.0, 120.0, 40.0, 400.0, 2.0, 400.0, 200.0]),
            0,
            u64::MAX,
        )
        .unwrap();
        assert_eq!(
            (w.span_s, w.steps, w.cached_tokens),
            (1.0, 100.0, Some(160.0))
        );
        let pairs = 4.0 * (160.0 * 40.0 + 160.0 * 161.0 / 2.0);
        let want = 100.0 * 0.005
            + 640.0 * 50e-6
            + pairs * 10e-9
            + 396.0 * 300e-6
            + 396.0 * (200.0 + 49.0) * 500e-9;
        let got = COSTS.seconds(&w).unwrap();
        assert!((got - want).abs() < 1e-12, "{got} against {want}");
        assert_eq!(COSTS.time_ratio(&w), Some(1.0 / want));
        assert_eq!(speed(1.3, 1.04), Some(1.25));
        assert_eq!(speed(0.0, 1.0), None);
        assert_eq!(speed(1.0, 0.0), None);
    }

    #[test]
    fn counters_grow_series_by_series() {
        // two series of the prompt counter on one engine: one restarts at 0 (a reset, 50
        // since), the other grows by 30; summed first they would read 1030 → 110, a fall
        // counted as a reset and 110 of growth
        let mut rows = window(100.0, [0.0; 8]);
        rows.retain(|r| r.name != NAMES[1]);
        for (t, a, b) in [(1, 1_000.0, 30.0), (2, 50.0, 60.0)] {
            rows.push(MetricRow {
                labels: "model_name=a".into(),
                ..row(t, "0", NAMES[1], a)
            });
            rows.push(MetricRow {
                labels: "model_name=b".into(),
                ..row(t, "0", NAMES[1], b)
            });
        }
        let w = engine_work(&rows, 0, u64::MAX).unwrap();
        assert_eq!(w.prompt_tokens, Some(80.0));
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
    fn idle_time_is_when_nothing_was_in_flight_or_the_gauges_say_so() {
        let mut rows = window(100.0, [0.0, 800.0, 0.0, 0.0, 400.0, 2.0, 400.0, 200.0]);
        let w = engine_work(&rows, 0, u64::MAX).unwrap();
        // the span is 1–2 s: in flight 0.5–1.2 and 1.1–1.5 (overlapping), 1.7–1.8 and
        // 1.9–2.5: idle 1.5–1.7 and 1.8–1.9
        let records = [(0.5, 1.2), (1.1, 1.5), (1.7, 1.8), (1.9, 2.5)].map(|(a, b)| request(a, b));
        let one = w.with_idle(&records, 1);
        assert!((one.idle_s.unwrap() - 0.3).abs() < 1e-9, "{one:?}");
        // the busy time is what is priced: 0.7 s
        let ratio = COSTS.time_ratio(&one).unwrap() / COSTS.time_ratio(&w).unwrap();
        assert!((ratio - 0.7).abs() < 1e-9, "{ratio}");
        assert_eq!(w.with_idle(&[], 1).idle_s, Some(1.0));
        // nothing busy: no ratio, not 0
        assert_eq!(COSTS.time_ratio(&w.with_idle(&[], 1)), None);
        // more engines: the gauges' sample, here none (no gauges scraped): left in
        assert_eq!(w.with_idle(&records, 2).idle_s, None);
        // with them: idle at one of the two scrapes (nothing running or waiting)
        for (t, running, waiting) in [(1, 0.0, 0.0), (2, 3.0, 1.0)] {
            rows.push(row(t, "0", "vllm:num_requests_running", running));
            rows.push(row(t, "0", "vllm:num_requests_waiting", waiting));
        }
        let w = engine_work(&rows, 0, u64::MAX).unwrap();
        assert_eq!(w.with_idle(&records, 2).idle_s, Some(0.5));
    }

    #[test]
    fn without_a_counter_or_a_finished_request_the_price_is_unknown() {
        let none_finished = window(100.0, [0.0, 800.0, 0.0, 0.0, 400.0, 0.0, 0.0, 0.0]);
        let w = engine_work(&none_finished, 0, u64::MAX).unwrap();
        assert_eq!(COSTS.seconds(&w), None);
        // an engine without the prompt counter at one of its scrapes: unknown, not partial
        let mut rows = window(100.0, [0.0, 800.0, 0.0, 0.0, 400.0, 2.0, 400.0, 200.0]);
        rows.retain(|r| !(r.name == NAMES[1] && r.t_ns == 2_000_000_000));
        let w = engine_work(&rows, 0, u64::MAX).unwrap();
        assert_eq!(w.prompt_tokens, None);
        assert_eq!(COSTS.seconds(&w), None);
        // a server without the cache counters: nothing known cached, priced as computed
        let mut rows = window(100.0, [0.0, 800.0, 0.0, 0.0, 400.0, 2.0, 400.0, 200.0]);
        rows.retain(|r| r.name != NAMES[2] && r.name != NAMES[3]);
        let w = engine_work(&rows, 0, u64::MAX).unwrap();
        assert_eq!(w.cached_tokens, None);
        assert!(COSTS.seconds(&w).is_some());
    }
}
