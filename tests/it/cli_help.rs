//! The binary explains itself as a user meets it: `--version` names the commit, help is
//! coloured only on request and never under `NO_COLOR`, completions print, `run --dry-run`
//! states the planned duration, and a run's live line says `draining N` and the time left.

use super::support::{bin, run, temp_dir};
use std::process::Command;

fn help_with(env: &[(&str, &str)]) -> String {
    let mut c = Command::new(bin());
    c.args(["bench", "--help"])
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR")
        .env_remove("CLICOLOR_FORCE");
    let out = c.envs(env.iter().copied()).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_is_coloured_only_on_a_terminal_or_when_forced_and_never_under_no_color() {
    // stdout is a pipe here: plain
    let plain = help_with(&[]);
    assert!(!plain.contains('\x1b'), "escape codes in piped help");
    assert!(plain.contains("Random dataset options:"), "{plain}");
    let forced = help_with(&[("CLICOLOR_FORCE", "1")]);
    assert!(forced.contains("\x1b["), "CLICOLOR_FORCE=1 gave no colour");
    let no_color = help_with(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]);
    assert!(!no_color.contains('\x1b'), "NO_COLOR did not win");
}

#[test]
fn version_names_the_commit_and_completions_print() {
    let v = run(&["--version"]);
    assert_eq!(v.code, Some(0));
    assert!(
        v.stdout.starts_with("vllm-loadtest 0.") && v.stdout.contains("(commit "),
        "{}",
        v.stdout
    );
    let c = run(&["completions", "zsh"]);
    assert_eq!(c.code, Some(0), "{}", c.stderr);
    assert!(
        c.stdout.starts_with("#compdef vllm-loadtest"),
        "{}",
        c.stdout
    );
    let bad = run(&["completions", "tcsh"]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
}

#[test]
fn dry_run_states_each_cells_time_and_the_runs_planned_duration() {
    let exp = format!("{}/examples/quickstart.yaml", env!("CARGO_MANIFEST_DIR"));
    let r = run(&["run", &exp, "--dry-run"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout
            .contains("c000-request_rate5  request_rate=5  25s sending (+ drain <= 5m00s)"),
        "{}",
        r.stdout
    );
    // 4 cells of 25 s; each may drain up to its 300 s limit
    assert!(
        r.stdout
            .contains("4 cell(s); planned duration 1m40s of sending")
            && r.stdout
                .contains("at most 21m40s if every drain runs to its limit"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_runs_live_line_says_draining_and_the_time_left_for_the_run() {
    let out = temp_dir("eta");
    let exp = format!("{}/examples/quickstart.yaml", env!("CARGO_MANIFEST_DIR"));
    let r = run(&[
        "run",
        &exp,
        "--output",
        out.to_str().unwrap(),
        "--set",
        "load.duration_s=2",
        "--set",
        "load.warmup_s=0",
        "--set",
        "load.cooldown_s=0",
        "--set",
        "workload.output_len=8",
        "--set",
        "workload.num_prompts=20",
        "--set",
        "matrix.request_rate=[5,10]",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // not a terminal: the line is printed when the cell starts draining (and every 10 s)
    let draining: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("draining"))
        .collect();
    assert!(
        draining
            .iter()
            .any(|l| l.starts_with("cell 1/2 5 req/s: [") && l.ends_with("(1 more cell)")),
        "{}",
        r.stderr
    );
    assert!(
        draining
            .iter()
            .any(|l| l.starts_with("cell 2/2 10 req/s: [") && l.ends_with("run: last cell")),
        "{}",
        r.stderr
    );
    let _ = std::fs::remove_dir_all(&out);
}
