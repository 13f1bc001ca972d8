//! Flags of `vllm-loadtest bench`.

use crate::client::headers::{self, HeaderSpec};
use crate::client::tls::TlsOptions;
use crate::experiment::fields::{self, cli_number};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DatasetName {
    /// Random token prompts of `--random-input-len` tokens.
    Random,
    /// Groups of prompts sharing a prefix (vLLM's `prefix_repetition`).
    #[value(name = "prefix_repetition")]
    PrefixRepetition,
    /// ShareGPT conversations from `--dataset-path`.
    Sharegpt,
    /// JSON lines `{"prompt": …, "output_len": …}` from `--dataset-path`.
    Jsonl,
    /// A timestamped JSON-lines trace, replayed on its own schedule (docs/trace-format.md).
    Trace,
    /// Chat conversations of `--multi-turn-turns` requests, each carrying the history so
    /// far; `--num-prompts` and `--request-rate` count conversations.
    #[value(name = "multi_turn")]
    MultiTurn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RampUp {
    /// A + (B − A)·i/(n−1)
    Linear,
    /// A·(B/A)^(i/(n−1))
    Exponential,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArrivalKind {
    /// Poisson for burstiness 1, else gamma with that burstiness (vLLM's behaviour).
    Gamma,
    /// Evenly spaced sends at the request rate.
    Constant,
}

// Headings of `bench --help`, in vLLM's `vllm bench serve` order where it has one (its
// dataset options and per-dataset groups, its "sampling parameters"); ours beside them.
const SERVER: &str = "Server and connection options";
const DATASET: &str = "Dataset options";
const RANDOM: &str = "Random dataset options";
const PREFIX: &str = "Prefix repetition dataset options";
const SHAREGPT: &str = "ShareGPT dataset options";
const TRACE: &str = "Trace dataset options";
const MULTI_TURN: &str = "Multi-turn dataset options";
const SAMPLING: &str = "Sampling parameters";
const LOAD: &str = "Load options";
const RAMP: &str = "Ramp-up options";
const SEARCH: &str = "Search options";
const SHARD: &str = "Shard options (one load point from several machines)";
const RESULTS: &str = "Result options";

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Server base URL, `http://HOST:PORT` or `https://HOST[:PORT]` (a `/v1` suffix is dropped).
    #[arg(long, default_value = "http://127.0.0.1:8000", conflicts_with = "sim", value_name = "URL", help_heading = SERVER)]
    pub base_url: String,
    /// Run against the built-in simulated vLLM with this profile (in-process, free loopback port) instead of a server (default profile: `default`).
    #[arg(long, num_args = 0..=1, default_missing_value = "default", value_name = "PROFILE", help_heading = SERVER)]
    pub sim: Option<String>,
    /// Data-parallel engines of the built-in simulator (with `--sim`).
    #[arg(long, default_value_t = 1, requires = "sim", value_name = "N", help_heading = SERVER)]
    pub sim_dp: usize,
    /// Predict the load point in the simulator's virtual time instead of running it (with `--sim`): no server, no client, the same records, summary and table, marked predicted; rates, ramps, traces and `--max-concurrency` (closed loops too), not conversations; seconds for an hour of load.
    #[arg(long = "virtual", requires = "sim", help_heading = SERVER)]
    pub virtual_time: bool,
    /// API path: `/v1/completions` or `/v1/chat/completions`.
    #[arg(long, default_value = "/v1/completions", value_name = "PATH", help_heading = SERVER)]
    pub endpoint: String,
    /// Model name to request (default: the first id of `GET /v1/models`).
    #[arg(long, value_name = "NAME", help_heading = SERVER)]
    pub model: Option<String>,
    /// A `tokenizer.json`, or a folder holding one (default: the built-in cl100k approximation).
    #[arg(long, value_name = "PATH", help_heading = SERVER)]
    pub tokenizer: Option<PathBuf>,
    #[command(flatten)]
    pub conn: Connection,
    /// Seconds a whole request may take before it fails as `timeout`.
    #[arg(long, value_parser = cli_number(fields::SECS), default_value_t = 600.0, value_name = "SECS", help_heading = SERVER)]
    pub request_timeout: f64,
    /// Probe `GET /health` every SECS seconds (0: never); 3 failures in a row with no completion meanwhile mark the server lost.
    #[arg(long, value_name = "SECS", value_parser = cli_number(fields::SECS0), default_value_t = 5.0, help_heading = SERVER)]
    pub health_probe: f64,

    /// Where the prompts come from (vLLM's names); each has its options below.
    #[arg(long, value_enum, default_value = "random", value_name = "NAME", help_heading = DATASET)]
    pub dataset_name: DatasetName,
    /// Local dataset file: ShareGPT JSON, JSON lines `{"prompt": …, "output_len": …}`, or a trace (default: none; needed by sharegpt, jsonl, trace).
    #[arg(long, value_name = "FILE", help_heading = DATASET)]
    pub dataset_path: Option<PathBuf>,
    /// Requests to send, and distinct prompts to build (multi_turn: conversations).
    #[arg(long, default_value_t = 1000, value_name = "N", help_heading = DATASET)]
    pub num_prompts: usize,
    /// Seed of the prompts and of the arrival schedule: the same seed sends the same run.
    #[arg(long, default_value_t = 0, value_name = "N", help_heading = DATASET)]
    pub seed: u64,

    /// random: prompt length, tokens (under the tokenizer in use).
    #[arg(long, default_value_t = 1024, value_name = "TOKENS", help_heading = RANDOM)]
    pub random_input_len: u32,
    /// random: output tokens asked for per request (`max_tokens`).
    #[arg(long, default_value_t = 128, value_name = "TOKENS", help_heading = RANDOM)]
    pub random_output_len: u32,
    /// random: lengths drawn uniformly in [len·(1−R), len·(1+R)], a ratio in [0, 1).
    #[arg(long, value_parser = cli_number(fields::RATIO), default_value_t = 0.0, value_name = "R", help_heading = RANDOM)]
    pub random_range_ratio: f64,
    /// random: tokens of one shared prefix before every prompt.
    #[arg(long, default_value_t = 0, value_name = "TOKENS", help_heading = RANDOM)]
    pub random_prefix_len: u32,

    /// prefix_repetition: tokens of the prefix the prompts of a group share.
    #[arg(long, default_value_t = 256, value_name = "TOKENS", help_heading = PREFIX)]
    pub prefix_repetition_prefix_len: u32,
    /// prefix_repetition: tokens of each prompt's own after its group's prefix.
    #[arg(long, default_value_t = 256, value_name = "TOKENS", help_heading = PREFIX)]
    pub prefix_repetition_suffix_len: u32,
    /// prefix_repetition: groups of prompts, each with its own prefix.
    #[arg(long, default_value_t = 10, value_name = "N", help_heading = PREFIX)]
    pub prefix_repetition_num_prefixes: u32,
    /// prefix_repetition: output tokens per request.
    #[arg(long, default_value_t = 128, value_name = "TOKENS", help_heading = PREFIX)]
    pub prefix_repetition_output_len: u32,

    /// sharegpt: a fixed output length in tokens (default: each conversation's own completion length).
    #[arg(long, value_name = "TOKENS", help_heading = SHAREGPT)]
    pub sharegpt_output_len: Option<u32>,

    /// trace: time scaling, 2 replays twice as fast, 0.5 at half speed.
    #[arg(long, value_parser = cli_number(fields::POS), default_value_t = 1.0, value_name = "X", help_heading = TRACE)]
    pub trace_speed: f64,
    /// trace: the window's start in trace seconds; it is the run's 0 (a request at S + x is sent at x / speed).
    #[arg(long, value_parser = cli_number(fields::SECS0), default_value_t = 0.0, value_name = "SECS", help_heading = TRACE)]
    pub trace_start: f64,
    /// trace: the window's end (exclusive) in trace seconds (default: the whole trace).
    #[arg(long, value_parser = cli_number(fields::SECS), value_name = "SECS", help_heading = TRACE)]
    pub trace_end: Option<f64>,
    /// trace: tokens one `hash_ids` entry stands for (Mooncake's traces: 512).
    #[arg(long, default_value_t = crate::workload::trace::DEFAULT_BLOCK_SIZE, value_name = "TOKENS", help_heading = TRACE)]
    pub trace_block_size: u32,

    /// multi_turn: requests per conversation (each question `--random-input-len` tokens, each answer `--random-output-len`).
    #[arg(long, default_value_t = 4, value_name = "K", help_heading = MULTI_TURN)]
    pub multi_turn_turns: u32,
    /// multi_turn: seconds between an answer's end and the conversation's next question.
    #[arg(long, value_name = "SECS", value_parser = cli_number(fields::SECS0), default_value_t = 0.0, help_heading = MULTI_TURN)]
    pub multi_turn_think_time: f64,

    /// Sampling temperature sent in every request (default: not sent, the server's own).
    #[arg(long, value_parser = cli_number(fields::NONNEG), value_name = "T", help_heading = SAMPLING)]
    pub temperature: Option<f64>,
    /// Send `ignore_eos`, so every request generates exactly its `max_tokens` (default: on for random and prefix_repetition, off for datasets).
    #[arg(long, overrides_with = "no_ignore_eos", help_heading = SAMPLING)]
    pub ignore_eos: bool,
    /// Do not send `ignore_eos`, even for random data.
    #[arg(long, help_heading = SAMPLING)]
    pub no_ignore_eos: bool,
    /// JSON object merged into every request body, e.g. '{"top_p": 0.9}' (default: none).
    #[arg(long, value_name = "JSON", help_heading = SAMPLING)]
    pub extra_body: Option<String>,
    /// Ask for `stream_options.continuous_usage_stats` (vLLM, SGLang) to record each event's tokens; off by default: it costs the server work per token.
    #[arg(long, help_heading = SAMPLING)]
    pub continuous_usage_stats: bool,

    /// Requests per second, or `inf` to send all at once.
    #[arg(long, default_value = "inf", value_name = "RPS", help_heading = LOAD)]
    pub request_rate: String,
    /// Gamma shape of inter-arrival times: 1 is Poisson, < 1 burstier, > 1 more regular.
    #[arg(long, value_parser = cli_number(fields::POS), default_value_t = 1.0, value_name = "SHAPE", help_heading = LOAD)]
    pub burstiness: f64,
    /// Arrival process: gamma (Poisson at burstiness 1, vLLM's) or constant (evenly spaced).
    #[arg(long, value_enum, default_value = "gamma", value_name = "KIND", help_heading = LOAD)]
    pub arrival: ArrivalKind,
    /// At most N requests in flight; later arrivals wait, their wait measured (default: no cap).
    #[arg(long, value_name = "N", help_heading = LOAD)]
    pub max_concurrency: Option<usize>,
    /// Send for SECS seconds instead of `--num-prompts` requests, prompts cycled (default: until the prompts are sent).
    #[arg(long, value_parser = cli_number(fields::SECS), value_name = "SECS", help_heading = LOAD)]
    pub duration: Option<f64>,
    /// Seconds at the start excluded from the statistics (kept in the raw records).
    #[arg(long, value_parser = cli_number(fields::SECS0), default_value_t = 0.0, value_name = "SECS", help_heading = LOAD)]
    pub warmup: f64,
    /// Seconds at the end excluded from the statistics (kept in the raw records).
    #[arg(long, value_parser = cli_number(fields::SECS0), default_value_t = 0.0, value_name = "SECS", help_heading = LOAD)]
    pub cooldown: f64,
    /// With `--duration`: seconds the window's requests may take after the last send; then the rest is cut and right-censored.
    #[arg(long, value_parser = cli_number(fields::SECS0), default_value_t = crate::runner::load_point::DEFAULT_DRAIN_S, value_name = "SECS", help_heading = LOAD)]
    pub drain_timeout: f64,
    /// Worker threads of the client runtime (1 measured best up to thousands of req/s).
    #[arg(long, default_value_t = 1, value_name = "N", help_heading = LOAD)]
    pub client_threads: usize,
    /// Repeat R of the load point, as a `run` cell's repeats: the schedule drawn with seed + R, the prompts with the seed (default: 0, the schedule of the seed).
    #[arg(long, default_value_t = 0, value_name = "R", help_heading = LOAD)]
    pub repeat: u32,

    /// Move the rate from `--ramp-up-start-rps` to `--ramp-up-end-rps` by request index (by time with `--duration`); not with `--request-rate` (default: no ramp).
    #[arg(long, value_enum, requires_all = ["ramp_up_start_rps", "ramp_up_end_rps"], value_name = "HOW", help_heading = RAMP)]
    pub ramp_up_strategy: Option<RampUp>,
    /// The first request's rate, req/s (with `--ramp-up-strategy`).
    #[arg(long, value_parser = cli_number(fields::POS), requires = "ramp_up_strategy", value_name = "RPS", help_heading = RAMP)]
    pub ramp_up_start_rps: Option<f64>,
    /// The last request's rate, req/s (with `--ramp-up-strategy`).
    #[arg(long, value_parser = cli_number(fields::POS), requires = "ramp_up_strategy", value_name = "RPS", help_heading = RAMP)]
    pub ramp_up_end_rps: Option<f64>,

    /// Search for the limit instead of measuring one rate: `saturation` or `slo` (the highest rate meeting `--goodput`); probes under `OUTPUT_DIR/search/` (default: no search).
    #[arg(long, value_enum, conflicts_with = "request_rate", value_name = "GOAL", help_heading = SEARCH)]
    pub search: Option<SearchGoal>,
    /// The first rate probed, req/s; doubled or halved until the limit is bracketed, then bisected.
    #[arg(long, value_parser = cli_number(fields::POS), default_value_t = 1.0, value_name = "RPS", help_heading = SEARCH)]
    pub search_start: f64,
    /// Never probe below this rate, req/s.
    #[arg(long, value_parser = cli_number(fields::POS), default_value_t = 0.1, value_name = "RPS", help_heading = SEARCH)]
    pub search_min: f64,
    /// Never probe above this rate, req/s.
    #[arg(long, value_parser = cli_number(fields::POS), default_value_t = 1000.0, value_name = "RPS", help_heading = SEARCH)]
    pub search_max: f64,
    /// Stop when the bracket's relative width (high / low − 1) is at most this ratio.
    #[arg(long, value_parser = cli_number(fields::RATIO), default_value_t = 0.05, value_name = "R", help_heading = SEARCH)]
    pub search_tolerance: f64,
    /// Stop after N probes.
    #[arg(long, default_value_t = 12, value_name = "N", help_heading = SEARCH)]
    pub search_max_cells: usize,

    /// Send only shard I of N of the load point (0-based): the schedule's entries i with i % N == I, with their own prompts and intended times, from `--start-at`; `vllm-loadtest merge` makes the N cell folders one (default: all of it).
    #[arg(long, value_parser = parse_shard, value_name = "I/N", requires = "start_at", help_heading = SHARD)]
    pub shard: Option<loadtest_base::shard::Shard>,
    /// Start at this wall-clock instant, the same for every shard: RFC 3339 (`2026-12-01T17:30:00Z`) or Unix seconds (default: at once).
    #[arg(long, value_parser = parse_instant, value_name = "TIME", help_heading = SHARD)]
    pub start_at: Option<i64>,
    /// A shard refuses to run when its kernel says its clock is unsynchronised, or estimates its error above this (ms); `inf` when every shard runs on this machine (one clock).
    #[arg(long, value_parser = parse_bound_ms, default_value = "100", value_name = "MS", help_heading = SHARD)]
    pub max_clock_error_ms: BoundMs,

    /// SLOs for goodput, milliseconds per metric, e.g. `--goodput ttft:500 tpot:50` (default: none).
    #[arg(long, num_args = 1.., value_name = "METRIC:MS", help_heading = RESULTS)]
    pub goodput: Vec<String>,
    /// Metrics whose percentiles are printed, comma-separated: ttft, tpot, itl, e2el.
    #[arg(long, default_value = "ttft,tpot,itl,e2el", value_name = "LIST", help_heading = RESULTS)]
    pub percentile_metrics: String,
    /// Percentiles printed, comma-separated numbers in (0, 100].
    #[arg(long, default_value = "50,90,99", value_name = "LIST", help_heading = RESULTS)]
    pub metric_percentiles: String,
    /// Also write the result JSON the way `vllm bench serve --save-result` does.
    #[arg(long, help_heading = RESULTS)]
    pub save_result: bool,
    /// With `--save-result`: include the per-request lists (vLLM's `--save-detailed`).
    #[arg(long, help_heading = RESULTS)]
    pub save_detailed: bool,
    /// With `--save-result`: the folder of the result JSON.
    #[arg(long, default_value = ".", value_name = "DIR", help_heading = RESULTS)]
    pub result_dir: PathBuf,
    /// With `--save-result`: the result JSON's file name (default: vLLM's, `vllm-<rate>qps-<model>-<date>.json`).
    #[arg(long, value_name = "FILE", help_heading = RESULTS)]
    pub result_filename: Option<String>,
    /// A label stored in the result JSON and summary.json (default: none).
    #[arg(long, value_name = "TEXT", help_heading = RESULTS)]
    pub label: Option<String>,
    /// Folder for the raw records and tables (default: `results/bench/<date>-rate<rate>`).
    #[arg(long, value_name = "DIR", help_heading = RESULTS)]
    pub output_dir: Option<PathBuf>,
    /// No progress line (alias: vLLM's `--disable-tqdm`).
    #[arg(long, alias = "disable-tqdm", help_heading = RESULTS)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SearchGoal {
    /// Where the server stops keeping up, and its capacity.
    Saturation,
    /// The highest rate meeting `--goodput`.
    Slo,
}

/// How a server is reached beyond its URL: credentials, headers, trust, the connect timeout
/// (`bench` and `fit`).
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Environment variable holding the API key, sent as `Authorization: Bearer` and never stored (unset or empty: no key).
    #[arg(long, default_value = headers::DEFAULT_API_KEY_ENV, value_name = "NAME", help_heading = SERVER)]
    pub api_key_env: String,
    /// A header every request carries, `'Name: value'`, repeatable; values never reach a file (default: none).
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = headers::parse_flag, help_heading = SERVER)]
    pub headers: Vec<(String, String)>,
    /// A header whose value is read from an environment variable, `'Name: VAR'`, repeatable: for secrets (default: none).
    #[arg(long = "header-env", value_name = "NAME: VAR", value_parser = headers::parse_flag, help_heading = SERVER)]
    pub header_env: Vec<(String, String)>,
    /// https: a PEM file of CA certificates to trust besides the system's (default: the system's only).
    #[arg(long, value_name = "FILE", help_heading = SERVER)]
    pub ca_cert: Option<PathBuf>,
    /// https: do not check the server's certificate (a test server); warned about.
    #[arg(long, conflicts_with = "ca_cert", help_heading = SERVER)]
    pub insecure: bool,
    /// Seconds to wait for a TCP (and TLS) connection before the request fails as `connect`.
    #[arg(long, value_parser = cli_number(fields::SECS), default_value_t = 10.0, value_name = "SECS", help_heading = SERVER)]
    pub connect_timeout: f64,
}

impl Connection {
    pub fn tls_options(&self) -> TlsOptions {
        TlsOptions {
            ca_cert: self.ca_cert.clone(),
            insecure: self.insecure,
        }
    }

    pub fn header_spec(&self) -> HeaderSpec {
        HeaderSpec {
            api_key_env: self.api_key_env.clone(),
            literal: self.headers.clone(),
            from_env: self.header_env.clone(),
        }
    }
}

fn parse_shard(s: &str) -> Result<loadtest_base::shard::Shard, String> {
    loadtest_base::shard::Shard::parse(s)
}

/// `--start-at`: ns since the Unix epoch.
fn parse_instant(s: &str) -> Result<i64, String> {
    loadtest_base::time::parse_instant(s)
}

/// A bound in milliseconds; `None` (`inf` on the command line): no bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundMs(pub Option<f64>);

pub(super) fn parse_bound_ms(s: &str) -> Result<BoundMs, String> {
    if matches!(s, "inf" | "Inf" | "infinity") {
        return Ok(BoundMs(None));
    }
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(BoundMs(Some(v))),
        _ => Err(format!(
            "`{s}` is not a positive number of milliseconds (or `inf` for no bound)"
        )),
    }
}
