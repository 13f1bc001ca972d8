//! `bench --search`: probe one server rate by rate until its limit is bracketed within the
//! tolerance. Each probe is a cell folder (`OUTPUT_DIR/search/NN-rateR/`, the files `bench`
//! writes), read back for the pure search step, so the answer comes from the stored records
//! as a `run` search's does; the answer is printed with its bracket.

use super::bench::{Plan, write_summary};
use super::bench_args::{ArrivalKind, BenchArgs, DatasetName, SearchGoal};
use crate::aggregate::{CellIdent, read_cell_dir};
use crate::client;
use crate::runner::cell::{CellSpec, run_cell};
use crate::runner::progress::Spec;
use crate::store::layout::CellDir;
use crate::workload::Workload;
use crate::workload::body::BodyOptions;
use anyhow::{Context, Result, bail};
use loadtest_analysis::analysis::search::{self, Goal, SearchSpec, Step};
use loadtest_analysis::report::search_text;
use loadtest_base::Tokenizer;
use loadtest_base::arrivals::{self, Arrival};
use std::time::Duration;

/// SLO attainment that counts as meeting `--goodput` (DESIGN's default).
const SLO_TARGET: f64 = 0.9;

fn spec(a: &BenchArgs, goal: SearchGoal, plan: &Plan) -> Result<SearchSpec> {
    if a.ramp_up_strategy.is_some() || a.dataset_name == DatasetName::Trace {
        bail!(
            "`--search` sets each probe's rate; a ramp or a trace replay has its own schedule\nhint: drop `--ramp-up-strategy` or the trace, or drop `--search`"
        );
    }
    if a.dataset_name == DatasetName::MultiTurn {
        bail!(
            "`--search` over multi-turn conversations is not supported yet (its rates count requests, a conversation is several)\nhint: search with single requests, or run `multi_turn` at given rates"
        );
    }
    if a.search_min >= a.search_max {
        bail!(
            "`--search-min {}` is not below `--search-max {}`\nhint: the search probes rates in [min, max]",
            a.search_min,
            a.search_max
        );
    }
    if !(a.search_min..=a.search_max).contains(&a.search_start) {
        bail!(
            "`--search-start {}` lies outside [{}, {}]\nhint: start inside `--search-min` and `--search-max`",
            a.search_start,
            a.search_min,
            a.search_max
        );
    }
    if a.search_tolerance <= 0.0 || a.search_max_cells == 0 {
        bail!(
            "`--search-tolerance` must be above 0 and `--search-max-cells` at least 1\nhint: e.g. `--search-tolerance 0.05 --search-max-cells 10`"
        );
    }
    let goal = match goal {
        SearchGoal::Saturation => Goal::Saturation,
        SearchGoal::Slo if plan.slos.is_empty() => {
            bail!("`--search slo` needs an SLO to meet\nhint: add e.g. `--goodput ttft:500`")
        }
        SearchGoal::Slo => Goal::Slo,
    };
    Ok(SearchSpec {
        goal,
        start_rate: a.search_start,
        min_rate: a.search_min,
        max_rate: a.search_max,
        growth: 2.0,
        tolerance: a.search_tolerance,
        max_cells: a.search_max_cells,
    })
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    a: &BenchArgs,
    plan: &Plan,
    goal: SearchGoal,
    workload: &Workload,
    server: client::Server,
    body: &BodyOptions,
    tok: &Tokenizer,
    interrupt: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let spec = spec(a, goal, plan)?;
    let root = a.output_dir.clone().unwrap_or_else(|| {
        std::path::PathBuf::from("results/bench").join(format!(
            "{}-search",
            loadtest_base::time::compact(loadtest_base::time::unix_now())
        ))
    });
    let dir = root.join("search");
    eprintln!(
        "bench: searching for {} from {} req/s within [{}, {}] to ±{:.1}%, at most {} cells; results in `{}`",
        spec.goal.name(),
        spec.start_rate,
        spec.min_rate,
        spec.max_rate,
        spec.tolerance * 50.0,
        spec.max_cells,
        dir.display()
    );
    // every probe sends the same prompts: on a vLLM each gets a prefix-cache salt of its
    // own, or a later probe is served from the blocks an earlier one left (a salt given in
    // `--extra-body` is the user's, kept)
    let user_salt = body
        .extra
        .as_ref()
        .is_some_and(|e| e.contains_key("cache_salt"));
    let salted = !user_salt && client::get::server_version(&server).await.1;
    let endpoints = [server];
    let mut probes = Vec::new();
    let answer = loop {
        let rate = match search::step(&spec, &probes, SLO_TARGET) {
            Step::Done(answer) => break answer,
            Step::Probe(rate) => rate,
        };
        let n = probes.len();
        let mut p = plan.clone();
        p.load.arrival = Arrival::of(rate, a.arrival == ArrivalKind::Constant, a.burstiness);
        arrivals::check_size(p.load.arrival, p.load.stop).map_err(|e| {
            anyhow::anyhow!(
                "probe at {rate} req/s: {e}\nhint: a lower `--search-max` or a shorter `--duration`"
            )
        })?;
        let name = format!("{n:02}-rate{rate}");
        let cdir = CellDir::new(dir.join(&name));
        let _ = std::fs::remove_dir_all(cdir.root());
        std::fs::create_dir_all(cdir.root())
            .with_context(|| format!("cannot create `{}`", cdir.root().display()))?;
        eprintln!("probe {}: {rate} req/s: running", n + 1);
        let mut probe_body = body.clone();
        if salted {
            let salt = crate::workload::body::cache_salt((cdir.root(), n));
            probe_body
                .extra
                .get_or_insert_with(Default::default)
                .extend(crate::workload::body::salted(salt));
        }
        let cell = CellSpec {
            endpoints: &endpoints,
            prompts: &workload.prompts,
            body: &probe_body,
            load: &p.load,
            schedule: p.load.schedule(0)?,
            turns: p.prompts.turns(),
            connect_timeout: Duration::from_secs_f64(a.conn.connect_timeout),
            slos: &p.slos,
            percentiles: &p.percentiles,
            progress: Spec {
                quiet: a.quiet,
                label: format!("probe {} {rate} req/s: ", n + 1),
                run: None,
            },
            client_threads: a.client_threads,
            health_probe: (a.health_probe > 0.0).then(|| Duration::from_secs_f64(a.health_probe)),
            metrics_interval: None,
            gpu: false,
            exact_tokenizer: !tok.is_built_in(),
            start_at_unix_ns: None,
        };
        let r = run_cell(cell, &cdir, interrupt.clone()).await?;
        write_summary(a, &p, &r, &cdir, &body.model, tok)?;
        cdir.write_status(r.status())?;
        if r.interrupted {
            return Err(super::Ended::Interrupted(format!(
                "interrupted during probe {}; the probes so far are in `{}`",
                n + 1,
                dir.display()
            ))
            .into());
        }
        if let Some(why) = r.failure_reason() {
            return Err(super::Ended::ServerFailed(format!(
                "server lost during probe {} ({rate} req/s): {why}; the probes so far are in `{}`",
                n + 1,
                dir.display()
            ))
            .into());
        }
        let ident = CellIdent {
            id: name,
            group: "server".into(),
            family: "all".into(),
            dp: 1,
            matrix: Default::default(),
            turns: p.prompts.turns(),
        };
        let read = read_cell_dir(&cdir, &p.load, 0, &p.slos, ident)?
            .with_context(|| format!("probe `{}` stored no records", cdir.root().display()))?;
        eprintln!(
            "probe {}: {rate} req/s: {}: {:.2} req/s achieved, TTFT p50 {}{}",
            n + 1,
            read.status,
            read.input.achieved_rate,
            read.input
                .ttft_p50_ms
                .map_or("-".into(), |f| format!("{:.1} ms", f.value)),
            read.input.slo_attainment.map_or(String::new(), |s| format!(
                ", SLO attainment {:.1}%",
                s * 100.0
            )),
        );
        probes.push(read.input);
    };
    println!("search: {}", search_text::answer_phrase(&answer));
    for p in &answer.probes {
        println!(
            "  {:>10} req/s  {:<12} {}",
            search_text::rate(p.rate),
            match (p.passed, spec.goal) {
                (true, Goal::Saturation) => "kept up",
                (false, Goal::Saturation) => "saturated",
                (true, Goal::Slo) => "met",
                (false, Goal::Slo) => "missed",
            },
            dir.join(&p.cell).display()
        );
    }
    eprintln!("results: {}", dir.display());
    Ok(())
}
