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
    let p = plan(&e);
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
    let p = plan(&e);
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
    assert_eq!(plan(&ok).cells.len(), 2);
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
