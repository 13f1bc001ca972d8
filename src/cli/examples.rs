//! The examples that end each command's `--help` (and its man page): real command lines,
//! each with a line saying what it does. A test parses every one of them with the same
//! definitions the binary uses, and checks that the files they name exist.

use clap::builder::StyledStr;

/// One example: what it does, and the command line (after `vllm-loadtest`).
#[derive(Debug, Clone, Copy)]
pub struct Example {
    pub what: &'static str,
    pub args: &'static str,
}

const fn ex(what: &'static str, args: &'static str) -> Example {
    Example { what, args }
}

/// The examples of a command (`vllm-loadtest` for the top level); two or three each.
pub fn for_command(name: &str) -> &'static [Example] {
    match name {
        "vllm-loadtest" => {
            const {
                &[
                    ex(
                        "the quickstart: an experiment against the built-in simulated vLLM (~2 min)",
                        "run examples/quickstart.yaml",
                    ),
                    ex(
                        "one load point, like `vllm bench serve`, against a server on port 8000",
                        "bench --base-url http://127.0.0.1:8000 --request-rate 10 --num-prompts 500",
                    ),
                    ex(
                        "a simulated vLLM with 4 engines for other tools to load",
                        "sim --dp 4 --port 8000",
                    ),
                ]
            }
        }
        "run" => {
            const {
                &[
                    ex(
                        "the quickstart on the built-in simulator: 5 to 40 req/s, a report at the end",
                        "run examples/quickstart.yaml",
                    ),
                    ex(
                        "the cells a shortened run would run, and its planned duration; nothing is sent",
                        "run examples/saturation.yaml --set load.duration_s=10 --set 'matrix.request_rate=[10,20,40]' --dry-run",
                    ),
                    ex(
                        "continue an interrupted run: finished cells are kept",
                        "run --resume results/quickstart/20260101-120000",
                    ),
                ]
            }
        }
        "bench" => {
            const {
                &[
                    ex(
                        "200 requests at 10 req/s against the built-in simulator",
                        "bench --sim --random-input-len 512 --random-output-len 256 --request-rate 10 --num-prompts 200",
                    ),
                    ex(
                        "a real server, the served model's tokenizer, vLLM's result JSON",
                        "bench --base-url http://127.0.0.1:8000 --tokenizer ~/models/Llama-3.1-8B-Instruct --request-rate 10 --num-prompts 500 --save-result",
                    ),
                    ex(
                        "shard 0 of 2 of a 2,000 req/s load point, from a common start (run 1/2 on another machine)",
                        "bench --base-url http://10.0.0.5:8000 --request-rate 2000 --duration 60 --shard 0/2 --start-at 2026-12-01T18:00:00Z --output-dir results/shard-0",
                    ),
                ]
            }
        }
        "merge" => {
            const {
                &[
                    ex(
                        "two shards of one load point, merged into one cell",
                        "merge results/shard-0 results/shard-1 -o results/merged",
                    ),
                    ex(
                        "flag a shard that started more than 2 ms late",
                        "merge results/shard-* --max-start-late-ms 2 -o results/merged",
                    ),
                ]
            }
        }
        "aggregate" => {
            const {
                &[
                    ex(
                        "rebuild runs.parquet, timeseries.parquet and analysis.json from the raw records",
                        "aggregate results/quickstart/20260101-120000",
                    ),
                    ex(
                        "a search's run: `search.json` replays its probes in order",
                        "aggregate results/search/20260101-120000",
                    ),
                ]
            }
        }
        "report" => {
            const {
                &[
                    ex(
                        "rebuild report.md, report.html and figs/ of a run",
                        "report results/quickstart/20260101-120000",
                    ),
                    ex(
                        "after `run --resume`, or with a newer version of the analysis",
                        "report results/scaling/20260101-120000",
                    ),
                    ex(
                        "a fitted profile's prediction of every cell, beside the measurement",
                        "report results/scaling/20260101-120000 --profile examples/profiles/tiny-llama-cpu.yaml",
                    ),
                ]
            }
        }
        "compare" => {
            const {
                &[
                    ex(
                        "a baseline and a change, same cells side by side",
                        "compare results/quickstart/20260101-120000 results/quickstart/20260102-090000",
                    ),
                    ex(
                        "two experiments over the same matrix values",
                        "compare results/saturation/20260101-120000 results/scaling/20260101-130000",
                    ),
                ]
            }
        }
        "calibrate" => {
            const {
                &[
                    ex("this machine's client ceiling (a few seconds)", "calibrate"),
                    ex(
                        "with two client threads and longer streams",
                        "calibrate --client-threads 2 --output-len 256 --seconds 3",
                    ),
                ]
            }
        }
        "fit" => {
            const {
                &[
                    ex(
                        "fit a profile to a running vLLM (a few minutes)",
                        "fit --base-url http://127.0.0.1:8000 -o my-server.yaml",
                    ),
                    ex(
                        "give the limits vLLM does not expose",
                        "fit --base-url http://127.0.0.1:8000 --max-num-seqs 128 --max-num-batched-tokens 4096 -o my-server.yaml",
                    ),
                    ex(
                        "refit from a fit's saved probes, no server needed",
                        "fit results/fit/20261201-140000 -o my-server.yaml",
                    ),
                ]
            }
        }
        "sim" => {
            const {
                &[
                    ex(
                        "a simulated one-GPU vLLM on port 8000 (Ctrl-C to stop)",
                        "sim --port 8000",
                    ),
                    ex(
                        "4 data-parallel engines on an H100 profile",
                        "sim --dp 4 --profile llama-3.1-8b-h100 --served-model-name meta-llama/Llama-3.1-8B-Instruct",
                    ),
                    ex(
                        "5% of requests fail on purpose",
                        "sim --fault-rate 0.05 --faults http500,drop-midstream,stall",
                    ),
                ]
            }
        }
        "completions" => {
            const {
                &[
                    ex(
                        "bash completions for your user",
                        "completions bash > ~/.local/share/bash-completion/completions/vllm-loadtest",
                    ),
                    ex(
                        "zsh completions into a folder on $fpath",
                        "completions zsh > ~/.zfunc/_vllm-loadtest",
                    ),
                    ex(
                        "fish completions",
                        "completions fish > ~/.config/fish/completions/vllm-loadtest.fish",
                    ),
                ]
            }
        }
        "man" => {
            const {
                &[
                    ex("read the main page now", "man | man -l -"),
                    ex(
                        "one page per command, for a package",
                        "man --dir target/man",
                    ),
                ]
            }
        }
        _ => &[],
    }
}

/// The command line of an example as a shell would run it.
pub fn command_line(e: &Example) -> String {
    format!("vllm-loadtest {}", e.args)
}

/// The `Examples:` section of a command's help, styled as clap styles its own headings
/// (plain where colour is off: clap strips the codes).
pub fn after_help(name: &str) -> StyledStr {
    let styles = &super::STYLES;
    let (h, lit) = (styles.get_header(), styles.get_literal());
    let mut s = format!("{h}Examples:{h:#}\n");
    for (i, e) in for_command(name).iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        s.push_str(&format!(
            "  # {}\n  {lit}{}{lit:#}\n",
            e.what,
            command_line(e)
        ));
    }
    StyledStr::from(s)
}

/// An example's arguments as a shell passes them (the examples quote only single words,
/// `'…'`, against globbing), cut at a redirection or pipe, which is the shell's, not ours.
pub fn argv(e: &Example) -> Vec<String> {
    std::iter::once("vllm-loadtest".to_string())
        .chain(
            e.args
                .split_whitespace()
                .take_while(|w| !matches!(*w, ">" | "|" | "&&"))
                .map(|w| w.trim_matches('\'').to_string()),
        )
        .collect()
}
