//! Flags of `vllm-loadtest sim`, and the command itself.

use anyhow::{Context, Result};
use clap::Args;
use loadtest_base::Tokenizer;
use std::path::PathBuf;
use std::sync::Arc;
use vllm_sim::faults::{Fault, Faults};
use vllm_sim::{Profile, SimConfig};

#[derive(Debug, Args)]
pub struct SimArgs {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Data-parallel engines behind the one endpoint.
    #[arg(long, default_value_t = 1)]
    pub dp: usize,
    /// `default`, `llama-3.1-8b-h100`, `llama-3.1-8b-a100`, `zero`, or a YAML file.
    #[arg(long, default_value = "default")]
    pub profile: String,
    /// Model id served (and required in requests).
    #[arg(long, default_value = "sim-llama")]
    pub served_model_name: String,
    /// `tokenizer.json` (or a folder holding one) to count prompt tokens (default: built-in).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Model the API server's CPU: this many FIFO servers in front of the engines.
    #[arg(long)]
    pub api_server_count: Option<usize>,
    /// Serve https with this certificate chain (PEM), as vLLM's `--ssl-certfile`.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM), as vLLM's `--ssl-keyfile`.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Share of requests that fail on purpose.
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,
    /// Kinds of failure, comma-separated: refuse,http500,http429,http503,stall,drop-midstream,malformed.
    #[arg(long, value_delimiter = ',')]
    pub faults: Vec<String>,
    // --- profile overrides
    #[arg(long)]
    pub max_num_seqs: Option<u32>,
    #[arg(long)]
    pub max_num_batched_tokens: Option<u32>,
    #[arg(long)]
    pub num_gpu_blocks: Option<u32>,
    #[arg(long)]
    pub block_size: Option<u32>,
    #[arg(long)]
    pub max_model_len: Option<u32>,
    /// Fixed step cost, milliseconds.
    #[arg(long)]
    pub c0_ms: Option<f64>,
    /// Per prefill token, microseconds.
    #[arg(long)]
    pub c_pf_us: Option<f64>,
    /// Per decoding sequence, microseconds.
    #[arg(long)]
    pub c_dec_us: Option<f64>,
    /// Per context token of a decoding sequence, nanoseconds.
    #[arg(long)]
    pub c_kv_ns: Option<f64>,
    #[arg(long)]
    pub front_end_latency_ms: Option<f64>,
    /// Relative standard deviation of step times.
    #[arg(long)]
    pub jitter: Option<f64>,
    /// Reuse cached KV blocks of shared prompt prefixes (on by default, as in vLLM V1;
    /// `vllm:prefix_cache_*` count the tokens looked up and found).
    #[arg(long, overrides_with = "no_enable_prefix_caching")]
    pub enable_prefix_caching: bool,
    /// Compute every prompt in full (vLLM's `--no-enable-prefix-caching`).
    #[arg(long, overrides_with = "enable_prefix_caching")]
    pub no_enable_prefix_caching: bool,
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
