//! A simulated vLLM running in-process on its own thread and runtime, on a free loopback
//! port: what `bench --sim` and the tests talk to. Dropping the handle stops it.

use super::faults::Faults;
use super::profile::Profile;
use super::server::{SimConfig, serve};
use anyhow::{Context, Result};
use loadtest_base::Tokenizer;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

pub struct SimHandle {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Start a simulator with `profile` (a name or YAML path) and `dp` engines.
pub fn start(profile: &str, dp: usize, tokenizer: Option<PathBuf>) -> Result<SimHandle> {
    let tok = Tokenizer::load(tokenizer.as_deref())?;
    start_with(SimConfig {
        profile: Profile::resolve(profile)?,
        dp,
        seed: 0,
        model: crate::DEFAULT_MODEL.into(),
        api_servers: None,
        faults: Faults::none(),
        tokenizer: Arc::new(tok),
    })
}

pub fn start_with(cfg: SimConfig) -> Result<SimHandle> {
    cfg.profile.validate()?;
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("bind a loopback port for the simulator")?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let (stop, rx) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("sim-server".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("simulator runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                if let Err(e) = serve(listener, cfg, rx).await {
                    eprintln!("simulator stopped: {e:#}");
                }
            });
        })
        .context("spawn simulator thread")?;
    Ok(SimHandle {
        addr,
        stop,
        thread: Some(thread),
    })
}
