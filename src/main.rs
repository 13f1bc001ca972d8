//! The `vllm-loadtest` binary: parse, dispatch, and turn errors into one readable message
//! and a non-zero exit code.

use clap::Parser;
use std::process::ExitCode;
use vllm_loadtest::cli::{
    Cli, Command, bench, calibrate, fit, generate, merge, report, run, sim_args,
};

fn main() -> ExitCode {
    raise_open_file_limit();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run::run(*a),
        Command::Bench(a) => bench::run(*a),
        Command::Merge(a) => merge::run(a),
        Command::Sim(a) => sim_args::run(*a),
        Command::Aggregate(a) => report::aggregate_cmd(a),
        Command::Report(a) => report::report_cmd(a),
        Command::Compare(a) => report::compare_cmd(a),
        Command::Calibrate(a) => calibrate::run(a),
        Command::Fit(a) => fit::run(*a),
        Command::Completions(a) => generate::completions(a),
        Command::Man(a) => generate::man(a),
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
            match e.downcast_ref::<vllm_loadtest::cli::Ended>() {
                Some(ended) => ExitCode::from(ended.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// Thousands of concurrent streams need as many sockets: lift the soft limit on open files
/// to the hard one (often 1024 → 65536+). Best effort.
fn raise_open_file_limit() {
    #[cfg(unix)]
    // SAFETY: getrlimit/setrlimit read and write a struct we own.
    #[allow(unsafe_code)]
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}
