//! A `run` cell sent from a Ray cluster's nodes (`client: {engine: ray}`): the cell's plan
//! as the `bench` flags every shard runs with (a test parses them back into the same plan),
//! the Ray driver (`deploy/ray/driver.py`, built into this binary) to place, start, gather
//! and merge the shards, and the merged cell moved into the cell's folder.

use super::Cell;
use crate::experiment::cell_plan::RayPlan;
use crate::store::layout::{CellDir, RunDir};
use crate::workload::Dataset;
use crate::workload::body::Endpoint;
use anyhow::{Context, Result, bail};
use loadtest_analysis::summary::goodput::Slo;
use loadtest_base::arrivals::{Arrival, RampStrategy, Stop};
use std::time::Duration;
use tokio::sync::watch;

/// The driver, inside the binary: a run needs Python and the pinned `ray`, nothing else.
const DRIVER: &str = include_str!("../../../deploy/ray/driver.py");

/// How long the driver has to stop its shards after a signal before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// The `bench` command line (after `bench`) that sends `cell` to `url`; `Err` for what a
/// bench cannot say (several endpoints, a request count other than the prompt count).
pub(super) fn bench_flags(cell: &Cell, url: &str, model: &str) -> Result<Vec<String>> {
    let (w, l, s) = (&cell.plan.workload, &cell.plan.load, &cell.plan.server);
    let mut f = Flags::default();
    f.add("--base-url", url);
    f.add("--model", model);
    f.add("--endpoint", w.endpoint.path());
    if let Some(t) = &s.tokenizer {
        f.add("--tokenizer", t.display());
    }
    if s.headers.api_key_env != crate::client::headers::DEFAULT_API_KEY_ENV {
        f.add("--api-key-env", &s.headers.api_key_env);
    }
    if !s.headers.literal.is_empty() {
        bail!(
            "`server.headers` with values: a sharded cell's flags travel through Ray and its logs\nhint: give their values in environment variables (`server.header_env`), on every node"
        );
    }
    for (name, var) in &s.headers.from_env {
        f.add("--header-env", format!("{name}: {var}"));
    }
    if let Some(ca) = &s.tls.ca_cert {
        f.add("--ca-cert", ca.display());
    }
    if s.tls.insecure {
        f.flag("--insecure");
    }
    // always said: a bench's own default would probe a cell that turned probing off
    f.add(
        "--health-probe",
        s.health_probe.map_or(0.0, |every| every.as_secs_f64()),
    );
    f.add(
        "--metric-percentiles",
        super::SUMMARY_PERCENTILES.map(|p| p.to_string()).join(","),
    );
    dataset(&mut f, w)?;
    load(&mut f, cell)?;
    for slo in &cell.plan.slo.slos {
        f.add(
            "--goodput",
            match slo {
                Slo::TtftMs(ms) => format!("ttft:{ms}"),
                Slo::TpotMs(ms) => format!("tpot:{ms}"),
                Slo::E2elMs(ms) => format!("e2el:{ms}"),
            },
        );
    }
    f.add("--request-timeout", l.request_timeout.as_secs_f64());
    f.flag("--quiet");
    if cell.plan.workload.endpoint == Endpoint::Completions && w.prompts.turns() > 1 {
        bail!("multi-turn conversations need the chat endpoint");
    }
    Ok(f.0)
}

/// The prompts: dataset, lengths, count, seed, and how requests ask for tokens.
fn dataset(f: &mut Flags, w: &crate::experiment::cell_plan::WorkloadPlan) -> Result<()> {
    let p = &w.prompts;
    match &p.dataset {
        Dataset::Random {
            input_len,
            range_ratio,
            prefix_len,
        } => {
            f.add("--dataset-name", "random");
            f.add("--random-input-len", input_len);
            f.add("--random-range-ratio", range_ratio);
            f.add("--random-prefix-len", prefix_len);
            f.add("--random-output-len", p.output_len);
        }
        Dataset::PrefixRepetition {
            num_prefixes,
            prefix_len,
            suffix_len,
        } => {
            f.add("--dataset-name", "prefix_repetition");
            f.add("--prefix-repetition-num-prefixes", num_prefixes);
            f.add("--prefix-repetition-prefix-len", prefix_len);
            f.add("--prefix-repetition-suffix-len", suffix_len);
            f.add("--prefix-repetition-output-len", p.output_len);
        }
        Dataset::ShareGpt { path, output_len } => {
            f.add("--dataset-name", "sharegpt");
            f.add("--dataset-path", path.display());
            if let Some(n) = output_len {
                f.add("--sharegpt-output-len", n);
            }
            f.add("--random-output-len", p.output_len);
        }
        Dataset::Jsonl { path } => {
            f.add("--dataset-name", "jsonl");
            f.add("--dataset-path", path.display());
            f.add("--random-output-len", p.output_len);
        }
        Dataset::MultiTurn { turns, input_len } => {
            f.add("--dataset-name", "multi_turn");
            f.add("--multi-turn-turns", turns);
            f.add("--random-input-len", input_len);
            f.add("--random-output-len", p.output_len);
        }
        Dataset::Trace {
            path,
            block_size,
            start_s,
            end_s,
        } => {
            f.add("--dataset-name", "trace");
            f.add("--dataset-path", path.display());
            f.add("--trace-block-size", block_size);
            f.add("--trace-start", start_s);
            if let Some(e) = end_s {
                f.add("--trace-end", e);
            }
            f.add("--random-output-len", p.output_len);
        }
    }
    f.add("--num-prompts", p.num_prompts);
    f.add("--seed", p.seed);
    f.flag(if w.ignore_eos {
        "--ignore-eos"
    } else {
        "--no-ignore-eos"
    });
    if let Some(t) = w.temperature {
        f.add("--temperature", t);
    }
    if w.continuous_usage_stats {
        f.flag("--continuous-usage-stats");
    }
    Ok(())
}

/// The schedule: arrivals, when sending stops, the window, the cap, the repeat.
fn load(f: &mut Flags, cell: &Cell) -> Result<()> {
    let l = &cell.plan.load;
    if l.seed != cell.plan.workload.prompts.seed {
        bail!("the schedule's seed differs from the prompts' (a bench has one `--seed`)");
    }
    match l.arrival {
        Arrival::Trace { speed } => f.add("--trace-speed", speed),
        Arrival::AllAtOnce => f.add("--request-rate", "inf"),
        Arrival::Ramp {
            strategy,
            start,
            end,
            burstiness,
        } => {
            f.add(
                "--ramp-up-strategy",
                match strategy {
                    RampStrategy::Linear => "linear",
                    RampStrategy::Exponential => "exponential",
                },
            );
            f.add("--ramp-up-start-rps", start);
            f.add("--ramp-up-end-rps", end);
            if burstiness.is_infinite() {
                f.add("--arrival", "constant");
            } else {
                f.add("--burstiness", burstiness);
            }
        }
        Arrival::Poisson { rate } => f.add("--request-rate", rate),
        Arrival::Gamma { rate, burstiness } => {
            f.add("--request-rate", rate);
            f.add("--burstiness", burstiness);
        }
        Arrival::Constant { rate } => {
            f.add("--request-rate", rate);
            f.add("--arrival", "constant");
        }
    }
    match l.stop {
        Stop::Duration(d) => {
            f.add("--duration", d);
            f.add("--warmup", l.warmup_s);
            f.add("--cooldown", l.cooldown_s);
            if let Some(drain) = l.drain {
                f.add("--drain-timeout", drain.as_secs_f64());
            }
        }
        Stop::Count(n) if n == cell.plan.workload.prompts.num_prompts => {}
        Stop::Count(n) => bail!(
            "`load.requests: {n}` differs from `workload.num_prompts: {}`: a bench sends each prompt once\nhint: leave `requests` out, or make the two equal",
            cell.plan.workload.prompts.num_prompts
        ),
    }
    if let Some(k) = l.max_concurrency {
        f.add("--max-concurrency", k);
    }
    if l.think_time_s > 0.0 {
        f.add("--multi-turn-think-time", l.think_time_s);
    }
    if cell.repeat > 0 {
        f.add("--repeat", cell.repeat);
    }
    Ok(())
}

/// A command line being built.
#[derive(Default)]
struct Flags(Vec<String>);

impl Flags {
    fn add(&mut self, name: &str, value: impl std::fmt::Display) {
        self.0.push(name.to_string());
        self.0.push(value.to_string());
    }

    fn flag(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
}

/// How a cell ended, as the run goes on from it (a local cell's result says the same).
pub(super) struct CellEnd {
    pub status: String,
    pub interrupted: bool,
    pub failure: Option<String>,
}

/// Send `cell` from the Ray cluster `ray` into `cdir` (fresh): the driver gathers the
/// shards under `cdir/ray/` and merges them there; the merged cell's files are moved up
/// into `cdir`, the shards' folders stay beside them.
pub(super) async fn run(
    dir: &RunDir,
    ray: &RayPlan,
    flags: &[String],
    cdir: &CellDir,
    mut interrupt: watch::Receiver<bool>,
) -> Result<CellEnd> {
    let driver = dir.ray_driver();
    std::fs::write(&driver, DRIVER)
        .with_context(|| format!("cannot write `{}`", driver.display()))?;
    let work = cdir.ray();
    let binary = std::env::current_exe().context("cannot find this binary to ship")?;
    let mut cmd = tokio::process::Command::new(&ray.python);
    cmd.arg("-u")
        .arg(&driver)
        .args(["--address", &ray.address])
        .args(["--shards", &ray.shards.to_string()])
        .arg("--binary")
        .arg(&binary)
        .arg("--out")
        .arg(&work)
        .args(["--start-delay", &ray.start_delay.as_secs_f64().to_string()])
        .arg("--max-clock-error-ms")
        .arg(
            ray.max_clock_error_ms
                .map_or("inf".to_string(), |b| b.to_string()),
        )
        .arg("--")
        .args(flags)
        // its last line is the merged cell's path, which the layout already names
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        // its own process group: our Ctrl-C is forwarded once, not delivered twice, and an
        // abort (a second Ctrl-C) kills the group with the servers'
        .process_group(0);
    let mut child = cmd.spawn().with_context(|| {
        format!(
            "cannot start `{}` for the Ray driver\nhint: set `client.python` to a Python with `ray` installed (deploy/ray/requirements.txt)",
            ray.python
        )
    })?;
    let pgid = child.id().map(|p| p as i32);
    if let Some(g) = pgid {
        crate::launcher::track_group(g);
    }
    let mut interrupted = false;
    let ended = tokio::select! {
        s = child.wait() => s.map_err(anyhow::Error::from),
        _ = interrupt.wait_for(|i| *i) => {
            interrupted = true;
            stop(&mut child, pgid).await
        }
    };
    if let Some(g) = pgid {
        // whatever of the group outlived the driver (a merge it started)
        crate::launcher::signal_group(g, libc::SIGKILL);
        crate::launcher::untrack_group(g);
    }
    let status = ended?;
    let merged = cdir.ray_merged();
    if !merged.summary_json().exists() {
        let why = if interrupted {
            "interrupted before the shards were merged".to_string()
        } else {
            format!("the Ray driver ended ({status}) without a merged cell")
        };
        return Ok(CellEnd {
            status: if interrupted { "interrupted" } else { "failed" }.into(),
            interrupted,
            failure: Some(format!("{why}; its output is in `{}`", work.display())),
        });
    }
    for entry in std::fs::read_dir(merged.root())? {
        let entry = entry?;
        std::fs::rename(entry.path(), cdir.root().join(entry.file_name()))?;
    }
    std::fs::remove_dir(merged.root()).ok();
    let report = cdir
        .read_report()
        .context("the merged cell's summary.json is not readable")?;
    Ok(CellEnd {
        status: report.status.clone(),
        interrupted: interrupted || report.status == "interrupted",
        failure: report.failure_reason.clone(),
    })
}

/// Forward the signal to the driver's group (it cancels its shards), then kill the group
/// past the grace.
async fn stop(
    child: &mut tokio::process::Child,
    pgid: Option<i32>,
) -> Result<std::process::ExitStatus> {
    use crate::launcher::signal_group;
    if let Some(g) = pgid {
        signal_group(g, libc::SIGINT);
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(s) => Ok(s?),
        Err(_) => {
            if let Some(g) = pgid {
                signal_group(g, libc::SIGKILL);
            }
            Ok(child.wait().await?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bench_flags;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    /// Every cell of the shipped experiments, as the flags a shard runs with, parses back
    /// into the cell's own schedule, prompts, request and SLOs: a shard sends the cell.
    #[test]
    fn a_cells_bench_flags_are_the_cell() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut checked = 0;
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // the shipped files as they are, then with every field they leave at its default set
        let cases = [
            ("quickstart", vec![]),
            ("saturation", vec![]),
            ("ramp", vec![]),
            ("multi-turn", vec![]),
            ("prefix-cache", vec![]),
            ("trace-replay", vec![]),
            ("low-load", vec![]),
            ("scaling", vec![]),
            (
                "quickstart",
                set(&[
                    "workload.range_ratio=0.25",
                    "workload.prefix_len=7",
                    "workload.temperature=0.5",
                    "workload.continuous_usage_stats=true",
                    "load.burstiness=0.5",
                    "load.max_concurrency=9",
                    "load.request_timeout_s=77",
                    "slo.ttft_ms=300",
                    "slo.tpot_ms=40",
                    "slo.e2el_ms=9000",
                    "repeats=2",
                ]),
            ),
            (
                "quickstart",
                set(&["load.arrival=constant", "workload.ignore_eos=false"]),
            ),
        ];
        for (name, overrides) in cases {
            let path = root.join(format!("{name}.yaml"));
            let (_, plan) = crate::experiment::load(&path, &overrides)
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            for cell in &plan.cells {
                let flags = match bench_flags(cell, "http://10.0.0.5:8000", "m") {
                    Ok(f) => f,
                    // said, not silently wrong: only what a bench has no flag for
                    Err(e) => {
                        let why = format!("{e:#}");
                        assert!(why.contains("`load.requests"), "{name}/{}: {why}", cell.id);
                        continue;
                    }
                };
                let argv = ["vllm-loadtest", "bench"]
                    .into_iter()
                    .map(String::from)
                    .chain(flags);
                let Command::Bench(a) = Cli::try_parse_from(argv).unwrap().command else {
                    unreachable!()
                };
                let b = crate::cli::bench::plan(&a).unwrap();
                let c = &cell.plan;
                let at = format!("{name}/{}", cell.id);
                assert_eq!(b.prompts, c.workload.prompts, "{at}");
                let (bl, cl) = (&b.load, &c.load);
                assert_eq!(bl.arrival, cl.arrival, "{at}");
                assert_eq!(bl.stop, cl.stop, "{at}");
                assert_eq!(bl.max_concurrency, cl.max_concurrency, "{at}");
                assert_eq!(bl.window_s, cl.window_s, "{at}");
                assert_eq!(bl.request_timeout, cl.request_timeout, "{at}");
                assert_eq!(bl.drain, cl.drain, "{at}");
                assert_eq!(bl.trace, cl.trace, "{at}");
                assert_eq!(bl.think_time_s, cl.think_time_s, "{at}");
                assert_eq!(
                    bl.schedule(a.repeat).unwrap(),
                    cl.schedule(cell.repeat).unwrap(),
                    "{at}"
                );
                assert_eq!(b.slos, c.slo.slos, "{at}");
                assert_eq!(b.ignore_eos, c.workload.ignore_eos, "{at}");
                assert_eq!(b.endpoint, c.workload.endpoint, "{at}");
                assert_eq!(a.temperature, c.workload.temperature, "{at}");
                assert_eq!(
                    a.continuous_usage_stats, c.workload.continuous_usage_stats,
                    "{at}"
                );
                let probe = c.server.health_probe.map_or(0.0, |d| d.as_secs_f64());
                assert_eq!(a.health_probe, probe, "{at}");
                assert_eq!(b.percentiles, super::super::SUMMARY_PERCENTILES, "{at}");
                checked += 1;
            }
        }
        assert!(checked > 40, "{checked} cells checked");
    }
}
