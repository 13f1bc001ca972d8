//! `shard.json`, a shard's record beside its cell (`bench --shard`), and the `shards` block
//! of a merged cell's `summary.json` (`merge`): their formats (the judgements on them are
//! `shard::clock` and `shard::merge`'s).

use super::layout::CellDir;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// A shard, as its cell folder's `shard.json` keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardRecord {
    pub index: u32,
    pub count: u32,
    /// The agreed start (`--start-at`), ns since the Unix epoch.
    pub start_at_unix_ns: i64,
    /// When this shard's clock zero was, on its own wall clock: the start plus how late it
    /// was (the cell's `clock_zero_unix_ns`).
    pub clock_zero_unix_ns: i64,
    /// Its clock when it started, and the bound it was held to (ms; `None`: none).
    pub clock: ClockState,
    pub max_clock_error_ms: Option<f64>,
    /// Schedule entries of the whole load point, and this shard's.
    pub entries_total: u64,
    pub entries: u64,
    /// Requests per entry (a conversation's turns; 1 otherwise): request `id` is entry
    /// `id / turns`'s.
    pub turns: u32,
    /// The tool that ran it.
    pub version: String,
    /// What every shard of one load point must share, as digests of its contents (the
    /// same on every machine whatever the paths), and what `merge` needs to recompute the
    /// figures.
    pub digests: PlanDigests,
    pub plan: MergePlan,
}

/// Digests of a shard's plan, part by part, so a refused merge can say which part differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanDigests {
    /// The whole load point's schedule (every intended time) and its load settings.
    pub schedule: String,
    /// Every prompt: its text, history, and prompt and output token counts.
    pub prompts: String,
    /// What each request asks for: endpoint, model, sampling, extra body fields.
    pub request: String,
    /// What the figures are computed with: the window, SLOs, percentiles.
    pub figures: String,
}

impl PlanDigests {
    /// The parts that differ from `other`'s, named.
    pub fn differing(&self, other: &PlanDigests) -> Vec<&'static str> {
        [
            (
                "the schedule (rate, arrival, seed, duration or count, cap, timeouts)",
                &self.schedule,
                &other.schedule,
            ),
            (
                "the prompts (dataset, its file's contents, lengths, seed, tokenizer)",
                &self.prompts,
                &other.prompts,
            ),
            (
                "the request (endpoint, model, sampling, extra body)",
                &self.request,
                &other.request,
            ),
            (
                "the figures' settings (window, SLOs, percentiles)",
                &self.figures,
                &other.figures,
            ),
        ]
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(what, _, _)| what)
        .collect()
    }
}

/// What the merged cell's figures and `summary.json` are computed with: the whole load
/// point's plan, as every shard had it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergePlan {
    /// The measurement window (s from the start); `None`: the whole run.
    pub window_s: Option<(f64, f64)>,
    /// The whole load point's rate (req/s); `None`: all at once.
    pub request_rate: Option<f64>,
    /// As `--goodput` gave them (`ttft:500`).
    pub slos: Vec<String>,
    pub percentile_metrics: Vec<String>,
    pub percentiles: Vec<f64>,
    /// How the requests arrive, in words (`Poisson at 2000 req/s`).
    pub arrival: String,
    pub burstiness: f64,
    /// The whole load point's cap, split over the shards.
    pub max_concurrency: Option<usize>,
    pub num_prompts: usize,
    /// A trace replay: `num_prompts` is then the requests its window held.
    #[serde(default)]
    pub trace: bool,
    /// A ramp's strategy, first and last rate (vLLM's `ramp_up_*` keys); `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<(String, f64, f64)>,
    pub label: Option<String>,
    pub model_id: String,
    pub tokenizer_id: String,
}

impl ShardRecord {
    /// How late this shard started after the agreed instant (ms; its own clock's view).
    pub fn late_ms(&self) -> f64 {
        (self.clock_zero_unix_ns - self.start_at_unix_ns) as f64 / 1e6
    }

    pub fn write(&self, cdir: &CellDir) -> Result<()> {
        let path = cdir.shard_json();
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write `{}`", path.display()))
    }

    /// `None`: the folder is not a shard's (no `shard.json`).
    pub fn read(cdir: &CellDir) -> Result<Option<ShardRecord>> {
        let path = cdir.shard_json();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
        };
        serde_json::from_slice(&bytes).map(Some).with_context(|| {
            format!(
                "`{}` is not a shard record this version reads\nhint: was it written by another version of vllm-loadtest? merge shards of one version",
                path.display()
            )
        })
    }
}

/// The wall clock as the kernel sees it, when a shard starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockState {
    /// A time daemon (chrony, ntpd, systemd-timesyncd) keeps the clock disciplined.
    pub synchronised: bool,
    /// The kernel's bound on the clock's error, and its estimate (ms); `None` when unknown
    /// (unsynchronised, or not Linux).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub est_error_ms: Option<f64>,
    /// This boot's id: shards with the same one read the same clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The machine (`NODE_NAME` when set, as a Kubernetes pod can be given its node's;
    /// else the host name, a pod's own name in a pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// A merged cell's shards, as its `summary.json` keeps them (`vllm_loadtest.shards`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardsReport {
    pub count: u32,
    /// The agreed start, RFC 3339.
    pub start_at: String,
    /// Why the shards may not have run as one load point (a late start, a clock that may
    /// be off): each taints the merged cell's throughput. Empty: they did.
    pub apart: Vec<String>,
    pub shards: Vec<ShardLine>,
}

/// One shard of a merged cell: where it came from, its accounting, start, clock, client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardLine {
    pub index: u32,
    pub folder: String,
    pub status: String,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub not_sent: u64,
    pub late_ms: f64,
    pub clock: ClockState,
    pub client_cpu_share: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_lag_p99_ms: Option<f64>,
    pub pacer_late_max_ms: f64,
    pub warnings: Vec<String>,
}
