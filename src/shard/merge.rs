//! `merge`: the shards of one load point made one cell again. Their records are put on
//! one timeline (each shard's clock zero placed where it really was after the agreed
//! start, its intended times left as the plan has them, so a late shard's lateness stays
//! in its send lag), and every figure is computed over their union exactly as for a cell
//! run from one machine. Refused unless the folders are every shard of one plan, each
//! holding only its own requests, and every request sent is accounted for; what makes the
//! shards less than one load point (a late start, a clock that may be off, a client that
//! was the limit) is kept and flagged.

use super::ShardRecord;
use super::clock::Judged;
use crate::runner::cell::{FigureScope, summarize_records, validity_warnings};
use crate::store::cell_report::{CellReport, ClientUsage, SendPaths, StoredSummary};
use crate::store::layout::CellDir;
use crate::store::shard_json::{ShardLine, ShardsReport};
use crate::store::{records, requests_table, summary_json};
use anyhow::{Context, Result, bail};
use loadtest_analysis::record::{CompactRecord, RequestRecord};
use loadtest_analysis::summary::{RunSummary, goodput::Slo};
use loadtest_base::shard::Shard;
use std::path::{Path, PathBuf};

/// How far shards may be from one load point before the merged cell is flagged.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// A shard that started later than this after the agreed instant (ms).
    pub start_late_ms: f64,
    /// A shard on another machine whose kernel cannot put its clock within this
    /// (ms); `None`: clocks are not judged.
    pub clock_error_ms: Option<f64>,
}

/// The merged cell, as written to its folder.
pub struct Merged {
    pub summary: RunSummary,
    pub status: &'static str,
    pub shards: ShardsReport,
    pub warnings: Vec<String>,
    pub plan: super::MergePlan,
}

/// One shard's folder read back.
struct Part {
    folder: PathBuf,
    record: ShardRecord,
    report: CellReport<StoredSummary>,
    records: Vec<RequestRecord>,
}

impl Part {
    fn shard(&self) -> Shard {
        Shard {
            index: self.record.index,
            count: self.record.count,
        }
    }
}

/// Merge the shard folders `dirs` into the cell folder `out` (created; must be new or
/// empty, and is removed again if the merge fails half way).
pub fn merge(dirs: &[PathBuf], out: &CellDir, tol: Tolerance) -> Result<Merged> {
    let mut parts = dirs
        .iter()
        .map(|d| read_part(d))
        .collect::<Result<Vec<_>>>()?;
    parts.sort_by_key(|p| p.record.index);
    check_together(&parts)?;
    for p in &parts {
        check_own(p)?;
    }
    check_whole(&parts)?;
    prepare_out(out)?;
    let merged = build(parts, out, tol);
    if merged.is_err() {
        let _ = std::fs::remove_dir_all(out.root());
    }
    merged
}

/// The merged cell's records, figures and files, from shards that belong together.
fn build(parts: Vec<Part>, out: &CellDir, tol: Tolerance) -> Result<Merged> {
    let first = &parts[0].record;
    let (plan, start_at) = (first.plan.clone(), first.start_at_unix_ns);
    let apart = apart(&parts, tol);
    let lines: Vec<ShardLine> = parts.iter().map(line).collect();
    let clients: Vec<ClientUsage> = parts.iter().map(|p| p.report.client.clone()).collect();
    let mut shard_warnings = Vec::new();
    for p in &parts {
        shard_warnings.extend(
            p.report
                .warnings
                .iter()
                .map(|w| format!("shard {}: {w}", p.shard())),
        );
    }
    let failure = parts.iter().find_map(|p| {
        p.report
            .failure_reason
            .as_ref()
            .map(|r| format!("shard {}: {r}", p.shard()))
    });
    let statuses: Vec<String> = parts.iter().map(|p| p.report.status.clone()).collect();
    let not_sent: u64 = parts.iter().map(|p| p.report.summary.not_sent).sum();
    let all = union(parts)?;
    let compact: Vec<CompactRecord> = all.iter().map(RequestRecord::to_compact).collect();
    let slos = plan
        .slos
        .iter()
        .map(|s| Slo::parse(s))
        .collect::<Result<Vec<_>>>()?;
    let scope = FigureScope {
        window_s: plan.window_s,
        offered_rate: plan.request_rate.unwrap_or(f64::INFINITY),
        slos: &slos,
        percentiles: &plan.percentiles,
    };
    let s = summarize_records(&scope, out, &compact, not_sent, start_at, |f| {
        all.iter().for_each(&mut *f);
        Ok(())
    })?;
    requests_table::write_requests(&out.requests_parquet(), &compact, s.window, start_at)?;
    let interrupted = statuses.iter().any(|st| st == "interrupted");
    // sent on a schedule of its own (a rate, a ramp, a trace), not all at once
    let paced = plan.request_rate.is_some() || plan.ramp.is_some() || plan.trace;
    let mut warnings = validity_warnings(&s, &compact, interrupted, false, paced);
    warnings.extend(apart.iter().cloned());
    warnings.extend(shard_warnings);
    let status = merged_status(&statuses, &s);
    let shards = ShardsReport {
        count: lines.len() as u32,
        start_at: loadtest_base::time::rfc3339_ms(start_at),
        apart,
        shards: lines,
    };
    let merged = Merged {
        summary: s,
        status,
        shards,
        warnings,
        plan,
    };
    write_summary(out, &merged, &combined_client(&clients), start_at, failure)?;
    Ok(merged)
}

fn read_part(dir: &Path) -> Result<Part> {
    let cdir = CellDir::new(dir);
    if !dir.is_dir() {
        bail!(
            "`{}` is not a folder\nhint: give the cell folders `bench --shard` wrote",
            dir.display()
        );
    }
    let Some(record) = ShardRecord::read(&cdir)? else {
        if cdir.requests_jsonl().exists() {
            bail!(
                "`{}` holds a journal but no `shard.json`: its bench did not finish (killed?)\nhint: run every shard again, with a new `--start-at`",
                dir.display()
            );
        }
        bail!(
            "`{}` holds no `shard.json`: not a shard's cell folder\nhint: give the folders `bench --shard I/N` wrote (`--output-dir`)",
            dir.display()
        );
    };
    consistent(&record).map_err(|why| {
        anyhow::anyhow!(
            "`{}`: its `shard.json` is inconsistent: {why}\nhint: was it edited? run the shard again",
            cdir.shard_json().display()
        )
    })?;
    let Some(report) = cdir.read_report() else {
        bail!(
            "`{}` has no readable `summary.json`: the shard did not finish\nhint: run that shard again (with a new `--start-at` for every shard)",
            dir.display()
        );
    };
    let records = records::read_full(&cdir)
        .with_context(|| format!("cannot read the records of `{}`", dir.display()))?;
    Ok(Part {
        folder: dir.to_path_buf(),
        record,
        report,
        records,
    })
}

/// Every shard of one plan, once: the same count, start, plan and tool version.
fn check_together(parts: &[Part]) -> Result<()> {
    let Some(first) = parts.first() else {
        bail!("nothing to merge\nhint: give every shard's cell folder");
    };
    let r0 = &first.record;
    for p in parts {
        let r = &p.record;
        let differs = |what: &str, a: &dyn std::fmt::Display, b: &dyn std::fmt::Display| {
            anyhow::anyhow!(
                "`{}` and `{}` are not shards of one load point: their {what} differ ({a} and {b})\nhint: merge the folders of one sharded run only",
                first.folder.display(),
                p.folder.display()
            )
        };
        // first: another version may describe the same plan in other words
        if r.version != r0.version {
            return Err(differs("vllm-loadtest versions", &r0.version, &r.version));
        }
        if r.count != r0.count {
            return Err(differs("shard counts", &r0.count, &r.count));
        }
        if r.start_at_unix_ns != r0.start_at_unix_ns {
            return Err(differs(
                "agreed starts",
                &loadtest_base::time::rfc3339_ms(r0.start_at_unix_ns),
                &loadtest_base::time::rfc3339_ms(r.start_at_unix_ns),
            ));
        }
        let parts = r0.digests.differing(&r.digests);
        if !parts.is_empty() {
            bail!(
                "`{}` and `{}` are not shards of one load point: they differ in {}\nhint: give every shard the same flags and the same input files; merge the folders of one sharded run only",
                first.folder.display(),
                p.folder.display(),
                parts.join(", ")
            );
        }
    }
    let n = r0.count;
    let mut seen: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
    for p in parts {
        seen.entry(p.record.index)
            .or_default()
            .push(p.folder.display().to_string());
    }
    if let Some((i, twice)) = seen.iter().find(|(_, f)| f.len() > 1) {
        bail!(
            "shard {i}/{n} is given twice: {}\nhint: give each shard's folder once",
            twice.join(", ")
        );
    }
    let missing = n as usize - seen.len();
    if missing > 0 {
        let some: Vec<String> = (0..n)
            .filter(|i| !seen.contains_key(i))
            .take(8)
            .map(|i| format!("{i}/{n}"))
            .collect();
        bail!(
            "{missing} shard(s) missing ({}{}): the merged cell would not be the load point\nhint: give all {n} shards' folders",
            some.join(", "),
            if missing > some.len() { ", …" } else { "" }
        );
    }
    Ok(())
}

/// What `shard.json` says must hang together before anything is built on it.
fn consistent(r: &ShardRecord) -> std::result::Result<(), String> {
    if r.count == 0 || r.index >= r.count {
        return Err(format!("shard {}/{} does not exist", r.index, r.count));
    }
    if u64::from(r.count) > r.entries_total.max(1) {
        return Err(format!(
            "{} shards of {} schedule entries",
            r.count, r.entries_total
        ));
    }
    // its share follows from the whole, never taken on its word
    let share = (r.entries_total + u64::from(r.count - 1 - r.index)) / u64::from(r.count);
    if r.entries != share {
        return Err(format!(
            "shard {}/{} of {} entries has {share}, not {}",
            r.index, r.count, r.entries_total, r.entries
        ));
    }
    match r.clock_zero_unix_ns.checked_sub(r.start_at_unix_ns) {
        Some(d) if d.abs() <= MAX_LATE_NS => Ok(()),
        _ => Err("its start is more than a day from the agreed one".into()),
    }
}

/// The whole load point is accounted for: every scheduled request of every shard sent or
/// not sent, and they add up to the load point's schedule.
fn check_whole(parts: &[Part]) -> Result<()> {
    let r0 = &parts[0].record;
    let scheduled = r0.entries_total * u64::from(r0.turns.max(1));
    let accounted: u64 = parts
        .iter()
        .map(|p| p.report.summary.sent + p.report.summary.not_sent)
        .sum();
    if accounted != scheduled {
        bail!(
            "the shards account for {accounted} requests of the load point's {scheduled}\nhint: a folder is incomplete or edited; run the shards again"
        );
    }
    Ok(())
}

/// No shard starts a day off the agreed instant (bench refuses a start a minute past).
const MAX_LATE_NS: i64 = 86_400_000_000_000;

/// A shard's folder holds its own requests only, one record per request it sent.
fn check_own(p: &Part) -> Result<()> {
    let shard = p.shard();
    let turns = u64::from(p.record.turns.max(1));
    if let Some(r) = p.records.iter().find(|r| !shard.owns(r.id / turns)) {
        bail!(
            "`{}` holds request {}, which is not shard {shard}'s\nhint: was this folder written by another shard, or by a run without `--shard`?",
            p.folder.display(),
            r.id
        );
    }
    let sent = p.report.summary.sent;
    let scheduled = p.record.entries * turns;
    if sent + p.report.summary.not_sent != scheduled {
        bail!(
            "`{}` accounts for {sent} sent + {} not sent of its {scheduled} scheduled requests\nhint: the folder is incomplete or edited; run that shard again",
            p.folder.display(),
            p.report.summary.not_sent
        );
    }
    if sent != p.records.len() as u64 {
        bail!(
            "`{}` says it sent {sent} requests but holds {} records: the folder is incomplete\nhint: run that shard again",
            p.folder.display(),
            p.records.len()
        );
    }
    Ok(())
}

/// The output folder is created, and must not hold a cell already.
fn prepare_out(out: &CellDir) -> Result<()> {
    let root = out.root();
    if root.exists() {
        let busy = std::fs::read_dir(root)
            .with_context(|| format!("`{}` is not a folder", root.display()))?
            .next()
            .is_some();
        if busy {
            bail!(
                "`{}` is not empty\nhint: give `-o` a new folder; the merge writes a whole cell",
                root.display()
            );
        }
    }
    std::fs::create_dir_all(root).with_context(|| format!("cannot create `{}`", root.display()))
}

/// Every shard's records on the merged timeline, by id: a shard's clock zero was `late`
/// after the agreed start (its zero is the merged cell's), so its send and end times move
/// by that much and its intended times do not.
fn union(parts: Vec<Part>) -> Result<Vec<RequestRecord>> {
    let mut all = Vec::with_capacity(parts.iter().map(|p| p.records.len()).sum());
    for p in parts {
        // bounded by `consistent`; an early start (a stepped clock) is not moved back
        let late =
            u64::try_from(p.record.clock_zero_unix_ns - p.record.start_at_unix_ns).unwrap_or(0);
        all.extend(p.records.into_iter().map(|mut r| {
            r.t_send_ns += late;
            r.t_end_ns += late;
            // a later turn was intended on the shard's clock (the previous turn's end plus
            // the think time), not by the plan: it moves with the shard
            if r.turn.is_some_and(|t| t.index > 0) {
                r.t_intended_ns += late;
            }
            r
        }));
    }
    all.sort_by_key(|r| r.id);
    if let Some(w) = all.windows(2).find(|w| w[0].id == w[1].id) {
        bail!(
            "request {} is in two shards' folders: they overlap\nhint: merge the folders of one sharded run only",
            w[0].id
        );
    }
    Ok(all)
}

/// Why the shards may not have run as one load point: a start later than allowed; on
/// several machines, a clock its kernel cannot bound within the tolerance.
fn apart(parts: &[Part], tol: Tolerance) -> Vec<String> {
    let mut why = Vec::new();
    // a shard stopped before its start sent nothing: its start says nothing either (the
    // merged cell is interrupted already)
    let started = parts
        .iter()
        .filter(|p| !(p.report.status == "interrupted" && p.records.is_empty()));
    for p in started {
        let late = p.record.late_ms();
        if late > tol.start_late_ms {
            why.push(format!(
                "shard {} started {late:.1} ms after the agreed start (allowed {} ms): its requests went out that much late, counted in its send lag and TTFT from intended",
                p.shard(),
                tol.start_late_ms
            ));
        } else if -late > tol.start_late_ms {
            why.push(format!(
                "shard {} started {:.1} ms before the agreed start by its own clock (allowed {} ms): its clock was stepped while it waited",
                p.shard(),
                -late,
                tol.start_late_ms
            ));
        }
    }
    let boots: std::collections::BTreeSet<Option<&str>> = parts
        .iter()
        .map(|p| p.record.clock.boot_id.as_deref())
        .collect();
    let one_clock = boots.len() == 1 && !boots.contains(&None);
    if !one_clock {
        for p in parts {
            if let Err(e) = p.record.clock.within(tol.clock_error_ms) {
                why.push(format!(
                    "shard {}: {e}; it may have started apart from the others though it reports being on time",
                    p.shard()
                ));
            }
        }
    }
    why
}

fn line(p: &Part) -> ShardLine {
    let count =
        |f: &dyn Fn(&RequestRecord) -> bool| p.records.iter().filter(|r| f(r)).count() as u64;
    ShardLine {
        index: p.record.index,
        folder: p.folder.display().to_string(),
        status: p.report.status.clone(),
        sent: p.records.len() as u64,
        ok: count(&|r| r.is_ok()),
        failed: count(&|r| !r.is_ok() && !r.is_cancelled()),
        cancelled: count(&|r| r.is_cancelled()),
        not_sent: p.report.summary.not_sent,
        late_ms: p.record.late_ms(),
        clock: p.record.clock.clone(),
        client_cpu_share: p.report.client.cpu_share_of_threads,
        loop_lag_p99_ms: p.report.client.loop_lag_p99_ms,
        pacer_late_max_ms: p.report.client.send_paths.pacer_late_max_ms,
        warnings: p.report.warnings.clone(),
    }
}

/// The worst shard, as far as a client-limited verdict is concerned: the busiest
/// client, the latest loop and pacer; the resources summed, the sends counted together.
fn combined_client(c: &[ClientUsage]) -> ClientUsage {
    let max = |f: &dyn Fn(&ClientUsage) -> f64| c.iter().map(f).fold(0.0, f64::max);
    let max_opt = |f: &dyn Fn(&ClientUsage) -> Option<f64>| c.iter().filter_map(f).reduce(f64::max);
    let sum = |f: &dyn Fn(&ClientUsage) -> u64| c.iter().map(f).sum::<u64>();
    let paths = |f: &dyn Fn(&SendPaths) -> u64| sum(&|u| f(&u.send_paths));
    let pmax = |f: &dyn Fn(&SendPaths) -> f64| max(&|u| f(&u.send_paths));
    ClientUsage {
        wall_s: max(&|u| u.wall_s),
        cpu_s: c.iter().map(|u| u.cpu_s).sum(),
        user_cpu_s: c.iter().map(|u| u.user_cpu_s).sum(),
        system_cpu_s: c.iter().map(|u| u.system_cpu_s).sum(),
        cpu_share_of_threads: max(&|u| u.cpu_share_of_threads),
        max_rss_bytes: c.iter().map(|u| u.max_rss_bytes).max().unwrap_or(0),
        threads: c.iter().map(|u| u.threads).sum(),
        loop_lag_p50_ms: max_opt(&|u| u.loop_lag_p50_ms),
        loop_lag_p99_ms: max_opt(&|u| u.loop_lag_p99_ms),
        loop_lag_max_ms: max_opt(&|u| u.loop_lag_max_ms),
        pacer_realtime: c.iter().all(|u| u.pacer_realtime),
        loop_realtime: c.iter().all(|u| u.loop_realtime),
        send_paths: SendPaths {
            by_pacer: paths(&|p| p.by_pacer),
            no_free_slot: paths(&|p| p.no_free_slot),
            no_idle_connection: paths(&|p| p.no_idle_connection),
            socket_not_writable: paths(&|p| p.socket_not_writable),
            tls: paths(&|p| p.tls),
            pacer_take_max_ms: pmax(&|p| p.pacer_take_max_ms),
            pacer_late_max_ms: pmax(&|p| p.pacer_late_max_ms),
            pacer_woke_late: paths(&|p| p.pacer_woke_late),
            pacer_slow_takes: paths(&|p| p.pacer_slow_takes),
        },
        rss_growth_bytes: c.iter().filter_map(|u| u.rss_growth_bytes).max(),
        rss_growth_per_request_bytes: max_opt(&|u| u.rss_growth_per_request_bytes),
        sending_s: max(&|u| u.sending_s),
        planned_sending_s: max_opt(&|u| u.planned_sending_s),
    }
}

/// The worst of the shards' ends, then what the merged figures say.
fn merged_status(statuses: &[String], s: &RunSummary) -> &'static str {
    if statuses.iter().any(|st| st == "interrupted") {
        "interrupted"
    } else if statuses.iter().any(|st| st == "failed") {
        "failed"
    } else if s.no_completions() {
        "no_completions"
    } else {
        "complete"
    }
}

/// The merged cell's `summary.json`, in `bench`'s format, its shards under `shards`.
fn write_summary(
    out: &CellDir,
    m: &Merged,
    client: &ClientUsage,
    start_at: i64,
    failure: Option<String>,
) -> Result<()> {
    let p = &m.plan;
    let info = summary_json::RunInfo {
        date: loadtest_base::time::compact((start_at / 1_000_000_000).max(0) as u64),
        backend: "vllm".into(),
        label: p.label.clone(),
        model_id: p.model_id.clone(),
        tokenizer_id: p.tokenizer_id.clone(),
        num_prompts: summary_json::num_prompts(p.num_prompts, p.trace, &m.summary),
        request_rate: p.request_rate.unwrap_or(f64::INFINITY),
        burstiness: p.burstiness,
        max_concurrency: p.max_concurrency,
    };
    let pct = summary_json::PercentileSpec {
        metrics: p.percentile_metrics.clone(),
        percentiles: p.percentiles.clone(),
    };
    let ours = CellReport {
        version: env!("CARGO_PKG_VERSION").to_string(),
        status: m.status.to_string(),
        no_completions_reason: m
            .summary
            .no_completions()
            .then(|| loadtest_analysis::summary::why_no_completions(&m.summary)),
        failure_reason: failure,
        finished_at: loadtest_base::time::rfc3339(loadtest_base::time::unix_now()),
        clock_zero_unix_ns: Some(start_at),
        cell: None,
        arrival: p.arrival.clone(),
        summary: &m.summary,
        client: client.clone(),
        monitors: None,
        warnings: m.warnings.clone(),
        predicted: false,
        shards: Some(m.shards.clone()),
    };
    let mut full = summary_json::build(&info, &m.summary, &pct, None, serde_json::to_value(ours)?);
    if let (Some((strategy, start, end)), Some(obj)) = (&p.ramp, full.as_object_mut()) {
        summary_json::ramp_keys(obj, strategy, *start, *end);
    }
    let path = out.summary_json();
    std::fs::write(&path, serde_json::to_vec_pretty(&full)?)
        .with_context(|| format!("cannot write `{}`", path.display()))
}
