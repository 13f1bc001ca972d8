//! Our Parquet files open in the readers users have: pyarrow (pandas' engine), DuckDB and
//! polars, with typed columns (timestamps as timestamps, labels as columns). CI installs
//! them (`.ci/run`); elsewhere the test says what it skipped. And what the aggregate stage
//! reads back through the `parquet` crate is what was written.

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
out["types"] = {f.name: str(f.type) for f in t.schema}
ev = pq.read_table(d + "/events.parquet")
out["event_types"] = {f.name: str(f.type) for f in ev.schema}
meta = pq.ParquetFile(d + "/requests.parquet").metadata
out["format"] = meta.format_version
col = {meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i) for i in range(meta.num_columns)}
out["compression"] = sorted({c.compression for c in col.values()})
out["status_dictionary"] = col["status"].has_dictionary_page
out["stats"] = all(c.is_stats_set for c in col.values())
import pandas
df = pandas.read_parquet(d + "/requests.parquet")
out["send_at_minus_t_send_ns"] = sorted({int(x) for x in (df["send_at"].astype("int64") - df["t_send_ns"])})
out["send_at_year"] = int(df["send_at"].dt.year.min())
import duckdb
out["duckdb"] = list(duckdb.sql(f"select count(*)::BIGINT, sum(output_tokens)::BIGINT from '{d}/requests.parquet'").fetchall()[0])
out["duckdb_send_at"] = str(duckdb.sql(f"select typeof(send_at) from '{d}/requests.parquet' limit 1").fetchall()[0][0])
try:
    import polars as pl
    p = pl.read_parquet(d + "/requests.parquet")
    out["polars_rows"] = p.height
    out["polars_send_at"] = str(p.schema["send_at"])
except ImportError:
    out["polars_rows"] = None
print(json.dumps(out))
"#;
    let Some(v) = python_json(script, &dir) else {
        return;
    };
    // typed: instants are UTC timestamps, the ns columns integers, the figures doubles
    let types = &v["types"];
    for c in ["intended_at", "send_at", "first_token_at", "end_at"] {
        assert_eq!(types[c], "timestamp[ns, tz=UTC]", "{c}: {types}");
    }
    assert_eq!(v["event_types"]["at"], "timestamp[ns, tz=UTC]");
    assert_eq!(types["t_send_ns"], "int64");
    assert_eq!(types["ttft_ms"], "double");
    assert_eq!(types["status"], "string");
    assert_eq!(types["in_window"], "bool");
    assert_eq!(v["format"], "2.6");
    assert_eq!(v["compression"], serde_json::json!(["ZSTD"]));
    assert_eq!(v["status_dictionary"], true);
    assert_eq!(v["stats"], true);
    // one clock zero per cell: send_at - t_send_ns is the same instant on every row, today
    assert_eq!(v["send_at_minus_t_send_ns"].as_array().unwrap().len(), 1);
    assert!(v["send_at_year"].as_i64().unwrap() >= 2025);
    // DuckDB 1.1+ keeps the nanoseconds (TIMESTAMPTZ_NS); older ones say TIMESTAMP WITH TIME ZONE
    let duck = v["duckdb_send_at"].as_str().unwrap();
    assert!(
        duck == "TIMESTAMPTZ_NS" || duck == "TIMESTAMP WITH TIME ZONE",
        "{duck}"
    );
    if !v["polars_rows"].is_null() {
        assert_eq!(
            v["polars_send_at"],
            "Datetime(time_unit='ns', time_zone='UTC')"
        );
    }
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
    let mut w = EventsWriter::create(&path, 4, 0).unwrap();
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

/// Every Parquet file of a `run` folder (the cells' four kinds, `runs.parquet`,
/// `timeseries.parquet`) opens in pyarrow, DuckDB and polars with typed columns: instants as
/// UTC timestamps, the server's labels as columns of their own, the matrix values as
/// numbers. The cells keep no JSON-lines copy of what their Parquet files hold.
#[test]
fn every_file_of_a_run_opens_typed_in_every_reader() {
    let _serial = serial();
    let root = temp_dir("parquet-run");
    let exp = format!("{}/examples/quickstart.yaml", env!("CARGO_MANIFEST_DIR"));
    let r = run(&[
        "run",
        &exp,
        "--output",
        root.to_str().unwrap(),
        "--set",
        "load.duration_s=1.5",
        "--set",
        "load.warmup_s=0.2",
        "--set",
        "load.cooldown_s=0.2",
        "--set",
        "workload.input_len=32",
        "--set",
        "workload.output_len=4",
        "--set",
        "monitor.metrics_interval_s=0.25",
        "--set",
        "matrix.request_rate=[5,10]",
        "--quiet",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let dir = only_entry(root.join("quickstart"));
    for cell in std::fs::read_dir(dir.join("cells")).unwrap() {
        let cell = cell.unwrap().path();
        for gone in ["requests.jsonl", "server_metrics.jsonl"] {
            assert!(!cell.join(gone).exists(), "{}/{gone}", cell.display());
        }
    }
    let script = r#"
import sys, json, glob
import pyarrow.parquet as pq, duckdb
d = sys.argv[1]
out = {"files": {}}
for f in sorted(glob.glob(d + "/*.parquet") + glob.glob(d + "/cells/*/*.parquet")):
    t = pq.read_table(f)
    n = duckdb.sql(f"select count(*)::BIGINT from '{f}'").fetchall()[0][0]
    try:
        import polars as pl
        m = pl.read_parquet(f).height
    except ImportError:
        m = n
    out["files"][f[len(d) + 1:]] = {"rows": t.num_rows, "duckdb": n, "polars": m,
        "types": {x.name: str(x.type) for x in t.schema}}
sm = glob.glob(d + "/cells/*/server_metrics.parquet")[0]
out["running_engines"] = duckdb.sql(f"select distinct engine, model_name from '{sm}' where metric = 'vllm:num_requests_running'").fetchall()
out["reasons"] = sorted(r[0] for r in duckdb.sql(f"select distinct finished_reason from '{sm}' where metric = 'vllm:request_success_total'").fetchall())
print(json.dumps(out))
"#;
    let Some(v) = python_json(script, &dir) else {
        return;
    };
    let files = v["files"].as_object().unwrap();
    // 2 cells x (requests, events, server_metrics) + runs + timeseries
    assert_eq!(files.len(), 8, "{:?}", files.keys());
    for (name, f) in files {
        assert_eq!(f["rows"], f["duckdb"], "{name}");
        assert_eq!(f["rows"], f["polars"], "{name}");
        assert!(f["rows"].as_u64().unwrap() > 0, "{name}");
    }
    let ts = "timestamp[ns, tz=UTC]";
    let types = |f: &str| files[f]["types"].clone();
    assert_eq!(types("runs.parquet")["started_at"], ts);
    assert_eq!(types("runs.parquet")["request_rate"], "double");
    assert_eq!(types("runs.parquet")["dp_size"], "int64");
    assert_eq!(types("timeseries.parquet")["at"], ts);
    let (cell_metrics, _) = files
        .iter()
        .find(|(n, _)| n.ends_with("server_metrics.parquet"))
        .unwrap();
    let m = types(cell_metrics);
    assert_eq!(m["at"], ts);
    assert_eq!(m["t_ns"], "int64");
    for label in ["metric", "engine", "model_name", "finished_reason", "le"] {
        assert_eq!(m[label], "string", "{label}: {m}");
    }
    assert!(m.get("labels").is_none(), "no `k=v,…` string any more: {m}");
    // one engine (dp 1), its model named in a column of its own
    let engines = v["running_engines"].as_array().unwrap();
    assert_eq!(engines.len(), 1, "{engines:?}");
    assert_eq!(engines[0][0], "0");
    assert!(!engines[0][1].as_str().unwrap().is_empty());
    assert!(
        v["reasons"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("length")),
        "{}",
        v["reasons"]
    );
}

/// What the aggregate stage reads back through the `parquet` crate is, field for field, what
/// the run wrote: every kind of record (ok, an HTTP error, cancelled with its reason, resent,
/// a conversation's turn, per-event tokens known and unknown, no events at all).
#[test]
fn records_read_back_from_parquet_equal_the_written_ones() {
    use loadtest_analysis::record::{
        CancelReason, ErrorKind, RequestError, RequestRecord, TokenSource, Turn,
    };
    use loadtest_analysis::summary::Window;
    use vllm_loadtest::store::layout::CellDir;
    use vllm_loadtest::store::{records, requests_table};
    let dir = temp_dir("parquet_records");
    let cell = CellDir::new(&dir);
    let base = RequestRecord {
        id: 0,
        t_intended_ns: 1_000,
        t_send_ns: 1_200,
        t_end_ns: 9_000,
        connect_ns: Some(50),
        content_events: vec![300, 500, 800],
        content_event_tokens: vec![1, 2, 1],
        input_tokens: 16,
        server_prompt_tokens: Some(17),
        max_tokens: 4,
        output_tokens: 4,
        output_tokens_source: TokenSource::Usage,
        finish_reason: Some("length".into()),
        error: None,
        resent: 0,
        turn: None,
    };
    let mut all = vec![base.clone()];
    all.push(RequestRecord {
        id: 1,
        content_events: vec![],
        content_event_tokens: vec![],
        connect_ns: None,
        server_prompt_tokens: None,
        output_tokens: 0,
        output_tokens_source: TokenSource::Events,
        finish_reason: None,
        error: Some(RequestError {
            kind: ErrorKind::HttpStatus,
            http_status: Some(503),
            cancel_reason: None,
            message: "overloaded, try later".into(),
        }),
        ..base.clone()
    });
    all.push(RequestRecord {
        id: 2,
        content_events: vec![100],
        content_event_tokens: vec![],
        output_tokens_source: TokenSource::Tokenizer,
        error: Some(RequestError {
            kind: ErrorKind::Cancelled,
            http_status: None,
            cancel_reason: Some(CancelReason::AfterWindow),
            message: "cut".into(),
        }),
        resent: 2,
        turn: Some(Turn {
            session: 7,
            index: 3,
        }),
        ..base.clone()
    });
    // its events span two row groups (of 2 events), none saying its tokens
    all.push(RequestRecord {
        id: 3,
        content_events: vec![100, 200, 300],
        content_event_tokens: vec![],
        ..base.clone()
    });
    // the journal as the run writes it, then the cell's end: Parquet from it, journal retired
    let mut journal = String::new();
    for r in &all {
        journal.push_str(&serde_json::to_string(r).unwrap());
        journal.push('\n');
    }
    std::fs::write(cell.requests_jsonl(), journal).unwrap();
    let compact = vllm_loadtest::store::jsonl::read_compact(&cell.requests_jsonl())
        .unwrap()
        .0;
    let window = Window {
        start_ns: 0,
        end_ns: 10_000,
    };
    requests_table::write_requests(&cell.requests_parquet(), &compact, window, 1_700_000_000)
        .unwrap();
    let mut ev = requests_table::EventsWriter::create(&cell.events_parquet(), 2, 0).unwrap();
    for r in &all {
        ev.push(r).unwrap();
    }
    ev.finish().unwrap();
    records::retire_journal(&cell, all.len()).unwrap();
    assert!(!cell.requests_jsonl().exists());
    assert_eq!(records::read_compact(&cell).unwrap(), compact);
    assert_eq!(records::read_full(&cell).unwrap(), all);
    // a request's events written in two places (no writer of ours does) are refused, not
    // read as two requests
    let mut ev = requests_table::EventsWriter::create(&cell.events_parquet(), 2, 0).unwrap();
    for r in [&all[0], &all[2], &all[0]] {
        ev.push(r).unwrap();
    }
    ev.finish().unwrap();
    let err = format!("{:#}", records::read_full(&cell).unwrap_err());
    assert!(
        err.contains("events of request 0 are not all together"),
        "{err}"
    );
    // `--resume` runs the cell again: its new journal, not the earlier attempt's Parquet
    std::fs::write(
        cell.requests_jsonl(),
        serde_json::to_string(&all[1]).unwrap() + "\n",
    )
    .unwrap();
    assert_eq!(records::read_full(&cell).unwrap(), vec![all[1].clone()]);
}
