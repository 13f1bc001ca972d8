//! `vllm-loadtest aggregate DIR` and `report DIR`: redo the later stages from stored raw
//! data. Also what `run` calls when its cells are done.

use crate::aggregate;
use crate::experiment::{CellPlan, Dataset, Launcher};
use crate::store::layout::RunDir;
use crate::store::manifest::{Manifest, PredictedWith};
use anyhow::{Context, Result};
use clap::Args;
use loadtest_analysis::report::{chart, draw, figures, html, markdown, model, prediction_text};
use loadtest_analysis::stats::survival::Figure;
use loadtest_analysis::summary::goodput::Slo;
use loadtest_base::arrivals::{Arrival, Stop};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct DirArgs {
    /// A results folder written by `vllm-loadtest run`.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

pub fn aggregate_cmd(a: DirArgs) -> Result<()> {
    let (agg, analysis) = aggregate::write_all(&RunDir::new(&a.dir))?;
    eprintln!(
        "aggregated {} cell(s) of `{}`: runs.parquet, timeseries.parquet, analysis.json ({} server configuration(s))",
        agg.cells.len(),
        agg.experiment.name,
        analysis.groups.len()
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A results folder written by `vllm-loadtest run`.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Predict the run's cells with this simulator profile (a fitted YAML, or a built-in
    /// name) in virtual time, into `DIR/predicted/`, and put the prediction beside the
    /// measurement in the report, cell by cell (default: no prediction).
    #[arg(long, value_name = "NAME|FILE")]
    pub profile: Option<String>,
}

pub fn report_cmd(a: ReportArgs) -> Result<()> {
    let dir = RunDir::new(&a.dir);
    let predicted = match &a.profile {
        Some(p) => Some(predict(&dir, p)?),
        None => None,
    };
    if predicted.is_none() && dir.predictions().is_dir() {
        eprintln!(
            "note: `{}` holds predictions of this run; this report leaves them out (`report --profile P` judges one)",
            dir.predictions().display()
        );
    }
    let r = write_report_with(&dir, predicted.as_ref())?;
    print_executive(&r.report);
    println!("report: {}", r.html.display());
    Ok(())
}

/// The measured run's experiment, every cell, predicted with `profile` in virtual time
/// (`run` with the simulator as the server), into `dir.predictions()`.
fn predict(dir: &RunDir, profile: &str) -> Result<RunDir> {
    if dir.search_json().exists() {
        anyhow::bail!(
            "`{}` is a search: its probes' rates followed from its own measurements, and a prediction would search rates of its own\nhint: predict the search with `vllm-loadtest run` of its experiment and `--set server.clock=virtual --set server.profile=…`, and compare the two",
            dir.root().display()
        );
    }
    let m = dir.load_manifest()?;
    if m.predicted {
        anyhow::bail!(
            "`{}` is itself a prediction (virtual time): there is no measurement to put it beside\nhint: `report --profile` a folder of a measured run",
            dir.root().display()
        );
    }
    // a typo or a bad value in the profile fails before anything runs
    vllm_sim::Profile::resolve(profile)
        .and_then(|p| p.validate().map(|()| p))
        .with_context(|| format!("`--profile {profile}`"))?;
    // a file as given here, not relative to the stored experiment's folder
    let profile = match std::fs::canonicalize(profile) {
        Ok(file) => file.display().to_string(),
        Err(_) => profile.to_string(),
    };
    eprintln!("report: predicting the run's cells with profile `{profile}` in virtual time");
    let args = super::run::RunArgs {
        experiment: Some(dir.experiment()),
        overrides: vec![
            "server.launcher=sim".into(),
            "server.clock=virtual".into(),
            format!("server.profile={profile}"),
        ],
        output: dir.predictions(),
        resume: None,
        dry_run: false,
        quiet: true,
        client_threads: 1,
        nested: true,
    };
    let done = super::run::run_to(args)
        .with_context(|| {
            format!(
                "predicting the cells of `{}` (`report --profile` runs its experiment with `server.launcher: sim`, `server.clock: virtual`)",
                dir.root().display()
            )
        })?
        .context("the prediction wrote no results folder")?;
    eprintln!("report: the prediction is in `{}`", done.root().display());
    Ok(done)
}

pub struct Written {
    pub report: model::Report,
    pub markdown: PathBuf,
    pub html: PathBuf,
}

fn facts(dir: &RunDir, agg: &aggregate::Aggregated) -> model::RunFacts {
    let m = dir.read_manifest();
    // the first cell's plan: the setting every cell shares, and the matrix's first value
    // where a dimension varies it (the report's tables show each cell's)
    let (launcher, workload, load, slo) = match agg.plan.cells.first() {
        Some(c) => describe_plan(&c.plan),
        None => Default::default(),
    };
    let m = m.unwrap_or_else(|| Manifest::new(&agg.experiment.name, agg.plan.cells.len(), vec![]));
    model::RunFacts {
        experiment: agg.experiment.name.clone(),
        description: agg.experiment.description.clone(),
        tool: format!("{} {} ({})", m.tool, m.version, m.git_commit),
        host: m.host,
        cpu: format!("{}, {} cores", m.cpu_model, m.cpu_cores),
        started_at: m.started_at,
        finished_at: m.finished_at.unwrap_or_else(|| "-".into()),
        status: m.status,
        server_versions: m.server_versions,
        launcher,
        workload,
        load,
        slo,
        predicted: m.predicted || agg.plan.cells.iter().any(|c| c.plan.server.virtual_clock),
        prediction_basis: m.predicted_with.iter().map(basis_sentence).collect(),
    }
}

/// "4 loads: TTFT and TPOT within 9% of them, 58% before".
fn calibration_phrase(o: &vllm_sim::profile::OpenLoop) -> String {
    let worst = |suffix: &str| {
        o.loads
            .iter()
            .flat_map(|h| &h.metrics)
            .filter(|m| m.metric.ends_with(suffix))
            .map(|m| m.error_pct.abs())
            .fold(0.0, f64::max)
    };
    format!(
        "{} load(s): TTFT and TPOT within {:.0}% of them, {:.0}% before",
        o.loads.len(),
        worst(", calibrated"),
        worst(", before")
    )
}

/// How far a predicted server configuration's figures can be trusted, in the words of its
/// profile: a fitted one's held-out error, or that a hand-written one's is unknown.
fn basis_sentence(p: &PredictedWith) -> String {
    let mut s = format!(
        "Server configuration `{}` was predicted with profile `{}`",
        p.server, p.profile
    );
    match &p.provenance {
        None => s.push_str(
            ", written by hand, not fitted to a server: how far its figures are from a real server's is unknown (`vllm-loadtest fit` makes a profile of yours, with its error).",
        ),
        Some(f) if f.prefill_samples + f.decode_samples == 0 => {
            s.push_str(", written by hand, not fitted to a server");
            match &f.open_loop {
                Some(o) => s.push_str(&format!(
                    ", its per-step and per-sequence costs then calibrated on measured loads ({}); its other costs' error is unknown.",
                    calibration_phrase(o)
                )),
                None => s.push('.'),
            }
        }
        Some(f) => {
            let what = match (&f.model, &f.server_version) {
                (Some(m), Some(v)) => format!("`{m}` on {v}"),
                (Some(m), None) => format!("`{m}`"),
                (None, Some(v)) => v.clone(),
                (None, None) => "a server".to_string(),
            };
            s.push_str(&format!(
                ", fitted to {what} at `{}` on {} (the fit's residuals: prefill {:.1}%, decode {:.1}%)",
                f.source,
                f.fitted_at,
                f.prefill_rel_rms * 100.0,
                f.decode_rel_rms * 100.0
            ));
            match (&f.open_loop, &f.open_loop_speed) {
                (Some(o), _) => s.push_str(&format!(
                    ", its per-step and per-sequence costs then calibrated on measured loads ({}).",
                    calibration_phrase(o)
                )),
                (None, Some(v)) if v.applied => s.push_str(&format!(
                    ", every step cost then scaled by {:.2}, the server's speed under an open-loop load against the probes' ({}).",
                    v.speed, v.load
                )),
                _ => s.push('.'),
            }
            match &f.held_out {
                Some(h) if !h.metrics.is_empty() => {
                    let errors: Vec<String> = h
                        .metrics
                        .iter()
                        .map(|m| {
                            let name = m.metric.split(" (").next().unwrap_or(&m.metric);
                            format!("{name} {:+.1}%", m.error_pct)
                        })
                        .collect();
                    s.push_str(&format!(
                        " On a load the fit did not use ({}) it predicted {} of the measured: expect errors of that order on loads like it, and larger on loads unlike it.",
                        h.load,
                        errors.join(", ")
                    ));
                }
                _ => s.push_str(
                    " It was not checked on a held-out load: its error is unknown.",
                ),
            }
            if let Some(st) = f.steadiness.filter(|st| st.unsteady()) {
                s.push_str(&format!(
                    " Its server was not steady while it was fitted: {}; the profile describes a server in motion.",
                    st.describe()
                ));
            }
        }
    }
    for (k, was, is) in &p.overridden {
        let (was, is) = (limit_value(k, *was), limit_value(k, *is));
        s.push_str(&format!(
            " The experiment sets `{k}` to {is} (the profile's: {was}), which no check saw."
        ));
    }
    s
}

/// A limit as the experiment file spells it: the manifest stores a switch as 0 or 1.
fn limit_value(name: &str, v: u64) -> String {
    match name {
        "enable_prefix_caching" => (v != 0).to_string(),
        _ => v.to_string(),
    }
}

/// The server, workload, load and SLOs of a cell, in words.
fn describe_plan(p: &CellPlan) -> (String, String, String, Option<String>) {
    let launcher = match &p.server.launcher {
        Launcher::Sim { profile } if p.server.virtual_clock => {
            format!("built-in simulated vLLM in virtual time (profile `{profile}`)")
        }
        Launcher::Sim { profile } => format!("built-in simulated vLLM (profile `{profile}`)"),
        Launcher::Command { template, .. } => format!("`{template}`"),
        Launcher::Compose { file, .. } => format!("docker compose `{file}`"),
        other => other.name().to_string(),
    };
    let w = &p.workload;
    let workload = match &w.prompts.dataset {
        Dataset::Random {
            input_len,
            range_ratio,
            ..
        } => format!(
            "random prompts, {input_len} tokens in / {} out{}",
            w.prompts.output_len,
            if *range_ratio > 0.0 {
                format!(" (±{:.0}%)", range_ratio * 100.0)
            } else {
                String::new()
            }
        ),
        Dataset::PrefixRepetition {
            num_prefixes,
            prefix_len,
            suffix_len,
        } => format!(
            "prefix_repetition prompts, {num_prefixes} prefix groups × ({prefix_len} shared + {suffix_len} own) tokens in / {} out",
            w.prompts.output_len
        ),
        Dataset::ShareGpt { path, .. } => format!("sharegpt `{}`", path.display()),
        Dataset::Jsonl { path } => format!("jsonl `{}`", path.display()),
        Dataset::Trace { path, .. } => format!("trace `{}`", path.display()),
        Dataset::MultiTurn { turns, input_len } => format!(
            "multi-turn chats: {turns} turns of {input_len} tokens in / {} out, each carrying the conversation so far ({} s think time)",
            w.prompts.output_len, p.load.think_time_s
        ),
    };
    let l = &p.load;
    let load = match l.stop {
        // (`max_concurrency` may be a matrix dimension: each cell's is in the tables)
        Stop::Duration(d) if l.closed_loop() => format!(
            "closed loops of `max_concurrency` requests in flight (the next as soon as one ends), {d} s per cell ({} s warm-up, {} s cool-down excluded)",
            l.warmup_s, l.cooldown_s
        ),
        Stop::Duration(d) => format!(
            "{} arrivals, {d} s per cell ({} s warm-up, {} s cool-down excluded)",
            l.arrival_name, l.warmup_s, l.cooldown_s
        ),
        Stop::Count(_) if l.trace.is_some() => "the trace's own arrivals".to_string(),
        Stop::Count(n) => format!("{} arrivals, {n} requests per cell", l.arrival_name),
    };
    let slo: Vec<String> = p
        .slo
        .slos
        .iter()
        .map(|s| match s {
            Slo::TtftMs(v) => format!("TTFT ≤ {v} ms"),
            Slo::TpotMs(v) => format!("TPOT ≤ {v} ms"),
            Slo::E2elMs(v) => format!("E2E latency ≤ {v} ms"),
        })
        .collect();
    (
        launcher,
        workload,
        load,
        (!slo.is_empty()).then(|| slo.join(" and ")),
    )
}

/// Aggregate, analyse and write `report.md` and `report.html` in `dir`.
pub fn write_report(dir: &RunDir) -> Result<Written> {
    write_report_with(dir, None)
}

/// The report, with a prediction of the same cells (`predicted`, a run in virtual time)
/// judged beside the measurement when given one.
fn write_report_with(dir: &RunDir, predicted: Option<&RunDir>) -> Result<Written> {
    let (agg, analysis) = aggregate::write_all(dir)?;
    let inputs: Vec<_> = agg.cells.iter().map(|c| c.input.clone()).collect();
    let generated = format!(
        "Generated by vllm-loadtest {} at {} from the raw records in this folder.",
        env!("CARGO_PKG_VERSION"),
        loadtest_base::time::rfc3339(loadtest_base::time::unix_now())
    );
    // charts: the seed's three, and the server's gauges over the first saturated (else busiest) cell
    let mut named = Vec::new();
    for g in &analysis.groups {
        named.push(figures::saturation(g));
    }
    if let Some(f) = figures::throughput_by_dp(&analysis) {
        named.push(f);
    }
    // the SLOs the cells share (the first cell's, as the report's facts say)
    let slos = agg
        .plan
        .cells
        .first()
        .map_or(&[][..], |c| &c.plan.slo.slos[..]);
    named.push(figures::latency_by_dp(&analysis, slos));
    named.extend(figures::latency_breakdown(&analysis));
    let chosen = analysis.groups.first().and_then(|g| {
        let cell = match &g.saturation {
            Some(s) => s.after.cells.first(),
            None => g.points.last().and_then(|p| p.cells.first()),
        };
        cell.cloned()
    });
    let mut server_chart = None;
    if let Some(cell) = chosen {
        let rows = dir.cell(&cell).read_metrics();
        if let Some(f) = figures::server_over_time(&cell, &rows) {
            server_chart = Some((f.stem.clone(), cell));
            named.push(f);
        }
    }
    let ramps = ramp_probes(dir, &agg)?;
    named.extend(ramps.iter().map(|r| figures::ramp(&r.cell, &r.probe)));
    let figs = dir.figures();
    std::fs::create_dir_all(&figs)?;
    let mut svgs = std::collections::BTreeMap::new();
    for n in &named {
        let prims = chart::layout(&n.figure);
        let svg = draw::svg(&prims, n.figure.width, n.figure.height, &n.figure.title);
        std::fs::write(figs.join(format!("{}.svg", n.stem)), &svg)?;
        std::fs::write(
            figs.join(format!("{}.png", n.stem)),
            draw::png(&prims, n.figure.width, n.figure.height),
        )?;
        svgs.insert(n.stem.clone(), svg);
    }
    let mut report = model::build(
        &facts(dir, &agg),
        &analysis,
        &inputs,
        server_chart,
        &ramps,
        generated,
    );
    if let Some(p) = predicted {
        add_prediction(&mut report, &agg, dir, p)?;
    }
    let md = dir.report_md();
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&md).with_context(|| format!("cannot write `{}`", md.display()))?,
    );
    markdown::render(&mut f, &report)?;
    drop(f);
    let html_path = dir.report_html();
    let mut f = std::io::BufWriter::new(std::fs::File::create(&html_path)?);
    html::render(&mut f, &report, &svgs)?;
    drop(f);
    Ok(Written {
        report,
        markdown: md,
        html: html_path,
    })
}

/// The section "Predicted beside measured" and its line in the executive summary.
fn add_prediction(
    report: &mut model::Report,
    measured: &aggregate::Aggregated,
    dir: &RunDir,
    p: &RunDir,
) -> Result<()> {
    // read, not rewritten: the prediction's own run wrote its tables and report just now
    let predicted = aggregate::aggregate(p)?;
    let j = super::compare_prediction::judge(measured, &predicted, p);
    let profile = p
        .read_manifest()
        .and_then(|m| m.predicted_with.first().map(|w| w.profile.clone()))
        .unwrap_or_else(|| "?".into());
    let mut section = prediction_text::section("Predicted beside measured", &j);
    let place = p.root().strip_prefix(dir.root()).unwrap_or(p.root());
    section.paragraphs.insert(
        0,
        format!(
            "Every cell of this run predicted with profile `{profile}` in virtual time (the same schedules and prompts; `{}`, a run of its own with its report), judged against the measured cells: by matrix values, against the range of the measured repeats.",
            place.display()
        ),
    );
    report.sections.push(section);
    report
        .executive_summary
        .extend(prediction_text::summary_line(&profile, &j));
    Ok(())
}

/// Each ramp cell read as a saturation probe, from its raw records.
fn ramp_probes(dir: &RunDir, agg: &aggregate::Aggregated) -> Result<Vec<model::RampCell>> {
    let mut out = Vec::new();
    for c in &agg.cells {
        let arrival = c.cell.plan.load.arrival;
        let Arrival::Ramp { start, end, .. } = arrival else {
            continue;
        };
        let records = crate::store::records::read_compact(&dir.cell(&c.cell.id))?;
        // the probe counts requests: a conversation's turns are requests too
        let turns = f64::from(c.cell.plan.workload.prompts.turns().max(1));
        let peak = start.max(end) * turns;
        if let Some(probe) = loadtest_analysis::analysis::ramp::probe(&records, Some(peak)) {
            out.push(model::RampCell {
                cell: c.cell.id.clone(),
                ramp: arrival.describe(),
                probe,
            });
        }
    }
    Ok(out)
}

pub fn print_executive(r: &model::Report) {
    println!("\nExecutive summary");
    for s in &r.executive_summary {
        println!("- {s}");
    }
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline results folder.
    #[arg(value_name = "BASELINE")]
    pub a: PathBuf,
    /// The results folder compared with it.
    #[arg(value_name = "CANDIDATE")]
    pub b: PathBuf,
}

/// Lower is better for latencies, higher for throughputs.
const METRICS: &[(&str, bool)] = &[
    ("achieved req/s", true),
    ("output tok/s", true),
    ("TTFT p50 ms", false),
    ("TTFT p99 ms", false),
    ("TPOT p50 ms", false),
    ("E2EL p50 ms", false),
    ("SLO attainment", true),
];

/// Which side is better, when the figures say so: within 2% is a tie (the noise of a load
/// test); a lower bound is better or worse only where the whole range it allows is.
fn better(a: Figure, b: Figure, higher_better: bool) -> Option<char> {
    let (a_lo, b_lo) = (a.value, b.value);
    let hi = |f: Figure| {
        if f.lower_bound {
            f64::INFINITY
        } else {
            f.value
        }
    };
    let (a_hi, b_hi) = (hi(a), hi(b));
    if !a.lower_bound && !b.lower_bound && (b_lo - a_lo).abs() < 0.02 * a_lo.abs() {
        return Some('≈');
    }
    let (a_wins, b_wins) = if higher_better {
        (a_lo > b_hi * 1.02, b_lo > a_hi * 1.02)
    } else {
        (a_hi * 1.02 < b_lo, b_hi * 1.02 < a_lo)
    };
    match (a_wins, b_wins) {
        (true, _) => Some('A'),
        (_, true) => Some('B'),
        _ => None,
    }
}

/// `vllm-loadtest compare A B`: the cells both experiments ran (matched by their matrix
/// values), side by side, with the change and which side is better per metric. Figures are
/// recomputed from both folders' raw records.
pub fn compare_cmd(c: CompareArgs) -> Result<()> {
    let a = aggregate::aggregate(&RunDir::new(&c.a))?;
    let b = aggregate::aggregate(&RunDir::new(&c.b))?;
    let predicted = |d: &PathBuf| RunDir::new(d).read_manifest().is_some_and(|m| m.predicted);
    // a prediction beside a measurement: judged against the measured range, not A vs B
    match (predicted(&c.a), predicted(&c.b)) {
        (false, true) => {
            return super::compare_prediction::print(
                &mut std::io::stdout().lock(),
                (&a, &c.a),
                (&b, &c.b),
            );
        }
        (true, false) => {
            return super::compare_prediction::print(
                &mut std::io::stdout().lock(),
                (&b, &c.b),
                (&a, &c.a),
            );
        }
        _ => {}
    }
    let key = |d: &aggregate::CellData| format!("{:?} rep{}", d.input.matrix, d.cell.repeat);
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    writeln!(
        out,
        "# `{}` (A) vs `{}` (B)\n",
        a.experiment.name, b.experiment.name
    )?;
    writeln!(out, "A: `{}`  \nB: `{}`\n", c.a.display(), c.b.display())?;
    writeln!(out, "| cell | metric | A | B | change | better |")?;
    writeln!(out, "|---|---|---:|---:|---:|---|")?;
    let (mut wins_a, mut wins_b, mut matched) = (0, 0, 0);
    for ca in &a.cells {
        let Some(cb) = b.cells.iter().find(|cb| key(cb) == key(ca)) else {
            continue;
        };
        matched += 1;
        for (m, higher_better) in METRICS {
            let (Some(va), Some(vb)) = (ca.input.figure(m), cb.input.figure(m)) else {
                continue;
            };
            let change = if va.value != 0.0 && !va.lower_bound && !vb.lower_bound {
                format!("{:+.1}%", (vb.value - va.value) / va.value.abs() * 100.0)
            } else {
                "-".into()
            };
            let better = match better(va, vb, *higher_better) {
                Some('A') => {
                    wins_a += 1;
                    "A".to_string()
                }
                Some('B') => {
                    wins_b += 1;
                    "B".to_string()
                }
                Some(c) => c.to_string(),
                // a lower bound that overlaps the other side: not known which is better
                None => "?".into(),
            };
            writeln!(
                out,
                "| {} | {m} | {} | {} | {change} | {better} |",
                ca.cell.id,
                va.display(2),
                vb.display(2)
            )?;
        }
    }
    let only_a = a
        .cells
        .iter()
        .filter(|ca| !b.cells.iter().any(|cb| key(cb) == key(ca)))
        .count();
    let only_b = b
        .cells
        .iter()
        .filter(|cb| !a.cells.iter().any(|ca| key(ca) == key(cb)))
        .count();
    writeln!(
        out,
        "\n{matched} cells in both ({only_a} only in A, {only_b} only in B); A better on {wins_a} figures, B on {wins_b} (differences under 2% count as ties; `?`: a lower bound (`> x`, requests cut off) leaves it open)."
    )?;
    if matched == 0 {
        anyhow::bail!(
            "the two experiments have no cell in common (cells are matched by their matrix values)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lower_bound_decides_only_where_its_whole_range_does() {
        let k = Figure::known;
        let at_least = |value| Figure {
            value,
            lower_bound: true,
        };
        // latencies: lower is better
        assert_eq!(better(k(100.0), k(101.0), false), Some('≈'));
        assert_eq!(better(k(100.0), k(150.0), false), Some('A'));
        // B is at least 3 s: worse than A's 100 ms whatever its true value
        assert_eq!(better(k(100.0), at_least(3000.0), false), Some('A'));
        // A is at least 50 ms, B 3 s exactly: A might be 5 s, so open
        assert_eq!(better(at_least(50.0), k(3000.0), false), None);
        // A at least 3 s, B 100 ms: B better for sure
        assert_eq!(better(at_least(3000.0), k(100.0), false), Some('B'));
        assert_eq!(better(at_least(3000.0), at_least(100.0), false), None);
        // throughputs: higher is better
        assert_eq!(better(k(10.0), k(20.0), true), Some('B'));
    }
}
