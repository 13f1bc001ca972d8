//! The client measures what the server does: a server with known delays must come out as
//! those delays, at a paced rate and with many concurrent streams.

use crate::support::*;

pub fn check(dir: &std::path::Path, n: u64) {
    assert_accounted(dir, n);
    let s = summary(dir);
    assert_eq!(s["completed"].as_u64(), Some(n));
    let ttft = s["median_ttft_ms"].as_f64().unwrap();
    let tpot = s["median_tpot_ms"].as_f64().unwrap();
    assert!(
        (ttft - 50.0).abs() <= 2.0,
        "TTFT p50 {ttft} ms, want 50 ± 2"
    );
    assert!(
        (tpot - 10.0).abs() <= 1.0,
        "TPOT p50 {tpot} ms, want 10 ± 1"
    );
    assert_eq!(s["total_output_tokens"].as_u64(), Some(64 * n));
}

#[test]
fn known_delays_are_measured_at_20_req_per_s_and_with_200_streams_open() {
    let _serial = serial();
    let server = fake_server(|_| Behavior::Stream {
        first_ms: 50,
        gap_ms: 10,
        tokens: 64,
    });
    let url = server.url();
    let paced = temp_dir("paced");
    let r = run(&[
        "bench",
        "--base-url",
        &url,
        "--model",
        "m",
        "--random-input-len",
        "32",
        "--random-output-len",
        "64",
        "--num-prompts",
        "60",
        "--request-rate",
        "20",
        "--quiet",
        "--output-dir",
        paced.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    check(&paced, 60);
    let burst = temp_dir("burst");
    let r = run(&[
        "bench",
        "--base-url",
        &url,
        "--model",
        "m",
        "--random-input-len",
        "32",
        "--random-output-len",
        "64",
        "--num-prompts",
        "400",
        "--request-rate",
        "300",
        "--quiet",
        "--output-dir",
        burst.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    check(&burst, 400);
    // 300 req/s of 0.68 s streams: about 200 open at once
    let peak = summary(&burst)["max_concurrent_requests"].as_u64().unwrap();
    assert!(peak >= 180, "peak concurrency {peak}");
    // the table a vLLM user expects is on stdout
    assert!(r.stdout.contains("Serving Benchmark Result"));
    assert!(
        r.stdout
            .contains("sent 400 = ok 400 + failed 0 + cancelled 0")
    );
}

/// The pacer thread sends a request on an idle pooled connection at its due time; the
/// runtime then reads its response. The record carries the pacer's send time, the server
/// sees the request once, and no connection is opened for it.
#[test]
fn a_request_the_pacer_sent_is_read_once_with_the_pacers_send_time() {
    use loadtest_base::clock::Clock;
    use std::sync::Arc;
    use std::time::Duration;
    use vllm_loadtest::client::{Job, Pool, Presend, RequestSpec, Timeouts, execute};
    let _serial = serial();
    let server = fake_server(|_| Behavior::Stream {
        first_ms: 5,
        gap_ms: 1,
        tokens: 3,
    });
    let body = r#"{"model":"m","prompt":"hi","max_tokens":3,"stream":true}"#;
    let bytes = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        server.addr,
        body.len()
    );
    let spec = RequestSpec {
        bytes: Arc::from(bytes.into_bytes()),
        input_tokens: 1,
        max_tokens: 3,
        expect_max_tokens: true,
    };
    let timeouts = Timeouts {
        connect: Duration::from_secs(5),
        request: Duration::from_secs(10),
    };
    let pool = Pool::new(
        vllm_loadtest::client::conn::Connector::plain(server.addr),
        4,
    );
    let clock = Clock::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_keep, mut cancel) = tokio::sync::watch::channel(false);
    let job = |id, pre| Job {
        id,
        t_intended_ns: clock.now_ns(),
        spec: &spec,
        pre,
    };
    // the first request opens the connection and gives it back to the pool
    let first = rt.block_on(execute(&pool, &clock, timeouts, job(0, None), &mut cancel));
    assert!(first.is_ok(), "{:?}", first.error);
    assert!(first.connect_ns.is_some());
    assert_eq!(pool.idle_count(), 1);
    // the second goes out from another thread, as the pacer sends it
    let pre = std::thread::scope(|s| {
        s.spawn(|| Presend::try_send(&pool, &clock, &spec.bytes))
            .join()
            .unwrap()
    })
    .expect("an idle connection");
    assert_eq!(pre.written, spec.bytes.len());
    let t_send = pre.t_send_ns.expect("bytes written");
    let second = rt.block_on(execute(
        &pool,
        &clock,
        timeouts,
        job(1, Some(pre)),
        &mut cancel,
    ));
    assert!(second.is_ok(), "{:?}", second.error);
    assert_eq!(second.t_send_ns, t_send);
    assert_eq!(second.connect_ns, None);
    assert_eq!(second.content_events.len(), 3);
    // TTFT from the pacer's send: the server's 5 ms, not less
    assert!(second.ttft_ns().unwrap() >= 5_000_000);
    assert_eq!(
        server.requests.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    // no idle connection: the runtime sends
    let _taken = pool.take_idle();
    assert!(Presend::try_send(&pool, &clock, &spec.bytes).is_none());
}

/// Tokens per content event, from real vLLM bytes: the captured chat stream under
/// `continuous_usage_stats` has 62 content events for 64 tokens (two tokens came in chunks
/// without text and are carried by the next event that has some). Each record lists the
/// counts, the gaps stay one ITL sample per event, and the summary says how many events
/// carried more than one token.
#[test]
fn tokens_per_event_are_recorded_from_continuous_usage_stats() {
    let _serial = serial();
    let server = fake_server(|_| Behavior::Replay {
        fixture: "chat-stream-continuous-usage.sse",
        gap_ms: 1,
    });
    let dir = temp_dir("event-tokens");
    let r = run(&[
        "bench",
        "--base-url",
        &server.url(),
        "--model",
        "tiny-llama",
        "--endpoint",
        "/v1/chat/completions",
        "--random-input-len",
        "16",
        "--random-output-len",
        "64",
        "--num-prompts",
        "5",
        "--request-rate",
        "inf",
        "--continuous-usage-stats",
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.contains("Tokens per content event (mean / max):"),
        "{}",
        r.stdout
    );
    let recs = records(&dir);
    assert_eq!(recs.len(), 5);
    for rec in &recs {
        let offsets = rec["content_event_offsets_ns"].as_array().unwrap();
        let tokens: Vec<u64> = rec["content_event_tokens"]
            .as_array()
            .unwrap_or_else(|| panic!("no token counts: {rec}"))
            .iter()
            .map(|k| k.as_u64().unwrap())
            .collect();
        assert_eq!(offsets.len(), 62);
        assert_eq!(tokens.len(), 62);
        assert_eq!(tokens.iter().sum::<u64>(), 64);
        assert_eq!(tokens.iter().filter(|&&k| k == 2).count(), 2);
        assert_eq!(rec["output_tokens"], 64);
    }
    let s = summary(&dir);
    let t = &s["vllm_loadtest"]["summary"]["event_tokens"];
    assert_eq!(t["events"], 5 * 62);
    assert_eq!(t["tokens"], 5 * 64);
    assert_eq!(t["multi_token_events"], 5 * 2);
    assert_eq!(t["max_tokens_per_event"], 2);
    // one gap per event, never per token
    assert_eq!(
        s["vllm_loadtest"]["summary"]["latencies"]["itl_ms"]["count"],
        5 * 61
    );
}

/// Half the requests answer in 50 ms, half would take 5 s but are cut by a 0.5 s drain
/// limit: their TTFT is known to lie in [time to the cut, 5 s]. The survivors alone say
/// ~50 ms; the figures over every request must say "at least" the censored mass, never
/// the survivors' value (mutation: leaving the cut requests out of the estimator fails).
#[test]
fn requests_cut_by_the_drain_limit_are_censored_not_dropped() {
    let _serial = serial();
    let server = fake_server(|i| Behavior::Stream {
        first_ms: if i % 2 == 0 { 50 } else { 5_000 },
        gap_ms: 10,
        tokens: 4,
    });
    let dir = temp_dir("censored");
    let r = run(&[
        "bench",
        "--base-url",
        &server.url(),
        "--model",
        "m",
        "--random-input-len",
        "16",
        "--random-output-len",
        "4",
        "--request-rate",
        "20",
        "--arrival",
        "constant",
        "--duration",
        "1",
        "--drain-timeout",
        "0.5",
        "--num-prompts",
        "20",
        "--quiet",
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let s = summary(&dir);
    let ours = &s["vllm_loadtest"]["summary"];
    let (sent, ok, cut) = (
        ours["sent"].as_u64().unwrap(),
        ours["ok"].as_u64().unwrap(),
        ours["cancelled_by_reason"]["drain_limit"].as_u64().unwrap(),
    );
    assert_eq!(sent, ok + cut, "{ours}");
    assert!(ok >= sent / 2 - 1 && cut >= sent / 2 - 1, "{ours}");
    // vLLM's keys keep vLLM's meaning: the survivors
    assert!(s["median_ttft_ms"].as_f64().unwrap() < 100.0);
    let every = &ours["every_request"]["ttft_ms"];
    assert_eq!(every["count"].as_u64(), Some(sent));
    assert_eq!(every["censored"].as_u64(), Some(cut));
    let bound = |k: &str| {
        every[k]["at_least"]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} should be a lower bound: {every}"))
    };
    // past the fast half, every value is at least a cut (≥ 500 ms) and at most the truth
    let (p50, p99) = (bound("p50"), bound("p99"));
    assert!(p50 > 200.0 && p50 <= 5_000.0, "p50 {p50}");
    assert!((500.0..=5_000.0).contains(&p99), "p99 {p99}");
    let e2e = &ours["every_request"]["e2el_ms"];
    assert!(e2e["p99"]["at_least"].as_f64().unwrap() >= 500.0, "{e2e}");
    // the table labels vLLM's section and prints the bound
    assert!(
        r.stdout.contains("Time to First Token (successful only)")
            && r.stdout.contains("P99 TTFT, every request (ms):")
            && r.stdout.contains("> "),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!(
            "sent {sent} = ok {ok} + failed 0 + cancelled {cut} (drain_limit {cut})"
        )),
        "{}",
        r.stdout
    );
}

/// By default the window's requests are followed to their end, however long they take
/// (here 1.5 s, past the 1 s of sending), and only cool-down requests still running once
/// they are done are cancelled, as `after_window`.
#[test]
fn the_windows_requests_are_followed_to_their_end_by_default() {
    let _serial = serial();
    let server = fake_server(|i| Behavior::Stream {
        // the last requests (cool-down) would take far longer
        first_ms: if i < 14 { 1_500 } else { 5_000 },
        gap_ms: 10,
        tokens: 2,
    });
    let dir = temp_dir("follow");
    let r = run(&[
        "bench",
        "--base-url",
        &server.url(),
        "--model",
        "m",
        "--random-input-len",
        "16",
        "--random-output-len",
        "2",
        "--request-rate",
        "20",
        "--arrival",
        "constant",
        "--duration",
        "1",
        "--warmup",
        "0.1",
        "--cooldown",
        "0.3",
        "--num-prompts",
        "20",
        "--quiet",
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let s = summary(&dir);
    let ours = &s["vllm_loadtest"]["summary"];
    let n = |k: &str| ours[k].as_u64().unwrap();
    // every request sent inside the window [0.1, 0.7) s finished: none cut
    assert_eq!(n("measured_ok"), n("measured"), "{ours}");
    assert_eq!(n("measured_cut"), 0, "{ours}");
    assert!(n("measured") >= 10, "{ours}");
    assert_eq!(
        ours["cancelled_by_reason"]["after_window"].as_u64(),
        Some(n("cancelled")),
        "{ours}"
    );
    assert!(
        n("cancelled") >= 3,
        "cool-down requests cut once the window's were done: {ours}"
    );
    assert!(ours["every_request"]["ttft_ms"]["p50"].as_f64().unwrap() >= 1_400.0);
}
