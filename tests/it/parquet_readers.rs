//! Our Parquet files open in the readers users have: pyarrow (pandas' engine), DuckDB and
//! polars. CI installs them (`.ci/run`); elsewhere the test says what it skipped.

use crate::support::*;

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
    let py = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&dir)
        .output();
    let out = match py {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            if std::env::var("CI").is_err() && err.contains("ModuleNotFoundError") {
                eprintln!("skipped: pyarrow/duckdb not installed here (CI installs them): {err}");
                return;
            }
            panic!("reading our parquet failed:\n{err}");
        }
        Err(e) => panic!("python3: {e}"),
    };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
