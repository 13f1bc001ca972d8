//! The simulator on the wire: vLLM's metric families and types, streams our client decodes
//! like real vLLM's, vLLM's error statuses, and `bench --sim` end to end.

use crate::support::*;
use loadtest_base::Tokenizer;
use loadtest_base::http::chunked::ChunkedDecoder;
use std::sync::Arc;
use std::time::Duration;
use vllm_loadtest::client::chunk::{Payload, classify};
use vllm_loadtest::client::get;
use vllm_loadtest::client::sse::SseDecoder;
use vllm_loadtest::prom;
use vllm_sim::background::{SimHandle, start_with};
use vllm_sim::faults::{Fault, Faults};
use vllm_sim::{Profile, SimConfig};

fn sim(profile: Profile, dp: usize, faults: Faults) -> SimHandle {
    start_with(SimConfig {
        profile,
        dp,
        seed: 1,
        model: "sim-llama".into(),
        api_servers: None,
        faults,
        tokenizer: Arc::new(Tokenizer::built_in().unwrap()),
    })
    .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn call(h: &SimHandle, method: &str, path: &str, body: Option<&str>) -> (u16, Vec<u8>) {
    let url = vllm_loadtest::client::BaseUrl::parse(&format!("http://{}", h.addr())).unwrap();
    let server = vllm_loadtest::client::Access::plain()
        .at(&url, h.addr())
        .unwrap();
    rt().block_on(get::request(
        &server,
        method,
        path,
        body.map(str::as_bytes),
        Duration::from_secs(20),
    ))
    .unwrap()
}

#[test]
fn metrics_parse_and_share_vllms_types_and_engine_labels() {
    let _serial = serial();
    let h = sim(Profile::named("zero").unwrap(), 2, Faults::none());
    // some traffic first, so histograms have counts
    for _ in 0..4 {
        let (st, _) = call(
            &h,
            "POST",
            "/v1/completions",
            Some(r#"{"model":"sim-llama","prompt":"hello there","max_tokens":5}"#),
        );
        assert_eq!(st, 200);
    }
    let (st, body) = call(&h, "GET", "/metrics", None);
    assert_eq!(st, 200);
    let ours = prom::parse(std::str::from_utf8(&body).unwrap()).unwrap();
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/vllm/metrics.txt"
    ))
    .unwrap();
    let real = prom::parse(&fixture).unwrap();
    let mut shared = 0;
    for (name, ty) in &ours.types {
        if let Some(real_ty) = real.types.get(name) {
            assert_eq!(ty, real_ty, "type of {name}");
            shared += 1;
        }
    }
    assert!(shared >= 15, "only {shared} families shared with vLLM");
    for required in [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:request_success_total",
        "vllm:num_preemptions_total",
        "vllm:time_to_first_token_seconds",
        "vllm:inter_token_latency_seconds",
        "vllm:e2e_request_latency_seconds",
        "vllm:request_queue_time_seconds",
        "vllm:request_prefill_time_seconds",
        "vllm:request_decode_time_seconds",
    ] {
        assert!(ours.types.contains_key(required), "missing {required}");
    }
    assert_eq!(
        ours.find(
            "vllm:num_requests_running",
            &[("engine", "1"), ("model_name", "sim-llama")]
        )
        .count(),
        1
    );
    let done: f64 = ours
        .find(
            "vllm:request_success_total",
            &[("finished_reason", "length")],
        )
        .map(|s| s.value)
        .sum();
    assert_eq!(done, 4.0);
    let generated: f64 = ours
        .find("vllm:generation_tokens_total", &[])
        .map(|s| s.value)
        .sum();
    assert_eq!(generated, 20.0);
}

fn decode_stream(body: &[u8]) -> (usize, Option<usize>, Option<u32>, bool) {
    let mut d = SseDecoder::new();
    let (mut content, mut first, mut usage, mut done, mut idx) = (0, None, None, false, 0);
    d.feed(body, |ev| {
        match classify(ev.data).unwrap() {
            Payload::Done => done = true,
            Payload::Chunk(c) => {
                if c.content {
                    content += 1;
                    first.get_or_insert(idx);
                }
                if let Some(u) = c.usage {
                    usage = u.completion_tokens;
                }
            }
            Payload::Error(e) => panic!("{e}"),
        }
        idx += 1;
    });
    (content, first, usage, done)
}

#[test]
fn streams_decode_like_real_vllm_streams() {
    let _serial = serial();
    let h = sim(Profile::named("zero").unwrap(), 1, Faults::none());
    let (st, body) = call(
        &h,
        "POST",
        "/v1/completions",
        Some(
            r#"{"model":"sim-llama","prompt":"a b c","max_tokens":64,"stream":true,"ignore_eos":true,"stream_options":{"include_usage":true}}"#,
        ),
    );
    assert_eq!(st, 200);
    assert_eq!(decode_stream(&body), (64, Some(0), Some(64), true));
    let (st, body) = call(
        &h,
        "POST",
        "/v1/chat/completions",
        Some(
            r#"{"model":"sim-llama","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":16,"stream":true,"stream_options":{"include_usage":true}}"#,
        ),
    );
    assert_eq!(st, 200);
    let (content, first, usage, done) = decode_stream(&body);
    assert_eq!(first, Some(1), "role-only chunk first, as vLLM");
    assert_eq!(usage, Some(content as u32));
    assert!(done && content >= 1);
}

#[test]
fn bad_requests_get_vllms_statuses() {
    let _serial = serial();
    let h = sim(Profile::named("zero").unwrap(), 1, Faults::none());
    let cases = [
        (
            "POST",
            "/v1/completions",
            Some(r#"{"model":"sim-llama"}"#),
            400,
        ),
        (
            "POST",
            "/v1/completions",
            Some(r#"{"model":"nope","prompt":"x"}"#),
            404,
        ),
        ("POST", "/v1/completions", Some("not json"), 400),
        (
            "POST",
            "/v1/chat/completions",
            Some(r#"{"model":"sim-llama"}"#),
            400,
        ),
        (
            "POST",
            "/v1/completions",
            Some(r#"{"prompt":"x","max_tokens":100000}"#),
            400,
        ),
        ("GET", "/v1/completions", None, 405),
        ("GET", "/nope", None, 404),
        ("GET", "/health", None, 200),
        ("GET", "/version", None, 200),
        ("POST", "/reset_prefix_cache", None, 200),
    ];
    for (m, p, b, want) in cases {
        let (st, body) = call(&h, m, p, b);
        assert_eq!(
            st,
            want,
            "{m} {p} {b:?}: {}",
            String::from_utf8_lossy(&body)
        );
        if want == 400 || want == 404 && p.starts_with("/v1") {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"]["code"], want, "{v}");
        }
    }
}

#[test]
fn bench_against_the_built_in_simulator_end_to_end() {
    let _serial = serial();
    let dir = temp_dir("bench-sim");
    let r = run(&[
        "bench",
        "--sim",
        "default",
        "--sim-dp",
        "2",
        "--random-input-len",
        "64",
        "--random-output-len",
        "16",
        "--num-prompts",
        "40",
        "--request-rate",
        "20",
        "--quiet",
        "--save-result",
        "--result-dir",
        dir.to_str().unwrap(),
        "--result-filename",
        "vllm.json",
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_accounted(&dir, 40);
    let s = summary(&dir);
    assert_eq!(s["completed"], 40);
    // the client's own health is recorded beside the figures
    let client = &s["vllm_loadtest"]["client"];
    assert!(client["loop_lag_p99_ms"].as_f64().is_some(), "{client}");
    assert!(client["cpu_s"].as_f64().unwrap() > 0.0);
    // default profile, light load: TTFT is the front end plus about one prefill step
    let ttft = s["median_ttft_ms"].as_f64().unwrap();
    assert!((30.0..150.0).contains(&ttft), "TTFT {ttft}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("vllm.json")).unwrap()).unwrap();
    // every key vLLM's --save-result writes
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/vllm/bench-serve-result.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let detailed = [
        "input_lens",
        "output_lens",
        "ttfts",
        "itls",
        "latencies",
        "start_times",
        "queue_times",
        "generated_texts",
        "errors",
    ];
    for k in fixture.as_object().unwrap().keys() {
        if detailed.contains(&k.as_str()) {
            continue;
        }
        assert!(v.get(k).is_some(), "vLLM key `{k}` missing");
    }
    for f in ["requests.parquet", "events.parquet", "summary.json"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    // the journal is retired once the Parquet files hold every record
    assert!(!dir.join("requests.jsonl").exists());
}

#[test]
fn simulator_faults_reach_the_client_as_typed_errors() {
    let _serial = serial();
    let faults = Faults::new(
        0.6,
        vec![
            Fault::Http500,
            Fault::Http503,
            Fault::DropMidstream,
            Fault::Malformed,
        ],
        3,
    )
    .unwrap();
    let h = sim(Profile::named("zero").unwrap(), 1, faults);
    let dir = temp_dir("sim-faults");
    let r = run(&[
        "bench",
        "--base-url",
        &format!("http://{}", h.addr()),
        "--model",
        "sim-llama",
        "--random-input-len",
        "16",
        "--random-output-len",
        "8",
        "--num-prompts",
        "80",
        "--request-rate",
        "200",
        "--quiet",
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_accounted(&dir, 80);
    let by_kind = &summary(&dir)["vllm_loadtest"]["summary"]["errors_by_kind"];
    for k in ["http_status", "stream_broken", "protocol"] {
        assert!(by_kind[k].as_u64().unwrap_or(0) > 0, "no {k}: {by_kind}");
    }
}

/// A client that hangs up mid-stream frees its engine slot, as in vLLM (the engine thread
/// writes the chunks itself and must notice the closed socket).
#[test]
fn a_client_that_hangs_up_mid_stream_is_aborted() {
    use std::io::{Read, Write};
    let _serial = serial();
    let mut p = Profile::named("zero").unwrap();
    p.c0_s = 0.005;
    let h = sim(p, 1, Faults::none());
    let running = || {
        let (_, body) = call(&h, "GET", "/metrics", None);
        let text = String::from_utf8(body).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("vllm:num_requests_running{"))
            .expect("running gauge")
            .to_string();
        line.rsplit(' ').next().unwrap().parse::<f64>().unwrap()
    };
    let body =
        r#"{"model":"sim-llama","prompt":"hi","max_tokens":2000,"ignore_eos":true,"stream":true}"#;
    let mut s = std::net::TcpStream::connect(h.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // a few tokens arrive, then the client goes away
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.windows(6).filter(|w| w == b"data: ").count() < 3 {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "stream ended early: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(running(), 1.0);
    drop(s);
    let t0 = std::time::Instant::now();
    while running() != 0.0 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "request never aborted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // the server goes on serving
    let (st, _) = call(
        &h,
        "POST",
        "/v1/completions",
        Some(r#"{"model":"sim-llama","prompt":"hi","max_tokens":3,"stream":true}"#),
    );
    assert_eq!(st, 200);
}

/// With 5 ms steps, each token leaves in its own write one step after the last: the engine
/// thread's writes neither batch tokens of several steps nor stretch the steps. And a second
/// streamed response on the same connection works (the descriptor the engine writes on is
/// handed back between responses).
#[test]
fn streamed_tokens_leave_one_per_step_on_a_kept_alive_connection() {
    use std::io::{Read, Write};
    let _serial = serial();
    let mut p = Profile::named("zero").unwrap();
    p.c0_s = 0.005;
    let h = sim(p, 1, Faults::none());
    let body =
        r#"{"model":"sim-llama","prompt":"hi","max_tokens":20,"ignore_eos":true,"stream":true}"#;
    let mut s = std::net::TcpStream::connect(h.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_nodelay(true).unwrap();
    for _ in 0..2 {
        write!(
            s,
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        // arrival time of each content event, taken at the read that delivered it
        let mut times = Vec::new();
        let (mut chunked, mut sse) = (ChunkedDecoder::new(), SseDecoder::new());
        let mut buf = [0u8; 4096];
        let mut head = Vec::new();
        while !chunked.is_done() {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed");
            let t = std::time::Instant::now();
            let mut body = &buf[..n];
            if head.windows(4).all(|w| w != b"\r\n\r\n") {
                // the response head comes first, in the first read or two
                let old = head.len();
                head.extend_from_slice(body);
                let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                body = &body[at + 4 - old..];
            }
            chunked
                .decode(body, |payload| {
                    sse.feed(payload, |ev| {
                        if matches!(classify(ev.data), Ok(Payload::Chunk(c)) if c.content) {
                            times.push(t);
                        }
                    })
                })
                .unwrap();
        }
        assert_eq!(times.len(), 20);
        let mut gaps: Vec<f64> = times
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64() * 1e3)
            .collect();
        gaps.sort_by(f64::total_cmp);
        let median = gaps[gaps.len() / 2];
        assert!(
            (median - 5.0).abs() < 1.5,
            "median gap {median:.2} ms between tokens, want one 5 ms step: {gaps:?}"
        );
    }
}

/// The cell keeps compact records and streams the content events back from
/// `requests.jsonl` for the ITL and the peak tokens/s: its figures must equal those
/// recomputed here from the full records (read back from its Parquet files), to the bit for percentiles (the requested extra
/// one included), and the vLLM-format detailed `itls` must list the same gaps.
#[test]
fn streamed_event_figures_equal_a_recomputation_from_the_raw_records() {
    use loadtest_analysis::stats::Distribution;
    use vllm_loadtest::store::layout::CellDir;
    let _serial = serial();
    let dir = temp_dir("event-figures");
    let r = run(&[
        "bench",
        "--sim",
        "default",
        "--random-input-len",
        "32",
        "--random-output-len",
        "16",
        "--num-prompts",
        "30",
        "--request-rate",
        "60",
        "--percentile-metrics",
        "ttft,itl",
        "--metric-percentiles",
        "25,50,99",
        "--quiet",
        "--save-result",
        "--save-detailed",
        "--result-dir",
        dir.to_str().unwrap(),
        "--result-filename",
        "vllm.json",
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // read back from requests.parquet + events.parquet, every event's offset included
    let records = vllm_loadtest::store::records::read_full(&CellDir::new(&dir)).unwrap();
    assert_eq!(records.len(), 30);
    let gaps_ms: Vec<f64> = records
        .iter()
        .filter(|r| r.is_ok())
        .flat_map(|r| r.itls_ns().map(|g| g as f64 / 1e6).collect::<Vec<_>>())
        .collect();
    assert_eq!(gaps_ms.len(), 30 * 15);
    let want = Distribution::from_values_with(gaps_ms.clone(), &[25.0]).unwrap();
    let s = summary(&dir);
    let got = &s["vllm_loadtest"]["summary"]["latencies"]["itl_ms"];
    for (k, w) in [
        ("p50", want.p50),
        ("p90", want.p90),
        ("p99", want.p99),
        ("p999", want.p999),
        ("min", want.min),
        ("max", want.max),
    ] {
        assert_eq!(got[k].as_f64(), Some(w), "itl {k}");
    }
    let mean = got["mean"].as_f64().unwrap();
    assert!(
        (mean - want.mean).abs() < 1e-9 * want.mean,
        "mean {mean} vs {}",
        want.mean
    );
    assert_eq!(
        s["p25_itl_ms"].as_f64(),
        want.percentile(25.0),
        "requested p25"
    );
    assert_eq!(s["median_itl_ms"].as_f64(), Some(want.p50));
    // the busiest second of content events
    let mut per_s = std::collections::BTreeMap::new();
    for r in records.iter().filter(|r| r.is_ok()) {
        for o in &r.content_events {
            *per_s
                .entry((r.t_send_ns + o) / 1_000_000_000)
                .or_insert(0u64) += 1;
        }
    }
    let peak = *per_s.values().max().unwrap() as f64;
    assert_eq!(s["max_output_tokens_per_s"].as_f64(), Some(peak));
    // vLLM's detailed lists, read back from the raw records
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("vllm.json")).unwrap()).unwrap();
    let listed: usize = v["itls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().len())
        .sum();
    assert_eq!(listed, gaps_ms.len());
}

/// The simulator honours `stream_options.continuous_usage_stats` the way vLLM does (running
/// usage in every chunk, the chat role chunk included), so `--continuous-usage-stats`
/// records one token per event against it; without the flag nothing is recorded.
#[test]
fn continuous_usage_stats_against_the_simulator_give_one_token_per_event() {
    let _serial = serial();
    for (flag, dir) in [(true, "cus-on"), (false, "cus-off")] {
        let dir = temp_dir(dir);
        let mut args = vec![
            "bench",
            "--sim",
            "zero",
            "--endpoint",
            "/v1/chat/completions",
            "--random-input-len",
            "16",
            "--random-output-len",
            "8",
            "--num-prompts",
            "10",
            "--request-rate",
            "100",
            "--quiet",
            "--output-dir",
            dir.to_str().unwrap(),
        ];
        if flag {
            args.push("--continuous-usage-stats");
        }
        let r = run(&args);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        for rec in records(&dir) {
            assert_eq!(rec["output_tokens"], 8, "{rec}");
            if flag {
                assert_eq!(
                    rec["content_event_tokens"],
                    serde_json::json!([1, 1, 1, 1, 1, 1, 1, 1]),
                    "{rec}"
                );
            } else {
                assert!(rec.get("content_event_tokens").is_none(), "{rec}");
            }
        }
        let t = &summary(&dir)["vllm_loadtest"]["summary"]["event_tokens"];
        if flag {
            assert_eq!(
                (t["events"].as_u64(), t["multi_token_events"].as_u64()),
                (Some(80), Some(0))
            );
        } else {
            assert!(t.is_null(), "{t}");
        }
    }
}

/// A request head declaring a body too large to hold (or a length that is not a number)
/// gets an error, not a buffer without bound, an overflow or a silently empty body.
#[test]
fn absurd_content_lengths_are_refused() {
    use std::io::{Read, Write};
    let _serial = serial();
    let h = sim(Profile::named("zero").unwrap(), 1, Faults::none());
    for (length, status) in [
        ("18446744073709551615", "413"),
        ("67108865", "413"),
        ("99999999999999999999999", "400"),
        ("12abc", "400"),
    ] {
        let mut s = std::net::TcpStream::connect(h.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
        )
        .unwrap();
        let mut got = String::new();
        let _ = s.read_to_string(&mut got);
        assert!(
            got.starts_with(&format!("HTTP/1.1 {status} ")),
            "Content-Length {length}: {got}"
        );
    }
    // still serving
    let (code, _) = call(&h, "GET", "/health", None);
    assert_eq!(code, 200);
}
