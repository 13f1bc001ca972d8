//! `bench --shard I/N --start-at T`: what a shard checks before it builds anything (its
//! clock, the start), and what it records of itself for `merge` (`shard.json`: who it was,
//! its start and clock, digests of its plan's contents, the plan merge recomputes with).

use super::bench::Plan;
use super::bench_args::BenchArgs;
use crate::runner::cell::CellResult;
use anyhow::{Result, bail};
use loadtest_base::Tokenizer;
use loadtest_base::arrivals::Arrival;
use loadtest_base::shard::Shard;

/// Before a shard builds anything: its clock can be trusted for a common start, and the
/// start is not absurdly far off.
pub(super) fn check_start(a: &BenchArgs) -> Result<()> {
    if a.shard.is_some() {
        use crate::shard::clock::Judged;
        let clock = crate::shard::clock::read();
        if let Err(why) = clock.within(a.max_clock_error_ms.0) {
            bail!(
                "shard refused: {why}; shards on machines whose clocks disagree start apart, and their union is not the load point\nhint: synchronise this machine's clock (chrony, systemd-timesyncd, ntpd); if every shard runs on this machine (one clock), pass `--max-clock-error-ms inf`"
            );
        }
    }
    let Some(at) = a.start_at else {
        return Ok(());
    };
    let ahead_s = (at - loadtest_base::time::unix_now_ns()) as f64 / 1e9;
    let hint = "hint: e.g. `--start-at $(date -u -d '+1 min' +%Y-%m-%dT%H:%M:%SZ)`, the same for every shard";
    if ahead_s > 86_400.0 {
        bail!(
            "`--start-at` is {:.1} h from now: is the date right?\n{hint}",
            ahead_s / 3600.0
        );
    }
    // a little late is the merge's to flag; this late, the other shards are done
    if ahead_s < -MAX_PAST_S {
        bail!(
            "`--start-at {}` passed {:.0} s ago: this shard would send its whole share late and out of step with the others\n{hint}",
            loadtest_base::time::rfc3339_ms(at),
            -ahead_s
        );
    }
    if ahead_s > 1.0 {
        eprintln!(
            "waiting until {} ({ahead_s:.1} s) to start",
            loadtest_base::time::rfc3339_ms(at)
        );
    }
    Ok(())
}

/// A shard this late says so at once (`merge --max-start-late-ms` flags it, 10 by default).
pub(super) const LATE_WARN_MS: f64 = 10.0;

/// How far in the past `--start-at` may be: a shard that late runs, and is flagged.
const MAX_PAST_S: f64 = 60.0;

/// The plan's parts as digests of their contents: the schedule's every intended time and
/// its settings (a trace by its times, not its path), every prompt, the request, the
/// figures' settings.
fn digests(
    a: &BenchArgs,
    plan: &Plan,
    schedule: &[u64],
    prompts: &[crate::workload::Prompt],
    model: &str,
) -> crate::shard::PlanDigests {
    use crate::shard::Digest;
    let mut one = plan.load.clone();
    one.shard = Shard::WHOLE;
    one.max_concurrency = a.max_concurrency;
    one.trace = None;
    let mut d = Digest::default();
    d.feed(format!("{one:?}").as_bytes());
    for t in schedule {
        d.feed(&t.to_le_bytes());
    }
    let load = d.hex();
    let mut d = Digest::default();
    d.feed(&plan.prompts.turns().to_le_bytes());
    for p in prompts {
        d.feed(p.text.as_bytes());
        for h in &p.history {
            d.feed(h.as_bytes());
        }
        d.feed(&p.input_tokens.to_le_bytes());
        d.feed(&p.output_tokens.to_le_bytes());
    }
    let request = format!(
        "{:?}\n{model}\n{}\n{:?}\n{}\n{:?}",
        plan.endpoint, plan.ignore_eos, a.temperature, a.continuous_usage_stats, plan.extra
    );
    let figures = format!(
        "{:?}\n{:?}\n{:?}",
        plan.load.window_s, a.goodput, plan.percentiles
    );
    crate::shard::PlanDigests {
        schedule: load,
        prompts: d.hex(),
        request: crate::shard::digest(&request),
        figures: crate::shard::digest(&figures),
    }
}

/// What `merge` needs of this shard: who it was, its start and clock, and the plan.
#[allow(clippy::too_many_arguments)]
pub(super) fn shard_record(
    a: &BenchArgs,
    plan: &Plan,
    r: &CellResult,
    (shard, start_at): (Shard, i64),
    schedule: &[u64],
    prompts: &[crate::workload::Prompt],
    model: &str,
    tok: &Tokenizer,
) -> Result<crate::shard::ShardRecord> {
    let rate = plan.load.arrival.rate();
    Ok(crate::shard::ShardRecord {
        index: shard.index,
        count: shard.count,
        start_at_unix_ns: start_at,
        clock_zero_unix_ns: r.clock_zero_unix_ns,
        clock: crate::shard::clock::read(),
        max_clock_error_ms: a.max_clock_error_ms.0,
        entries_total: schedule.len() as u64,
        entries: shard.take(schedule).len() as u64,
        turns: plan.prompts.turns(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        digests: digests(a, plan, schedule, prompts, model),
        plan: crate::shard::MergePlan {
            window_s: plan.load.window_s,
            request_rate: rate.is_finite().then_some(rate),
            slos: a.goodput.clone(),
            percentile_metrics: plan.metrics.clone(),
            percentiles: plan.percentiles.clone(),
            arrival: plan.load.arrival.describe(),
            burstiness: a.burstiness,
            max_concurrency: a.max_concurrency,
            num_prompts: a.num_prompts,
            trace: plan.load.trace.is_some(),
            ramp: match plan.load.arrival {
                Arrival::Ramp {
                    strategy,
                    start,
                    end,
                    ..
                } => Some((strategy.name().to_string(), start, end)),
                _ => None,
            },
            label: a.label.clone(),
            model_id: model.to_string(),
            tokenizer_id: tok.describe(),
        },
    })
}
