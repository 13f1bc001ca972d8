//! Bringing a server up for a group of cells and always tearing it down: the built-in
//! simulator, an external server, a command (its whole process group), or docker compose.
//! Each waits for `GET /health` and then `GET /v1/models` before any load is sent.

mod command;
mod compose;
mod health;

use crate::client::{Access, BaseUrl};
use crate::experiment::{Launcher, cell_plan::ServerPlan};
use anyhow::{Context, Result, bail};
use loadtest_base::Tokenizer;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vllm_sim::background::SimHandle;
use vllm_sim::faults::Faults;
use vllm_sim::{Profile, SimConfig};

pub use command::{signal_group, track as track_group, untrack as untrack_group};
pub use health::wait_healthy;

/// Kill every server we started and did not tear down yet (an abort, when there is no
/// time for a graceful stop): `command` process groups, and `compose` projects (`down -t
/// 0`); how many there were.
pub fn kill_all_servers() -> usize {
    command::kill_all() + compose::down_all()
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

/// `https` when the launched server serves TLS (`server.https`), else `http`.
fn scheme(plan: &ServerPlan) -> &'static str {
    if plan.https { "https" } else { "http" }
}

/// Start the server a group's cells share (`seed`: the simulator's). A launched process
/// writes its output to `log`.
/// `access`: how its URLs are reached (TLS trust, headers), for the health probes.
pub async fn start(plan: &ServerPlan, seed: u64, log: &Path, access: &Access) -> Result<Running> {
    match &plan.launcher {
        Launcher::Sim { profile } => start_sim(plan, profile, seed, access).await,
        Launcher::External { urls } => start_external(plan, urls, access).await,
        Launcher::Command { template, port } => {
            start_command(plan, template, *port, log, access).await
        }
        Launcher::Compose { file, port } => start_compose(plan, file, *port, log, access).await,
    }
}

/// The simulator profile `name` with the plan's scheduler limits (`max_num_seqs`, …): what
/// the built-in simulator runs, in real or in virtual time.
pub fn sim_profile(plan: &ServerPlan, name: &str) -> Result<Profile> {
    Ok(sim_profile_overridden(plan, name)?.0)
}

/// A profile's limit the server plan set to another value: its name, the profile file's
/// value and the plan's (`enable_prefix_caching` as 0/1).
pub type Overridden = (String, u64, u64);

/// [`sim_profile`], with the limits the plan changed: the one place that knows which of a
/// plan's settings a profile's limits yield to.
pub fn sim_profile_overridden(plan: &ServerPlan, name: &str) -> Result<(Profile, Vec<Overridden>)> {
    fn set<T: Copy + PartialEq + Into<u64>>(
        key: &str,
        slot: &mut T,
        to: Option<T>,
        changed: &mut Vec<Overridden>,
    ) {
        let Some(to) = to else { return };
        if *slot != to {
            changed.push((key.to_string(), (*slot).into(), to.into()));
            *slot = to;
        }
    }
    let mut profile = Profile::resolve(name)?;
    let mut changed = Vec::new();
    set(
        "max_num_seqs",
        &mut profile.max_num_seqs,
        plan.max_num_seqs,
        &mut changed,
    );
    set(
        "max_num_batched_tokens",
        &mut profile.max_num_batched_tokens,
        plan.max_num_batched_tokens,
        &mut changed,
    );
    set(
        "enable_prefix_caching",
        &mut profile.enable_prefix_caching,
        plan.enable_prefix_caching,
        &mut changed,
    );
    profile.validate()?;
    Ok((profile, changed))
}

/// The built-in simulator on its own thread, with the plan's scheduler limits.
async fn start_sim(plan: &ServerPlan, name: &str, seed: u64, access: &Access) -> Result<Running> {
    let timeout = plan.start_timeout;
    let profile = sim_profile(plan, name)?;
    let tok = Tokenizer::load(plan.tokenizer.as_deref())?;
    let dp = plan.dp;
    let h = vllm_sim::background::start_with(SimConfig {
        profile,
        dp,
        seed,
        model: plan
            .model
            .clone()
            .unwrap_or_else(|| vllm_sim::DEFAULT_MODEL.into()),
        api_servers: plan.api_server_count,
        faults: Faults::none(),
        tokenizer: Arc::new(tok),
    })?;
    let url = BaseUrl::parse(&format!("http://{}", h.addr()))?;
    wait_healthy(std::slice::from_ref(&url), access, timeout, None).await?;
    Ok(Running {
        urls: vec![url],
        log: None,
        description: format!("built-in simulator, {dp} engine(s), profile `{name}`"),
        kind: Kind::Sim(h),
    })
}

/// A server already running: only waited for.
async fn start_external(plan: &ServerPlan, urls: &[String], access: &Access) -> Result<Running> {
    let timeout = plan.start_timeout;
    let urls = urls
        .iter()
        .map(|u| BaseUrl::parse(u))
        .collect::<Result<Vec<_>>>()?;
    wait_healthy(&urls, access, timeout, None).await?;
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

/// The command template in its own process group; its log's tail when it never gets healthy.
async fn start_command(
    plan: &ServerPlan,
    template: &str,
    port: Option<u16>,
    log: &Path,
    access: &Access,
) -> Result<Running> {
    let timeout = plan.start_timeout;
    let port = match port {
        Some(p) => p,
        None => free_port()?,
    };
    let line = command::render(template, &plan.values, port)?;
    let log = log.to_path_buf();
    let mut group = command::ProcessGroup::spawn(&line, &env(plan)?, &log)?;
    let url = BaseUrl::parse(&format!("{}://127.0.0.1:{port}", scheme(plan)))?;
    if let Err(e) = wait_healthy(
        std::slice::from_ref(&url),
        access,
        timeout,
        Some(&mut group),
    )
    .await
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

/// `docker compose up` with the server parameters as upper-case environment variables.
async fn start_compose(
    plan: &ServerPlan,
    file: &str,
    port: u16,
    log: &Path,
    access: &Access,
) -> Result<Running> {
    let timeout = plan.start_timeout;
    let log = log.to_path_buf();
    let mut vars = env(plan)?;
    for (k, v) in plan.server_values() {
        vars.push((k.to_uppercase(), v.to_string()));
    }
    vars.push(("PORT".into(), port.to_string()));
    let c = compose::Compose::up(Path::new(file), vars, &log)?;
    let url = BaseUrl::parse(&format!("{}://127.0.0.1:{port}", scheme(plan)))?;
    if let Err(e) = wait_healthy(std::slice::from_ref(&url), access, timeout, None).await {
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

/// `server.env` as (name, value) pairs. A value redacted from a saved experiment (a
/// resumed run) is taken from this process's environment variable of the same name.
fn env(plan: &ServerPlan) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (name, value) in &plan.env {
        let value = if value == crate::secrets::REDACTED {
            std::env::var(name).with_context(|| {
                format!(
                    "`server.env.{name}` was not saved with the results (secrets never are)\nhint: export {name} before resuming"
                )
            })?
        } else {
            value.clone()
        };
        out.push((name.clone(), value));
    }
    Ok(out)
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(l.local_addr()?.port())
}
