//! The simulator's `/metrics`: vLLM's metric families, with vLLM's names, types, buckets and
//! labels (`engine` = DP rank, `model_name`), in Prometheus text format.
//!
//! Each engine keeps its own counters and histograms (updated by the engine at simulated
//! times, so virtual-time runs have them too); the server renders them all on request.

use super::engine::EngineRequest;
use std::fmt::Write;

const LATENCY_SHORT: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
const LATENCY_ITL: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
const LATENCY_LONG: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];
const TOKENS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0,
];
const ITERATION: &[f64] = &[
    1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0,
];
const PREEMPTIONS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0];

#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative counts per bucket, the last for +Inf.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, v: f64) {
        let i = self.bounds.partition_point(|&b| b < v);
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }
}

pub const FINISH_REASONS: [&str; 5] = ["stop", "length", "abort", "error", "repetition"];

#[derive(Debug, Clone)]
pub struct EngineMetrics {
    pub prompt_tokens: u64,
    pub generation_tokens: u64,
    pub preemptions: u64,
    /// Prompt tokens looked up in the prefix cache, and those found (vLLM's
    /// `prefix_cache_queries_total` / `prefix_cache_hits_total`: requests never preempted).
    pub prefix_cache_queries: u64,
    pub prefix_cache_hits: u64,
    pub success: [u64; 5],
    pub ttft: Histogram,
    pub itl: Histogram,
    pub tpot: Histogram,
    pub e2e: Histogram,
    pub queue: Histogram,
    pub inference: Histogram,
    pub prefill: Histogram,
    pub decode: Histogram,
    pub prompt_len: Histogram,
    pub generation_len: Histogram,
    pub max_tokens: Histogram,
    pub iteration_tokens: Histogram,
    pub request_preemptions: Histogram,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        Self {
            prompt_tokens: 0,
            generation_tokens: 0,
            preemptions: 0,
            prefix_cache_queries: 0,
            prefix_cache_hits: 0,
            success: [0; 5],
            ttft: Histogram::new(LATENCY_SHORT),
            itl: Histogram::new(LATENCY_ITL),
            tpot: Histogram::new(LATENCY_ITL),
            e2e: Histogram::new(LATENCY_LONG),
            queue: Histogram::new(LATENCY_LONG),
            inference: Histogram::new(LATENCY_LONG),
            prefill: Histogram::new(LATENCY_LONG),
            decode: Histogram::new(LATENCY_LONG),
            prompt_len: Histogram::new(TOKENS),
            generation_len: Histogram::new(TOKENS),
            max_tokens: Histogram::new(TOKENS),
            iteration_tokens: Histogram::new(ITERATION),
            request_preemptions: Histogram::new(PREEMPTIONS),
        }
    }
}

fn s(ns: u64) -> f64 {
    ns as f64 / 1e9
}

impl EngineMetrics {
    pub(super) fn on_arrival(&mut self, r: &EngineRequest) {
        self.max_tokens.observe(r.max_tokens as f64);
    }

    pub(super) fn on_first_scheduled(&mut self, arrival: u64, now: u64) {
        self.queue.observe(s(now.saturating_sub(arrival)));
    }

    /// The request's first token: vLLM counts its prompt tokens then (a prefill done), not
    /// when it finishes.
    pub(super) fn on_first_token(&mut self, r: &EngineRequest, scheduled: u64, now: u64) {
        self.ttft.observe(s(now.saturating_sub(r.arrival_ns)));
        self.prefill.observe(s(now.saturating_sub(scheduled)));
        self.prompt_tokens += r.prompt_tokens as u64;
        self.generation_tokens += 1;
    }

    pub(super) fn on_token_gap(&mut self, gap_ns: u64) {
        self.itl.observe(s(gap_ns));
        self.generation_tokens += 1;
    }

    pub(super) fn on_preemption(&mut self) {
        self.preemptions += 1;
    }

    pub(super) fn on_prefix_lookup(&mut self, tokens: u32, hits: u32) {
        self.prefix_cache_queries += tokens as u64;
        self.prefix_cache_hits += hits as u64;
    }

    pub(super) fn on_step(&mut self, tokens: u32) {
        self.iteration_tokens.observe(tokens as f64);
    }

    pub(super) fn on_abort(&mut self) {
        self.success[2] += 1;
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_finish(
        &mut self,
        r: &EngineRequest,
        reason: &str,
        generated: u32,
        scheduled: u64,
        first_token: u64,
        now: u64,
        preemptions: u32,
    ) {
        let i = FINISH_REASONS
            .iter()
            .position(|x| *x == reason)
            .unwrap_or(3);
        self.success[i] += 1;
        self.e2e.observe(s(now.saturating_sub(r.arrival_ns)));
        self.inference.observe(s(now.saturating_sub(scheduled)));
        self.decode.observe(s(now.saturating_sub(first_token)));
        if generated > 1 {
            self.tpot
                .observe(s(now - first_token) / (generated - 1) as f64);
        }
        self.prompt_len.observe(r.prompt_tokens as f64);
        self.generation_len.observe(generated as f64);
        self.request_preemptions.observe(preemptions as f64);
    }
}

/// What an engine looks like right now (the gauges).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Gauges {
    pub running: u64,
    pub waiting: u64,
    pub kv_usage: f64,
}

/// What `vllm:cache_config_info` says about the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    pub num_gpu_blocks: u32,
    pub block_size: u32,
    pub enable_prefix_caching: bool,
}

impl CacheConfig {
    pub fn of(p: &super::profile::Profile) -> Self {
        Self {
            num_gpu_blocks: p.num_gpu_blocks,
            block_size: p.block_size,
            enable_prefix_caching: p.enable_prefix_caching,
        }
    }
}

/// Render the Prometheus text exposition for all engines.
pub fn render(model: &str, engines: &[(EngineMetrics, Gauges)], cache: &CacheConfig) -> String {
    let model = escape(model);
    let mut out = String::with_capacity(16 * 1024);
    let lbl = |e: usize| format!("engine=\"{e}\",model_name=\"{model}\"");
    let family =
        |out: &mut String, name: &str, ty: &str, help: &str, rows: &dyn Fn(&mut String)| {
            let _ = writeln!(out, "# HELP vllm:{name} {help}\n# TYPE vllm:{name} {ty}");
            rows(out);
        };
    // gauges
    for (name, help, get) in [
        (
            "num_requests_running",
            "Number of requests in model execution batches.",
            (|g: &Gauges| g.running as f64) as fn(&Gauges) -> f64,
        ),
        (
            "num_requests_waiting",
            "Number of requests waiting to be processed.",
            |g: &Gauges| g.waiting as f64,
        ),
        (
            "kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
            |g: &Gauges| g.kv_usage,
        ),
    ] {
        family(&mut out, name, "gauge", help, &|o: &mut String| {
            for (e, (_, g)) in engines.iter().enumerate() {
                let _ = writeln!(o, "vllm:{name}{{{}}} {}", lbl(e), num(get(g)));
            }
        });
    }
    // counters
    for (name, help, get) in [
        (
            "num_preemptions_total",
            "Cumulative number of preemption from the engine.",
            (|m: &EngineMetrics| m.preemptions) as fn(&EngineMetrics) -> u64,
        ),
        (
            "prompt_tokens_total",
            "Number of prefill tokens processed.",
            |m: &EngineMetrics| m.prompt_tokens,
        ),
        (
            "generation_tokens_total",
            "Number of generation tokens processed.",
            |m: &EngineMetrics| m.generation_tokens,
        ),
        (
            "prefix_cache_queries_total",
            "Prefix cache queries, in terms of number of queried tokens.",
            |m: &EngineMetrics| m.prefix_cache_queries,
        ),
        (
            "prefix_cache_hits_total",
            "Prefix cache hits, in terms of number of cached tokens.",
            |m: &EngineMetrics| m.prefix_cache_hits,
        ),
    ] {
        family(&mut out, name, "counter", help, &|o: &mut String| {
            for (e, (m, _)) in engines.iter().enumerate() {
                let _ = writeln!(o, "vllm:{name}{{{}}} {}", lbl(e), num(get(m) as f64));
            }
        });
    }
    family(
        &mut out,
        "request_success_total",
        "counter",
        "Count of successfully processed requests.",
        &|o: &mut String| {
            for (e, (m, _)) in engines.iter().enumerate() {
                for (i, reason) in FINISH_REASONS.iter().enumerate() {
                    let _ = writeln!(
                        o,
                        "vllm:request_success_total{{engine=\"{e}\",finished_reason=\"{reason}\",model_name=\"{model}\"}} {}",
                        num(m.success[i] as f64)
                    );
                }
            }
        },
    );
    type Pick = fn(&EngineMetrics) -> &Histogram;
    let hists: [(&str, &str, Pick); 13] = [
        (
            "request_prompt_tokens",
            "Number of prefill tokens processed.",
            |m| &m.prompt_len,
        ),
        (
            "request_generation_tokens",
            "Number of generation tokens processed.",
            |m| &m.generation_len,
        ),
        (
            "iteration_tokens_total",
            "Histogram of number of tokens per engine_step.",
            |m| &m.iteration_tokens,
        ),
        (
            "request_params_max_tokens",
            "Histogram of the max_tokens request parameter.",
            |m| &m.max_tokens,
        ),
        (
            "time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            |m| &m.ttft,
        ),
        (
            "inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            |m| &m.itl,
        ),
        (
            "request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            |m| &m.tpot,
        ),
        (
            "e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            |m| &m.e2e,
        ),
        (
            "request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            |m| &m.queue,
        ),
        (
            "request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            |m| &m.inference,
        ),
        (
            "request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            |m| &m.prefill,
        ),
        (
            "request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            |m| &m.decode,
        ),
        (
            "request_num_preemptions",
            "Number of preemptions per request.",
            |m| &m.request_preemptions,
        ),
    ];
    for (name, help, pick) in hists {
        family(&mut out, name, "histogram", help, &|o: &mut String| {
            for (e, (m, _)) in engines.iter().enumerate() {
                let h = pick(m);
                let mut cum = 0;
                for (i, c) in h.counts.iter().enumerate() {
                    cum += c;
                    let le = h
                        .bounds
                        .get(i)
                        .map(|b| num(*b))
                        .unwrap_or_else(|| "+Inf".into());
                    let _ = writeln!(
                        o,
                        "vllm:{name}_bucket{{engine=\"{e}\",le=\"{le}\",model_name=\"{model}\"}} {}",
                        num(cum as f64)
                    );
                }
                let _ = writeln!(o, "vllm:{name}_count{{{}}} {}", lbl(e), num(h.count as f64));
                let _ = writeln!(o, "vllm:{name}_sum{{{}}} {}", lbl(e), num(h.sum));
            }
        });
    }
    family(
        &mut out,
        "cache_config_info",
        "gauge",
        "Information of the LLMEngine CacheConfig",
        &|o: &mut String| {
            // Python's spelling of the flag, as vLLM prints it
            let caching = if cache.enable_prefix_caching {
                "True"
            } else {
                "False"
            };
            for e in 0..engines.len() {
                let _ = writeln!(
                    o,
                    "vllm:cache_config_info{{block_size=\"{}\",enable_prefix_caching=\"{caching}\",engine=\"{e}\",num_gpu_blocks=\"{}\"}} 1.0",
                    cache.block_size, cache.num_gpu_blocks
                );
            }
        },
    );
    out
}

/// A label value in the text format: backslash, double quote and newline escaped (a model
/// may be served under any name).
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Prometheus float formatting as Python's client prints it (`1.0`, `0.25`, `1e-05`).
fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_upper_inclusive() {
        let mut h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 3.0] {
            h.observe(v);
        }
        assert_eq!(h.counts, vec![2, 1, 1]);
        assert_eq!(h.count(), 4);
    }
}
