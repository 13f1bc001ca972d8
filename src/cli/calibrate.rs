//! `vllm-loadtest calibrate`: measure this machine's client ceiling against the in-process
//! `zero` simulator (a server that answers at once), so `bench` and `run` can warn before a
//! load the client itself could not keep up with.

use crate::client::{Access, BaseUrl};
use crate::experiment::cell_plan::LoadPlan;
use crate::runner::cell::{CellResult, CellSpec, run_cell};
use crate::runner::progress::Spec;
use crate::store::layout::CellDir;
use crate::workload::body::{BodyOptions, Endpoint as Api};
use crate::workload::random;
use anyhow::{Context, Result};
use clap::Args;
use loadtest_base::Tokenizer;
use loadtest_base::arrivals::{Arrival, Stop};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use vllm_sim::faults::Faults;
use vllm_sim::{Profile, SimConfig};

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Rates to try, req/s, comma-separated and ascending, until one is not held.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "250,500,1000,2000,3000,4000,6000,8000",
        value_name = "RPS,…"
    )]
    pub rates: Vec<f64>,
    /// Seconds of load per rate.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub seconds: f64,
    /// Output tokens per stream (content events per request).
    #[arg(long, default_value_t = 64, value_name = "TOKENS")]
    pub output_len: u32,
    /// Worker threads of the client runtime, as `bench --client-threads` and `run --client-threads`.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub client_threads: usize,
}

/// The stored result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Calibration {
    /// Highest rate held at ≥ 95% with TTFT p50 ≤ 1 ms.
    pub ceiling_rps: f64,
    pub output_len: u32,
    pub client_threads: usize,
    pub measured_at: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub rate: f64,
    pub achieved: f64,
    pub ttft_p50_ms: f64,
    pub send_lag_p99_ms: f64,
    pub client_cpu: f64,
    pub held: bool,
}

impl Calibration {
    /// Content events per second the client held (requests × (tokens + role/usage/done)).
    pub fn events_per_s(&self) -> f64 {
        self.ceiling_rps * (self.output_len as f64 + 2.0)
    }
}

pub fn path() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("vllm-loadtest").join("calibration.json")
}

pub fn load() -> Option<Calibration> {
    serde_json::from_slice(&std::fs::read(path()).ok()?).ok()
}

/// A warning when `rate` requests/s of `output_len` tokens is near this machine's measured
/// client ceiling (`None` without a calibration, or when comfortably below it).
pub fn warn_if_near_ceiling(rate: f64, output_len: u32) -> Option<String> {
    let c = load()?;
    let planned = rate * (output_len as f64 + 2.0);
    (rate.is_finite() && planned > 0.7 * c.events_per_s()).then(|| {
        format!(
            "the planned load ({rate} req/s × {output_len} tokens) is above 70% of this machine's measured client ceiling ({:.0} req/s × {} tokens, calibrated {}): results may be client-limited; check the send-lag line",
            c.ceiling_rps, c.output_len, c.measured_at
        )
    })
}

pub fn run(a: CalibrateArgs) -> Result<()> {
    let sim = vllm_sim::background::start_with(SimConfig {
        profile: Profile::named("zero").expect("zero profile"),
        dp: 1,
        seed: 0,
        model: "calibrate".into(),
        api_servers: None,
        faults: Faults::none(),
        tokenizer: Arc::new(Tokenizer::built_in()?),
    })?;
    let tok = Tokenizer::built_in()?;
    let wl = random::generate(
        &random::RandomSpec {
            num_prompts: 200,
            input_len: 32,
            output_len: a.output_len,
            range_ratio: 0.0,
            prefix_len: 0,
            seed: 0,
        },
        &tok,
    )?;
    let rt = super::client_runtime(a.client_threads)?;
    let url = BaseUrl::parse(&format!("http://{}", sim.addr()))?;
    let endpoints = [Access::plain().at(&url, sim.addr())?];
    let body = BodyOptions {
        endpoint: Api::Completions,
        model: "calibrate".into(),
        ignore_eos: true,
        temperature: None,
        continuous_usage: false,
        extra: None,
    };
    eprintln!(
        "calibrate: {} s per rate against the in-process zero simulator, {}-token streams",
        a.seconds, a.output_len
    );
    eprintln!(
        "{:>8} {:>10} {:>10} {:>12} {:>8}",
        "rate", "achieved", "TTFT p50", "send lag p99", "CPU"
    );
    let mut steps = Vec::new();
    let mut ceiling = 0.0;
    // removed however the loop ends (an error, a panic): it only holds this run's records
    let scratch = ScratchDir(
        std::env::temp_dir().join(format!("vllm-loadtest-calibrate-{}", std::process::id())),
    );
    for &rate in &a.rates {
        // constant arrivals for the calibrated time, a short drain: the client's ceiling,
        // not the server's, is what this measures
        let load = LoadPlan {
            arrival: Arrival::Constant { rate },
            stop: Stop::Duration(a.seconds),
            arrival_name: "constant".into(),
            burstiness: 1.0,
            max_concurrency: None,
            seed: 0,
            window_s: None,
            warmup_s: 0.0,
            cooldown_s: 0.0,
            request_timeout: Duration::from_secs(30),
            drain: Some(Duration::from_secs(5)),
            trace: None,
            think_time_s: 0.0,
            shard: loadtest_base::shard::Shard::WHOLE,
        };
        std::fs::create_dir_all(&scratch.0)?;
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let spec = CellSpec {
            endpoints: &endpoints,
            prompts: &wl.prompts,
            body: &body,
            load: &load,
            schedule: load.schedule(0)?,
            connect_timeout: Duration::from_secs(5),
            slos: &[],
            percentiles: &[],
            progress: Spec::quiet(),
            client_threads: a.client_threads,
            health_probe: None,
            turns: 1,
            metrics_interval: None,
            gpu: false,
            exact_tokenizer: false,
            start_at_unix_ns: None,
        };
        let r = rt.block_on(run_cell(spec, &CellDir::new(&scratch.0), rx))?;
        let step = judge(rate, &r);
        let held = step.held;
        steps.push(step);
        if !held {
            break;
        }
        ceiling = rate;
    }
    drop(scratch);
    drop(sim);
    let c = Calibration {
        ceiling_rps: ceiling,
        output_len: a.output_len,
        client_threads: a.client_threads,
        measured_at: loadtest_base::time::rfc3339(loadtest_base::time::unix_now()),
        steps,
    };
    let p = save(&c)?;
    println!(
        "client ceiling on this machine: {ceiling} req/s of {}-token streams with TTFT p50 ≤ 1 ms ({} client thread(s), sharing the machine with the simulator); saved to {}",
        a.output_len,
        a.client_threads,
        p.display()
    );
    Ok(())
}

/// Whether the client held `rate`: every request served, the rate achieved within 5%, and
/// TTFT p50 at most 1 ms against a simulator that answers at once. Printed as a table row.
fn judge(rate: f64, r: &CellResult) -> Step {
    let s = &r.summary;
    let ttft = s
        .latencies
        .ttft_ms
        .as_ref()
        .map_or(f64::INFINITY, |d| d.p50);
    let lag = s
        .latencies
        .queue_delay_ms
        .as_ref()
        .map_or(f64::INFINITY, |d| d.p99);
    let held = s.failed == 0 && s.request_throughput.unwrap_or(0.0) >= 0.95 * rate && ttft <= 1.0;
    eprintln!(
        "{rate:>8} {:>10.1} {:>8.3}ms {:>10.3}ms {:>7.0}%{}",
        s.request_throughput.unwrap_or(0.0),
        ttft,
        lag,
        r.client.cpu_share_of_threads * 100.0,
        if held { "" } else { "  <- not held" }
    );
    Step {
        rate,
        achieved: s.request_throughput.unwrap_or(0.0),
        ttft_p50_ms: ttft,
        send_lag_p99_ms: lag,
        client_cpu: r.client.cpu_share_of_threads,
        held,
    }
}

/// Write the calibration where `load` finds it; its path.
fn save(c: &Calibration) -> Result<PathBuf> {
    let p = path();
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    std::fs::write(&p, serde_json::to_vec_pretty(c)?)
        .with_context(|| format!("cannot write `{}`", p.display()))?;
    Ok(p)
}

/// A folder removed when dropped.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
