//! Experiment files, stage three: one cell's checked parameters as a typed plan. This is the
//! only place a parameter is looked up by name; everything downstream (launcher, workload,
//! runner, aggregate, report) reads these fields. A value the file does not set comes from
//! the field table's default (`fields`), the one place defaults are written.
//!
//! `bench`'s flags build the same `CellPlan` (see `cli::bench`), so a one-cell `run` and a
//! `bench` are the same measurement.

use super::fields;
use super::parse::Params;
use crate::client::headers::HeaderSpec;
use crate::client::tls::TlsOptions;
use crate::workload::body::Endpoint as Api;
pub use crate::workload::{Dataset, PromptSpec};
use anyhow::{Context, Result, bail};
use loadtest_analysis::summary::goodput::Slo;
use loadtest_base::arrivals::{self, Arrival, RampStrategy, Stop};
use loadtest_base::shard::Shard;
use serde_yaml::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Everything one cell needs to run, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct CellPlan {
    pub server: ServerPlan,
    pub workload: WorkloadPlan,
    pub load: LoadPlan,
    pub slo: SloPlan,
    pub monitor: MonitorPlan,
    pub client: ClientPlan,
}

/// Where a cell's load comes from (`client:`).
#[derive(Debug, Clone, PartialEq)]
pub enum ClientPlan {
    /// This process sends it.
    Local,
    /// Shards on a Ray cluster's nodes (`deploy/ray/driver.py`), merged into the cell.
    Ray(RayPlan),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RayPlan {
    pub shards: u32,
    pub address: String,
    pub python: String,
    pub start_delay: Duration,
    /// The shards' clock bound (ms); `None`: none (`inf`, one machine).
    pub max_clock_error_ms: Option<f64>,
}

/// Whether a cell's requests carry a `cache_salt` of their own (`server.cache_salt`): vLLM
/// then hashes their prompt blocks apart from every other cell's, so a matrix that sends the
/// same prompts in each cell measures each cell from a cache its own requests filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSalt {
    /// `cell` when the server answers vLLM's `GET /version`, else none.
    Auto,
    Cell,
    None,
}

impl CacheSalt {
    /// Whether a server whose `GET /version` did (`is_vllm`) or did not answer gets a salt.
    pub fn applies(self, is_vllm: bool) -> bool {
        match self {
            CacheSalt::Auto => is_vllm,
            CacheSalt::Cell => true,
            CacheSalt::None => false,
        }
    }
}

/// How the server under test is brought up.
#[derive(Debug, Clone, PartialEq)]
pub enum Launcher {
    /// The built-in simulator, in-process.
    Sim { profile: String },
    /// Already running at these base URLs (round-robin).
    External { urls: Vec<String> },
    /// A command template run by `sh -c`; the port is a free one when not given.
    Command { template: String, port: Option<u16> },
    /// `docker compose` with this file, serving on `port`.
    Compose { file: String, port: u16 },
}

/// The port a compose file's server listens on when `server.port` is not set.
pub const COMPOSE_DEFAULT_PORT: u16 = 8000;

#[derive(Debug, Clone, PartialEq)]
pub struct ServerPlan {
    pub launcher: Launcher,
    pub start_timeout: Duration,
    /// Probe `/health` this often during a cell (`runner::watchdog`); `None`: never.
    pub health_probe: Option<Duration>,
    /// The model to request; `None`: the first id of `GET /v1/models`.
    pub model: Option<String>,
    /// A Hugging Face tokenizer; `None`: the built-in approximation.
    pub tokenizer: Option<PathBuf>,
    pub reset_prefix_cache: bool,
    /// `server.cache_salt`: whether each cell's requests carry a prefix-cache salt of their own.
    pub cache_salt: CacheSalt,
    /// `server.env` as written (a value may be redacted in a saved experiment).
    pub env: Vec<(String, String)>,
    /// A launched server (command, compose) serves `https`.
    pub https: bool,
    /// `https` trust: `ca_cert`, `insecure`.
    pub tls: TlsOptions,
    /// The API key's variable and the extra headers (values looked up when the server is
    /// reached, never stored).
    pub headers: HeaderSpec,
    pub dp: usize,
    pub max_num_seqs: Option<u32>,
    pub max_num_batched_tokens: Option<u32>,
    pub api_server_count: Option<usize>,
    /// The simulator's prefix caching; `None`: its profile's (on).
    pub enable_prefix_caching: Option<bool>,
    /// `server.clock: virtual`: the cells run in the simulator's virtual time
    /// (`runner::virtual_cell`), their figures predicted, not measured.
    pub virtual_clock: bool,
    /// Every scalar parameter of the cell as text: a command template's `{placeholders}`.
    pub values: Vec<(&'static str, String)>,
}

impl ServerPlan {
    /// The server section's scalar parameters: a compose file's environment.
    pub fn server_values(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.values
            .iter()
            .filter(|(k, _)| fields::find(k).is_some_and(|(s, _)| s.name == "server"))
            .map(|(k, v)| (*k, v.as_str()))
    }
}

impl Launcher {
    pub fn name(&self) -> &'static str {
        match self {
            Launcher::Sim { .. } => "sim",
            Launcher::External { .. } => "external",
            Launcher::Command { .. } => "command",
            Launcher::Compose { .. } => "compose",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadPlan {
    /// The prompts (their seed is the cell's, without the repeat).
    pub prompts: PromptSpec,
    pub endpoint: Api,
    /// Ask the server to ignore end-of-sequence; by default only for synthetic prompts
    /// (random, prefix_repetition).
    pub ignore_eos: bool,
    pub temperature: Option<f64>,
    pub continuous_usage_stats: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoadPlan {
    pub arrival: Arrival,
    pub stop: Stop,
    /// `arrival: poisson|gamma|constant` as written (a rate of `inf` makes it all-at-once).
    pub arrival_name: String,
    pub burstiness: f64,
    pub max_concurrency: Option<usize>,
    /// The seed of the arrival schedule, before the repeat is added.
    pub seed: u64,
    /// Measurement window in seconds from the start; `None`: the whole run.
    pub window_s: Option<(f64, f64)>,
    pub warmup_s: f64,
    pub cooldown_s: f64,
    pub request_timeout: Duration,
    /// How long the window's requests may take to finish after sending stops (duration-
    /// bounded cells only).
    pub drain: Option<Duration>,
    /// `Arrival::Trace`: the trace file and the window whose offsets are the schedule.
    pub trace: Option<TraceWindow>,
    /// Multi-turn: the pause between a turn's end and the conversation's next turn.
    pub think_time_s: f64,
    /// The part of the schedule this process sends (`bench --shard`; whole otherwise).
    pub shard: Shard,
}

/// The window `[start_s, end_s)` of a trace file, in trace seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceWindow {
    pub path: PathBuf,
    pub start_s: f64,
    pub end_s: Option<f64>,
}

impl LoadPlan {
    /// Sending stops here (duration-bounded cells).
    pub fn send_until(&self) -> Option<Duration> {
        match self.stop {
            Stop::Duration(d) => Some(Duration::from_secs_f64(d)),
            Stop::Count(_) => None,
        }
    }

    pub fn duration_s(&self) -> Option<f64> {
        match self.stop {
            Stop::Duration(d) => Some(d),
            Stop::Count(_) => None,
        }
    }

    pub fn closed_loop(&self) -> bool {
        arrivals::is_closed_loop(self.arrival, self.stop)
    }

    /// The arrival schedule's seed for repeat `repeat` of the cell.
    pub fn schedule_seed(&self, repeat: u32) -> u64 {
        self.seed.wrapping_add(repeat as u64)
    }

    /// The arrival schedule of repeat `repeat` (ns from the start; empty for a closed loop);
    /// a trace's is read from its file (the same window as its prompts, in the same order).
    pub fn schedule(&self, repeat: u32) -> Result<std::sync::Arc<[u64]>> {
        if let (Arrival::Trace { speed }, Some(t)) = (self.arrival, &self.trace) {
            let trace = crate::workload::trace::read_window(&t.path, t.start_s, t.end_s)?;
            let w = crate::workload::trace::window(&trace, t.start_s, t.end_s);
            return Ok(crate::workload::trace::offsets(&w, t.start_s, speed).into());
        }
        Ok(arrivals::schedule(self.arrival, self.stop, self.schedule_seed(repeat)).into())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SloPlan {
    pub slos: Vec<Slo>,
    /// SLO attainment that counts as meeting the SLOs.
    pub target: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MonitorPlan {
    pub metrics_interval: Duration,
    pub gpu: bool,
}

impl CellPlan {
    /// The typed plan of checked parameters (`parse` has validated every value's type and
    /// range; what is left to fail here is a value a section requires and does not have).
    pub fn from_params(p: &Params) -> Result<CellPlan> {
        let r = Reader(p);
        let plan = CellPlan {
            server: server(&r)?,
            workload: workload(&r)?,
            load: load(&r)?,
            slo: SloPlan {
                slos: [
                    r.opt_f64("ttft_ms").map(Slo::TtftMs),
                    r.opt_f64("tpot_ms").map(Slo::TpotMs),
                    r.opt_f64("e2el_ms").map(Slo::E2elMs),
                ]
                .into_iter()
                .flatten()
                .collect(),
                target: r.f64("target")?,
            },
            monitor: MonitorPlan {
                metrics_interval: Duration::from_secs_f64(r.f64("metrics_interval_s")?),
                gpu: r.bool("gpu")?,
            },
            client: client(&r)?,
        };
        plan.check_virtual()?;
        Ok(plan)
    }

    /// Virtual time serves a schedule fixed in advance, or a client the simulator plays
    /// (`vllm_sim::virtual_time::Slots`: a concurrency cap, conversations' turns); a cell
    /// sent from a cluster's nodes sends nothing there.
    fn check_virtual(&self) -> Result<()> {
        if !self.server.virtual_clock {
            return Ok(());
        }
        if let ClientPlan::Ray(_) = self.client {
            bail!(
                "`client.engine: ray` sends a cell from a cluster's nodes to a live server; in `server.clock: virtual` nothing is sent\nhint: drop one of the two"
            );
        }
        Ok(())
    }
}

fn server(r: &Reader) -> Result<ServerPlan> {
    let port = r.opt_u64("port").map(|p| p as u16);
    let launcher = match r.str("launcher")? {
        "sim" => Launcher::Sim {
            profile: r.str("profile")?.to_string(),
        },
        "external" => Launcher::External {
            urls: r
                .0
                .get("urls")
                .and_then(Value::as_sequence)
                .context("`server.urls` is required for `launcher: external`")?
                .iter()
                .filter_map(|u| u.as_str().map(str::to_string))
                .collect(),
        },
        "command" => Launcher::Command {
            template: r
                .opt_str("command")
                .context("`server.command` is required for `launcher: command`")?
                .to_string(),
            port,
        },
        "compose" => Launcher::Compose {
            file: r
                .opt_str("compose_file")
                .context("`server.compose_file` is required for `launcher: compose`")?
                .to_string(),
            port: port.unwrap_or(COMPOSE_DEFAULT_PORT),
        },
        other => bail!("unknown launcher `{other}`"),
    };
    let map = |name: &str| -> Vec<(String, String)> {
        match r.0.get(name).and_then(Value::as_mapping) {
            Some(m) => m
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), scalar(v)?)))
                .collect(),
            None => Vec::new(),
        }
    };
    let values =
        r.0.iter()
            .filter_map(|(k, v)| Some((*k, scalar(v)?)))
            .collect();
    let virtual_clock = match (r.str("clock")?, &launcher) {
        ("virtual", Launcher::Sim { .. }) => true,
        ("virtual", other) => bail!(
            "`server.clock: virtual` runs the built-in simulator in virtual time; launcher `{}` is a real server: drop `clock` (or use `launcher: sim`)",
            other.name()
        ),
        _ => false,
    };
    Ok(ServerPlan {
        launcher,
        start_timeout: Duration::from_secs_f64(r.f64("start_timeout_s")?),
        health_probe: Some(r.f64("health_probe_s")?)
            .filter(|s| *s > 0.0)
            .map(Duration::from_secs_f64),
        model: r.opt_str("model").map(str::to_string),
        tokenizer: r.opt_str("tokenizer").map(PathBuf::from),
        reset_prefix_cache: r.bool("reset_prefix_cache")?,
        // one of `fields::CACHE_SALTS`, checked when the file was read
        cache_salt: match r.str("cache_salt")? {
            "cell" => CacheSalt::Cell,
            "none" => CacheSalt::None,
            _ => CacheSalt::Auto,
        },
        env: map("env"),
        https: r.bool("https")?,
        tls: TlsOptions {
            ca_cert: r.opt_str("ca_cert").map(PathBuf::from),
            insecure: r.bool("insecure")?,
        },
        headers: HeaderSpec {
            api_key_env: r.str("api_key_env")?.to_string(),
            literal: map("headers"),
            from_env: map("header_env"),
        },
        dp: r.u64("dp")? as usize,
        max_num_seqs: r.opt_u64("max_num_seqs").map(|v| v as u32),
        max_num_batched_tokens: r.opt_u64("max_num_batched_tokens").map(|v| v as u32),
        api_server_count: r.opt_u64("api_server_count").map(|v| v as usize),
        enable_prefix_caching: r.opt_bool("enable_prefix_caching"),
        virtual_clock,
        values,
    })
}

fn client(r: &Reader) -> Result<ClientPlan> {
    if r.str("engine")? == "local" {
        return Ok(ClientPlan::Local);
    }
    // checked by `parse` (`Kind::Bound`): a positive number, or `inf`
    let max_clock_error_ms = match r.opt_str("max_clock_error_ms") {
        Some("inf") => None,
        _ => Some(r.f64("max_clock_error_ms")?),
    };
    Ok(ClientPlan::Ray(RayPlan {
        shards: u32::try_from(r.u64("shards")?)
            .ok()
            .context("`client.shards` is more shards than any cluster has")?,
        address: r.str("address")?.to_string(),
        python: r.str("python")?.to_string(),
        start_delay: Duration::from_secs_f64(r.f64("start_delay_s")?),
        max_clock_error_ms,
    }))
}

fn workload(r: &Reader) -> Result<WorkloadPlan> {
    let path = || -> Result<PathBuf> {
        Ok(PathBuf::from(r.opt_str("dataset_path").context(
            "`workload.dataset_path` is required for this dataset",
        )?))
    };
    let dataset = match r.str("dataset")? {
        "random" => Dataset::Random {
            input_len: r.u64("input_len")? as u32,
            range_ratio: r.f64("range_ratio")?,
            prefix_len: r.u64("prefix_len")? as u32,
        },
        "multi_turn" => Dataset::MultiTurn {
            turns: r.u64("turns")? as u32,
            input_len: r.u64("input_len")? as u32,
        },
        "prefix_repetition" => Dataset::PrefixRepetition {
            num_prefixes: r.u64("num_prefixes")? as u32,
            prefix_len: r.u64("prefix_len")? as u32,
            suffix_len: r.u64("suffix_len")? as u32,
        },
        "sharegpt" => Dataset::ShareGpt {
            path: path()?,
            output_len: None,
        },
        "jsonl" => Dataset::Jsonl { path: path()? },
        "trace" => Dataset::Trace {
            path: path()?,
            block_size: r.u64("trace_block_size")? as u32,
            start_s: r.f64("trace_start_s")?,
            end_s: r.opt_f64("trace_end_s"),
        },
        other => bail!("unknown dataset `{other}`"),
    };
    let endpoint = match (r.str("endpoint")?, &dataset) {
        (e, Dataset::MultiTurn { .. }) if Api::parse(e) == Some(Api::Completions) => bail!(
            "`dataset: multi_turn` sends conversations, which need the chat endpoint\nhint: set `workload.endpoint: /v1/chat/completions`"
        ),
        (e, _) => Api::parse(e).with_context(|| format!("unknown endpoint `{e}`"))?,
    };
    Ok(WorkloadPlan {
        ignore_eos: r.opt_bool("ignore_eos").unwrap_or(matches!(
            dataset,
            Dataset::Random { .. }
                | Dataset::PrefixRepetition { .. }
                | Dataset::Trace { .. }
                | Dataset::MultiTurn { .. }
        )),
        prompts: PromptSpec {
            dataset,
            output_len: r.u64("output_len")? as u32,
            num_prompts: r.u64("num_prompts")? as usize,
            seed: r.u64("seed")?,
        },
        endpoint,
        temperature: r.opt_f64("temperature"),
        continuous_usage_stats: r.bool("continuous_usage_stats")?,
    })
}

fn load(r: &Reader) -> Result<LoadPlan> {
    let burstiness = r.f64("burstiness")?;
    let (arrival, arrival_name, trace) = schedule_source(r, burstiness)?;
    let duration = r.opt_f64("duration_s");
    let stop = match duration {
        Some(d) => Stop::Duration(d),
        None => Stop::Count(match r.opt_u64("requests") {
            Some(n) => n as usize,
            None => r.u64("num_prompts")? as usize,
        }),
    };
    let (warmup_s, cooldown_s) = (r.f64("warmup_s")?, r.f64("cooldown_s")?);
    Ok(LoadPlan {
        arrival,
        stop,
        arrival_name,
        burstiness,
        max_concurrency: r.opt_u64("max_concurrency").map(|c| c as usize),
        seed: r.u64("seed")?,
        window_s: duration
            .filter(|_| warmup_s > 0.0 || cooldown_s > 0.0)
            .map(|d| (warmup_s, d - cooldown_s)),
        warmup_s,
        cooldown_s,
        request_timeout: Duration::from_secs_f64(r.f64("request_timeout_s")?),
        drain: match duration {
            Some(_) => Some(Duration::from_secs_f64(r.f64("drain_timeout_s")?)),
            None => None,
        },
        trace,
        shard: Shard::WHOLE,
        think_time_s: r.f64("think_time_s")?,
    })
}

/// Where the send times come from: a trace's offsets, a ramp, or the rate's process.
fn schedule_source(r: &Reader, burstiness: f64) -> Result<(Arrival, String, Option<TraceWindow>)> {
    let process = r.str("arrival")?.to_string();
    if r.str("dataset")? == "trace" {
        let path = r
            .opt_str("dataset_path")
            .context("`workload.dataset_path` is required for `dataset: trace`")?;
        let window = TraceWindow {
            path: PathBuf::from(path),
            start_s: r.f64("trace_start_s")?,
            end_s: r.opt_f64("trace_end_s"),
        };
        let speed = r.f64("trace_speed")?;
        return Ok((Arrival::Trace { speed }, "trace".into(), Some(window)));
    }
    if let Some(s) = r.opt_str("ramp_up_strategy") {
        let strategy = RampStrategy::parse(s).with_context(|| format!("unknown ramp `{s}`"))?;
        let arrival = Arrival::Ramp {
            strategy,
            start: r.f64("ramp_up_start_rps")?,
            end: r.f64("ramp_up_end_rps")?,
            // `arrival: constant` spaces a ramp's requests evenly, as a constant rate's
            burstiness: if process == "constant" {
                f64::INFINITY
            } else {
                burstiness
            },
        };
        return Ok((arrival, format!("{s} ramp, {process}"), None));
    }
    let rate = match r.0.get("request_rate") {
        Some(v) if v.as_str() == Some("inf") => f64::INFINITY,
        Some(v) => v
            .as_f64()
            .with_context(|| format!("`load.request_rate` is not a rate: {v:?}"))?,
        None => bail!("no `request_rate`: set `load.request_rate` or `matrix.request_rate`"),
    };
    let arrival = Arrival::of(rate, process == "constant", burstiness);
    Ok((arrival, process, None))
}

/// A scalar YAML value as text (`None` for lists and maps).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Look-ups by name, with the field table's default for a key the parameters lack.
struct Reader<'a>(&'a Params);

impl Reader<'_> {
    fn value(&self, key: &str) -> Option<Value> {
        if let Some(v) = self.0.get(key) {
            return Some(v.clone());
        }
        let (_, field) = fields::find(key)?;
        serde_yaml::from_str(field.default?).ok()
    }

    fn required<T>(&self, key: &str, get: fn(&Value) -> Option<T>) -> Result<T> {
        self.value(key).as_ref().and_then(get).with_context(|| {
            format!("`{key}` has no value and no default (the field table must give one)")
        })
    }

    fn f64(&self, key: &str) -> Result<f64> {
        self.required(key, Value::as_f64)
    }
    fn u64(&self, key: &str) -> Result<u64> {
        self.required(key, Value::as_u64)
    }
    fn bool(&self, key: &str) -> Result<bool> {
        self.required(key, Value::as_bool)
    }
    fn str(&self, key: &str) -> Result<&str> {
        match self.0.get(key).and_then(Value::as_str) {
            Some(s) => Ok(s),
            None => fields::find(key)
                .and_then(|(_, f)| f.default)
                .with_context(|| format!("`{key}` has no value and no default")),
        }
    }
    fn opt_f64(&self, key: &str) -> Option<f64> {
        self.value(key).as_ref().and_then(Value::as_f64)
    }
    fn opt_u64(&self, key: &str) -> Option<u64> {
        self.value(key).as_ref().and_then(Value::as_u64)
    }
    fn opt_bool(&self, key: &str) -> Option<bool> {
        self.value(key).as_ref().and_then(Value::as_bool)
    }
    fn opt_str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }
}
