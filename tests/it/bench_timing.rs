//! The client measures what the server does: a server with known delays must come out as
//! those delays, at a paced rate and with many concurrent streams.

use crate::support::*;

fn check(dir: &std::path::Path, n: u64) {
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
