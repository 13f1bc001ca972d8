//! Every way a request can fail is recorded with its kind and message, counted, and never
//! lost: `sent = ok + failed + cancelled` holds.

use crate::support::*;

#[test]
fn each_fault_is_recorded_with_its_kind_and_message() {
    let _serial = serial();
    let server = fake_server(|i| match i % 6 {
        0 => Behavior::Stream {
            first_ms: 2,
            gap_ms: 1,
            tokens: 8,
        },
        1 => Behavior::Status(500),
        2 => Behavior::Status(429),
        3 => Behavior::Cut { after: 3 },
        4 => Behavior::Garbage,
        _ => Behavior::Silent,
    });
    let dir = temp_dir("faults");
    // one request at a time, so request i meets behaviour i % 6
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
        "12",
        "--max-concurrency",
        "1",
        "--request-timeout",
        "1",
        "--quiet",
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_accounted(&dir, 12);
    // nothing was sent twice
    assert_eq!(
        server.requests.load(std::sync::atomic::Ordering::SeqCst),
        12
    );
    let recs = records(&dir);
    let kind_of = |id: u64| -> (String, Option<u64>, String) {
        let r = recs.iter().find(|r| r["id"] == id).unwrap();
        match &r["error"] {
            serde_json::Value::Null => ("ok".into(), None, String::new()),
            e => (
                e["kind"].as_str().unwrap().into(),
                e["http_status"].as_u64(),
                e["message"].as_str().unwrap().into(),
            ),
        }
    };
    for base in [0, 6] {
        assert_eq!(kind_of(base).0, "ok");
        let (k, st, m) = kind_of(base + 1);
        assert_eq!((k.as_str(), st), ("http_status", Some(500)));
        assert!(m.contains("scripted failure 500"), "{m}");
        assert_eq!(kind_of(base + 2).1, Some(429));
        let (k, _, m) = kind_of(base + 3);
        assert_eq!(k, "stream_broken", "{m}");
        let (k, _, m) = kind_of(base + 4);
        assert_eq!(k, "protocol");
        assert!(m.contains("not json"), "{m}");
        assert_eq!(kind_of(base + 5).0, "timeout");
    }
    let s = summary(&dir);
    let by_kind = &s["vllm_loadtest"]["summary"]["errors_by_kind"];
    assert_eq!(by_kind["http_status"], 4);
    assert_eq!(by_kind["timeout"], 2);
    assert!(r.stdout.contains("Errors by kind:"));
    assert!(r.stdout.contains("Client CPU / memory gained:"));
    assert!(r.stdout.contains("timeout 2"));
}

#[test]
fn refused_connections_are_connect_errors_not_a_crash() {
    let _serial = serial();
    // a port with nothing behind it
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = temp_dir("refused");
    let r = run(&[
        "bench",
        "--base-url",
        &format!("http://127.0.0.1:{port}"),
        "--model",
        "m",
        "--random-input-len",
        "16",
        "--random-output-len",
        "8",
        "--num-prompts",
        "5",
        "--quiet",
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    // ran, but the server failed: exit code 3, saying why
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(r.stderr.contains("failed to connect"), "{}", r.stderr);
    assert_accounted(&dir, 5);
    assert_eq!(
        summary(&dir)["vllm_loadtest"]["summary"]["errors_by_kind"]["connect"],
        5
    );
    assert!(
        r.stdout.contains("5 of 5 requests failed") || r.stdout.contains("failed 5"),
        "{}",
        r.stdout
    );
}

/// A reused connection the server resets before answering is sent again once, and that is
/// recorded and counted, not silent (issue 13, case 7: `--faults refuse` at 20% showed up
/// as 6.5% failures and nothing else).
#[test]
fn a_resent_request_is_recorded_and_counted() {
    let _serial = serial();
    let (mut sim, url) = spawn_sim(&[
        "--profile",
        "zero",
        "--fault-rate",
        "0.3",
        "--faults",
        "refuse",
        "--seed",
        "3",
    ]);
    let dir = temp_dir("resent");
    let r = run(&[
        "bench",
        "--base-url",
        &url,
        "--random-input-len",
        "16",
        "--random-output-len",
        "4",
        "--num-prompts",
        "200",
        "--request-rate",
        "200",
        "--max-concurrency",
        "4",
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    let _ = sim.kill();
    let _ = sim.wait();
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_accounted(&dir, 200);
    let s = summary(&dir);
    let ours = &s["vllm_loadtest"]["summary"];
    let resent = ours["resent"].as_u64().unwrap();
    let flagged = records(&dir).iter().filter(|r| r["resent"] == 1).count() as u64;
    assert!(resent > 5 && resent == flagged, "{ours}");
    // failures plus re-sends account for the refusals the server made (30% of connections)
    let failed = ours["failed"].as_u64().unwrap();
    assert!(failed + resent >= 40, "failed {failed} + resent {resent}");
    assert!(
        r.stdout
            .contains(&format!("re-sent after a dropped connection: {resent}"))
            && r.stdout.contains("were sent twice"),
        "{}",
        r.stdout
    );
}

/// `bench` against a server that hangs mid-run (connections accepted, nothing answered,
/// `/health` included): the health probes end the run with exit code 3 and the reason,
/// instead of every request waiting for its own timeout until the duration is over.
#[test]
fn bench_finds_a_hung_server_by_its_health_probes() {
    let _serial = serial();
    let server = fake_server(|_| Behavior::Stream {
        first_ms: 5,
        gap_ms: 2,
        tokens: 8,
    });
    let dir = temp_dir("bench-hung");
    let url = server.url();
    let started = std::time::Instant::now();
    let bench = std::thread::spawn({
        let dir = dir.clone();
        move || {
            run(&[
                "bench",
                "--base-url",
                &url,
                "--model",
                "m",
                "--random-input-len",
                "16",
                "--random-output-len",
                "8",
                "--request-rate",
                "20",
                "--duration",
                "20",
                "--request-timeout",
                "60",
                "--health-probe",
                "0.5",
                "--quiet",
                "--output-dir",
                dir.to_str().unwrap(),
            ])
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    server.hang();
    let r = bench.join().unwrap();
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert!(r.stderr.contains("stopped answering"), "{}", r.stderr);
    let s = summary(&dir);
    let sm = &s["vllm_loadtest"]["summary"];
    let g = |k: &str| sm[k].as_u64().unwrap();
    assert!(
        g("ok") > 10,
        "the first second and a half went through: {sm}"
    );
    assert_eq!(g("sent"), g("ok") + g("failed") + g("cancelled"));
    assert_eq!(s["vllm_loadtest"]["status"], "failed");
    // found by the probes a few seconds after the hang, not at the 20 s end
    let why = s["vllm_loadtest"]["failure_reason"]
        .as_str()
        .unwrap()
        .to_string();
    let at = lost_at_s(&why);
    assert!(
        at < 12.0,
        "found at {at} s of a 20 s run: not by the probes"
    );
}
