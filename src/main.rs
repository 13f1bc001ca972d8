//! The `vllm-loadtest` binary: parse, dispatch, and turn errors into one readable message
//! and a non-zero exit code.

use clap::Parser;
use std::process::ExitCode;
use vllm_loadtest::cli::{Cli, Command, bench, calibrate, report, run, sim_args};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run::run(*a),
        Command::Bench(a) => bench::run(*a),
        Command::Sim(a) => sim_args::run(*a),
        Command::Aggregate(a) => report::aggregate_cmd(a),
        Command::Report(a) => report::report_cmd(a),
        Command::Compare(a) => report::compare_cmd(a),
        Command::Calibrate(a) => calibrate::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed pipe (`| head`) is not an error worth a message.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
