//! Multi-turn conversations end to end against the simulator: every turn carries the
//! conversation so far (the server counts a longer prompt each turn), waits its think time
//! after the previous answer, and is recorded with its conversation and turn; a run cut
//! short counts the turns it never sent.

use crate::support::*;
use std::collections::BTreeMap;

fn args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "bench",
        "--sim",
        "default",
        "--endpoint",
        "/v1/chat/completions",
        "--dataset-name",
        "multi_turn",
        "--multi-turn-turns",
        "3",
        "--random-input-len",
        "48",
        "--random-output-len",
        "12",
        "--quiet",
        "--output-dir",
        out,
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn each_turn_carries_the_history_after_its_think_time() {
    let _serial = serial();
    let dir = temp_dir("sessions");
    let out = dir.join("out");
    let r = run(&args(
        out.to_str().unwrap(),
        &[
            "--num-prompts",
            "6",
            "--request-rate",
            "5",
            "--multi-turn-think-time",
            "0.3",
        ],
    ));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_accounted(&out, 18);
    let mut by_session: BTreeMap<u64, Vec<serde_json::Value>> = BTreeMap::new();
    for rec in records(&out) {
        let s = rec["turn"]["session"]
            .as_u64()
            .expect("every record is a turn");
        by_session.entry(s).or_default().push(rec);
    }
    assert_eq!(by_session.len(), 6);
    for (s, mut turns) in by_session {
        turns.sort_by_key(|r| r["turn"]["index"].as_u64());
        let idx: Vec<u64> = turns
            .iter()
            .map(|r| r["turn"]["index"].as_u64().unwrap())
            .collect();
        assert_eq!(idx, [0, 1, 2], "conversation {s}");
        for k in 1..3 {
            let (prev, this) = (&turns[k - 1], &turns[k]);
            assert_eq!(this["id"].as_u64(), Some(s * 3 + k as u64));
            // sent its think time after the previous answer ended, to the nanosecond
            assert_eq!(
                this["t_intended_ns"].as_u64().unwrap(),
                prev["t_end_ns"].as_u64().unwrap() + 300_000_000,
                "conversation {s} turn {k}"
            );
            // the server counts the whole conversation: the previous question and answer
            // (48 + 12 tokens, plus the chat template's own) came along
            let grew = this["server_prompt_tokens"].as_u64().unwrap()
                - prev["server_prompt_tokens"].as_u64().unwrap();
            assert!(
                grew >= 60,
                "conversation {s} turn {k}: prompt grew by {grew}"
            );
        }
    }
    let per_turn = summary(&out)["vllm_loadtest"]["summary"]["per_turn"].clone();
    let rows = per_turn.as_array().expect("per-turn figures");
    assert_eq!(rows.len(), 3);
    for (k, row) in rows.iter().enumerate() {
        assert_eq!(row["turn"], k as u64);
        assert_eq!(row["ok"], 6);
    }
    assert!(
        r.stdout.contains("Turn 3 TTFT p50 / p99 (ms):"),
        "{}",
        r.stdout
    );
}

#[test]
fn turns_past_the_duration_are_not_sent_and_are_counted() {
    let _serial = serial();
    let dir = temp_dir("sessions-cut");
    let out = dir.join("out");
    let r = run(&args(
        out.to_str().unwrap(),
        &[
            "--request-rate",
            "4",
            "--duration",
            "2",
            "--multi-turn-think-time",
            "1.5",
        ],
    ));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let s = &summary(&out)["vllm_loadtest"]["summary"];
    let g = |k: &str| s[k].as_u64().unwrap();
    assert_eq!(g("sent"), g("ok") + g("failed") + g("cancelled"));
    assert!(g("not_sent") > 0, "later turns fall past the 2 s: {s}");
    // every conversation started has three turns: sent or not
    let started = records(&out)
        .iter()
        .filter(|r| r["turn"]["index"] == 0)
        .count() as u64;
    assert_eq!(g("sent") + g("not_sent"), 3 * started, "{s}");
    // a conversation needs the chat endpoint
    let r = run(&[
        "bench",
        "--sim",
        "zero",
        "--dataset-name",
        "multi_turn",
        "--num-prompts",
        "2",
    ]);
    assert_ne!(r.code, Some(0));
    assert!(
        r.stderr.contains("--endpoint /v1/chat/completions"),
        "{}",
        r.stderr
    );
}

/// The shipped example runs (shortened) and its report has the turn-by-turn table.
#[test]
fn the_multi_turn_example_reports_ttft_by_turn() {
    let _serial = serial();
    let root = temp_dir("sessions-run");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/multi-turn.yaml");
    let r = run(&[
        "run",
        example,
        "--output",
        root.to_str().unwrap(),
        "--quiet",
        "--set",
        "load.duration_s=3",
        "--set",
        "load.warmup_s=0",
        "--set",
        "workload.turns=2",
        "--set",
        "workload.think_time_s=0.2",
        "--set",
        "workload.input_len=32",
        "--set",
        "workload.output_len=8",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let report = report_dir(&root).join("report.md");
    let md = std::fs::read_to_string(report).unwrap();
    let section = md
        .split("## Multi-turn conversations: TTFT by turn")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the turn section");
    let rows: Vec<&str> = section.lines().filter(|l| l.starts_with("| c00")).collect();
    assert_eq!(rows.len(), 4, "two cells × two turns:\n{section}");
    // the analysis counts requests: one conversation a second of two turns is 2 req/s
    let run_dir = report_dir(&root);
    let analysis: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("analysis.json")).unwrap())
            .unwrap();
    for g in analysis["groups"].as_array().unwrap() {
        assert_eq!(g["points"][0]["offered"], 2.0, "{g}");
    }
}

/// The one run folder under `root`.
fn report_dir(root: &std::path::Path) -> std::path::PathBuf {
    only_entry(root.join("multi-turn"))
}
