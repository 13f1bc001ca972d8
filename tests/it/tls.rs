//! https and headers, end to end on loopback: the same timing and accounting over TLS as
//! over plain TCP, a clear error for a certificate the client does not trust, the user's
//! headers on every request, and no secret in any file a run writes.

use crate::bench_timing::check;
use crate::support::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// A self-signed certificate for `localhost` and `127.0.0.1`, made now (nothing shipped).
struct Pki {
    cert: PathBuf,
    key: PathBuf,
    server: Arc<rustls::ServerConfig>,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        let server = vllm_sim::tls::server_config(&cert, &key).unwrap();
        Pki { cert, key, server }
    }
}

fn known_delays() -> Behavior {
    Behavior::Stream {
        first_ms: 50,
        gap_ms: 10,
        tokens: 64,
    }
}

fn bench_args<'a>(url: &'a str, n: &'a str, rate: &'a str, out: &'a Path) -> Vec<&'a str> {
    vec![
        "bench",
        "--base-url",
        url,
        "--model",
        "m",
        "--random-input-len",
        "32",
        "--random-output-len",
        "64",
        "--num-prompts",
        n,
        "--request-rate",
        rate,
        "--quiet",
        "--output-dir",
        out.to_str().unwrap(),
    ]
}

#[test]
fn https_measures_the_same_known_delays_and_accounts_for_every_request() {
    let _serial = serial();
    let dir = temp_dir("tls-timing");
    let pki = Pki::new(&dir);
    let server = fake_server_tls(|_| known_delays(), pki.server.clone());
    let url = server.url();
    assert!(url.starts_with("https://"));
    let ca = pki.cert.to_str().unwrap();
    for (n, rate) in [(60, "20"), (400, "300")] {
        let out = dir.join(format!("at-{rate}"));
        let ns = n.to_string();
        let mut args = bench_args(&url, &ns, rate, &out);
        args.extend(["--ca-cert", ca]);
        let r = run(&args);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        check(&out, n);
        // a handshake per new connection, none per request: connections are kept (and
        // opened ahead of the schedule, so no request's latency carries a handshake)
        let accepted = server.connections.swap(0, Ordering::Relaxed);
        assert!(
            (1..n).contains(&accepted),
            "{accepted} connections for {n} requests"
        );
        let handshakes = records(&out)
            .iter()
            .filter(|r| !r["connect_ns"].is_null())
            .count();
        assert!(
            handshakes <= 1,
            "{handshakes} requests waited for a handshake"
        );
    }
}

#[test]
fn a_certificate_the_client_does_not_trust_is_one_clear_error_before_any_request() {
    let _serial = serial();
    let dir = temp_dir("tls-untrusted");
    let pki = Pki::new(&dir);
    let server = fake_server_tls(|_| known_delays(), pki.server.clone());
    let url = server.url();
    let out = dir.join("out");
    // no --ca-cert: the system's roots do not hold a certificate made a moment ago
    let r = run(&bench_args(&url, "5", "5", &out));
    assert_ne!(r.code, Some(0));
    assert!(r.stderr.contains("tls handshake with"), "{}", r.stderr);
    assert!(
        r.stderr.contains("hint:") && r.stderr.contains("--ca-cert"),
        "{}",
        r.stderr
    );
    assert_eq!(server.requests.load(std::sync::atomic::Ordering::SeqCst), 0);
    // a CA file that is not PEM is named
    let bogus = dir.join("bogus.pem");
    std::fs::write(&bogus, "not a certificate\n").unwrap();
    let mut args = bench_args(&url, "5", "5", &out);
    args.extend(["--ca-cert", bogus.to_str().unwrap()]);
    let r = run(&args);
    assert_ne!(r.code, Some(0));
    assert!(r.stderr.contains("bogus.pem"), "{}", r.stderr);
    // plain http to a TLS port: every request fails, saying why
    let plain = url.replace("https://", "http://");
    let r = run(&bench_args(&plain, "3", "5", &out));
    assert_ne!(r.code, Some(0));
    for rec in records(&out) {
        let m = rec["error"]["message"].as_str().unwrap_or_default();
        assert!(m.contains("use `https://`"), "{rec}");
    }
    // --insecure goes through, warned
    let mut args = bench_args(&url, "5", "50", &out);
    args.push("--insecure");
    let r = run(&args);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("--insecure"), "{}", r.stderr);
    assert_accounted(&out, 5);
}

const KEY: &str = "sk-vlt-test-key-7f3a9";
const TOKEN: &str = "gw-vlt-test-token-51c2";
/// The environment that holds the secrets: the API key and a header's value.
const SECRET_ENV: &[(&str, &str)] = &[("VLT_TEST_KEY", KEY), ("VLT_TEST_GW_TOKEN", TOKEN)];
/// A plain header, one from `VLT_TEST_GW_TOKEN`, and the key from `VLT_TEST_KEY`.
const HEADER_FLAGS: &[&str] = &[
    "--header",
    "X-Tenant: team-a",
    "--header-env",
    "X-Gw-Token: VLT_TEST_GW_TOKEN",
    "--api-key-env",
    "VLT_TEST_KEY",
];

/// Neither secret in what the command printed.
fn assert_no_secret_said(r: &Run) {
    for out in [&r.stdout, &r.stderr] {
        assert!(!out.contains(KEY) && !out.contains(TOKEN), "{out}");
    }
}

/// A secret written straight into the experiment's `server.headers`.
const LITERAL: &str = "lit-vlt-test-secret-90d4";

/// Every file under `dir`, bytes included (Parquet too), holds neither secret.
fn assert_no_secret_under(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            files += 1;
            let bytes = scannable_bytes(&p);
            for secret in [KEY, TOKEN, LITERAL] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "`{}` holds a secret",
                    p.display()
                );
            }
        }
    }
    // requests.parquet, events.parquet, summary.json at least (the journal is retired)
    assert!(files >= 3, "only {files} files under {}", dir.display());
}

fn assert_every_head_carries_the_headers(server: &FakeServer) {
    let heads = server.heads.lock().unwrap();
    assert!(!heads.is_empty());
    for h in heads.iter() {
        let lower = h.to_ascii_lowercase();
        assert!(lower.contains("\r\nx-tenant: team-a\r\n"), "{h}");
        assert!(
            lower.contains(&format!("\r\nx-gw-token: {TOKEN}\r\n")),
            "{h}"
        );
        assert!(
            h.contains(&format!("\r\nAuthorization: Bearer {KEY}\r\n")),
            "{h}"
        );
    }
}

#[test]
fn bench_headers_and_key_reach_the_server_and_no_file() {
    let _serial = serial();
    let dir = temp_dir("headers-bench");
    let server = fake_server(|_| known_delays());
    let url = server.url();
    let out = dir.join("out");
    let saved = dir.join("saved");
    let mut args = bench_args(&url, "20", "40", &out);
    args.extend(HEADER_FLAGS);
    args.extend([
        "--save-result",
        "--save-detailed",
        "--result-dir",
        saved.to_str().unwrap(),
    ]);
    let r = run_env(&args, SECRET_ENV);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_accounted(&out, 20);
    assert_every_head_carries_the_headers(&server);
    assert_no_secret_under(&dir);
    assert_no_secret_said(&r);
    // a gateway that echoes the request's headers in its 401: the values are hidden in the
    // records and on the terminal
    let echo = fake_server(|_| Behavior::EchoHead);
    let echo_url = echo.url();
    let out2 = dir.join("echo");
    let mut args = bench_args(&echo_url, "4", "40", &out2);
    args.extend(HEADER_FLAGS);
    let echoed = run_env(&args, SECRET_ENV);
    assert_eq!(echoed.code, Some(3), "{}", echoed.stderr);
    assert_no_secret_said(&echoed);
    let recs = records(&out2);
    assert!(recs.iter().all(|r| {
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("<redacted>")
    }));
    assert_no_secret_under(&out2);
    // without --model the lookup's 401 is the error: hidden too, with the credentials hint
    let echo2 = dir.join("echo2");
    let r = run_env(
        &[
            "bench",
            "--base-url",
            &echo_url,
            "--num-prompts",
            "2",
            "--api-key-env",
            "VLT_TEST_KEY",
            "--output-dir",
            echo2.to_str().unwrap(),
        ],
        SECRET_ENV,
    );
    assert!(
        r.stderr.contains("answered 401") && r.stderr.contains("credentials"),
        "{}",
        r.stderr
    );
    assert_no_secret_said(&r);
    // a header variable that is not set stops the run before anything is sent
    let before = server.requests.load(std::sync::atomic::Ordering::SeqCst);
    let mut args = bench_args(&url, "5", "5", &out);
    args.extend(["--header-env", "X-A: VLT_UNSET_VAR"]);
    let r = run(&args);
    assert_ne!(r.code, Some(0));
    assert!(
        r.stderr.contains("`VLT_UNSET_VAR` is not set"),
        "{}",
        r.stderr
    );
    assert_eq!(
        server.requests.load(std::sync::atomic::Ordering::SeqCst),
        before
    );
}

#[test]
fn run_over_https_with_headers_keeps_them_out_of_every_file() {
    let _serial = serial();
    let dir = temp_dir("headers-run");
    let pki = Pki::new(&dir);
    let server = fake_server_tls(|_| known_delays(), pki.server.clone());
    let exp = dir.join("exp.yaml");
    std::fs::write(
        &exp,
        format!(
            "name: tls-headers
server:
  launcher: external
  urls: [{url}]
  model: m
  ca_cert: {ca}
  api_key_env: VLT_TEST_KEY
  headers: {{X-Tenant: team-a, X-Literal: {LITERAL}}}
  header_env: {{X-Gw-Token: VLT_TEST_GW_TOKEN}}
workload: {{input_len: 32, output_len: 64, num_prompts: 20}}
load: {{request_rate: 20, duration_s: 1, warmup_s: 0, cooldown_s: 0, drain_timeout_s: 5}}
monitor: {{metrics_interval_s: 0.5}}
",
            url = server.url(),
            ca = pki.cert.display(),
        ),
    )
    .unwrap();
    let results = dir.join("results");
    let r = run_env(
        &[
            "run",
            exp.to_str().unwrap(),
            "--output",
            results.to_str().unwrap(),
            "--quiet",
        ],
        SECRET_ENV,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_no_secret_said(&r);
    assert_every_head_carries_the_headers(&server);
    assert_no_secret_under(&results);
    // the key file and certificate stay where they were: only their path is recorded
    assert!(pki.key.is_file());
}
