//! Our Parquet files open in the readers users have: pyarrow (pandas' engine), DuckDB and
//! polars. CI installs them (`.ci/run`); elsewhere the test says what it skipped.

use crate::support::*;
use std::path::Path;

/// Run a Python `script` with `arg` and parse the JSON it prints; `None` (test skipped, said
/// on stderr) when the readers are not installed outside CI.
pub(crate) fn python_json(script: &str, arg: &Path) -> Option<serde_json::Value> {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(arg)
        .output()
        .expect("python3");
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if std::env::var("CI").is_err() && err.contains("ModuleNotFoundError") {
            eprintln!("skipped: pyarrow/duckdb not installed here (CI installs them): {err}");
            return None;
        }
        panic!("reading our parquet failed:\n{err}");
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn requests_and_events_parquet_open_in_pyarrow_duckdb_and_polars() {
    let _serial = serial();
    let dir = temp_dir("parquet");
    let r = run(&[
        "bench",
        "--sim",
        "zero",
        "--random-input-len",
        "16",
        "--random-output-len",
        "8",
        "--num-prompts",
        "30",
        "--request-rate",
        "100",
        "--quiet",
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let script = r#"
import sys, json
d = sys.argv[1]
out = {}
import pyarrow.parquet as pq
t = pq.read_table(d + "/requests.parquet")
out["pyarrow_rows"] = t.num_rows
out["columns"] = t.column_names
out["ok"] = sum(1 for s in t.column("status").to_pylist() if s == "ok")
out["ttft_nulls"] = t.column("ttft_ms").null_count
out["events_rows"] = pq.read_table(d + "/events.parquet").num_rows
import duckdb
out["duckdb"] = list(duckdb.sql(f"select count(*)::BIGINT, sum(output_tokens)::BIGINT from '{d}/requests.parquet'").fetchall()[0])
try:
    import polars as pl
    out["polars_rows"] = pl.read_parquet(d + "/requests.parquet").height
except ImportError:
    out["polars_rows"] = None
print(json.dumps(out))
"#;
    let Some(v) = python_json(script, &dir) else {
        return;
    };
    assert_eq!(v["pyarrow_rows"], 30);
    assert_eq!(v["ok"], 30);
    assert_eq!(v["ttft_nulls"], 0);
    assert_eq!(v["events_rows"], 30 * 8);
    assert_eq!(v["duckdb"], serde_json::json!([30, 240]));
    if !v["polars_rows"].is_null() {
        assert_eq!(v["polars_rows"], 30);
    }
    let cols: Vec<&str> = v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for c in [
        "t_send_ns",
        "ttft_ms",
        "tpot_ms",
        "queue_delay_ns",
        "status",
        "in_window",
    ] {
        assert!(cols.contains(&c), "{c}");
    }
}

/// `events.parquet` is written in row groups as the records stream by (a long run's events
/// do not fit in memory at once): a file of several groups, the last one short, reads back
/// whole and in order in every reader.
#[test]
fn events_parquet_in_several_row_groups_reads_back_whole() {
    use loadtest_analysis::record::{RequestRecord, TokenSource};
    use vllm_loadtest::store::requests_table::EventsWriter;
    let dir = temp_dir("parquet_groups");
    let path = dir.join("events.parquet");
    let mut w = EventsWriter::create(&path, 4).unwrap();
    for id in 0..3u64 {
        // only request 1 says how many tokens each event carried
        let tokens = if id == 1 {
            vec![1, 2, 1, 1, 3]
        } else {
            Vec::new()
        };
        w.push(&RequestRecord {
            id,
            t_intended_ns: 0,
            t_send_ns: id * 1_000,
            t_end_ns: id * 1_000 + 600,
            connect_ns: None,
            content_events: (0..5).map(|k| 100 + k * 100).collect(),
            content_event_tokens: tokens,
            input_tokens: 1,
            server_prompt_tokens: None,
            max_tokens: 5,
            output_tokens: 5,
            output_tokens_source: TokenSource::Events,
            finish_reason: None,
            error: None,
            resent: 0,
            turn: None,
        })
        .unwrap();
    }
    w.finish().unwrap();
    let script = r#"
import sys, json
import pyarrow.parquet as pq
f = pq.ParquetFile(sys.argv[1])
t = f.read()
out = {"groups": f.num_row_groups, "t_ns": t.column("t_ns").to_pylist(),
       "ids": t.column("request_id").to_pylist(), "idx": t.column("event_index").to_pylist(),
       "tokens": t.column("tokens").to_pylist()}
import duckdb
out["duckdb"] = list(duckdb.sql(f"select count(*)::BIGINT, sum(t_ns)::BIGINT from '{sys.argv[1]}'").fetchall()[0])
try:
    import polars as pl
    out["polars_rows"] = pl.read_parquet(sys.argv[1]).height
except ImportError:
    out["polars_rows"] = None
print(json.dumps(out))
"#;
    let Some(v) = python_json(script, &path) else {
        return;
    };
    let want_t: Vec<u64> = (0..3u64)
        .flat_map(|id| (0..5).map(move |k| id * 1_000 + 100 + k * 100))
        .collect();
    assert_eq!(v["groups"], 4, "15 rows in groups of 4");
    assert_eq!(v["t_ns"], serde_json::json!(want_t));
    assert_eq!(
        v["ids"],
        serde_json::json!([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2])
    );
    assert_eq!(v["idx"][5], 0);
    let none = serde_json::Value::Null;
    let mut want_tokens = vec![none.clone(); 5];
    want_tokens.extend([1, 2, 1, 1, 3].map(serde_json::Value::from));
    want_tokens.extend(vec![none; 5]);
    assert_eq!(v["tokens"], serde_json::Value::Array(want_tokens));
    assert_eq!(
        v["duckdb"],
        serde_json::json!([15, want_t.iter().sum::<u64>()])
    );
    if !v["polars_rows"].is_null() {
        assert_eq!(v["polars_rows"], 15);
    }
}
