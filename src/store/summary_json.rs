//! `summary.json`: every key `vllm bench serve --save-result` writes, with the same meaning,
//! so scripts written for vLLM keep working; then ours under `vllm_loadtest`.
//!
//! vLLM's meaning, kept: latency keys (`mean_ttft_ms`, `p99_e2el_ms`, …) cover the window's
//! *successful* requests only; `completed` and `failed` count the window's requests that
//! did and did not succeed (vLLM's `failed` folds our failures and cancellations together:
//! `vllm_loadtest.summary` has the whole cell's `sent = ok + failed + cancelled`, failures by
//! kind, cancellations by reason, and the latencies over every request with the unfinished
//! right-censored under `every_request`). `request_throughput` is completions per second of
//! the window, measured as `vllm_loadtest.summary.request_throughput_from` says. Where
//! vLLM writes 0 for a metric without a sample, we write null: a figure of nothing is not
//! zero.

use loadtest_analysis::record::RequestRecord;
use loadtest_analysis::stats::Distribution;
use loadtest_analysis::summary::RunSummary;
use serde_json::{Map, Value, json};

/// What the run was asked to do, as vLLM names it.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub date: String,
    pub backend: String,
    pub label: Option<String>,
    pub model_id: String,
    pub tokenizer_id: String,
    pub num_prompts: usize,
    /// `inf` for all-at-once.
    pub request_rate: f64,
    pub burstiness: f64,
    pub max_concurrency: Option<usize>,
}

/// Which metrics get percentile keys, and which percentiles (vLLM's
/// `--percentile-metrics ttft,tpot,itl` and `--metric-percentiles 99`).
#[derive(Debug, Clone)]
pub struct PercentileSpec {
    pub metrics: Vec<String>,
    pub percentiles: Vec<f64>,
}

/// vLLM's keys of a ramp (`ramp_up_strategy`, `ramp_up_start_rps`, `ramp_up_end_rps`),
/// written as vLLM does beside `request_rate: inf`; nothing for any other schedule.
pub fn add_ramp(v: &mut Value, arrival: loadtest_base::arrivals::Arrival) {
    use loadtest_base::arrivals::Arrival;
    if let (
        Arrival::Ramp {
            strategy,
            start,
            end,
            ..
        },
        Some(m),
    ) = (arrival, v.as_object_mut())
    {
        ramp_keys(m, strategy.name(), start, end);
    }
}

/// vLLM's three keys of a ramp: its strategy, first and last rate.
pub fn ramp_keys(m: &mut Map<String, Value>, strategy: &str, start: f64, end: f64) {
    m.insert("ramp_up_strategy".into(), json!(strategy));
    m.insert("ramp_up_start_rps".into(), json!(start));
    m.insert("ramp_up_end_rps".into(), json!(end));
}

/// vLLM's `num_prompts`: the requests the run was to send. A trace's window sets that
/// number, not the prompt count flag.
pub fn num_prompts(asked: usize, trace: bool, s: &RunSummary) -> usize {
    if trace {
        (s.sent + s.not_sent) as usize
    } else {
        asked
    }
}

fn pct_key(p: f64) -> String {
    // vLLM formats `p99`, `p99.9`, `p50`: drop a trailing `.0`
    let s = format!("{p}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

pub fn build(
    info: &RunInfo,
    s: &RunSummary,
    pct: &PercentileSpec,
    detailed: Option<&[RequestRecord]>,
    ours: Value,
) -> Value {
    let mut m = Map::new();
    let rate = if info.request_rate.is_finite() {
        json!(info.request_rate)
    } else {
        json!("inf")
    };
    m.insert("date".into(), json!(info.date));
    m.insert("endpoint_type".into(), json!(info.backend));
    m.insert("backend".into(), json!(info.backend));
    m.insert("label".into(), json!(info.label));
    m.insert("model_id".into(), json!(info.model_id));
    m.insert("tokenizer_id".into(), json!(info.tokenizer_id));
    m.insert("num_prompts".into(), json!(info.num_prompts));
    m.insert("request_rate".into(), rate);
    m.insert("burstiness".into(), json!(info.burstiness));
    m.insert("max_concurrency".into(), json!(info.max_concurrency));
    m.insert("duration".into(), json!(s.window_s));
    // over the window's requests, as vLLM counts the requests it measured
    m.insert("completed".into(), json!(s.measured_ok));
    m.insert("failed".into(), json!(s.measured - s.measured_ok));
    m.insert("total_input_tokens".into(), json!(s.total_input_tokens));
    m.insert("total_output_tokens".into(), json!(s.total_output_tokens));
    // no throughput from a window without a completion: null, not 0
    m.insert("request_throughput".into(), json!(s.request_throughput));
    m.insert("request_goodput".into(), json!(s.request_goodput));
    m.insert("output_throughput".into(), json!(s.output_throughput));
    m.insert(
        "total_token_throughput".into(),
        json!(s.total_token_throughput),
    );
    if let Some(records) = detailed {
        per_request_lists(&mut m, records);
    }
    m.insert(
        "max_output_tokens_per_s".into(),
        json!(s.max_output_tokens_per_s),
    );
    m.insert(
        "max_concurrent_requests".into(),
        json!(s.max_concurrent_requests),
    );
    // vLLM's real-time factor is for audio: not a figure of a text run
    m.insert("rtfx".into(), serde_json::Value::Null);
    latency_keys(&mut m, s, pct);
    m.insert("vllm_loadtest".into(), ours);
    Value::Object(m)
}

/// vLLM's per-request lists (`--save-detailed`), in request order.
fn per_request_lists(m: &mut Map<String, Value>, records: &[RequestRecord]) {
    let mut rs: Vec<&RequestRecord> = records.iter().collect();
    rs.sort_by_key(|r| r.id);
    let secs = |ns: u64| ns as f64 / 1e9;
    m.insert(
        "input_lens".into(),
        json!(rs.iter().map(|r| r.input_tokens).collect::<Vec<_>>()),
    );
    m.insert(
        "output_lens".into(),
        json!(rs.iter().map(|r| r.output_tokens).collect::<Vec<_>>()),
    );
    // null, not vLLM's 0, for a request that never got that far
    m.insert(
        "ttfts".into(),
        json!(rs.iter().map(|r| r.ttft_ns().map(secs)).collect::<Vec<_>>()),
    );
    m.insert(
        "itls".into(),
        json!(
            rs.iter()
                .map(|r| r.itls_ns().map(secs).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        ),
    );
    m.insert(
        "latencies".into(),
        json!(
            rs.iter()
                .map(|r| r.e2e_ns().filter(|_| r.is_ok()).map(secs))
                .collect::<Vec<_>>()
        ),
    );
    m.insert(
        "start_times".into(),
        json!(rs.iter().map(|r| secs(r.t_send_ns)).collect::<Vec<_>>()),
    );
    m.insert(
        "errors".into(),
        json!(
            rs.iter()
                .map(|r| r.error.as_ref().map_or(String::new(), |e| format!(
                    "{}: {}",
                    e.kind.as_str(),
                    e.message
                )))
                .collect::<Vec<_>>()
        ),
    );
}

/// `mean_/median_/std_/pNN_<metric>_ms` for the metrics and percentiles asked for, over the
/// window's successful requests (vLLM's meaning).
fn latency_keys(m: &mut Map<String, Value>, s: &RunSummary, pct: &PercentileSpec) {
    let l = &s.latencies;
    for (name, d) in [
        ("ttft", &l.ttft_ms),
        ("tpot", &l.tpot_ms),
        ("itl", &l.itl_ms),
        ("e2el", &l.e2el_ms),
    ] {
        if !pct.metrics.iter().any(|x| x == name) {
            continue;
        }
        // null without a sample (vLLM writes 0), and for a percentile nobody asked for
        let get = |f: &dyn Fn(&Distribution) -> f64| d.as_ref().map(f);
        m.insert(format!("mean_{name}_ms"), json!(get(&|d| d.mean)));
        m.insert(format!("median_{name}_ms"), json!(get(&|d| d.p50)));
        m.insert(format!("std_{name}_ms"), json!(get(&|d| d.std)));
        for &p in &pct.percentiles {
            m.insert(
                format!("p{}_{name}_ms", pct_key(p)),
                json!(d.as_ref().and_then(|d| d.percentile(p))),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentile_keys_look_like_vllms() {
        assert_eq!(super::pct_key(99.0), "99");
        assert_eq!(super::pct_key(99.9), "99.9");
    }
}
