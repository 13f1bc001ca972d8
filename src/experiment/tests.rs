//! Experiment files: what good ones plan into, and the exact messages bad ones get.

use super::parse::parse;
use super::plan::{ParamsExt, plan};
use std::path::Path;

fn errors(text: &str) -> String {
    parse(text, "exp.yaml", Path::new("/tmp"), &[])
        .unwrap_err()
        .to_string()
}

#[test]
fn matrix_expands_with_server_dimensions_outermost() {
    let e = parse(
        "name: s\nload:\n  duration_s: 5\nmatrix:\n  request_rate: [10, 20, 30]\n  dp: [1, 4]\nrepeats: 2\n",
        "exp.yaml",
        Path::new("/tmp"),
        &[],
    )
    .unwrap();
    let p = plan(&e).unwrap();
    assert_eq!(p.cells.len(), 12);
    assert_eq!(p.groups.len(), 2);
    assert_eq!(p.groups[0].id, "dp1");
    assert_eq!(p.groups[0].cells, (0..6).collect::<Vec<_>>());
    let c = &p.cells[7];
    assert_eq!(c.id, "c007-dp4-request_rate10-rep1");
    assert_eq!(c.params.u64("dp"), Some(4));
    assert_eq!(c.params.f64("request_rate"), Some(10.0));
    assert_eq!(c.params.f64("duration_s"), Some(5.0));
    assert_eq!(
        c.params.u64("input_len"),
        Some(512),
        "defaults fill the rest"
    );
    assert_eq!(c.params.str("launcher"), Some("sim"));
}

#[test]
fn overrides_replace_values_and_lists() {
    let e = parse(
        "name: s\nload:\n  duration_s: 60\nmatrix:\n  request_rate: [10, 20, 30, 40]\n",
        "exp.yaml",
        Path::new("/tmp"),
        &[
            "load.duration_s=2".into(),
            "matrix.request_rate=[5, 50]".into(),
        ],
    )
    .unwrap();
    let p = plan(&e).unwrap();
    assert_eq!(p.cells.len(), 2);
    assert_eq!(p.cells[1].params.f64("duration_s"), Some(2.0));
    assert_eq!(p.cells[1].params.f64("request_rate"), Some(50.0));
}

#[test]
fn unknown_key_names_line_column_and_suggests() {
    assert_eq!(
        errors("name: s\nload:\n  request-rates: 5\n"),
        "experiment `exp.yaml` line 3, column 3: `load.request-rates`: unknown field `request-rates`\n  hint: did you mean `request_rate`?\n\
         experiment `exp.yaml` line 2, column 1: `load`: no `request_rate`\n  hint: set `load.request_rate` or list rates under `matrix.request_rate`\n\
         2 errors in experiment `exp.yaml`"
    );
}

#[test]
fn key_in_the_wrong_section_says_where_it_belongs() {
    let e = errors("name: s\nworkload:\n  request_rate: 5\n");
    assert!(e.contains("line 3, column 3: `workload.request_rate`: unknown field `request_rate`\n  hint: `request_rate` belongs under `load:`"), "{e}");
}

#[test]
fn wrong_type_and_negative_rate() {
    assert_eq!(
        errors("name: s\nload:\n  request_rate: fast\nworkload:\n  input_len: -5\n"),
        "experiment `exp.yaml` line 3, column 3: `load.request_rate`: expected requests per second or `inf`, found the text `fast`\n  hint: offered requests per second, or inf\n\
         experiment `exp.yaml` line 5, column 3: `workload.input_len`: must be at least 1, found -5\n  hint: random: prompt tokens\n\
         experiment `exp.yaml` line 2, column 1: `load`: no `request_rate`\n  hint: set `load.request_rate` or list rates under `matrix.request_rate`\n\
         3 errors in experiment `exp.yaml`"
    );
    let e = errors("name: s\nmatrix:\n  request_rate: [10, -20]\n");
    assert!(e.contains("line 3, column 3: `matrix.request_rate`: requests per second must be greater than 0, found -20"), "{e}");
}

#[test]
fn empty_matrix_and_empty_dimension() {
    let e = errors("name: s\nload:\n  request_rate: 1\nmatrix: {}\n");
    assert!(
        e.contains("line 4, column 1: `matrix`: the matrix is empty"),
        "{e}"
    );
    let e = errors("name: s\nmatrix:\n  request_rate: []\n");
    assert!(
        e.contains("line 3, column 3: `matrix.request_rate`: has no values"),
        "{e}"
    );
}

#[test]
fn missing_file_is_reported_with_its_resolved_path() {
    let e = errors(
        "name: s\nload:\n  request_rate: 1\nworkload:\n  dataset: jsonl\n  dataset_path: prompts.jsonl\n",
    );
    assert!(
        e.contains(
            "line 6, column 3: `workload.dataset_path`: `/tmp/prompts.jsonl` does not exist"
        ),
        "{e}"
    );
}

#[test]
fn launcher_requirements_and_contradictions() {
    let e = errors(
        "name: s\nserver:\n  launcher: command\nload:\n  request_rate: 1\n  duration_s: 2\n  warmup_s: 1\n  cooldown_s: 1\n",
    );
    assert!(
        e.contains("`launcher: command` needs `server.command`"),
        "{e}"
    );
    assert!(e.contains("leave nothing of 2 s to measure"), "{e}");
    let e = errors("load:\n  request_rate: 1\n");
    assert!(e.contains("`name`: missing"), "{e}");
    let e = errors("name: s\nload:\n  request_rate: 1\nmatrix:\n  request_rate: [1, 2]\n");
    assert!(
        e.contains("`load.request_rate`: is also a matrix dimension"),
        "{e}"
    );
    let e = errors("name: [unclosed\n");
    assert!(e.contains("not valid YAML"), "{e}");
}

#[test]
fn json_schema_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/experiment.schema.json");
    let want = serde_json::to_string_pretty(&super::schema::generate()).unwrap() + "\n";
    if std::env::var("UPDATE_SCHEMA").is_ok() {
        std::fs::write(path, &want).unwrap();
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "schema/experiment.schema.json is stale: run `UPDATE_SCHEMA=1 cargo test json_schema`"
    );
}

#[test]
fn a_duration_at_rate_inf_is_a_closed_loop_and_needs_a_concurrency() {
    let e = errors("name: s\nload:\n  request_rate: inf\n  duration_s: 5\n");
    assert!(e.contains("needs `max_concurrency`"), "{e}");
    let ok = parse(
        "name: s\nload:\n  request_rate: inf\n  duration_s: 5\nmatrix:\n  max_concurrency: [8, 64]\n",
        "exp.yaml",
        Path::new("/tmp"),
        &[],
    )
    .unwrap();
    assert_eq!(plan(&ok).unwrap().cells.len(), 2);
}

#[test]
fn the_drain_limit_default_is_the_runners() {
    let (_, f) = crate::experiment::fields::find("drain_timeout_s").expect("a field");
    let d: f64 = f.default.expect("has a default").parse().expect("a number");
    assert_eq!(d, crate::runner::load_point::DEFAULT_DRAIN_S);
}

/// One rule set for numbers, in the file and on the command line: finite, in range, and
/// never so large that a timer or an allocation would overflow (they panicked: issue 13).
#[test]
fn absurd_numbers_are_refused_with_the_rule_they_break() {
    for (yaml, want) in [
        (
            "load:\n  drain_timeout_s: 1e300\n",
            "must be at most 1e6, found 1e300",
        ),
        ("load:\n  request_timeout_s: 0\n", "must be greater than 0"),
        ("load:\n  warmup_s: .nan\n", "found NaN"),
        ("load:\n  request_rate: 1e300\n", "must be at most 1e6"),
        ("load:\n  duration_s: .inf\n", "must be at most"),
        (
            "workload:\n  input_len: 100000000000\n",
            "must be at most 1e9",
        ),
    ] {
        let e = errors(&format!("name: s\n{yaml}"));
        assert!(e.contains(want), "{yaml}: {e}");
    }
    use crate::experiment::fields::{SECS, SECS0, cli_number};
    assert!(cli_number(SECS)("inf").unwrap_err().contains("at most"));
    assert!(cli_number(SECS)("nan").unwrap_err().contains("NaN"));
    assert!(cli_number(SECS)("0").is_err() && cli_number(SECS0)("0").is_ok());
    assert_eq!(cli_number(SECS)("2.5"), Ok(2.5));
}

/// The name becomes a folder under `--output`: a path in it would write elsewhere (issue 13,
/// case 10).
#[test]
fn a_name_that_is_a_path_is_refused() {
    for bad in ["../../etc/evil", "a/b", ".hidden", "", "x y"] {
        let e = errors(&format!("name: \"{bad}\"\nload:\n  request_rate: 1\n"));
        assert!(e.contains("cannot name a results folder"), "{bad}: {e}");
    }
    parse(
        "name: saturation-1gpu_v2.1\nload:\n  request_rate: 1\n",
        "exp.yaml",
        Path::new("/tmp"),
        &[],
    )
    .unwrap();
}

/// A matrix is counted before it is expanded (issue 13, case 5: 100×100×100 took 25 s and
/// 4.6 GB to `--dry-run`).
#[test]
fn a_huge_matrix_is_refused_before_it_is_expanded() {
    let list = |n: usize| {
        (1..=n)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let t = std::time::Instant::now();
    let e = errors(&format!(
        "name: s\nmatrix:\n  request_rate: [{}]\n  max_num_seqs: [{}]\n  input_len: [{}]\n",
        list(100),
        list(100),
        list(100)
    ));
    assert!(
        e.contains("1000000 cells") && e.contains("more than the 10000"),
        "{e}"
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
}

/// An experiment given by a relative path (`run examples/x.yaml`) saves its files' paths
/// absolute: `aggregate`, `report` and `--resume` read the saved copy from the results
/// folder, from any working directory.
#[test]
fn a_relative_experiment_folder_saves_absolute_paths() {
    let dir = std::env::temp_dir().join(format!("exp-rel-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("traces")).unwrap();
    std::fs::write(
        dir.join("traces/t.jsonl"),
        "{\"timestamp\": 0, \"input_length\": 8, \"output_length\": 2}\n",
    )
    .unwrap();
    let cwd = std::env::current_dir().unwrap();
    let rel = pathdiff(&dir, &cwd);
    assert!(rel.is_relative(), "{}", rel.display());
    let e = parse(
        "name: s\nworkload:\n  dataset: trace\n  dataset_path: traces/t.jsonl\n",
        "exp.yaml",
        &rel,
        &[],
    )
    .unwrap();
    let saved = e.base.get("dataset_path").and_then(|v| v.as_str()).unwrap();
    assert!(Path::new(saved).is_absolute(), "{saved}");
    assert_eq!(
        Path::new(saved),
        std::fs::canonicalize(&dir).unwrap().join("traces/t.jsonl")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `server.profile` names a file relative to the working directory (as the simulator reads
/// it); the saved experiment holds it absolute, and a built-in name as it is.
#[test]
fn a_profile_file_is_saved_absolute_and_a_profile_name_as_given() {
    let rel = "examples/profiles/tiny-llama-cpu.yaml";
    let profile = |p: &str| {
        let text = format!(
            "name: s\nserver:\n  launcher: sim\n  profile: {p}\nload:\n  request_rate: 1\n"
        );
        let e = parse(&text, "exp.yaml", Path::new("/tmp"), &[]).unwrap();
        e.base
            .get("profile")
            .and_then(|v| v.as_str())
            .unwrap()
            .to_string()
    };
    assert_eq!(
        Path::new(&profile(rel)),
        std::fs::canonicalize(rel).unwrap()
    );
    assert_eq!(profile("default"), "default");
}

/// `to` relative to `from` (both absolute): `../..` up to their common part, then down.
fn pathdiff(to: &Path, from: &Path) -> std::path::PathBuf {
    let (t, f): (Vec<_>, Vec<_>) = (to.components().collect(), from.components().collect());
    let common = t.iter().zip(&f).take_while(|(a, b)| a == b).count();
    let mut out = std::path::PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

fn cell_plans(text: &str) -> Vec<super::CellPlan> {
    cell_plans_in(text, Path::new("/tmp"))
}

fn cell_plans_in(text: &str, dir: &Path) -> Vec<super::CellPlan> {
    let e = parse(text, "exp.yaml", dir, &[]).unwrap();
    plan(&e)
        .unwrap()
        .cells
        .into_iter()
        .map(|c| c.plan)
        .collect()
}

/// What the file leaves out comes from the field table, the one place defaults are written.
#[test]
fn a_minimal_file_plans_with_the_field_tables_defaults() {
    use super::{Dataset, Launcher};
    use loadtest_base::arrivals::{Arrival, Stop};
    use std::time::Duration;
    let p = &cell_plans("name: m\nload:\n  request_rate: 7\n")[0];
    let default = |k: &str| -> f64 {
        let (_, f) = super::fields::find(k).unwrap();
        f.default.unwrap().parse().unwrap()
    };
    assert_eq!(
        p.server.launcher,
        Launcher::Sim {
            profile: "default".into()
        }
    );
    assert_eq!(p.server.dp, 1);
    assert_eq!(
        p.server.start_timeout,
        Duration::from_secs_f64(default("start_timeout_s"))
    );
    assert_eq!(
        p.workload.prompts.dataset,
        Dataset::Random {
            input_len: default("input_len") as u32,
            range_ratio: 0.0,
            prefix_len: 0
        }
    );
    assert!(
        p.workload.ignore_eos,
        "random prompts ignore EOS by default"
    );
    assert_eq!(p.load.arrival, Arrival::Poisson { rate: 7.0 });
    assert_eq!(p.load.stop, Stop::Count(default("num_prompts") as usize));
    assert_eq!(p.load.drain, None, "a drain limit only bounds a duration");
    assert_eq!(
        p.load.request_timeout,
        Duration::from_secs_f64(default("request_timeout_s"))
    );
    assert_eq!(p.load.window_s, None);
    assert_eq!(p.slo.target, default("target"));
    assert!(p.slo.slos.is_empty());
    assert_eq!(
        p.monitor.metrics_interval,
        Duration::from_secs_f64(default("metrics_interval_s"))
    );
}

#[test]
fn every_section_reaches_its_typed_field() {
    use super::{Dataset, Launcher};
    use loadtest_analysis::summary::goodput::Slo;
    use loadtest_base::arrivals::{Arrival, Stop};
    use std::time::Duration;
    let dir = std::env::temp_dir().join(format!("vlt-cell-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("prompts.jsonl"), "{\"prompt\": \"hi\"}\n").unwrap();
    let plans = cell_plans_in(
        "name: t
server:
  launcher: command
  command: serve --port {port} --seqs {max_num_seqs}
  port: 9001
  max_num_seqs: 64
  env: {HF_TOKEN: abc}
workload:
  dataset: jsonl
  dataset_path: prompts.jsonl
  output_len: 99
  endpoint: /v1/chat/completions
load:
  arrival: gamma
  burstiness: 0.5
  duration_s: 30
  warmup_s: 5
  cooldown_s: 2
  drain_timeout_s: 7
  seed: 11
slo:
  ttft_ms: 200
  e2el_ms: 9000
  target: 0.95
monitor:
  gpu: false
matrix:
  request_rate: [3, inf]
  max_concurrency: [8]
",
        &dir,
    );
    let _ = std::fs::remove_dir_all(&dir);
    let p = &plans[0];
    assert_eq!(
        p.server.launcher,
        Launcher::Command {
            template: "serve --port {port} --seqs {max_num_seqs}".into(),
            port: Some(9001)
        }
    );
    assert_eq!(p.server.max_num_seqs, Some(64));
    assert_eq!(p.server.env, vec![("HF_TOKEN".into(), "abc".into())]);
    assert!(p.server.values.contains(&("max_num_seqs", "64".into())));
    assert_eq!(
        p.workload.prompts.dataset,
        Dataset::Jsonl {
            path: dir.join("prompts.jsonl")
        }
    );
    assert!(
        !p.workload.ignore_eos,
        "only random prompts ignore EOS by default"
    );
    assert_eq!(p.workload.prompts.output_len, 99);
    assert_eq!(p.workload.endpoint.path(), "/v1/chat/completions");
    assert_eq!(
        p.load.arrival,
        Arrival::Gamma {
            rate: 3.0,
            burstiness: 0.5
        }
    );
    assert_eq!(p.load.stop, Stop::Duration(30.0));
    assert_eq!(p.load.window_s, Some((5.0, 28.0)));
    assert_eq!(p.load.drain, Some(Duration::from_secs(7)));
    assert_eq!(p.load.schedule_seed(2), 13);
    assert_eq!(p.load.max_concurrency, Some(8));
    assert_eq!(p.slo.slos, vec![Slo::TtftMs(200.0), Slo::E2elMs(9000.0)]);
    assert_eq!(p.slo.target, 0.95);
    assert!(!p.monitor.gpu);
    assert_eq!(plans[1].load.arrival, Arrival::AllAtOnce);
    assert!(plans[1].load.closed_loop());
}

/// A value listed twice in a matrix dimension is refused, naming it (found by the
/// `experiment_parse` fuzz target: `max_num_seqs: [128, 12, 128]` split one server
/// configuration into two non-contiguous runs of cells).
#[test]
fn a_matrix_value_listed_twice_is_refused() {
    let e = errors(
        "name: d\nload:\n  duration_s: 5\nmatrix:\n  request_rate: [10]\n  max_num_seqs: [128, 12, 128]\n",
    );
    assert!(
        e.contains("`matrix.max_num_seqs`: lists `128` twice")
            && e.contains("hint: list each value once; `repeats: N`"),
        "{e}"
    );
}

#[test]
fn prefix_repetition_plans_its_groups_and_ignores_eos() {
    use super::Dataset;
    let p = cell_plans(
        "name: p\nload:\n  request_rate: 5\nworkload:\n  dataset: prefix_repetition\n  prefix_len: 512\nmatrix:\n  num_prefixes: [1, 8]\n  enable_prefix_caching: [true, false]\n",
    );
    assert_eq!(p.len(), 4);
    assert_eq!(
        p[1].workload.prompts.dataset,
        Dataset::PrefixRepetition {
            num_prefixes: 8,
            prefix_len: 512,
            suffix_len: 256
        }
    );
    assert!(p[1].workload.ignore_eos, "synthetic prompts ignore EOS");
    assert_eq!(p[0].server.enable_prefix_caching, Some(true));
    assert_eq!(p[3].server.enable_prefix_caching, Some(false));
}

#[test]
fn prefix_repetition_fields_out_of_place_are_errors_with_their_line() {
    let e = errors(
        "name: p\nload:\n  request_rate: 5\nworkload:\n  dataset: prefix_repetition\n  input_len: 100\n  num_prompts: 4\nmatrix:\n  num_prefixes: [2, 8]\n",
    );
    assert!(
        e.contains("line 6, column 3: `workload.input_len`: `input_len` is for `dataset: random`, not `prefix_repetition`\n  hint: a prefix_repetition prompt is"),
        "{e}"
    );
    assert!(
        e.contains("line 5, column 3: `workload.dataset`: `dataset: prefix_repetition` needs a `prefix_len` of at least 1\n  hint: e.g. `prefix_len: 256`"),
        "{e}"
    );
    assert!(
        e.contains("line 9, column 3: `matrix.num_prefixes`: 8 prefix groups need at least as many prompts, `num_prompts` is 4"),
        "{e}"
    );
    let e = errors("name: r\nload:\n  request_rate: 5\nworkload:\n  suffix_len: 64\n");
    assert!(
        e.contains("line 5, column 3: `workload.suffix_len`: `suffix_len` is for `dataset: prefix_repetition`, not `random`\n  hint: set `dataset: prefix_repetition`"),
        "{e}"
    );
}

#[test]
fn the_prefix_cache_example_plans_caching_on_and_off_over_two_group_counts() {
    let p = cell_plans(include_str!("../../examples/prefix-cache.yaml"));
    assert_eq!(p.len(), 4);
    assert!(p.iter().all(|c| c.server.reset_prefix_cache));
    let on_off: Vec<Option<bool>> = p.iter().map(|c| c.server.enable_prefix_caching).collect();
    assert_eq!(on_off, [Some(true), Some(true), Some(false), Some(false)]);
}
