//! Ours in `summary.json`, under `vllm_loadtest` (beside vLLM's keys, see `summary_json`):
//! what a cell knew at run time (status, why it failed, the client's own usage, the
//! monitors, the requests never sent), written from typed values and read back typed by
//! the aggregate stage, so nothing is re-derived or read through untyped JSON pointers.

use super::layout::CellDir;
use serde::{Deserialize, Serialize};

/// The `vllm_loadtest` block. `S` is the summary: the run's `RunSummary` when written,
/// `StoredSummary` (the counts the aggregate stage takes from it) when read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellReport<S> {
    pub version: String,
    /// `complete`, `interrupted`, `failed`, `no_completions`.
    pub status: String,
    pub no_completions_reason: Option<String>,
    pub failure_reason: Option<String>,
    pub finished_at: String,
    /// The wall-clock time (ns since the Unix epoch, UTC) of the cell's clock zero: every
    /// `*_ns` time of the cell counts from it, and the `*_at` timestamp columns are it plus
    /// them. Absent in cells written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_zero_unix_ns: Option<i64>,
    /// Which cell of a `run` (absent for `bench`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<CellInfo>,
    pub arrival: String,
    pub summary: S,
    pub client: ClientUsage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitors: Option<MonitorReport>,
    pub warnings: Vec<String>,
    /// Run in the simulator's virtual time (`server.clock: virtual`): every figure is a
    /// prediction, not a measurement.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub predicted: bool,
    /// A cell merged from shards (`merge`): each shard, and why they may not have run as
    /// one load point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<super::shard_json::ShardsReport>,
}

/// A `run` cell's place in the matrix and every parameter it ran with (secrets redacted).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellInfo {
    pub id: String,
    pub index: usize,
    pub repeat: u32,
    pub matrix: serde_json::Map<String, serde_json::Value>,
    pub params: serde_json::Map<String, serde_json::Value>,
}

/// What the aggregate stage reads back of a stored summary (the rest it recomputes from the
/// raw records).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredSummary {
    /// Requests the schedule held that were never sent (interrupted, or the server lost).
    pub not_sent: u64,
    /// Requests written to a socket (each has a record).
    #[serde(default)]
    pub sent: u64,
}

#[derive(Deserialize)]
struct File {
    vllm_loadtest: CellReport<StoredSummary>,
}

impl CellDir {
    /// Ours of the cell's `summary.json`; `None` when it was never written (the cell crashed
    /// or is still running) or is not ours.
    pub fn read_report(&self) -> Option<CellReport<StoredSummary>> {
        let bytes = std::fs::read(self.summary_json()).ok()?;
        serde_json::from_slice::<File>(&bytes)
            .ok()
            .map(|f| f.vllm_loadtest)
    }
}

/// What the client itself used, to tell client-limited results apart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientUsage {
    pub wall_s: f64,
    pub cpu_s: f64,
    pub user_cpu_s: f64,
    pub system_cpu_s: f64,
    /// CPU seconds per second per client thread (1.0 = every thread busy all the time).
    pub cpu_share_of_threads: f64,
    pub max_rss_bytes: u64,
    pub threads: usize,
    /// How late the runtime was to a 10 ms timer (ms): p50, p99, max. Past a few ms the
    /// client's loop, not the server, is adding latency.
    pub loop_lag_p50_ms: Option<f64>,
    pub loop_lag_p99_ms: Option<f64>,
    pub loop_lag_max_ms: Option<f64>,
    /// The pacer thread got a real-time priority; without it, wake-ups on a busy core can
    /// wait out the runtime's time slice (send lag p99 of 1–4 ms at 2,000 req/s).
    pub pacer_realtime: bool,
    /// The runtime's thread ran at a real-time priority while the load ran
    /// (`clock::Realtime`; the default one-thread runtime only); without it, on cores a
    /// busy server shares, it can wait runnable for a second and stamp what arrives late.
    #[serde(default)]
    pub loop_realtime: bool,
    /// How an open loop's arrivals were sent: by the pacer at their due time, or by the
    /// runtime and why (`runner::send_path`).
    #[serde(default)]
    pub send_paths: SendPaths,
    /// Resident memory gained from the cell's start to when all its records were in
    /// memory, and that per request sent: what a request costs the client to keep.
    pub rss_growth_bytes: Option<u64>,
    pub rss_growth_per_request_bytes: Option<f64>,
    /// When sending ended (s from the start) against when the schedule said it would; no
    /// plan under a concurrency cap or all at once (slots, not the clock, pace those).
    pub sending_s: f64,
    pub planned_sending_s: Option<f64>,
}

/// How an open loop's arrivals were sent, as `summary.json` keeps them (`client.send_paths`;
/// counted by `runner::send_path`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SendPaths {
    /// Written by the pacer thread at the arrival's due time.
    pub by_pacer: u64,
    /// Handed to the runtime: every concurrency slot was taken (the arrival waits for one).
    pub no_free_slot: u64,
    /// Handed to the runtime: no idle connection was ready (the runtime opens one).
    pub no_idle_connection: u64,
    /// Handed to the runtime: the connection's socket took no byte yet.
    pub socket_not_writable: u64,
    /// Handed to the runtime: a TLS connection, which only the runtime can write.
    pub tls: u64,
    /// The longest the pacer took to check out an idle connection (ms): its lock is shared
    /// with the runtime, so a runtime preempted while holding it delays the pacer.
    pub pacer_take_max_ms: f64,
    /// How late the pacer thread woke for an arrival at worst (ms), and how many times it
    /// woke more than 0.5 ms late: the OS or the hypervisor did not run it, whatever its
    /// priority. A send later than that was delayed by the client.
    #[serde(default)]
    pub pacer_late_max_ms: f64,
    #[serde(default)]
    pub pacer_woke_late: u64,
    /// Checkouts that took more than 0.5 ms (the pool's lock held by a runtime the OS had
    /// set aside, or the pacer itself set aside meanwhile).
    #[serde(default)]
    pub pacer_slow_takes: u64,
}

impl SendPaths {
    pub fn by_runtime(&self) -> u64 {
        self.no_free_slot + self.no_idle_connection + self.socket_not_writable + self.tls
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorReport {
    pub metric_scrapes: u64,
    pub metric_failures: u64,
    pub metric_rows: usize,
    pub metric_last_error: Option<String>,
    /// "absent" when no `nvidia-smi` answered.
    pub gpu: String,
    /// The server's prefix cache over the window, from vLLM's counters; absent when the
    /// server does not export them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_cache: Option<PrefixCache>,
}

/// What vLLM's `prefix_cache_*_total` counters grew by over a cell's window (all engines).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrefixCache {
    /// Prompt tokens looked up, and those found cached.
    pub queries_tokens: f64,
    pub hits_tokens: f64,
    /// hits / queries; null when nothing was looked up (caching off, nothing admitted).
    pub hit_rate: Option<f64>,
}

impl PrefixCache {
    pub fn of(s: &loadtest_analysis::server_metrics::ServerStats) -> Option<Self> {
        Some(Self {
            queries_tokens: s.prefix_cache_queries?,
            hits_tokens: s.prefix_cache_hits?,
            hit_rate: s.prefix_cache_hit_rate(),
        })
    }
}
