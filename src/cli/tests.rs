//! The command line explains itself: every argument of every command has help, options
//! without a default say what happens without them, `bench` groups its flags, every
//! command's help ends with examples that parse, and `--version` names the commit.

use super::{Cli, examples};
use clap::{CommandFactory, Parser};

/// Every command, with the path of names that leads to it (`["vllm-loadtest", "bench"]`).
fn commands() -> Vec<(Vec<String>, clap::Command)> {
    fn walk(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, clap::Command)>) {
        out.push((path.clone(), cmd.clone()));
        for sub in cmd.get_subcommands() {
            let mut p = path.clone();
            p.push(sub.get_name().to_string());
            walk(sub, p, out);
        }
    }
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = Vec::new();
    walk(&cmd, vec![cmd.get_name().to_string()], &mut out);
    // clap's own `help` command and its arguments are clap's
    out.retain(|(p, _)| !p.iter().any(|n| n == "help"));
    out
}

/// clap's generated `--help` and `--version`.
fn is_generated(arg: &clap::Arg) -> bool {
    matches!(arg.get_id().as_str(), "help" | "version")
}

#[test]
fn clap_definitions_are_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn every_argument_of_every_command_has_help() {
    let mut missing = Vec::new();
    for (path, cmd) in commands() {
        if cmd.get_about().is_none() && path.len() > 1 {
            missing.push(format!("{} (the command itself)", path.join(" ")));
        }
        for arg in cmd.get_arguments().filter(|a| !is_generated(a)) {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            if help.trim().is_empty() {
                missing.push(format!("{} {}", path.join(" "), arg.get_id()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "arguments without help: {}",
        missing.join(", ")
    );
}

#[test]
fn every_option_without_a_default_says_what_happens_without_it() {
    let mut silent = Vec::new();
    for (path, cmd) in commands() {
        for arg in cmd.get_arguments().filter(|a| !is_generated(a)) {
            let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
            let optional_option = arg.get_long().is_some() && !arg.is_required_set();
            if !takes_value || !optional_option || !arg.get_default_values().is_empty() {
                continue;
            }
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            // `(default: …)` in the help or its heading (`Engine options (default: the
            // profile's)`), or an option that only makes sense beside another one
            let heading = arg.get_help_heading().unwrap_or_default();
            if !(help.contains("default")
                || heading.contains("default")
                || help.contains("With `--")
                || help.contains("(with `--"))
            {
                silent.push(format!("{} --{}", path.join(" "), arg.get_long().unwrap()));
            }
        }
    }
    assert!(
        silent.is_empty(),
        "options whose help does not say their default: {}",
        silent.join(", ")
    );
}

#[test]
fn every_option_names_its_value() {
    // a value name that is the field's name in capitals (`--seed <SEED>`) says nothing about
    // the unit; ours say SECS, TOKENS, RPS, N, …
    let mut unnamed = Vec::new();
    for (path, cmd) in commands() {
        for arg in cmd.get_arguments().filter(|a| !is_generated(a)) {
            if !arg.get_num_args().is_some_and(|n| n.takes_values()) || arg.get_long().is_none() {
                continue;
            }
            let long = arg.get_long().unwrap();
            let names: Vec<String> = arg
                .get_value_names()
                .map(|v| v.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default();
            let upper = long.replace('-', "_").to_uppercase();
            let self_describing = ["PORT", "DIR", "FILE", "PATH", "URL"];
            if names.is_empty() || (names == [upper.clone()] && !self_describing.contains(&&*upper))
            {
                unnamed.push(format!("{} --{long}", path.join(" ")));
            }
        }
    }
    assert!(
        unnamed.is_empty(),
        "options with no value name: {}",
        unnamed.join(", ")
    );
}

#[test]
fn bench_flags_are_grouped_as_vllm_bench_serve_groups_them() {
    let cmd = Cli::command();
    let bench = cmd.find_subcommand("bench").unwrap();
    let mut headings: Vec<&str> = Vec::new();
    for arg in bench.get_arguments().filter(|a| !is_generated(a)) {
        let h = arg
            .get_help_heading()
            .unwrap_or_else(|| panic!("bench --{} has no heading", arg.get_id()));
        if !headings.contains(&h) {
            headings.push(h);
        }
    }
    assert_eq!(
        headings,
        [
            "Server and connection options",
            "Dataset options",
            "Random dataset options",
            "Prefix repetition dataset options",
            "ShareGPT dataset options",
            "Trace dataset options",
            "Multi-turn dataset options",
            "Sampling parameters",
            "Load options",
            "Ramp-up options",
            "Search options",
            "Shard options (one load point from several machines)",
            "Result options",
        ]
    );
    let heading = |long: &str| {
        bench
            .get_arguments()
            .find(|a| a.get_long() == Some(long))
            .and_then(|a| a.get_help_heading())
            .unwrap()
    };
    assert_eq!(heading("random-input-len"), "Random dataset options");
    assert_eq!(heading("temperature"), "Sampling parameters");
    assert_eq!(heading("request-rate"), "Load options");
    assert_eq!(heading("save-result"), "Result options");
    assert_eq!(heading("base-url"), "Server and connection options");
}

#[test]
fn every_command_ends_its_help_with_examples_that_parse() {
    for (path, cmd) in commands() {
        let name = path.last().unwrap();
        let exs = examples::for_command(name);
        assert!(
            (2..=3).contains(&exs.len()),
            "`{}` has {} examples",
            path.join(" "),
            exs.len()
        );
        let help = cmd.clone().render_long_help().to_string();
        let tail = &help[help.find("Examples:").expect("an Examples: section")..];
        for e in exs {
            assert!(tail.contains(&examples::command_line(e)), "{tail}");
            let argv = examples::argv(e);
            let parsed = Cli::try_parse_from(&argv)
                .unwrap_or_else(|err| panic!("example `{}` does not parse: {err}", e.args));
            // a command's examples run that command (the top level's may run any)
            if path.len() > 1 {
                assert_eq!(argv[1], *name, "example of `{name}` runs `{}`", argv[1]);
            }
            drop(parsed);
            // files read (one written, after `-o`, need not exist yet)
            let written = |i: usize| i > 0 && ["-o", "--output"].contains(&argv[i - 1].as_str());
            let read = argv
                .iter()
                .enumerate()
                .filter(|&(i, a)| a.ends_with(".yaml") && !written(i));
            for (_, file) in read {
                let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
                assert!(p.exists(), "example `{}` names a missing file", e.args);
            }
        }
    }
}

#[test]
fn version_names_the_commit() {
    let v = Cli::command().get_version().unwrap().to_string();
    assert!(v.starts_with(env!("CARGO_PKG_VERSION")), "{v}");
    assert!(
        v.contains(&format!("commit {}", env!("VLLM_LOADTEST_GIT_COMMIT")))
            || v.contains("commit unknown"),
        "{v}"
    );
}

#[test]
fn help_is_styled_only_when_asked() {
    let mut cmd = Cli::command();
    let help = cmd.render_help();
    // the styled form carries colour codes; the plain one (what a pipe gets) none
    assert!(help.ansi().to_string().contains("\x1b["));
    assert!(!help.to_string().contains('\x1b'));
}
