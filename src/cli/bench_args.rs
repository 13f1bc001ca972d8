//! Flags of `vllm-loadtest bench`.

use crate::client::headers::{self, HeaderSpec};
use crate::client::tls::TlsOptions;
use crate::experiment::fields::{self, cli_number};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DatasetName {
    Random,
    /// Groups of prompts sharing a prefix (vLLM's `prefix_repetition`).
    #[value(name = "prefix_repetition")]
    PrefixRepetition,
    Sharegpt,
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
    Linear,
    Exponential,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArrivalKind {
    /// Poisson for burstiness 1, else gamma with that burstiness (vLLM's behaviour).
    Gamma,
    /// Evenly spaced sends at the request rate.
    Constant,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    // --- target
    /// Server base URL: `http://HOST:PORT` or `https://HOST[:PORT]` (a `/v1` suffix is dropped).
    #[arg(long, default_value = "http://127.0.0.1:8000", conflicts_with = "sim")]
    pub base_url: String,
    /// Run against the built-in simulated vLLM (in-process, free loopback port) with this
    /// profile instead of a server.
    #[arg(long, num_args = 0..=1, default_missing_value = "default", value_name = "PROFILE")]
    pub sim: Option<String>,
    /// Data-parallel engines of the built-in simulator (with `--sim`).
    #[arg(long, default_value_t = 1, requires = "sim")]
    pub sim_dp: usize,
    /// `/v1/completions` or `/v1/chat/completions`.
    #[arg(long, default_value = "/v1/completions")]
    pub endpoint: String,
    /// Model name to request (default: the first id of `GET /v1/models`).
    #[arg(long)]
    pub model: Option<String>,
    /// A `tokenizer.json`, or a folder holding one (default: built-in approximation).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Environment variable holding the API key, sent as `Authorization: Bearer` (never
    /// stored); unset or empty: no key.
    #[arg(long, default_value = headers::DEFAULT_API_KEY_ENV, value_name = "NAME")]
    pub api_key_env: String,
    /// A header every request carries, `'Name: value'` (repeatable): gateway routing,
    /// tenants. Values are never written to results; for a secret use `--header-env`.
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = headers::parse_flag)]
    pub headers: Vec<(String, String)>,
    /// A header whose value is read from an environment variable, `'Name: VAR'` (repeatable).
    #[arg(long = "header-env", value_name = "NAME: VAR", value_parser = headers::parse_flag)]
    pub header_env: Vec<(String, String)>,
    /// Probe `GET /health` this often during the run (seconds; 0: never): 3 failed probes
    /// in a row with no request completing meanwhile mark the server lost (hung).
    #[arg(long, value_name = "SECS", value_parser = cli_number(fields::SECS0), default_value_t = 5.0)]
    pub health_probe: f64,
    /// https: a PEM file of CA certificates to trust besides the system's.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// https: do not check the server's certificate (a test server). Warned about.
    #[arg(long, conflicts_with = "ca_cert")]
    pub insecure: bool,

    // --- workload
    #[arg(long, value_enum, default_value = "random")]
    pub dataset_name: DatasetName,
    /// Local dataset file (ShareGPT JSON, or JSON lines `{"prompt": …, "output_len": …}`).
    #[arg(long)]
    pub dataset_path: Option<PathBuf>,
    #[arg(long, default_value_t = 1024)]
    pub random_input_len: u32,
    #[arg(long, default_value_t = 128)]
    pub random_output_len: u32,
    /// Lengths drawn uniformly in [len·(1−r), len·(1+r)].
    #[arg(long, value_parser = cli_number(fields::RATIO), default_value_t = 0.0)]
    pub random_range_ratio: f64,
    /// Tokens of one shared prefix before every random prompt.
    #[arg(long, default_value_t = 0)]
    pub random_prefix_len: u32,
    /// `prefix_repetition`: tokens of the prefix the prompts of a group share.
    #[arg(long, default_value_t = 256)]
    pub prefix_repetition_prefix_len: u32,
    /// `prefix_repetition`: tokens of each prompt's own after its group's prefix.
    #[arg(long, default_value_t = 256)]
    pub prefix_repetition_suffix_len: u32,
    /// `prefix_repetition`: groups of prompts, each with its own prefix.
    #[arg(long, default_value_t = 10)]
    pub prefix_repetition_num_prefixes: u32,
    /// `prefix_repetition`: output tokens per request.
    #[arg(long, default_value_t = 128)]
    pub prefix_repetition_output_len: u32,
    /// Fixed output length for ShareGPT prompts (default: the dataset's own completion length).
    #[arg(long)]
    pub sharegpt_output_len: Option<u32>,
    /// Requests to send (and distinct prompts to build).
    #[arg(long, default_value_t = 1000)]
    pub num_prompts: usize,
    /// Send `ignore_eos` so every request generates exactly its `max_tokens` (default: on for
    /// random and prefix_repetition data, off for datasets).
    #[arg(long, overrides_with = "no_ignore_eos")]
    pub ignore_eos: bool,
    /// Do not send `ignore_eos`, even for random data.
    #[arg(long)]
    pub no_ignore_eos: bool,
    #[arg(long, value_parser = cli_number(fields::NONNEG))]
    pub temperature: Option<f64>,
    /// Ask the server for `stream_options.continuous_usage_stats` (vLLM, SGLang), so the
    /// tokens each content event carries are recorded (`content_event_tokens`, the `tokens`
    /// column of events.parquet). Off by default: it adds work per token on the server.
    #[arg(long)]
    pub continuous_usage_stats: bool,
    /// JSON object merged into every request body, e.g. '{"top_p": 0.9}'.
    #[arg(long, value_name = "JSON")]
    pub extra_body: Option<String>,

    // --- trace replay (`--dataset-name trace`)
    /// Time scaling of the trace: 2 replays it twice as fast, 0.5 at half speed.
    #[arg(long, value_parser = cli_number(fields::POS), default_value_t = 1.0, value_name = "X")]
    pub trace_speed: f64,
    /// The window's start, in trace seconds; it is the run's 0 (a request at S + x is sent at x / speed).
    #[arg(long, value_parser = cli_number(fields::SECS0), default_value_t = 0.0, value_name = "SECS")]
    pub trace_start: f64,
    /// The window's end (exclusive), in trace seconds (default: the whole trace).
    #[arg(long, value_parser = cli_number(fields::SECS), value_name = "SECS")]
    pub trace_end: Option<f64>,
    /// Tokens one `hash_ids` entry stands for (Mooncake's traces: 512).
    #[arg(long, default_value_t = crate::workload::trace::DEFAULT_BLOCK_SIZE)]
    pub trace_block_size: u32,
    /// multi_turn: requests per conversation (each new question `--random-input-len`
    /// tokens, each answer `--random-output-len`).
    #[arg(long, default_value_t = 4, value_name = "K")]
    pub multi_turn_turns: u32,
    /// multi_turn: pause between an answer's end and the conversation's next question.
    #[arg(long, value_name = "SECS", value_parser = cli_number(fields::SECS0), default_value_t = 0.0)]
    pub multi_turn_think_time: f64,

    // --- ramp-up (vLLM's flags): a one-run saturation probe
    /// Move the rate from `--ramp-up-start-rps` to `--ramp-up-end-rps` by request index
    /// (by time with `--duration`); `--burstiness` still applies. Without `--request-rate`.
    #[arg(long, value_enum, requires_all = ["ramp_up_start_rps", "ramp_up_end_rps"])]
    pub ramp_up_strategy: Option<RampUp>,
    /// The first request's rate (req/s).
    #[arg(long, value_parser = cli_number(fields::POS), requires = "ramp_up_strategy")]
    pub ramp_up_start_rps: Option<f64>,
    /// The last request's rate (req/s).
    #[arg(long, value_parser = cli_number(fields::POS), requires = "ramp_up_strategy")]
    pub ramp_up_end_rps: Option<f64>,

    // --- load
    /// Requests per second, or `inf` to send all at once.
    #[arg(long, default_value = "inf")]
    pub request_rate: String,
    /// Gamma shape of inter-arrival times: 1 = Poisson, < 1 burstier, > 1 more regular.
    #[arg(long, value_parser = cli_number(fields::POS), default_value_t = 1.0)]
    pub burstiness: f64,
    /// Arrival process.
    #[arg(long, value_enum, default_value = "gamma")]
    pub arrival: ArrivalKind,
    /// At most this many requests in flight; later arrivals wait (and their wait is measured).
    #[arg(long)]
    pub max_concurrency: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Send for this many seconds instead of `--num-prompts` requests (prompts are cycled).
    #[arg(long, value_parser = cli_number(fields::SECS), value_name = "SECS")]
    pub duration: Option<f64>,
    /// Seconds at the start excluded from the statistics (kept in the raw records).
    #[arg(long, value_parser = cli_number(fields::SECS0), default_value_t = 0.0, value_name = "SECS")]
    pub warmup: f64,
    /// Seconds at the end excluded from the statistics (kept in the raw records).
    #[arg(long, value_parser = cli_number(fields::SECS0), default_value_t = 0.0, value_name = "SECS")]
    pub cooldown: f64,
    /// Whole-request timeout.
    #[arg(long, value_parser = cli_number(fields::SECS), default_value_t = 600.0, value_name = "SECS")]
    pub request_timeout: f64,
    #[arg(long, value_parser = cli_number(fields::SECS), default_value_t = 10.0, value_name = "SECS")]
    pub connect_timeout: f64,
    /// With `--duration`: how long the window's requests may take to finish after the last
    /// send; what is still running then is cancelled, and its latency counted as at least
    /// its time to the cut (right-censored).
    #[arg(long, value_parser = cli_number(fields::SECS0), default_value_t = crate::runner::load_point::DEFAULT_DRAIN_S, value_name = "SECS")]
    pub drain_timeout: f64,
    /// Worker threads of the client runtime.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,

    // --- results
    /// SLOs for goodput, e.g. `--goodput ttft:500 tpot:50`.
    #[arg(long, num_args = 1.., value_name = "METRIC:MS")]
    pub goodput: Vec<String>,
    /// Metrics whose percentiles are reported (ttft, tpot, itl, e2el).
    #[arg(long, default_value = "ttft,tpot,itl,e2el")]
    pub percentile_metrics: String,
    /// Percentiles to report, comma-separated.
    #[arg(long, default_value = "50,90,99")]
    pub metric_percentiles: String,
    /// Also write the result JSON the way `vllm bench serve --save-result` does.
    #[arg(long)]
    pub save_result: bool,
    /// With `--save-result`: include the per-request lists (vLLM's `--save-detailed`).
    #[arg(long)]
    pub save_detailed: bool,
    #[arg(long, default_value = ".")]
    pub result_dir: PathBuf,
    #[arg(long)]
    pub result_filename: Option<String>,
    #[arg(long)]
    pub label: Option<String>,
    /// Folder for the raw records and tables (default `results/bench/<date>-<rate>`).
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// No progress line.
    #[arg(long, alias = "disable-tqdm")]
    pub quiet: bool,

    // --- search (`bench_search`)
    /// Search for the limit instead of one rate: `saturation` (where the server stops
    /// keeping up, and its capacity) or `slo` (the highest rate meeting `--goodput`). Each
    /// probe is a cell folder under `OUTPUT_DIR/search/`.
    #[arg(long, value_enum, conflicts_with = "request_rate")]
    pub search: Option<SearchGoal>,
    /// The first rate probed (req/s); the search doubles or halves it until it brackets
    /// the limit, then bisects.
    #[arg(long, value_parser = cli_number(fields::POS), default_value_t = 1.0, value_name = "RATE")]
    pub search_start: f64,
    /// Never probe below this rate.
    #[arg(long, value_parser = cli_number(fields::POS), default_value_t = 0.1, value_name = "RATE")]
    pub search_min: f64,
    /// Never probe above this rate.
    #[arg(long, value_parser = cli_number(fields::POS), default_value_t = 1000.0, value_name = "RATE")]
    pub search_max: f64,
    /// Stop when the bracket's relative width (high / low − 1) is at most this.
    #[arg(long, value_parser = cli_number(fields::RATIO), default_value_t = 0.05)]
    pub search_tolerance: f64,
    /// Stop after this many probes.
    #[arg(long, default_value_t = 12, value_name = "N")]
    pub search_max_cells: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SearchGoal {
    Saturation,
    Slo,
}

impl BenchArgs {
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
