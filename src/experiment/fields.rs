//! Every key an experiment file may hold: its section, type, default, whether it can be a
//! matrix dimension, and what it means. One table drives validation, "did you mean"
//! suggestions, defaults and the generated JSON Schema, so they cannot disagree.

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Str,
    /// An integer ≥ the bound.
    Int(i64),
    /// A finite number ≥ `min` (`strict`: >) and ≤ `max`.
    Num {
        min: f64,
        strict: bool,
        max: f64,
    },
    Bool,
    Enum(&'static [&'static str]),
    /// A positive number of requests per second, or `inf`.
    Rate,
    /// A positive bound (ms), or `inf` for none.
    Bound,
    StrList,
    /// A mapping of names to strings (environment variables).
    StrMap,
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    /// YAML text of the default, if any.
    pub default: Option<&'static str>,
    /// May appear under `matrix:` as a list of values.
    pub matrix: bool,
    pub doc: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub struct Section {
    pub name: &'static str,
    pub doc: &'static str,
    pub fields: &'static [Field],
}

const fn f(
    name: &'static str,
    kind: Kind,
    default: Option<&'static str>,
    matrix: bool,
    doc: &'static str,
) -> Field {
    Field {
        name,
        kind,
        default,
        matrix,
        doc,
    }
}

/// The largest plain number a field takes: past it a value is a typo or a probe, and
/// would overflow a timer or an allocation before it meant anything.
pub const MAX_NUMBER: f64 = 1e9;
/// The longest duration a field takes, in seconds (about 11.6 days).
pub const MAX_SECONDS: f64 = 1e6;
/// The highest request rate (req/s): two hundred times what one client core sends.
pub const MAX_RATE: f64 = 1e6;

pub const POS: Kind = Kind::Num {
    min: 0.0,
    strict: true,
    max: MAX_NUMBER,
};
pub const NONNEG: Kind = Kind::Num {
    min: 0.0,
    strict: false,
    max: MAX_NUMBER,
};
/// A share from 0 to 1.
pub const RATIO: Kind = Kind::Num {
    min: 0.0,
    strict: false,
    max: 1.0,
};
/// A positive duration in seconds, and one that may be zero.
pub const SECS: Kind = Kind::Num {
    min: 0.0,
    strict: true,
    max: MAX_SECONDS,
};
pub const SECS0: Kind = Kind::Num {
    min: 0.0,
    strict: false,
    max: MAX_SECONDS,
};

/// Whether `x` is a value of the number kind `kind` (the one rule set for the experiment
/// file and the command line); `Err` says what was expected.
pub fn check_number(kind: Kind, x: f64) -> Result<(), String> {
    let (min, strict, max) = match kind {
        Kind::Num { min, strict, max } => (min, strict, max),
        Kind::Rate => (0.0, true, MAX_RATE),
        Kind::Int(min) => (min as f64, false, MAX_NUMBER),
        _ => return Err("expected a number".into()),
    };
    // 1e300 as written, not as 301 digits
    let show = |v: f64| {
        if v.is_finite() && v.abs() >= 1e6 {
            format!("{v:e}")
        } else {
            format!("{v}")
        }
    };
    if x.is_nan() {
        return Err("must be a number, found NaN".into());
    }
    if x < min || (strict && x == min) {
        return Err(format!(
            "must be {} {min}, found {}",
            if strict { "greater than" } else { "at least" },
            show(x)
        ));
    }
    if x > max || x.is_infinite() {
        return Err(format!("must be at most {}, found {}", show(max), show(x)));
    }
    Ok(())
}

/// A command-line value parser for the number kind `kind` (clap's `value_parser`).
pub fn cli_number(kind: Kind) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync {
    move |s: &str| {
        let x: f64 = s
            .trim()
            .parse()
            .map_err(|_| format!("expected a number, found `{s}`"))?;
        check_number(kind, x).map(|()| x)
    }
}

pub const LAUNCHERS: &[&str] = &["sim", "external", "command", "compose"];

/// `server.clock`: how the built-in simulator's cells run.
pub const CLOCKS: &[&str] = &["real", "virtual"];

/// `server.cache_salt`: whether each cell's requests carry a prefix-cache salt of their own.
pub const CACHE_SALTS: &[&str] = &["auto", "cell", "none"];

pub const DATASETS: &[&str] = &[
    "random",
    "prefix_repetition",
    "sharegpt",
    "jsonl",
    "trace",
    "multi_turn",
];

pub const SECTIONS: &[Section] = &[
    Section {
        name: "server",
        doc: "The server under test and how to bring it up. Without this section: the built-in simulator.",
        fields: &[
            f(
                "launcher",
                Kind::Enum(LAUNCHERS),
                Some("sim"),
                false,
                "sim (built-in, in-process), external (already running), command (a command template), compose (docker compose)",
            ),
            f(
                "profile",
                Kind::Str,
                Some("default"),
                true,
                "simulator profile: default, llama-3.1-8b-h100, llama-3.1-8b-a100, zero, or a YAML file",
            ),
            f(
                "clock",
                Kind::Enum(CLOCKS),
                Some("real"),
                false,
                "sim: `real` serves requests over HTTP in real time; `virtual` runs the cells in the simulator's virtual time (seconds for hours of traffic, no HTTP), every figure marked predicted",
            ),
            f(
                "urls",
                Kind::StrList,
                None,
                false,
                "external: base URLs; several are used round-robin (DP replicas without a router)",
            ),
            f(
                "command",
                Kind::Str,
                None,
                false,
                "command: template run by `sh -c`, e.g. `vllm serve {model} --port {port} --data-parallel-size {dp}`; placeholders are any server parameter, {port} and {model}",
            ),
            f(
                "compose_file",
                Kind::Str,
                None,
                false,
                "compose: the docker-compose.yml; matrix values are passed as upper-case environment variables",
            ),
            f(
                "port",
                Kind::Int(0),
                None,
                false,
                "command/compose: port the server listens on (command default: a free port)",
            ),
            f(
                "start_timeout_s",
                SECS,
                Some("900"),
                false,
                "seconds to wait for /health and /v1/models",
            ),
            f(
                "health_probe_s",
                SECS0,
                Some("5"),
                false,
                "during a cell, probe GET /health this often (0: never); 3 failed probes in a row with no request completing meanwhile mark the server lost (a hung server)",
            ),
            f(
                "model",
                Kind::Str,
                None,
                false,
                "model name to request (default: the first id of GET /v1/models)",
            ),
            f(
                "tokenizer",
                Kind::Str,
                None,
                false,
                "a tokenizer.json or a folder holding one (default: built-in approximation)",
            ),
            f(
                "reset_prefix_cache",
                Kind::Bool,
                Some("false"),
                false,
                "POST /reset_prefix_cache before each cell",
            ),
            f(
                "cache_salt",
                Kind::Enum(CACHE_SALTS),
                Some("auto"),
                false,
                "`cell`: every request carries its cell's own `cache_salt` (vLLM's prefix-cache salt), so no cell is served from blocks an earlier cell (or run) left: a matrix re-sends the same prompts; `none`: no salt (a server that refuses the field); `auto`: `cell` when the server answers `GET /version` with a version as vLLM does, else `none` (a server or proxy that answers so but refuses unknown fields fails every request with 400: set `none`)",
            ),
            f(
                "env",
                Kind::StrMap,
                None,
                false,
                "extra environment variables for command/compose",
            ),
            f(
                "headers",
                Kind::StrMap,
                None,
                false,
                "HTTP headers every request carries (gateway routing, tenants); values are never written to results",
            ),
            f(
                "header_env",
                Kind::StrMap,
                None,
                false,
                "headers whose value is read from an environment variable: `{X-Api-Token: MY_TOKEN_VAR}` (secrets)",
            ),
            f(
                "api_key_env",
                Kind::Str,
                Some("OPENAI_API_KEY"),
                false,
                "environment variable holding the API key, sent as `Authorization: Bearer`; unset or empty: none",
            ),
            f(
                "ca_cert",
                Kind::Str,
                None,
                false,
                "https: a PEM file of CA certificates to trust besides the system's (a private CA, a self-signed server)",
            ),
            f(
                "https",
                Kind::Bool,
                Some("false"),
                false,
                "command/compose: the launched server serves https (vLLM's `--ssl-certfile`/`--ssl-keyfile`)",
            ),
            f(
                "insecure",
                Kind::Bool,
                Some("false"),
                false,
                "https: do not check the server's certificate (a test server); warned about loudly",
            ),
            f(
                "dp",
                Kind::Int(1),
                Some("1"),
                true,
                "data-parallel size (engines / GPUs)",
            ),
            f("tp", Kind::Int(1), Some("1"), true, "tensor-parallel size"),
            f(
                "max_num_seqs",
                Kind::Int(1),
                None,
                true,
                "the engine's batch size limit (the seed's \"batch size\")",
            ),
            f(
                "max_num_batched_tokens",
                Kind::Int(1),
                None,
                true,
                "the engine's token budget per step",
            ),
            f(
                "enable_prefix_caching",
                Kind::Bool,
                None,
                true,
                "sim: reuse cached KV blocks of shared prefixes (default on, as vLLM V1); command/compose: the {enable_prefix_caching} placeholder",
            ),
            f(
                "api_server_count",
                Kind::Int(1),
                None,
                true,
                "API server processes (the simulator models their CPU cost when set)",
            ),
        ],
    },
    Section {
        name: "workload",
        doc: "What each request asks for.",
        fields: &[
            f(
                "dataset",
                Kind::Enum(DATASETS),
                Some("random"),
                false,
                "random (exact token lengths), prefix_repetition (groups of prompts sharing a prefix), sharegpt or jsonl (local files), trace (a timestamped trace replayed on its own schedule), multi_turn (chat conversations, each turn carrying the history so far)",
            ),
            f(
                "dataset_path",
                Kind::Str,
                None,
                true,
                "the dataset file for sharegpt/jsonl/trace",
            ),
            f(
                "input_len",
                Kind::Int(1),
                Some("512"),
                true,
                "random: prompt tokens",
            ),
            f(
                "output_len",
                Kind::Int(1),
                Some("256"),
                true,
                "random, prefix_repetition (and jsonl lines without one): output tokens",
            ),
            f(
                "range_ratio",
                RATIO,
                Some("0"),
                true,
                "random: lengths drawn in [len·(1−r), len·(1+r)]",
            ),
            f(
                "prefix_len",
                Kind::Int(0),
                Some("0"),
                true,
                "random: tokens of a prefix shared by every prompt; prefix_repetition: tokens shared by the prompts of a group",
            ),
            f(
                "suffix_len",
                Kind::Int(1),
                Some("256"),
                true,
                "prefix_repetition: tokens of each prompt's own after its group's prefix",
            ),
            f(
                "num_prefixes",
                Kind::Int(1),
                Some("10"),
                true,
                "prefix_repetition: groups of prompts, each with its own prefix",
            ),
            f(
                "num_prompts",
                Kind::Int(1),
                Some("1000"),
                false,
                "distinct prompts built (cycled when a cell sends more)",
            ),
            f(
                "endpoint",
                Kind::Enum(&["/v1/completions", "/v1/chat/completions"]),
                Some("/v1/completions"),
                false,
                "API endpoint",
            ),
            f(
                "ignore_eos",
                Kind::Bool,
                None,
                false,
                "send ignore_eos (default: true for random data)",
            ),
            f(
                "temperature",
                NONNEG,
                None,
                false,
                "sampling temperature sent with each request",
            ),
            f(
                "continuous_usage_stats",
                Kind::Bool,
                Some("false"),
                false,
                "ask for usage in every chunk (vLLM, SGLang) to record the tokens of each content event; adds server work per token",
            ),
            f(
                "trace_block_size",
                Kind::Int(1),
                Some("512"),
                false,
                "trace: tokens one `hash_ids` entry stands for (Mooncake: 512)",
            ),
            f(
                "turns",
                Kind::Int(1),
                Some("4"),
                true,
                "multi_turn: requests per conversation; turn k sends the k earlier questions and answers and a new question of input_len tokens (num_prompts, request_rate and requests count conversations)",
            ),
            f(
                "think_time_s",
                SECS0,
                Some("0"),
                true,
                "multi_turn: pause between an answer's end and the conversation's next question",
            ),
        ],
    },
    Section {
        name: "load",
        doc: "How requests arrive and when a cell stops.",
        fields: &[
            f(
                "request_rate",
                Kind::Rate,
                None,
                true,
                "offered requests per second, or inf",
            ),
            f(
                "max_concurrency",
                Kind::Int(1),
                None,
                true,
                "cap on requests in flight (later arrivals wait, measured); with request_rate inf and duration_s, a closed loop of this many",
            ),
            f(
                "burstiness",
                POS,
                Some("1"),
                true,
                "gamma shape of inter-arrival times (1 = Poisson)",
            ),
            f(
                "arrival",
                Kind::Enum(&["poisson", "gamma", "constant"]),
                Some("poisson"),
                false,
                "arrival process",
            ),
            f(
                "duration_s",
                SECS,
                None,
                false,
                "seconds of sending per cell (else `requests`)",
            ),
            f(
                "requests",
                Kind::Int(1),
                None,
                false,
                "requests per cell (default: num_prompts) when no duration is given",
            ),
            f(
                "warmup_s",
                SECS0,
                Some("0"),
                false,
                "seconds excluded from the statistics at the start (needs duration_s)",
            ),
            f(
                "cooldown_s",
                SECS0,
                Some("0"),
                false,
                "seconds excluded from the statistics at the end (needs duration_s)",
            ),
            f(
                "seed",
                Kind::Int(0),
                Some("0"),
                false,
                "seed of arrivals and prompts",
            ),
            f(
                "request_timeout_s",
                SECS,
                Some("600"),
                false,
                "whole-request timeout",
            ),
            f(
                "drain_timeout_s",
                SECS0,
                // runner::load_point::DEFAULT_DRAIN_S (a test holds them equal)
                Some("300"),
                false,
                "after the last send, how long the window's requests may take to finish; what is still running then is cut and its latency right-censored",
            ),
            // a trace replay and a ramp: schedules of their own, no `request_rate`
            f(
                "trace_speed",
                POS,
                Some("1"),
                true,
                "trace: time scaling; 2 sends the trace twice as fast",
            ),
            f(
                "trace_start_s",
                SECS0,
                Some("0"),
                false,
                "trace: the window's start, in trace seconds; it is the run's 0",
            ),
            f(
                "trace_end_s",
                SECS,
                None,
                false,
                "trace: the window's end (exclusive), in trace seconds (default: the whole trace)",
            ),
            f(
                "ramp_up_strategy",
                Kind::Enum(&["linear", "exponential"]),
                None,
                false,
                "a rate ramp (vLLM's --ramp-up-strategy): the rate moves from ramp_up_start_rps to ramp_up_end_rps by request index (by time with duration_s)",
            ),
            f(
                "ramp_up_start_rps",
                POS,
                None,
                true,
                "ramp: the first request's rate (req/s)",
            ),
            f(
                "ramp_up_end_rps",
                POS,
                None,
                true,
                "ramp: the last request's rate (req/s)",
            ),
        ],
    },
    Section {
        name: "slo",
        doc: "Service-level objectives for goodput.",
        fields: &[
            f("ttft_ms", POS, None, false, "time to first token bound"),
            f("tpot_ms", POS, None, false, "time per output token bound"),
            f("e2el_ms", POS, None, false, "end-to-end latency bound"),
            f(
                "target",
                Kind::Num {
                    min: 0.0,
                    strict: true,
                    max: 1.0,
                },
                Some("0.9"),
                false,
                "SLO attainment that counts as meeting the SLOs",
            ),
        ],
    },
    Section {
        name: "client",
        doc: "Where the load comes from: this process (`local`), or shards on the nodes of a Ray cluster (`ray`: each cell split over `shards` machines from a common start, merged into one cell; deploy/ray/README.md).",
        fields: &[
            f(
                "engine",
                Kind::Enum(&["local", "ray"]),
                Some("local"),
                false,
                "local (this process sends every cell) or ray (each cell's shards on a Ray cluster's nodes, by deploy/ray/driver.py)",
            ),
            f(
                "shards",
                Kind::Int(1),
                Some("2"),
                false,
                "ray: shards per cell, one per node while there are nodes enough",
            ),
            f(
                "address",
                Kind::Str,
                Some("auto"),
                false,
                "ray: the cluster's address as `ray start --address` takes it (HOST:PORT), or auto",
            ),
            f(
                "python",
                Kind::Str,
                Some("python3"),
                false,
                "ray: the Python (with the pinned ray) that runs the driver",
            ),
            f(
                "start_delay_s",
                SECS,
                Some("10"),
                false,
                "ray: the shards' common start this long after they are placed (long enough to build their prompts)",
            ),
            f(
                "max_clock_error_ms",
                Kind::Bound,
                Some("100"),
                false,
                "ray: a shard refuses to run when its kernel calls its clock unsynchronised or estimates it off by more than this many ms; `inf` when every node is one machine (one clock)",
            ),
        ],
    },
    Section {
        name: "monitor",
        doc: "What is watched beside each cell.",
        fields: &[
            f(
                "metrics_interval_s",
                SECS,
                Some("1"),
                false,
                "scrape /metrics this often",
            ),
            f(
                "gpu",
                Kind::Bool,
                Some("true"),
                false,
                "sample nvidia-smi when it exists",
            ),
        ],
    },
    Section {
        name: SEARCH,
        doc: "Search for the limit instead of listing rates: each server configuration (and each combination of the other matrix values) is probed cell by cell, growing from start_rate until a rate fails, then bisecting. Its defaults apply only when the section is present.",
        fields: &[
            f(
                "goal",
                Kind::Enum(&["saturation", "slo"]),
                Some("saturation"),
                false,
                "saturation (where the server stops keeping up, and its capacity) or slo (the highest rate whose SLO attainment meets `slo.target`)",
            ),
            f(
                "start_rate",
                SEARCH_RATE,
                Some("1"),
                false,
                "the first rate probed (req/s)",
            ),
            f(
                "min_rate",
                SEARCH_RATE,
                Some("0.1"),
                false,
                "never probe below this (req/s)",
            ),
            f(
                "max_rate",
                SEARCH_RATE,
                Some("1000"),
                false,
                "never probe above this (req/s)",
            ),
            f(
                "growth",
                Kind::Num {
                    min: 1.0,
                    strict: true,
                    max: 100.0,
                },
                Some("2"),
                false,
                "factor by which the rate grows (or shrinks) until the limit is bracketed",
            ),
            f(
                "tolerance",
                Kind::Num {
                    min: 0.001,
                    strict: false,
                    max: 1.0,
                },
                Some("0.05"),
                false,
                "stop when the bracket's relative width (high / low − 1) is at most this",
            ),
            f(
                "max_cells",
                Kind::Int(1),
                Some("12"),
                false,
                "stop after this many cells per search",
            ),
        ],
    },
];

/// The `search:` section's name (its defaults apply only where it is present).
pub const SEARCH: &str = "search";
const SEARCH_RATE: Kind = Kind::Num {
    min: 0.0,
    strict: true,
    max: MAX_RATE,
};

/// Top-level scalar keys (the sections and `matrix` are the others).
pub const TOP: &[Field] = &[
    f(
        "name",
        Kind::Str,
        None,
        false,
        "the experiment's name (the results folder is named after it)",
    ),
    f(
        "description",
        Kind::Str,
        None,
        false,
        "free text, carried into the report",
    ),
    f(
        "repeats",
        Kind::Int(1),
        Some("1"),
        false,
        "how many times each cell runs",
    ),
];

pub fn section(name: &str) -> Option<&'static Section> {
    SECTIONS.iter().find(|s| s.name == name)
}

/// The field named `name` in any section, with its section.
pub fn find(name: &str) -> Option<(&'static Section, &'static Field)> {
    SECTIONS
        .iter()
        .find_map(|s| s.fields.iter().find(|f| f.name == name).map(|f| (s, f)))
}

/// The closest known name, if it is close enough to be a likely typo.
pub fn suggest<'a>(wrong: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let w = wrong.replace('-', "_").to_lowercase();
    candidates
        .map(|c| (strsim::levenshtein(&w, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min()
        .map(|(_, c)| c)
}
