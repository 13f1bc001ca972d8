//! Flags of `vllm-loadtest sim`, and the command itself.

use anyhow::{Context, Result};
use clap::Args;
use loadtest_base::Tokenizer;
use std::path::PathBuf;
use std::sync::Arc;
use vllm_sim::faults::{Fault, Faults};
use vllm_sim::{Profile, SimConfig};

// Headings of `sim --help`: the server, as `vllm serve` is started; the engine's knobs,
// named as vLLM's engine arguments and defaulting to the profile's; the simulator's own.
const SERVE: &str = "Server options";
const ENGINE: &str = "Engine options (default: the profile's)";
const COST: &str = "Step cost model (default: the profile's)";
const FAULTS: &str = "Fault injection";

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR", help_heading = SERVE)]
    pub host: String,
    /// Port to listen on (0: a free one, printed at start).
    #[arg(long, default_value_t = 8000, value_name = "PORT", help_heading = SERVE)]
    pub port: u16,
    /// Data-parallel engines behind the one endpoint, routed as vLLM's API server routes.
    #[arg(long, default_value_t = 1, value_name = "N", help_heading = SERVE)]
    pub dp: usize,
    /// Simulated GPU and model: `default`, `llama-3.1-8b-h100`, `llama-3.1-8b-a100`, `zero` (no compute cost), or a YAML file.
    #[arg(long, default_value = "default", value_name = "NAME|FILE", help_heading = SERVE)]
    pub profile: String,
    /// Model id served, and required in requests.
    #[arg(long, default_value = vllm_sim::DEFAULT_MODEL, value_name = "NAME", help_heading = SERVE)]
    pub served_model_name: String,
    /// `tokenizer.json` (or a folder holding one) to count prompt tokens (default: the built-in cl100k).
    #[arg(long, value_name = "PATH", help_heading = SERVE)]
    pub tokenizer: Option<PathBuf>,
    /// Seed of the simulator's draws (step-time jitter, output lengths without `ignore_eos`, faults).
    #[arg(long, default_value_t = 0, value_name = "N", help_heading = SERVE)]
    pub seed: u64,
    /// Model the API server's CPU: N FIFO servers in front of the engines (default: not modelled).
    #[arg(long, value_name = "N", help_heading = SERVE)]
    pub api_server_count: Option<usize>,
    /// Serve https with this certificate chain (PEM), as vLLM's `--ssl-certfile` (default: plain http).
    #[arg(long, requires = "tls_key", value_name = "FILE", help_heading = SERVE)]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM), as vLLM's `--ssl-keyfile` (with `--tls-cert`).
    #[arg(long, requires = "tls_cert", value_name = "FILE", help_heading = SERVE)]
    pub tls_key: Option<PathBuf>,

    /// Sequences an engine runs at once (vLLM's `--max-num-seqs`).
    #[arg(long, value_name = "N", help_heading = ENGINE)]
    pub max_num_seqs: Option<u32>,
    /// Tokens an engine step may hold, prefill chunks and decodes (vLLM's `--max-num-batched-tokens`).
    #[arg(long, value_name = "TOKENS", help_heading = ENGINE)]
    pub max_num_batched_tokens: Option<u32>,
    /// KV-cache blocks per engine (vLLM's `--num-gpu-blocks-override`).
    #[arg(long, value_name = "N", help_heading = ENGINE)]
    pub num_gpu_blocks: Option<u32>,
    /// Tokens per KV-cache block (vLLM's `--block-size`).
    #[arg(long, value_name = "TOKENS", help_heading = ENGINE)]
    pub block_size: Option<u32>,
    /// Longest prompt plus output a request may have, tokens (vLLM's `--max-model-len`).
    #[arg(long, value_name = "TOKENS", help_heading = ENGINE)]
    pub max_model_len: Option<u32>,
    /// Reuse cached KV blocks of shared prompt prefixes, as vLLM V1 does (on unless the profile turns it off).
    #[arg(long, overrides_with = "no_enable_prefix_caching", help_heading = ENGINE)]
    pub enable_prefix_caching: bool,
    /// Compute every prompt in full (vLLM's `--no-enable-prefix-caching`).
    #[arg(long, overrides_with = "enable_prefix_caching", help_heading = ENGINE)]
    pub no_enable_prefix_caching: bool,

    /// Fixed cost of an engine step, milliseconds.
    #[arg(long, value_name = "MS", help_heading = COST)]
    pub c0_ms: Option<f64>,
    /// Cost per prefill token, microseconds.
    #[arg(long, value_name = "US", help_heading = COST)]
    pub c_pf_us: Option<f64>,
    /// Cost per decoding sequence, microseconds.
    #[arg(long, value_name = "US", help_heading = COST)]
    pub c_dec_us: Option<f64>,
    /// Cost per context token of a decoding sequence, nanoseconds.
    #[arg(long, value_name = "NS", help_heading = COST)]
    pub c_kv_ns: Option<f64>,
    /// Cost per attention pair of a prefill (a prompt token and a token before it), nanoseconds.
    #[arg(long, value_name = "NS", help_heading = COST)]
    pub c_pf_attn_ns: Option<f64>,
    /// Delay between a request's arrival and its entry into an engine (API server, tokenisation), milliseconds.
    #[arg(long, value_name = "MS", help_heading = COST)]
    pub front_end_latency_ms: Option<f64>,
    /// Relative standard deviation of step times, a ratio (0: exact cost model).
    #[arg(long, value_name = "R", help_heading = COST)]
    pub jitter: Option<f64>,

    /// Share of requests that fail on purpose, a ratio in [0, 1].
    #[arg(long, default_value_t = 0.0, value_name = "R", help_heading = FAULTS)]
    pub fault_rate: f64,
    /// Kinds of failure, comma-separated: refuse, http500, http429, http503, stall, drop-midstream, malformed (default: none; needed with `--fault-rate`).
    #[arg(long, value_delimiter = ',', value_name = "LIST", help_heading = FAULTS)]
    pub faults: Vec<String>,
}

impl SimArgs {
    pub fn profile(&self) -> Result<Profile> {
        let mut p = Profile::resolve(&self.profile)?;
        macro_rules! set {
            ($field:ident, $val:expr) => {
                if let Some(v) = $val {
                    p.$field = v;
                }
            };
        }
        set!(max_num_seqs, self.max_num_seqs);
        set!(max_num_batched_tokens, self.max_num_batched_tokens);
        set!(num_gpu_blocks, self.num_gpu_blocks);
        set!(block_size, self.block_size);
        set!(max_model_len, self.max_model_len);
        set!(c0_s, self.c0_ms.map(|v| v * 1e-3));
        set!(c_pf_s, self.c_pf_us.map(|v| v * 1e-6));
        set!(c_dec_s, self.c_dec_us.map(|v| v * 1e-6));
        set!(c_kv_s, self.c_kv_ns.map(|v| v * 1e-9));
        set!(c_pf_attn_s, self.c_pf_attn_ns.map(|v| v * 1e-9));
        set!(
            front_end_latency_s,
            self.front_end_latency_ms.map(|v| v * 1e-3)
        );
        set!(jitter, self.jitter);
        if self.enable_prefix_caching {
            p.enable_prefix_caching = true;
        }
        if self.no_enable_prefix_caching {
            p.enable_prefix_caching = false;
        }
        p.validate()
            .with_context(|| format!("simulator profile `{}`", self.profile))?;
        Ok(p)
    }

    pub fn config(&self) -> Result<SimConfig> {
        if self.dp == 0 {
            anyhow::bail!("`--dp 0`: need at least one engine");
        }
        let kinds = self
            .faults
            .iter()
            .map(|f| Fault::parse(f))
            .collect::<Result<Vec<_>>>()?;
        let tok = Tokenizer::load(self.tokenizer.as_deref())?;
        Ok(SimConfig {
            profile: self.profile()?,
            dp: self.dp,
            seed: self.seed,
            model: self.served_model_name.clone(),
            api_servers: self.api_server_count,
            faults: Faults::new(self.fault_rate, kinds, self.seed)?,
            tokenizer: Arc::new(tok),
        })
    }
}

/// `vllm-loadtest sim`: serve until Ctrl-C.
pub fn run(a: SimArgs) -> Result<()> {
    let cfg = a.config()?;
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(vllm_sim::tls::server_config(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((a.host.as_str(), a.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}\nhint: is the port taken? try `--port 0` for a free one", a.host, a.port))?;
        let addr = listener.local_addr()?;
        let p = &cfg.profile;
        eprintln!(
            "simulated vLLM `{}` listening on {scheme}://{addr} ({} engine(s), profile `{}`: capacity {:.1} req/s per engine at 512 in / 256 out); Ctrl-C to stop",
            cfg.model,
            cfg.dp,
            a.profile,
            p.capacity(512, 256)
        );
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            let _ = tx.send(true);
        });
        vllm_sim::serve_with(listener, cfg, tls, rx).await
    })
}
