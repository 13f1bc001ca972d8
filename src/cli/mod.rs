//! The command line: argument definitions (flag names follow `vllm bench serve` where the
//! meaning is the same) and the commands that turn them into runs.

pub mod bench;
pub mod bench_args;
mod bench_search;
mod bench_shard;
mod bench_virtual;
pub mod calibrate;
mod compare_prediction;
pub mod examples;
pub mod fit;
pub mod generate;
pub mod merge;
pub mod report;
pub mod run;
pub mod signals;
pub mod sim_args;

use clap::builder::styling::{AnsiColor, Effects, Styles};
use clap::{Parser, Subcommand};

/// `--version`: the package version and the commit it was built from (`build.rs`; says
/// `commit unknown` for a build outside a git checkout).
pub const VERSION: &str = env!("VLLM_LOADTEST_VERSION");

/// Help colours (cargo's). clap writes them only when the stream is a terminal and neither
/// `NO_COLOR` nor `CLICOLOR=0` is set; `CLICOLOR_FORCE=1` forces them.
pub const STYLES: Styles = Styles::styled()
    .header(AnsiColor::Green.on_default().effects(Effects::BOLD))
    .usage(AnsiColor::Green.on_default().effects(Effects::BOLD))
    .literal(AnsiColor::Cyan.on_default().effects(Effects::BOLD))
    .placeholder(AnsiColor::Cyan.on_default())
    .error(AnsiColor::Red.on_default().effects(Effects::BOLD))
    .valid(AnsiColor::Cyan.on_default().effects(Effects::BOLD))
    .invalid(AnsiColor::Yellow.on_default().effects(Effects::BOLD));

/// How a command that ran ended when it did not simply succeed; `main` turns each into its
/// exit code (README, "Exit codes"): 0 all good, 1 could not run, 2 bad usage, 3 ran but the
/// server failed (a cell without completions, a server lost or dead), 130 interrupted.
#[derive(Debug, thiserror::Error)]
pub enum Ended {
    #[error("{0}")]
    ServerFailed(String),
    #[error("{0}")]
    Interrupted(String),
}

impl Ended {
    pub fn exit_code(&self) -> u8 {
        match self {
            Ended::ServerFailed(_) => 3,
            Ended::Interrupted(_) => 130,
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "vllm-loadtest",
    version = VERSION,
    about = "Measure how an LLM inference server (vLLM or any OpenAI-compatible one) behaves under load",
    long_about = None,
    styles = STYLES,
    after_help = examples::after_help("vllm-loadtest"),
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The commands; each one's help ends with its examples (`examples.rs`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an experiment matrix end to end (the main job).
    #[command(after_help = examples::after_help("run"))]
    Run(Box<run::RunArgs>),
    /// Measure one load point against a running server (like `vllm bench serve`).
    #[command(after_help = examples::after_help("bench"))]
    Bench(Box<bench_args::BenchArgs>),
    /// Merge the cell folders of one load point's shards (`bench --shard I/N`) into one cell.
    #[command(after_help = examples::after_help("merge"))]
    Merge(merge::MergeArgs),
    /// Recompute the tables (runs.parquet, timeseries.parquet, analysis.json) of a results folder.
    #[command(after_help = examples::after_help("aggregate"))]
    Aggregate(report::DirArgs),
    /// Rebuild report.md and report.html of a results folder from its raw data.
    #[command(after_help = examples::after_help("report"))]
    Report(report::ReportArgs),
    /// Put two experiments side by side: same cells, deltas, which is better per metric; a
    /// predicted run (virtual time) beside a measured one is judged against the measured range.
    #[command(after_help = examples::after_help("compare"))]
    Compare(report::CompareArgs),
    /// Measure this machine's client ceiling (against the in-process zero simulator).
    #[command(after_help = examples::after_help("calibrate"))]
    Calibrate(calibrate::CalibrateArgs),
    /// Fit a simulator profile to a live server (or refit one from a fit's probes).
    #[command(after_help = examples::after_help("fit"))]
    Fit(Box<fit::FitArgs>),
    /// Serve a simulated vLLM (no GPU needed) until Ctrl-C.
    #[command(after_help = examples::after_help("sim"))]
    Sim(Box<sim_args::SimArgs>),
    /// Print a shell completion script to stdout (for packagers and your shell's rc file).
    #[command(after_help = examples::after_help("completions"))]
    Completions(generate::CompletionsArgs),
    /// Print the man page (roff) to stdout, or write one page per command into a folder.
    #[command(after_help = examples::after_help("man"))]
    Man(generate::ManArgs),
}

/// The client's runtime: one thread (the measured default: no work-stealing overhead), or
/// a multi-threaded one when more client cores are asked for.
pub fn client_runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    if threads == 0 {
        anyhow::bail!("`--client-threads 0`: need at least one thread");
    }
    Ok(if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    })
}

#[cfg(test)]
mod tests;
