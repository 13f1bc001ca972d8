//! Bringing a server up for a group of cells and always tearing it down: the built-in
//! simulator, an external server, a command (its whole process group), or docker compose.
//! Each waits for `GET /health` and then `GET /v1/models` before any load is sent.

mod command;
mod compose;
mod health;

use crate::client::BaseUrl;
use crate::experiment::parse::Params;
use crate::experiment::plan::ParamsExt;
use anyhow::{Context, Result, bail};
use loadtest_base::Tokenizer;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use vllm_sim::background::SimHandle;
use vllm_sim::faults::Faults;
use vllm_sim::{Profile, SimConfig};

pub use health::wait_healthy;

/// Kill every server process group started by the `command` launcher and not yet torn
/// down (an abort, when there is no time for a graceful stop); how many there were.
pub fn kill_all_servers() -> usize {
    command::kill_all()
}

enum Kind {
    Sim(SimHandle),
    External,
    Command(command::ProcessGroup),
    Compose(compose::Compose),
}

/// A server that is up. Dropping it tears it down (also on error and Ctrl-C paths).
pub struct Running {
    pub urls: Vec<BaseUrl>,
    /// The server's log file, when the launcher keeps one.
    pub log: Option<PathBuf>,
    pub description: String,
    kind: Kind,
}

impl Running {
    /// The server's process has exited (its status), for launchers that own one.
    pub fn exited(&mut self) -> Option<String> {
        match &mut self.kind {
            Kind::Command(g) => g.exited(),
            _ => None,
        }
    }

    /// Tear down now (what dropping does), reporting what happened.
    pub fn stop(mut self) -> Option<String> {
        self.teardown()
    }

    fn teardown(&mut self) -> Option<String> {
        match std::mem::replace(&mut self.kind, Kind::External) {
            Kind::Sim(h) => {
                drop(h);
                None
            }
            Kind::External => None,
            Kind::Command(g) => g.stop(),
            Kind::Compose(c) => c.down(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(msg) = self.teardown() {
            eprintln!("{msg}");
        }
    }
}

/// Start the server for a group's parameters. `dir` receives `server.log`.
pub async fn start(params: &Params, dir: &Path) -> Result<Running> {
    let timeout = Duration::from_secs_f64(params.f64("start_timeout_s").unwrap_or(900.0));
    match params.str("launcher").unwrap_or("sim") {
        "sim" => {
            let mut profile = Profile::resolve(params.str("profile").unwrap_or("default"))?;
            if let Some(v) = params.u64("max_num_seqs") {
                profile.max_num_seqs = v as u32;
            }
            if let Some(v) = params.u64("max_num_batched_tokens") {
                profile.max_num_batched_tokens = v as u32;
            }
            profile.validate()?;
            let tok = Tokenizer::load(params.str("tokenizer").map(Path::new))?;
            let dp = params.u64("dp").unwrap_or(1) as usize;
            let h = vllm_sim::background::start_with(SimConfig {
                profile,
                dp,
                seed: params.u64("seed").unwrap_or(0),
                model: params.str("model").unwrap_or("sim-llama").to_string(),
                api_servers: params.u64("api_server_count").map(|k| k as usize),
                faults: Faults::none(),
                tokenizer: Arc::new(tok),
            })?;
            let url = BaseUrl::parse(&format!("http://{}", h.addr()))?;
            wait_healthy(std::slice::from_ref(&url), timeout, None).await?;
            Ok(Running {
                urls: vec![url],
                log: None,
                description: format!(
                    "built-in simulator, {dp} engine(s), profile `{}`",
                    params.str("profile").unwrap_or("default")
                ),
                kind: Kind::Sim(h),
            })
        }
        "external" => {
            let urls = params
                .get("urls")
                .and_then(|v| v.as_sequence())
                .context("`server.urls` is required for `launcher: external`")?
                .iter()
                .filter_map(|u| u.as_str())
                .map(BaseUrl::parse)
                .collect::<Result<Vec<_>>>()?;
            wait_healthy(&urls, timeout, None).await?;
            Ok(Running {
                description: format!(
                    "external: {}",
                    urls.iter()
                        .map(|u| u.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                urls,
                log: None,
                kind: Kind::External,
            })
        }
        "command" => {
            let template = params
                .str("command")
                .context("`server.command` is required")?;
            let port = match params.u64("port") {
                Some(p) => p as u16,
                None => free_port()?,
            };
            let line = command::render(template, params, port)?;
            let log = dir.join("server.log");
            let mut group = command::ProcessGroup::spawn(&line, &env(params)?, &log)?;
            let url = BaseUrl::parse(&format!("http://127.0.0.1:{port}"))?;
            if let Err(e) =
                wait_healthy(std::slice::from_ref(&url), timeout, Some(&mut group)).await
            {
                let tail = command::tail(&log, 30);
                let stopped = group.stop().unwrap_or_default();
                bail!(
                    "{e:#}\n`{line}` did not become healthy; last lines of `{}`:\n{tail}{stopped}",
                    log.display()
                );
            }
            Ok(Running {
                urls: vec![url],
                log: Some(log),
                description: format!("command: {line}"),
                kind: Kind::Command(group),
            })
        }
        "compose" => {
            let file = params
                .str("compose_file")
                .context("`server.compose_file` is required")?;
            let port = params.u64("port").unwrap_or(8000) as u16;
            let log = dir.join("server.log");
            let mut vars = env(params)?;
            for (k, v) in params {
                if crate::experiment::fields::find(k).is_some_and(|(s, _)| s.name == "server")
                    && let Some(s) = scalar(v)
                {
                    vars.push((k.to_uppercase(), s));
                }
            }
            vars.push(("PORT".into(), port.to_string()));
            let c = compose::Compose::up(Path::new(file), vars, &log)?;
            let url = BaseUrl::parse(&format!("http://127.0.0.1:{port}"))?;
            if let Err(e) = wait_healthy(std::slice::from_ref(&url), timeout, None).await {
                let tail = command::tail(&log, 30);
                let down = c.down().unwrap_or_default();
                bail!(
                    "{e:#}\ndocker compose services did not become healthy; last lines of `{}`:\n{tail}{down}",
                    log.display()
                );
            }
            Ok(Running {
                urls: vec![url],
                log: Some(log),
                description: format!("docker compose -f {file}"),
                kind: Kind::Compose(c),
            })
        }
        other => bail!("unknown launcher `{other}`"),
    }
}

fn scalar(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `server.env` as (name, value) pairs. A value redacted from a saved experiment (a
/// resumed run) is taken from this process's environment variable of the same name.
fn env(params: &Params) -> Result<Vec<(String, String)>> {
    let Some(m) = params.get("env").and_then(|v| v.as_mapping()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (k, v) in m {
        let (Some(name), Some(value)) = (k.as_str(), scalar(v)) else {
            continue;
        };
        let value = if value == crate::secrets::REDACTED {
            std::env::var(name).with_context(|| {
                format!(
                    "`server.env.{name}` was not saved with the results (secrets never are)\nhint: export {name} before resuming"
                )
            })?
        } else {
            value
        };
        out.push((name.to_string(), value));
    }
    Ok(out)
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(l.local_addr()?.port())
}
