//! Ctrl-C mid-run: in-flight requests are cancelled and recorded, the raw file is valid,
//! the summary says `interrupted`, and every request sent is accounted for.

use crate::support::*;
use std::time::Duration;

#[test]
fn sigint_leaves_valid_partial_results() {
    let _serial = serial();
    let server = fake_server(|_| Behavior::Stream {
        first_ms: 20,
        gap_ms: 100,
        tokens: 64,
    });
    let dir = temp_dir("sigint");
    let mut child = std::process::Command::new(bin())
        .args([
            "bench",
            "--base-url",
            &server.url(),
            "--model",
            "m",
            "--random-input-len",
            "16",
            "--random-output-len",
            "64",
            "--num-prompts",
            "100",
            "--request-rate",
            "10",
            "--quiet",
            "--output-dir",
            dir.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    // SAFETY: plain kill(2) on the child we started.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = wait_or_kill(
        &mut child,
        Duration::from_secs(20),
        "bench did not stop after SIGINT",
    );
    assert!(!status.success(), "an interrupted run exits non-zero");
    let s = summary(&dir);
    assert_eq!(s["vllm_loadtest"]["status"], "interrupted");
    let sm = &s["vllm_loadtest"]["summary"];
    let sent = sm["sent"].as_u64().unwrap();
    assert!(sent > 5 && sent < 100, "sent {sent}");
    assert!(sm["cancelled"].as_u64().unwrap() > 0);
    assert_eq!(sm["not_sent"].as_u64().unwrap(), 100 - sent);
    assert_accounted(&dir, sent);
}

/// `--duration` bounds sending even when a concurrency cap holds arrivals back: the rest are
/// counted as not sent, the run does not stretch to send them.
#[test]
fn duration_bounds_sending_when_the_cap_holds_arrivals_back() {
    let _serial = serial();
    let server = fake_server(|_| Behavior::Stream {
        first_ms: 10,
        gap_ms: 50,
        tokens: 8,
    });
    let dir = temp_dir("capped-duration");
    let t0 = std::time::Instant::now();
    let r = run(&[
        "bench",
        "--base-url",
        &server.url(),
        "--model",
        "m",
        "--random-input-len",
        "16",
        "--random-output-len",
        "8",
        "--num-prompts",
        "20",
        "--request-rate",
        "100",
        "--arrival",
        "constant",
        "--max-concurrency",
        "2",
        "--duration",
        "1",
        "--drain-timeout",
        "2",
        "--quiet",
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "the run stretched to {:?}",
        t0.elapsed()
    );
    let s = &summary(&dir)["vllm_loadtest"]["summary"];
    let sent = s["sent"].as_u64().unwrap();
    // 2 slots × ~0.4 s per request over 1 s: a handful sent, the other ~90 arrivals not
    assert!(sent <= 10, "sent {sent}");
    assert_eq!(sent + s["not_sent"].as_u64().unwrap(), 100);
    assert_accounted(&dir, sent);
}

/// `--max-concurrency N --request-rate inf --duration D`: N requests in flight for D
/// seconds, the next sent as one ends; a request's intended time is when its slot freed,
/// so the send lag is the client's own, and nothing counts as not sent.
#[test]
fn a_closed_loop_keeps_the_concurrency_for_the_duration() {
    let _serial = serial();
    let server = fake_server(|_| Behavior::Stream {
        first_ms: 40,
        gap_ms: 10,
        tokens: 5,
    });
    let dir = temp_dir("closed-loop");
    let args = |extra: &[&'static str]| {
        let mut v = vec![
            "bench",
            "--random-input-len",
            "16",
            "--random-output-len",
            "5",
            "--num-prompts",
            "8",
            "--request-rate",
            "inf",
            "--duration",
            "1",
            "--quiet",
        ];
        v.extend_from_slice(extra);
        v
    };
    // without a cap there is no loop to close
    let url = server.url();
    let out = dir.to_str().unwrap().to_string();
    let mut no_cap = args(&[]);
    no_cap.extend_from_slice(&["--base-url", &url, "--model", "m", "--output-dir", &out]);
    let r = run(&no_cap);
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains("needs `--max-concurrency`"),
        "{}",
        r.stderr
    );

    let mut capped = args(&["--max-concurrency", "4"]);
    capped.extend_from_slice(&["--base-url", &url, "--model", "m", "--output-dir", &out]);
    let r = run(&capped);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let s = summary(&dir);
    let ours = &s["vllm_loadtest"]["summary"];
    let sent = ours["sent"].as_u64().unwrap();
    assert_accounted(&dir, sent);
    assert_eq!(ours["not_sent"].as_u64(), Some(0));
    assert_eq!(
        s["vllm_loadtest"]["arrival"].as_str(),
        Some("closed loop, 4 in flight")
    );
    // ~80 ms requests in a ~1 s window: one wave is ~8%, and the run says so
    let warned = s["vllm_loadtest"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains("off by one wave"));
    assert!(warned, "{}", s["vllm_loadtest"]["warnings"]);
    assert_eq!(ours["failed"].as_u64(), Some(0));
    // each request takes ~80 ms: 4 in flight for 1 s is ~50 of them (8 prompts, cycled)
    assert!((30..=60).contains(&sent), "sent {sent}");
    assert_eq!(ours["max_concurrent_requests"].as_u64(), Some(4));
    let lag = ours["latencies"]["queue_delay_ms"]["p99"].as_f64().unwrap();
    assert!(
        lag < 5.0,
        "send lag p99 {lag} ms: slots were not refilled at once"
    );
    // the last send is inside the duration
    let last = records(&dir)
        .iter()
        .map(|r| r["t_send_ns"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(
        last < 1_000_000_000,
        "sent at {last} ns, after the duration"
    );
}
