//! `vllm-loadtest merge SHARD_DIR… -o CELL_DIR`: the cell folders of one sharded load
//! point (`bench --shard`) made one cell, its table printed as `bench` prints one.

use crate::shard::merge::{self, Tolerance};
use crate::store::layout::CellDir;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shards' cell folders (`bench --shard I/N --output-dir DIR`), every one of the N.
    #[arg(required = true, value_name = "SHARD_DIR")]
    pub shards: Vec<PathBuf>,
    /// The merged cell's folder (created; must be new or empty).
    #[arg(short, long, value_name = "CELL_DIR")]
    pub output: PathBuf,
    /// Flag a shard that started later than this after the agreed start (ms; `inf`: never).
    #[arg(long, value_parser = super::bench_args::parse_bound_ms, default_value = "10", value_name = "MS")]
    pub max_start_late_ms: super::bench_args::BoundMs,
    /// Flag a shard on another machine whose clock its kernel says is unsynchronised, or estimates off by more than this (ms); `inf`: clocks are not judged.
    #[arg(long, value_parser = super::bench_args::parse_bound_ms, default_value = "100", value_name = "MS")]
    pub max_clock_error_ms: super::bench_args::BoundMs,
    /// Print no table, only where the cell went.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(a: MergeArgs) -> Result<()> {
    let out = CellDir::new(&a.output);
    let tol = Tolerance {
        start_late_ms: a.max_start_late_ms.0.unwrap_or(f64::INFINITY),
        clock_error_ms: a.max_clock_error_ms.0,
    };
    let m = merge::merge(&a.shards, &out, tol)?;
    if !a.quiet {
        let mut stdout = std::io::stdout().lock();
        loadtest_analysis::report::table::render(
            &mut stdout,
            &m.summary,
            &loadtest_analysis::report::table::TableSpec {
                metrics: &m.plan.percentile_metrics,
                percentiles: &m.plan.percentiles,
                configured_rate: m.plan.request_rate.unwrap_or(f64::INFINITY),
                warnings: &m.warnings,
                client: None,
                predicted_by: None,
            },
        )?;
    }
    let s = &m.summary;
    eprintln!(
        "merge: {} shards, {} sent ({} ok, {} failed, {} cancelled), {} not sent; {}",
        m.shards.count,
        s.sent,
        s.ok,
        s.failed,
        s.cancelled,
        s.not_sent,
        if m.shards.apart.is_empty() {
            "the shards ran as one load point".to_string()
        } else {
            format!("{} flag(s): see the warnings", m.shards.apart.len())
        }
    );
    eprintln!("results: {}", out.root().display());
    if m.status != "complete" {
        // the merge itself succeeded (its exit code); the cell's status says the rest
        eprintln!(
            "warning: the merged cell is `{}`: a shard did not complete (its status and warnings are in `summary.json`)",
            m.status
        );
    }
    Ok(())
}
