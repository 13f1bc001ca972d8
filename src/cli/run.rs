//! `vllm-loadtest run EXPERIMENT.yaml`: every cell of the matrix in order, each server
//! configuration brought up once and always torn down, monitors beside each cell, all of it
//! stored under `results/<experiment>/<timestamp>/`, resumable when interrupted.

use super::signals::{OnSignal, interrupt_on_signals};
use crate::client::{self, Access, BaseUrl, get};
use crate::experiment::planned::{PlannedTime, Total};
use crate::experiment::{self, Cell, Experiment, Plan};
use crate::launcher;
use crate::runner::cell::{CellResult, CellSpec, run_cell};
use crate::runner::progress::{self, RunClock, human_duration};
use crate::runner::virtual_cell::{self, VirtualServer};
use crate::store::cell_report::CellInfo;
use crate::store::layout::{CellDir, RunDir};
use crate::store::manifest::{Manifest, PredictedWith};
use crate::store::summary_json;
use crate::workload::body::BodyOptions;
use crate::workload::{PromptSpec, Workload};
use anyhow::{Context, Result};
use clap::Args;
use loadtest_base::Tokenizer;
use loadtest_base::arrivals;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod ray_cell;
mod search;
#[cfg(test)]
mod tests;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The experiment file (YAML; see `examples/` and `schema/experiment.schema.json`).
    #[arg(required_unless_present = "resume", value_name = "EXPERIMENT.yaml")]
    pub experiment: Option<PathBuf>,
    /// Override a value of the file, repeatable, e.g. `--set load.duration_s=5 --set 'matrix.request_rate=[10,20]'` (default: none).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Where results folders are created (`OUTPUT/<experiment>/<date>/`).
    #[arg(long, default_value = "results", value_name = "DIR")]
    pub output: PathBuf,
    /// Continue an interrupted run in DIR: finished cells are kept, the others run (default: a new run).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["experiment", "overrides"])]
    pub resume: Option<PathBuf>,
    /// Print the cells that would run and the run's planned duration (sending, and the most
    /// the drains may add), and stop; nothing is started or sent.
    #[arg(long)]
    pub dry_run: bool,
    /// No per-second progress line (one line per cell is still printed).
    #[arg(long)]
    pub quiet: bool,
    /// Worker threads of the client runtime (1 measured best up to thousands of req/s).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub client_threads: usize,
    /// A run another command makes and reports itself (`report --profile`): it prints no
    /// table, summary or folders at the end, and its errors say nothing of `--resume`.
    #[arg(skip)]
    pub nested: bool,
}

pub fn run(a: RunArgs) -> Result<()> {
    run_to(a).map(drop)
}

/// `run`, and the results folder it wrote (`None` for a dry run).
pub fn run_to(a: RunArgs) -> Result<Option<RunDir>> {
    let (dir, exp, mut plan) = open(&a)?;
    if a.dry_run {
        return print_plan(&plan).map(|()| None);
    }
    let dir = match a.resume {
        Some(_) => dir,
        None => RunDir::new(claim_folder(dir.root())?),
    };
    std::fs::create_dir_all(dir.cells())
        .with_context(|| format!("cannot create `{}`", dir.root().display()))?;
    if a.resume.is_none() {
        std::fs::write(
            dir.experiment(),
            serde_yaml::to_string(&crate::secrets::redact_document(&exp.resolved))?,
        )?;
    }
    // held until the run ends: a second `run --resume` of the same folder would run the
    // same cells into the same files
    let _lock = lock_results(&dir)?;
    let seeds: Vec<u64> = plan
        .cells
        .iter()
        .chain(plan.searches.iter().map(|s| &s.template))
        .map(|c| c.plan.load.seed)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut manifest = match (&a.resume, dir.read_manifest()) {
        (Some(_), Some(mut m)) => {
            m.status = "running".into();
            m.finished_at = None;
            m.command_line = std::env::args().collect();
            m
        }
        _ => Manifest::new(&exp.name, planned_cells(&plan), seeds),
    };
    dir.write_manifest(&manifest)?;
    eprintln!(
        "run: experiment `{}`: {} cell(s) on {} server configuration(s); results in `{}`",
        exp.name,
        match plan.searches.len() {
            0 => plan.cells.len().to_string(),
            n => format!("{n} search(es) of at most {}", planned_cells(&plan)),
        },
        plan.groups.len(),
        dir.root().display()
    );
    let rt = super::client_runtime(a.client_threads)?;
    // watched from here on, so a signal while the tables and the report are written is
    // told too (the report is finished first: it is seconds, and the cells are whole)
    let all_virtual = plan
        .cells
        .iter()
        .chain(plan.searches.iter().map(|s| &s.template))
        .all(|c| c.plan.server.virtual_clock);
    let interrupt = interrupt_on_signals(OnSignal::of(all_virtual));
    let outcome = rt.block_on(run_cells(
        &a,
        &exp,
        &mut plan,
        &dir,
        &mut manifest,
        interrupt.clone(),
    ));
    manifest.cells_complete = plan
        .cells
        .iter()
        .filter(|c| dir.cell(&c.id).read_status().as_deref() == Some("complete"))
        .count();
    manifest.finished_at = Some(loadtest_base::time::rfc3339(loadtest_base::time::unix_now()));
    manifest.status = match &outcome {
        Ok(RunEnd::Complete) => "complete".into(),
        Ok(RunEnd::Interrupted) => "interrupted".into(),
        Ok(RunEnd::ServerLost(why)) => {
            manifest.error = Some(why.clone());
            "server_failed".into()
        }
        Err(e) => {
            manifest.error = Some(format!("{e:#}"));
            "failed".into()
        }
    };
    dir.write_manifest(&manifest)?;
    if !a.nested {
        print_summary(&plan, &dir)?;
    }
    // aggregate, analyse and report from the stored raw data, whatever the outcome
    let report = super::report::write_report(&dir);
    match &report {
        Ok(w) if !a.nested => super::report::print_executive(&w.report),
        Ok(_) => {}
        Err(e) => eprintln!("warning: no report: {e:#}"),
    }
    if !a.nested {
        eprintln!("results: {}", dir.root().display());
        if let Ok(w) = &report {
            println!("report: {}", w.html.display());
        }
    }
    // a whole prediction another command made is kept; cells that measured nothing are
    // said as such (exit 3, `--resume`), which the signal does not change
    let outcome = match outcome {
        Ok(RunEnd::Complete)
            if *interrupt.borrow() && !a.nested && unmeasured(&plan, &dir).is_empty() =>
        {
            Ok(RunEnd::Interrupted)
        }
        o => o,
    };
    how_it_ended(outcome, &plan, &dir, a.nested)?;
    // the cells are whole but what the user came for is not: not a success (the cause
    // was printed above, as the report failed)
    if report.is_err() {
        anyhow::bail!(
            "no report (why: the warning above)\nhint: the cells' raw records are stored in `{0}`; once the cause is fixed, `vllm-loadtest report {0}` writes the tables and the report",
            dir.root().display()
        );
    }
    Ok(Some(dir))
}

/// The run's result for the shell: `Ok` only when every cell measured something; a lost
/// server and a signal are typed (`Ended`) so the exit code tells them apart.
fn how_it_ended(outcome: Result<RunEnd>, plan: &Plan, dir: &RunDir, nested: bool) -> Result<()> {
    // a run another command made (`report --profile`) is redone by that command, not
    // resumed: an interrupted one is removed, not left beside the whole ones
    if nested {
        return match outcome? {
            RunEnd::Complete
                if plan
                    .cells
                    .iter()
                    .any(|c| dir.cell(&c.id).read_status().as_deref() == Some("complete")) =>
            {
                Ok(())
            }
            // kept: its report says why
            RunEnd::Complete => Err(anyhow::anyhow!(
                "no cell measured anything (every request failed, or none completed): `{}` says why",
                dir.report_md().display()
            )),
            RunEnd::Interrupted => Err(super::Ended::Interrupted(format!(
                "interrupted; {}",
                remove_partial(dir)
            ))
            .into()),
            RunEnd::ServerLost(why) => Err(super::Ended::ServerFailed(why).into()),
        };
    }
    let resume = format!("vllm-loadtest run --resume {}", dir.root().display());
    let unmeasured = unmeasured(plan, dir);
    match outcome {
        Ok(RunEnd::Complete) if unmeasured.is_empty() => Ok(()),
        Ok(RunEnd::Complete) => Err(super::Ended::ServerFailed(format!(
            "{} cell(s) measured nothing: {}; `{resume}` runs them again",
            unmeasured.len(),
            unmeasured.join(", ")
        ))
        .into()),
        Ok(RunEnd::ServerLost(why)) => Err(super::Ended::ServerFailed(format!(
            "the server was lost, so the run stopped: {why}; `{resume}` runs the rest"
        ))
        .into()),
        // the signal came after the last cell had ended (while the report was written, or
        // as the last prediction finished): nothing is left to resume
        Ok(RunEnd::Interrupted)
            if plan.searches.is_empty()
                && every_cell_ended(plan, dir)
                && unmeasured.is_empty() =>
        {
            Err(super::Ended::Interrupted(format!(
                "interrupted after every cell had ended: the results are whole; `vllm-loadtest report {}` writes the report again",
                dir.root().display()
            ))
            .into())
        }
        Ok(RunEnd::Interrupted) => {
            Err(super::Ended::Interrupted(format!("interrupted; resume with `{resume}`")).into())
        }
        Err(e) => Err(e.context(format!(
            "resume with `vllm-loadtest run --resume {}`",
            dir.root().display()
        ))),
    }
}

/// A new run's folder (`wanted`: `<output>/<experiment>/<stamp>`), created here so that two
/// runs started in the same second (two `report --profile` of one run, two shells) never
/// share one: the second gets `<stamp>-2`, and so on.
fn claim_folder(wanted: &std::path::Path) -> Result<std::path::PathBuf> {
    let (base, stamp) = match (wanted.parent(), wanted.file_name()) {
        (Some(b), Some(s)) => (b, s.to_string_lossy().into_owned()),
        _ => anyhow::bail!("`{}` is not a results folder's path", wanted.display()),
    };
    std::fs::create_dir_all(base).with_context(|| format!("cannot create `{}`", base.display()))?;
    for n in 1..1000 {
        let name = match n {
            1 => stamp.to_string(),
            n => format!("{stamp}-{n}"),
        };
        let root = base.join(name);
        match std::fs::create_dir(&root) {
            Ok(()) => return Ok(root),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create `{}`", root.display()));
            }
        }
    }
    anyhow::bail!("`{}` holds 999 runs started at {stamp}", base.display())
}

/// The cells that ended without measuring anything (`failed`, or `no_completions` outside
/// a search, whose probe that measured nothing is its verdict on that rate): `--resume`
/// runs them again.
fn unmeasured(plan: &Plan, dir: &RunDir) -> Vec<String> {
    plan.cells
        .iter()
        .filter_map(|c| {
            let s = dir.cell(&c.id).read_status()?;
            let unmeasured = s == "failed" || (s == "no_completions" && plan.searches.is_empty());
            unmeasured.then(|| format!("{} ({s})", c.id))
        })
        .collect()
}

/// Remove an interrupted run that another command made (it redoes it whole), and the
/// folders above it that it leaves empty (`DIR/predicted/<experiment>/`); what was done.
fn remove_partial(dir: &RunDir) -> String {
    if let Err(e) = std::fs::remove_dir_all(dir.root()) {
        return format!(
            "its partial results in `{}` could not be removed: {e}",
            dir.root().display()
        );
    }
    // `DIR/predicted/<experiment>/` and `DIR/predicted/` too, when empty: by name, so no
    // other folder is ever touched
    let experiment = dir.root().parent();
    let predicted = experiment.and_then(Path::parent);
    if let (Some(e), Some(p)) = (experiment, predicted)
        && p.file_name() == RunDir::new(p).predictions().file_name()
        && std::fs::remove_dir(e).is_ok()
    {
        let _ = std::fs::remove_dir(p);
    }
    "its partial results were removed".into()
}

/// Every cell of the plan has a status other than "interrupted": none was cut by the signal.
fn every_cell_ended(plan: &Plan, dir: &RunDir) -> bool {
    plan.cells.iter().all(|c| {
        dir.cell(&c.id)
            .read_status()
            .is_some_and(|s| s != "interrupted")
    })
}

/// The folder, experiment and plan of a new run (a timestamped folder under `--output`) or
/// of the one `--resume` continues; every cell checked to fit in memory before anything
/// starts.
fn open(a: &RunArgs) -> Result<(RunDir, Experiment, Plan)> {
    let (dir, exp, plan) = match &a.resume {
        Some(d) => {
            let d = RunDir::new(d);
            let (e, p) = crate::aggregate::load_plan(&d)?;
            (d, e, p)
        }
        None => {
            let path = a.experiment.as_ref().expect("clap requires it");
            let (e, p) = experiment::load(path, &a.overrides)?;
            let stamp = loadtest_base::time::compact(loadtest_base::time::unix_now());
            (RunDir::new(a.output.join(&e.name).join(stamp)), e, p)
        }
    };
    for c in &plan.cells {
        arrivals::check_size(c.plan.load.arrival, c.plan.load.stop).map_err(|e| {
            anyhow::anyhow!(
                "cell `{}`: {e}\nhint: a lower `request_rate` or a shorter `duration_s`",
                c.id
            )
        })?;
        // a cell Ray shards cannot send is said before anything runs, not at its turn
        if let experiment::cell_plan::ClientPlan::Ray(_) = c.plan.client {
            ray_cell::bench_flags(c, "http://server:8000", "model")
                .with_context(|| format!("cell `{}` cannot be sent by Ray shards", c.id))?;
        }
    }
    // so is a simulator profile that cannot be read or is out of range: once per server
    // configuration, with the limits the experiment sets over it
    let mut checked = std::collections::HashSet::new();
    let templates = plan.searches.iter().map(|s| &s.template);
    for c in plan.cells.iter().chain(templates) {
        let server = &c.plan.server;
        if let experiment::Launcher::Sim { profile } = &server.launcher
            && checked.insert(c.group)
        {
            launcher::sim_profile(server, profile).with_context(|| {
                format!(
                    "server `{}`: `server.profile: {profile}`",
                    plan.groups[c.group].id
                )
            })?;
        }
    }
    Ok((dir, exp, plan))
}

/// An exclusive lock on `DIR/.lock` (released when the process ends, however it ends),
/// naming the process that holds it.
fn lock_results(dir: &RunDir) -> Result<std::fs::File> {
    crate::store::lock::hold(&dir.lock())?.map_err(|pid| {
        anyhow::anyhow!(
            "`{}` is in use by another run (pid {pid})\nhint: wait for it to end, or stop it with Ctrl-C; a folder is run by one process at a time",
            dir.root().display(),
        )
    })
}

fn describe_cell(c: &Cell) -> String {
    if c.matrix_values.is_empty() {
        return "single cell".into();
    }
    c.matrix_values
        .iter()
        .map(|(k, v)| format!("{k}={}", experiment::plan::scalar(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The cells a run plans: the matrix's, or each search's budget.
fn planned_cells(plan: &Plan) -> usize {
    match plan.searches.len() {
        0 => plan.cells.len(),
        _ => plan.searches.iter().map(|s| s.spec.max_cells).sum(),
    }
}

/// Run every pending cell (or search), a server configuration at a time.
async fn run_cells(
    a: &RunArgs,
    exp: &Experiment,
    plan: &mut Plan,
    dir: &RunDir,
    manifest: &mut Manifest,
    interrupt: tokio::sync::watch::Receiver<bool>,
) -> Result<RunEnd> {
    let tokenizer = plan
        .cells
        .first()
        .or(plan.searches.first().map(|s| &s.template))
        .and_then(|c| c.plan.server.tokenizer.as_deref());
    let tok = Arc::new(Tokenizer::load(tokenizer)?);
    if tok.is_built_in() {
        eprintln!("{}", loadtest_base::tokenizer::BUILT_IN_WARNING);
    }
    // the ETA of a matrix run starts from the planned time of the cells still to run (a
    // search does not know its probes ahead)
    let pending = |g: &experiment::ServerGroup| -> Vec<usize> {
        g.cells
            .iter()
            .copied()
            .filter(|&i| dir.cell(&plan.cells[i].id).read_status().as_deref() != Some("complete"))
            .collect()
    };
    let run_clock = match plan.searches.is_empty() {
        true => Some(RunClock::new(
            plan.groups
                .iter()
                .flat_map(pending)
                .map(|i| Ok(PlannedTime::of(&plan.cells[i])?.sending_s))
                .collect::<Result<Vec<f64>>>()?,
        )),
        false => None,
    };
    let mut run = Session {
        a,
        exp,
        dir,
        tok,
        workloads: HashMap::new(),
        hashes: Default::default(),
        total: planned_cells(plan),
        interrupt,
        run_clock,
    };
    if !plan.searches.is_empty() {
        return run.searches(plan, manifest).await;
    }
    for group in &plan.groups {
        let pending: Vec<&Cell> = pending(group).into_iter().map(|i| &plan.cells[i]).collect();
        if pending.is_empty() {
            continue;
        }
        if run.interrupted() {
            return Ok(RunEnd::Interrupted);
        }
        if let Some(end) = run.group(&group.id, &pending, manifest).await? {
            return Ok(end);
        }
    }
    Ok(RunEnd::Complete)
}

/// What every cell of a run shares.
struct Session<'r> {
    a: &'r RunArgs,
    exp: &'r Experiment,
    dir: &'r RunDir,
    tok: Arc<Tokenizer>,
    /// Prompts by `PromptSpec::key`: cells that differ only in load share them.
    workloads: HashMap<String, Arc<Workload>>,
    /// Prompts' prefix-block hashes for cells run in virtual time.
    hashes: virtual_cell::PrefixHashes,
    total: usize,
    interrupt: tokio::sync::watch::Receiver<bool>,
    /// The run's ETA: the planned time of the cells still to run (a matrix run only).
    run_clock: Option<RunClock>,
}

/// A cell to predict: its prompts and their prefix-block hashes, made before the cells run.
type Prediction<'c> = (&'c Cell, Arc<Workload>, Option<virtual_cell::PromptHashes>);

/// A server configuration, up, and what its cells send to.
struct Server {
    backend: Backend,
    model: String,
}

enum Backend {
    /// A server reached over HTTP (launched by us or not).
    Live {
        running: launcher::Running,
        endpoints: Vec<client::Server>,
        /// Each cell's requests carry a `cache_salt` of their own (`server.cache_salt`).
        salted: bool,
    },
    /// The built-in simulator in virtual time (`server.clock: virtual`): nothing runs.
    Virtual(VirtualServer),
}

impl Session<'_> {
    fn interrupted(&self) -> bool {
        *self.interrupt.borrow()
    }

    /// Bring a group's server up, run its pending cells, always take it down. `Some` when
    /// the run ends here (a signal, or the server lost).
    async fn group(
        &mut self,
        id: &str,
        pending: &[&Cell],
        manifest: &mut Manifest,
    ) -> Result<Option<RunEnd>> {
        let Some(mut server) = self.start_server(id, pending[0], manifest).await? else {
            return Ok(Some(RunEnd::Interrupted));
        };
        if let Backend::Virtual(v) = &server.backend {
            self.predict_group(pending, v, &server.model)?;
            return self.stop_server(id, server, None);
        }
        let mut lost = None;
        for cell in pending {
            if let Err(stop) = self.cell_or_stop(cell, &mut server).await? {
                lost = stop;
                break;
            }
        }
        self.stop_server(id, server, lost)
    }

    /// Run a cell; `Err` when the group stops here: `None` on a signal, why when the
    /// server was lost.
    async fn cell_or_stop(
        &mut self,
        cell: &Cell,
        server: &mut Server,
    ) -> Result<std::result::Result<(), Option<String>>> {
        if self.interrupted() {
            return Ok(Err(None));
        }
        let end = match &cell.plan.client {
            experiment::cell_plan::ClientPlan::Ray(ray) => self.ray_cell(cell, server, ray).await?,
            experiment::cell_plan::ClientPlan::Local => match self.cell(cell, server).await? {
                Some(r) => ray_cell::CellEnd {
                    status: r.status().to_string(),
                    interrupted: r.interrupted,
                    failure: r.failure_reason(),
                },
                None => return Ok(Err(None)),
            },
        };
        if end.interrupted {
            return Ok(Err(None));
        }
        // the policy for a lost server: stop here, keep what ran, let `--resume` rerun
        if end.status == "failed" {
            return Ok(Err(Some(end.failure.map_or_else(
                || format!("cell `{}`: the server was lost", cell.id),
                |why| format!("cell `{}`: {why}", cell.id),
            ))));
        }
        Ok(Ok(()))
    }

    /// Take a group's server down; `Some` when the run ends here.
    fn stop_server(
        &self,
        id: &str,
        server: Server,
        lost: Option<String>,
    ) -> Result<Option<RunEnd>> {
        if let Backend::Live { running, .. } = server.backend {
            eprintln!("server `{id}`: stopping");
            if let Some(note) = running.stop() {
                eprintln!("{note}");
            }
        }
        if self.interrupted() {
            return Ok(Some(RunEnd::Interrupted));
        }
        Ok(lost.map(RunEnd::ServerLost))
    }

    /// `None` when a signal came first.
    async fn start_server(
        &mut self,
        id: &str,
        first: &Cell,
        manifest: &mut Manifest,
    ) -> Result<Option<Server>> {
        let plan = &first.plan.server;
        if plan.virtual_clock {
            return self.virtual_server(id, first, manifest).map(Some);
        }
        let log = self.dir.server_log(id)?;
        eprintln!("server `{id}`: starting ({})", plan.launcher.name());
        let access = Access::new(plan.tls.clone(), &plan.headers)
            .with_context(|| format!("server `{id}`"))?;
        let running = tokio::select! {
            s = launcher::start(plan, first.plan.load.seed, &log, &access) => s.with_context(|| format!("server `{id}` did not start"))?,
            _ = self.interrupt.wait_for(|i| *i) => return Ok(None),
        };
        eprintln!("server `{id}`: up ({})", running.description);
        let endpoints = reach(&access, &running.urls).await?;
        let (version, is_vllm) = get::server_version(&endpoints[0]).await;
        manifest.server_versions.retain(|(s, _)| s != id);
        manifest.server_versions.push((id.to_string(), version));
        let salted = plan.cache_salt.applies(is_vllm);
        manifest.cache_salted.retain(|s| s != id);
        if salted {
            manifest.cache_salted.push(id.to_string());
            eprintln!(
                "server `{id}`: each cell's requests carry a `cache_salt` of their own: no cell is served from prefix-cache blocks an earlier one left (`server.cache_salt: none` to share them)"
            );
        }
        self.dir.write_manifest(manifest)?;
        let model = match &plan.model {
            Some(m) => m.clone(),
            None => get::first_model(&endpoints[0]).await?,
        };
        Ok(Some(Server {
            backend: Backend::Live {
                running,
                endpoints,
                salted,
            },
            model,
        }))
    }

    /// The simulator a group's cells are predicted with (`server.clock: virtual`).
    fn virtual_server(&self, id: &str, first: &Cell, manifest: &mut Manifest) -> Result<Server> {
        let plan = &first.plan.server;
        let experiment::Launcher::Sim { profile: name } = &plan.launcher else {
            anyhow::bail!("server `{id}`: `clock: virtual` needs `launcher: sim`");
        };
        let (profile, overridden) = launcher::sim_profile_overridden(plan, name)
            .with_context(|| format!("server `{id}`"))?;
        eprintln!(
            "server `{id}`: built-in simulator in virtual time ({} engine(s), profile `{name}`): every figure is predicted, not measured",
            plan.dp
        );
        manifest.predicted = true;
        // once per server configuration, a resumed run's included
        manifest.predicted_with.retain(|p| p.server != id);
        manifest.predicted_with.push(PredictedWith {
            server: id.to_string(),
            profile: name.to_string(),
            provenance: profile.provenance.as_deref().cloned(),
            overridden,
            step_costs: Some(crate::runner::virtual_cell::step_costs(&profile)),
        });
        manifest.server_versions.retain(|(s, _)| s != id);
        manifest.server_versions.push((
            id.to_string(),
            format!("vllm-sim {} (virtual time)", env!("CARGO_PKG_VERSION")),
        ));
        self.dir.write_manifest(manifest)?;
        Ok(Server {
            backend: Backend::Virtual(VirtualServer {
                profile,
                dp: plan.dp,
                seed: first.plan.load.seed,
                api_servers: plan.api_server_count,
            }),
            model: plan
                .model
                .clone()
                .unwrap_or_else(|| vllm_sim::DEFAULT_MODEL.into()),
        })
    }

    /// A group's cells in virtual time, one per core at a time (they share nothing while
    /// they run), stored and reported in order. Prompts and their hashes are made first,
    /// once per workload.
    fn predict_group(&mut self, pending: &[&Cell], v: &VirtualServer, model: &str) -> Result<()> {
        let mut jobs: Vec<Prediction> = Vec::new();
        for &cell in pending {
            let Some(wl) = self.workload(cell)? else {
                return Ok(());
            };
            let key = cell.plan.workload.prompts.key();
            let hashes = self.hashes.for_server(&key, &wl.prompts, v, &self.tok);
            jobs.push((cell, wl, hashes));
        }
        let (a, dir, tok, total) = (self.a, self.dir, &*self.tok, self.total);
        let interrupt = &self.interrupt;
        let predict = |(cell, wl, hashes): &Prediction| -> Result<CellResult> {
            let cdir = dir.cell(&cell.id);
            let _ = std::fs::remove_dir_all(cdir.root());
            std::fs::create_dir_all(cdir.root())?;
            predict_cell(
                a,
                cell,
                wl,
                hashes.as_deref(),
                v,
                model,
                tok,
                (total, None),
                &cdir,
                &|| *interrupt.borrow(),
            )
        };
        let results = loadtest_base::par::map_until(&jobs, &|| *interrupt.borrow(), predict);
        for ((cell, _, _), r) in jobs.iter().zip(results) {
            // a cell not run (a signal came first) stays pending for `--resume`
            let Some(r) = r else {
                continue;
            };
            // stopped by a signal mid-prediction: pending too
            let r = match r {
                Err(e) if e.is::<virtual_cell::Stopped>() => continue,
                r => r?,
            };
            let cdir = self.dir.cell(&cell.id);
            let status = r.status();
            write_cell_summary(self.exp, cell, &r, status, &cdir, model, &self.tok)?;
            cdir.write_status(status)?;
            print_cell_end(cell, total, &r);
        }
        Ok(())
    }

    /// A cell's prompts, built once per workload; `None` when a signal stopped the build.
    fn workload(&mut self, cell: &Cell) -> Result<Option<Arc<Workload>>> {
        let interrupt = self.interrupt.clone();
        let stop = || *interrupt.borrow();
        match workload_for(
            &cell.plan.workload.prompts,
            &self.tok,
            &mut self.workloads,
            &stop,
        ) {
            Err(_) if stop() => Ok(None),
            wl => wl.map(Some),
        }
    }

    /// A cell sent by a Ray cluster's nodes (`client: {engine: ray}`) into a fresh folder:
    /// the merged cell, with the run's record of which cell it is, and its status.
    async fn ray_cell(
        &mut self,
        cell: &Cell,
        server: &Server,
        ray: &experiment::cell_plan::RayPlan,
    ) -> Result<ray_cell::CellEnd> {
        let Backend::Live {
            endpoints, salted, ..
        } = &server.backend
        else {
            anyhow::bail!(
                "cell `{}`: `client.engine: ray` sends to a live server, not one in virtual time",
                cell.id
            );
        };
        let [endpoint] = endpoints.as_slice() else {
            anyhow::bail!(
                "cell `{}`: `client.engine: ray` sends to one URL (a router), not {} replicas round-robin",
                cell.id,
                endpoints.len()
            );
        };
        let cdir = self.fresh_cell(cell, server).await?;
        let mut flags = ray_cell::bench_flags(cell, &endpoint.url.to_string(), &server.model)
            .with_context(|| format!("cell `{}` cannot be sent by Ray", cell.id))?;
        // every shard of the cell with the same salt: they share one cell's cache
        if *salted {
            flags.push("--extra-body".into());
            let salted = crate::workload::body::salted(cell_salt(self.dir, cell));
            flags.push(serde_json::Value::Object(salted).to_string());
        }
        eprintln!(
            "cell {}/{} `{}` ({}): running on {} Ray shards",
            cell.index + 1,
            self.total,
            cell.id,
            describe_cell(cell),
            ray.shards
        );
        let end = ray_cell::run(self.dir, ray, &flags, &cdir, self.interrupt.clone()).await?;
        if cdir.read_report().is_some() {
            add_cell_info(self.exp, &cdir, cell)?;
        }
        if let Some(c) = &mut self.run_clock {
            c.cell_done();
        }
        cdir.write_status(&end.status)?;
        eprintln!(
            "cell {}/{} `{}`: {}{}",
            cell.index + 1,
            self.total,
            cell.id,
            end.status,
            end.failure
                .as_ref()
                .map(|f| format!(": {f}"))
                .unwrap_or_default()
        );
        Ok(end)
    }

    /// A cell's folder emptied of an earlier attempt, and the server's prefix cache reset
    /// when the cell asks: every cell, local or sent by Ray, starts from there.
    async fn fresh_cell(&self, cell: &Cell, server: &Server) -> Result<CellDir> {
        let cdir = self.dir.cell(&cell.id);
        let _ = std::fs::remove_dir_all(cdir.root());
        std::fs::create_dir_all(cdir.root())?;
        if let (true, Backend::Live { endpoints, .. }) =
            (cell.plan.server.reset_prefix_cache, &server.backend)
        {
            reset_prefix_cache(endpoints).await;
        }
        Ok(cdir)
    }

    /// Run one cell into a fresh folder and store its summary and status. `None` when a
    /// signal stopped its prompts being built.
    async fn cell(&mut self, cell: &Cell, server: &mut Server) -> Result<Option<CellResult>> {
        let cdir = self.fresh_cell(cell, server).await?;
        let Some(wl) = self.workload(cell)? else {
            return Ok(None);
        };
        let total = self.total;
        let eta = self.run_clock.as_ref().map(RunClock::next_cell);
        let r = match &mut server.backend {
            Backend::Live {
                running,
                endpoints,
                salted,
            } => {
                let salt = salted.then(|| cell_salt(self.dir, cell));
                let body = body_for(cell, &server.model, salt);
                eprintln!(
                    "cell {}/{total} `{}` ({}): running",
                    cell.index + 1,
                    cell.id,
                    describe_cell(cell)
                );
                let spec = cell_spec(self.a, cell, endpoints, &body, &wl, &self.tok, (total, eta))?;
                live_cell(spec, cell, running, &cdir, self.interrupt.clone()).await?
            }
            Backend::Virtual(v) => {
                let key = cell.plan.workload.prompts.key();
                let hashes = self.hashes.for_server(&key, &wl.prompts, v, &self.tok);
                let (a, tok, model) = (self.a, &self.tok, &server.model);
                let interrupt = &self.interrupt;
                match predict_cell(
                    a,
                    cell,
                    &wl,
                    hashes.as_deref(),
                    v,
                    model,
                    tok,
                    (total, eta),
                    &cdir,
                    &|| *interrupt.borrow(),
                ) {
                    // stopped by a signal: the probe stays pending, as one not yet run
                    Err(e) if e.is::<virtual_cell::Stopped>() => return Ok(None),
                    r => r?,
                }
            }
        };
        if let Some(c) = &mut self.run_clock {
            c.cell_done();
        }
        let status = r.status();
        write_cell_summary(self.exp, cell, &r, status, &cdir, &server.model, &self.tok)?;
        cdir.write_status(status)?;
        print_cell_end(cell, total, &r);
        Ok(Some(r))
    }
}

/// The line that ends a cell, and its warnings.
fn print_cell_end(cell: &Cell, total: usize, r: &CellResult) {
    let s = &r.summary;
    let figures = if let Some(why) = r.failure_reason() {
        why
    } else {
        format!(
            "{} req/s, TTFT p50 {} ms",
            s.request_throughput
                .map_or("-".to_string(), |r| format!("{r:.2}")),
            s.every_request
                .ttft_ms
                .as_ref()
                .map_or("-".into(), |d| d.p50.display(1)),
        )
    };
    eprintln!(
        "cell {}/{total} `{}`: {}: {figures}; {}",
        cell.index + 1,
        cell.id,
        r.status(),
        loadtest_analysis::report::table::accounting_line(s)
    );
    for w in &r.warnings {
        eprintln!("  warning: {w}");
    }
}

/// How the matrix ended.
enum RunEnd {
    Complete,
    Interrupted,
    /// A server was lost mid-run (refusing connections, or its process exited): the run
    /// stopped after that cell.
    ServerLost(String),
}

async fn reach(access: &Access, urls: &[BaseUrl]) -> Result<Vec<client::Server>> {
    let mut out = Vec::new();
    for u in urls {
        out.push(access.reach(u).await?);
    }
    Ok(out)
}

/// A cell's own prefix-cache salt, for this attempt at it (a resumed cell does not find its
/// interrupted attempt's blocks either).
fn cell_salt(dir: &RunDir, cell: &Cell) -> String {
    crate::workload::body::cache_salt((dir.root(), &cell.id))
}

async fn reset_prefix_cache(endpoints: &[client::Server]) {
    for ep in endpoints {
        match get::request(
            ep,
            "POST",
            &ep.url.path("/reset_prefix_cache"),
            None,
            Duration::from_secs(30),
        )
        .await
        {
            Ok((200, _)) => {}
            Ok((s, _)) => eprintln!(
                "warning: POST /reset_prefix_cache on {} answered {s}",
                ep.url
            ),
            Err(e) => eprintln!("warning: POST /reset_prefix_cache on {}: {e:#}", ep.url),
        }
    }
}

fn workload_for(
    spec: &PromptSpec,
    tok: &Arc<Tokenizer>,
    cache: &mut HashMap<String, Arc<Workload>>,
    stop: &dyn Fn() -> bool,
) -> Result<Arc<Workload>> {
    let key = spec.key();
    if let Some(w) = cache.get(&key) {
        return Ok(w.clone());
    }
    let wl = spec.build_abandonable(tok.clone(), stop)?;
    for note in &wl.notes {
        eprintln!("note: {note}");
    }
    let wl = Arc::new(wl);
    cache.insert(key, wl.clone());
    Ok(wl)
}

/// The request body's options for a cell's prompts; `salt`: its `cache_salt`, if any.
fn body_for(cell: &Cell, model: &str, salt: Option<String>) -> BodyOptions {
    let w = &cell.plan.workload;
    BodyOptions {
        endpoint: w.endpoint,
        model: model.to_string(),
        ignore_eos: w.ignore_eos,
        temperature: w.temperature,
        continuous_usage: w.continuous_usage_stats,
        extra: salt.map(crate::workload::body::salted),
    }
}

/// What the runner needs of a cell (`endpoints` empty in virtual time).
fn cell_spec<'a>(
    a: &RunArgs,
    cell: &'a Cell,
    endpoints: &'a [client::Server],
    body: &'a BodyOptions,
    wl: &'a Workload,
    tok: &Tokenizer,
    (total, run_eta): (usize, Option<progress::RunEta>),
) -> Result<CellSpec<'a>> {
    let load = &cell.plan.load;
    Ok(CellSpec {
        endpoints,
        prompts: &wl.prompts,
        body,
        load,
        schedule: load.schedule(cell.repeat)?,
        connect_timeout: Duration::from_secs(10),
        slos: &cell.plan.slo.slos,
        percentiles: &[],
        progress: progress::Spec {
            quiet: a.quiet,
            label: format!(
                "cell {}/{} {}: ",
                cell.index + 1,
                total,
                match load.arrival.rate() {
                    r if r.is_finite() => format!("{r} req/s"),
                    // a ramp, a trace: their own schedule
                    _ if load.arrival.paced() => load.arrival.describe(),
                    _ => "all at once".to_string(),
                }
            ),
            run: run_eta,
        },
        client_threads: a.client_threads,
        health_probe: cell.plan.server.health_probe,
        turns: cell.plan.workload.prompts.turns(),
        metrics_interval: Some(cell.plan.monitor.metrics_interval),
        gpu: cell.plan.monitor.gpu,
        exact_tokenizer: !tok.is_built_in(),
        start_at_unix_ns: None,
    })
}

/// Predict a cell in virtual time into its (fresh) folder: one search probe, or one cell of
/// a group (`Session::predict_group`).
#[allow(clippy::too_many_arguments)]
fn predict_cell(
    a: &RunArgs,
    cell: &Cell,
    wl: &Workload,
    hashes: Option<&[Arc<[vllm_sim::prefix_cache::BlockHash]>]>,
    v: &VirtualServer,
    model: &str,
    tok: &Tokenizer,
    progress: (usize, Option<progress::RunEta>),
    cdir: &CellDir,
    stopped: &dyn Fn() -> bool,
) -> Result<CellResult> {
    eprintln!(
        "cell {}/{} `{}` ({}): predicting in virtual time",
        cell.index + 1,
        progress.0,
        cell.id,
        describe_cell(cell)
    );
    // a predicted cell's engines start empty: nothing to salt apart
    let body = body_for(cell, model, None);
    let spec = cell_spec(a, cell, &[], &body, wl, tok, progress)?;
    virtual_cell::run(&spec, v, hashes, cdir, stopped)
}

/// Run a cell against a server over HTTP, with its slice of the server's log.
async fn live_cell(
    spec: CellSpec<'_>,
    cell: &Cell,
    running: &mut launcher::Running,
    cdir: &CellDir,
    interrupt: tokio::sync::watch::Receiver<bool>,
) -> Result<CellResult> {
    let out_len = spec
        .prompts
        .iter()
        .map(|p| p.output_tokens)
        .max()
        .unwrap_or(0);
    if let Some(w) = super::calibrate::warn_if_near_ceiling(cell.plan.load.arrival.rate(), out_len)
    {
        eprintln!("warning: cell `{}`: {w}", cell.id);
    }
    let log = running.log.clone();
    let log_start = log
        .as_ref()
        .and_then(|l| std::fs::metadata(l).ok())
        .map(|m| m.len());
    let mut r = run_cell(spec, cdir, interrupt).await?;
    if let (Some(log), Some(start)) = (&log, log_start) {
        copy_log_slice(log, start, &cdir.server_log());
    }
    r.server_exited = running.exited();
    Ok(r)
}

fn copy_log_slice(log: &Path, start: u64, to: &Path) {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(log) else {
        return;
    };
    if f.seek(SeekFrom::Start(start)).is_err() {
        return;
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let _ = std::fs::write(to, buf);
}

fn write_cell_summary(
    exp: &Experiment,
    cell: &Cell,
    r: &CellResult,
    status: &str,
    cdir: &CellDir,
    model: &str,
    tok: &Tokenizer,
) -> Result<()> {
    let load = &cell.plan.load;
    let info = summary_json::RunInfo {
        date: loadtest_base::time::compact(loadtest_base::time::unix_now()),
        backend: "vllm".into(),
        label: Some(format!("{}/{}", exp.name, cell.id)),
        model_id: model.to_string(),
        tokenizer_id: tok.describe(),
        num_prompts: summary_json::num_prompts(
            cell.plan.workload.prompts.num_prompts,
            load.trace.is_some(),
            &r.summary,
        ),
        request_rate: load.arrival.rate(),
        burstiness: load.burstiness,
        max_concurrency: load.max_concurrency,
    };
    let pct = summary_json::PercentileSpec {
        metrics: ["ttft", "tpot", "itl", "e2el"].map(String::from).to_vec(),
        percentiles: SUMMARY_PERCENTILES.to_vec(),
    };
    let ours =
        serde_json::to_value(r.report(status, load.arrival.describe(), Some(cell_info(cell))))?;
    let mut v = summary_json::build(&info, &r.summary, &pct, None, ours);
    summary_json::add_ramp(&mut v, load.arrival);
    std::fs::write(cdir.summary_json(), serde_json::to_vec_pretty(&v)?)?;
    Ok(())
}

/// The percentiles of a run cell's `summary.json` (vLLM's keys), shards' alike.
const SUMMARY_PERCENTILES: [f64; 5] = [50.0, 90.0, 95.0, 99.0, 99.9];

/// Which cell of the run it is, and every parameter it ran with (secrets redacted).
fn cell_info(cell: &Cell) -> CellInfo {
    let matrix = cell
        .matrix_values
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::to_value(v).unwrap_or_default()))
        .collect();
    let params = cell
        .params
        .iter()
        .map(|(k, v)| {
            let v = crate::secrets::redact_param(k, v);
            (k.to_string(), serde_json::to_value(v).unwrap_or_default())
        })
        .collect();
    CellInfo {
        id: cell.id.clone(),
        index: cell.index,
        repeat: cell.repeat,
        matrix,
        params,
    }
}

/// A merged cell's `summary.json` (written by `merge`) with the run's record of which cell
/// it is, as every other cell's has.
fn add_cell_info(exp: &Experiment, cdir: &CellDir, cell: &Cell) -> Result<()> {
    let path = cdir.summary_json();
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    v["vllm_loadtest"]["cell"] = serde_json::to_value(cell_info(cell))?;
    v["label"] = serde_json::json!(format!("{}/{}", exp.name, cell.id));
    std::fs::write(&path, serde_json::to_vec_pretty(&v)?)?;
    Ok(())
}

/// `--dry-run`: the cells, each with its planned time, and the run's planned duration.
fn print_plan(plan: &Plan) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for s in &plan.searches {
        let p = &s.spec;
        let t = PlannedTime::of(&s.template)?;
        writeln!(
            out,
            "server `{}`: search `{}` for {} from {} req/s within [{}, {}], to ±{:.1}%, at most {} cells of {} each",
            plan.groups[s.group].id,
            s.id,
            p.goal.name(),
            p.start_rate,
            p.min_rate,
            p.max_rate,
            p.tolerance * 50.0,
            p.max_cells,
            planned_cell(t),
        )?;
    }
    let mut total = Total::default();
    for g in plan
        .groups
        .iter()
        .filter(|g| plan.searches.is_empty() || !g.cells.is_empty())
    {
        writeln!(out, "server `{}`:", g.id)?;
        for &i in &g.cells {
            let c = &plan.cells[i];
            let t = PlannedTime::of(c)?;
            total.add(t);
            writeln!(out, "  {}  {}  {}", c.id, describe_cell(c), planned_cell(t))?;
        }
    }
    match plan.searches.len() {
        0 => writeln!(out, "{} cell(s); {}", plan.cells.len(), planned_run(&total))?,
        n => {
            let mut most = Total::default();
            for s in &plan.searches {
                let t = PlannedTime::of(&s.template)?;
                for _ in 0..s.spec.max_cells {
                    most.add(t);
                }
            }
            writeln!(
                out,
                "{n} search(es), at most {} cell(s); if all run: {}",
                planned_cells(plan),
                planned_run(&most)
            )?
        }
    }
    Ok(())
}

/// A cell's planned time: `25s sending (+ drain <= 5m00s)`.
fn planned_cell(t: PlannedTime) -> String {
    format!(
        "{} sending (+ drain <= {})",
        human_duration(t.sending_s),
        human_duration(t.drain_max_s)
    )
}

/// The run's planned duration, stated as what it is.
fn planned_run(t: &Total) -> String {
    format!(
        "planned duration {} of sending (warm-up and cool-down included), at most {} if every drain runs to its limit; server start-up, prompt building and the report come on top",
        human_duration(t.sending_s),
        human_duration(t.max_s)
    )
}

/// One row per cell, from the stored summaries (so resumed and earlier cells are included):
/// our figures (throughput from tokens; TTFT over every window request, `>` for a lower
/// bound) and the one accounting, `sent = ok + failed + cancelled`.
fn print_summary(plan: &Plan, dir: &RunDir) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<44} {:>8} {:>9} {:>10} {:>12} {:>12} {:>9} {:>6} {:>6} {:>6} {:>6}  status",
        "cell",
        "offered",
        "achieved",
        "out tok/s",
        "TTFT p50",
        "TTFT p99",
        "TPOT p50",
        "sent",
        "ok",
        "failed",
        "cancel"
    )?;
    for c in &plan.cells {
        let path = dir.cell(&c.id).summary_json();
        let status = dir
            .cell(&c.id)
            .read_status()
            .unwrap_or_else(|| "not run".into());
        let dash = "-";
        let Ok(bytes) = std::fs::read(&path) else {
            writeln!(
                out,
                "{:<44} {dash:>8} {dash:>9} {dash:>10} {dash:>12} {dash:>12} {dash:>9} {dash:>6} {dash:>6} {dash:>6} {dash:>6}  {status}",
                c.id
            )?;
            continue;
        };
        let s: serde_json::Value = serde_json::from_slice(&bytes)?;
        let ours = &s["vllm_loadtest"]["summary"];
        let none = ours["measured_ok"].as_u64() == Some(0);
        let num = |v: &serde_json::Value, d: usize| match v.as_f64() {
            Some(x) if !none => format!("{x:.d$}"),
            _ => "-".into(),
        };
        let load = &c.plan.load;
        let offered = load.arrival.offered_label(
            load.arrival.rate() * f64::from(c.plan.workload.prompts.turns().max(1)),
            load.max_concurrency,
        );
        let achieved = num(&s["request_throughput"], 2);
        let every = &ours["every_request"]["ttft_ms"];
        let count = |k: &str| ours[k].as_u64().map_or("-".into(), |n| n.to_string());
        writeln!(
            out,
            "{:<44} {:>8} {:>9} {:>10} {:>12} {:>12} {:>9} {:>6} {:>6} {:>6} {:>6}  {status}",
            c.id,
            offered,
            achieved,
            num(&s["output_throughput"], 1),
            figure_ms(&every["p50"]),
            figure_ms(&every["p99"]),
            s["median_tpot_ms"]
                .as_f64()
                .map_or("-".into(), |v| format!("{v:.1} ms")),
            count("sent"),
            count("ok"),
            count("failed"),
            count("cancelled"),
        )?;
    }
    Ok(())
}

/// A stored figure: a number, `{"at_least": x}` (a lower bound), or null.
fn figure_ms(v: &serde_json::Value) -> String {
    match (v.as_f64(), v["at_least"].as_f64()) {
        (Some(x), _) => format!("{x:.1} ms"),
        (None, Some(x)) => format!("> {x:.0} ms"),
        _ => "-".into(),
    }
}
