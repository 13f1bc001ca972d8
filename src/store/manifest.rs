//! `manifest.json`: what produced a results folder (tool version and commit, host, CPU,
//! server version, seeds, start and end, status), so a number can be traced to its run.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub tool: String,
    pub version: String,
    pub git_commit: String,
    pub host: String,
    pub cpu_model: String,
    pub cpu_cores: usize,
    pub experiment: String,
    pub command_line: Vec<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// running, complete, interrupted, failed
    pub status: String,
    pub cells_total: usize,
    pub cells_complete: usize,
    /// `/version` of each server configuration, as reported.
    pub server_versions: Vec<(String, String)>,
    pub seeds: Vec<u64>,
    pub error: Option<String>,
    /// Cells ran in the simulator's virtual time (`server.clock: virtual`): the results are
    /// predictions, not measurements.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub predicted: bool,
    /// What each server configuration was predicted with (`server.clock: virtual`): the
    /// profile and, for a fitted one, what it says of itself (its held-out error), so the
    /// report can say how far to trust the prediction.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub predicted_with: Vec<PredictedWith>,
    /// The server configurations whose cells each sent a `cache_salt` of their own
    /// (`server.cache_salt`): none of them found prefix-cache blocks another cell left.
    #[serde(default)]
    pub cache_salted: Vec<String>,
}

/// One server configuration's simulator profile, as a predicted run used it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PredictedWith {
    /// The server configuration's id.
    pub server: String,
    /// The profile's name or file, as the experiment gave it.
    pub profile: String,
    /// A fitted profile's own record (`vllm-loadtest fit`); `None`: written by hand.
    pub provenance: Option<vllm_sim::profile::Provenance>,
    /// Limits the experiment set over the profile's (`server.max_num_seqs`, …): the
    /// held-out check did not see them. `(name, profile's, experiment's)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overridden: Vec<(String, u64, u64)>,
    /// The step costs the cells ran with (the profile's), to price a measured cell's work
    /// with them (`engine_work`); `None` in a run predicted before they were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_costs: Option<loadtest_analysis::engine_work::StepCosts>,
}

impl Manifest {
    pub fn new(experiment: &str, cells_total: usize, seeds: Vec<u64>) -> Self {
        Self {
            tool: "vllm-loadtest".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            git_commit: env!("VLLM_LOADTEST_GIT_COMMIT").into(),
            host: hostname(),
            cpu_model: cpu_model(),
            cpu_cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            experiment: experiment.into(),
            command_line: std::env::args().collect(),
            started_at: loadtest_base::time::rfc3339(loadtest_base::time::unix_now()),
            finished_at: None,
            status: "running".into(),
            cells_total,
            cells_complete: 0,
            server_versions: Vec::new(),
            seeds,
            error: None,
            predicted: false,
            predicted_with: Vec::new(),
            cache_salted: Vec::new(),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}
