//! Bad input gets one clear message naming the problem and the fix, and a non-zero exit.

use crate::support::*;

fn fails_with(args: &[&str], must_contain: &[&str]) {
    let r = run(args);
    assert_ne!(r.code, Some(0), "should fail: {args:?}");
    for m in must_contain {
        assert!(r.stderr.contains(m), "stderr lacks `{m}`:\n{}", r.stderr);
    }
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

#[test]
fn unknown_flag_suggests_the_right_one() {
    let _serial = serial();
    fails_with(
        &["bench", "--request-rates", "5"],
        &["--request-rates", "--request-rate"],
    );
}

#[test]
fn missing_dataset_names_the_file_and_the_fix() {
    let _serial = serial();
    fails_with(
        &[
            "bench",
            "--sim",
            "zero",
            "--dataset-name",
            "jsonl",
            "--dataset-path",
            "/nonexistent/prompts.jsonl",
        ],
        &["/nonexistent/prompts.jsonl", "hint:"],
    );
    fails_with(
        &["bench", "--sim", "zero", "--dataset-name", "sharegpt"],
        &["--dataset-path"],
    );
}

#[test]
fn malformed_tokenizer_is_named() {
    let _serial = serial();
    let dir = temp_dir("badtok");
    let f = dir.join("tokenizer.json");
    std::fs::write(&f, "{ this is not a tokenizer").unwrap();
    fails_with(
        &["bench", "--sim", "zero", "--tokenizer", f.to_str().unwrap()],
        &[
            "tokenizer.json",
            "not a valid Hugging Face tokenizer",
            "hint:",
        ],
    );
    fails_with(
        &["bench", "--sim", "zero", "--tokenizer", "/no/such/dir"],
        &["/no/such/dir", "hint:"],
    );
}

#[test]
fn nothing_listening_says_so_and_how_to_fix_it() {
    let _serial = serial();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    fails_with(
        &[
            "bench",
            "--base-url",
            &format!("http://127.0.0.1:{port}"),
            "--num-prompts",
            "1",
        ],
        &["cannot connect", &port.to_string(), "hint:"],
    );
}

#[test]
fn impossible_load_settings_are_rejected_before_sending() {
    let _serial = serial();
    fails_with(
        &["bench", "--sim", "zero", "--request-rate=-3"],
        &["--request-rate", "hint:"],
    );
    fails_with(
        &["bench", "--sim", "zero", "--duration", "5"],
        &["--duration", "request-rate"],
    );
    fails_with(
        &[
            "bench",
            "--sim",
            "zero",
            "--request-rate",
            "5",
            "--duration",
            "2",
            "--warmup",
            "1",
            "--cooldown",
            "1",
        ],
        &["nothing", "--duration"],
    );
    fails_with(
        &["bench", "--sim", "zero", "--goodput", "ttft=5"],
        &["--goodput", "hint:"],
    );
    fails_with(
        &["bench", "--sim", "zero", "--endpoint", "/v1/embeddings"],
        &["/v1/embeddings", "hint:"],
    );
}

/// Numbers that panicked (exit 101) or were taken as they came: each is refused before
/// anything runs, naming the flag and the rule (issue 13, case 4).
#[test]
fn absurd_numbers_on_the_command_line_are_refused_not_panicked_on() {
    let _serial = serial();
    for (flag, value, want) in [
        ("--request-timeout", "inf", "must be at most 1e6"),
        ("--request-timeout", "nan", "NaN"),
        ("--request-timeout", "1e300", "found 1e300"),
        ("--request-timeout", "0", "greater than 0"),
        ("--connect-timeout", "1e300", "must be at most"),
        ("--drain-timeout", "nan", "NaN"),
        ("--warmup", "nan", "NaN"),
        ("--duration", "1e300", "must be at most"),
    ] {
        let r = run(&[
            "bench",
            "--sim",
            "zero",
            "--num-prompts",
            "5",
            "--request-rate",
            "5",
            flag,
            value,
        ]);
        assert_eq!(r.code, Some(2), "{flag} {value}: {}", r.stderr);
        assert!(
            r.stderr.contains(flag) && r.stderr.contains(want),
            "{flag} {value}: {}",
            r.stderr
        );
    }
    let r = run(&[
        "bench",
        "--sim",
        "zero",
        "--num-prompts",
        "5",
        "--request-rate",
        "1e300",
    ]);
    assert!(
        r.code != Some(101) && r.stderr.contains("must be at most 1e6"),
        "{}",
        r.stderr
    );
}

/// Every request refused by the server (401) is not a success (issue 13, case 8): exit code
/// 3, "ran, but the server failed", with why.
#[test]
fn all_requests_failing_exits_3_and_says_why() {
    let _serial = serial();
    let server = fake_server(|_| Behavior::Status(401));
    let dir = temp_dir("all401");
    let r = run(&[
        "bench",
        "--base-url",
        &server.url(),
        "--model",
        "m",
        "--num-prompts",
        "5",
        "--request-rate",
        "50",
        "--quiet",
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(r.stderr.contains("HTTP error"), "{}", r.stderr);
}

/// A server that goes away mid-bench: sending stops after a run of refused connections
/// instead of hammering a dead port until the duration ends; exit code 3.
#[test]
fn bench_stops_sending_to_a_server_that_is_gone() {
    let _serial = serial();
    let (mut sim, url) = spawn_sim(&["--profile", "zero"]);
    let killer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let _ = sim.kill();
        let _ = sim.wait();
    });
    let dir = temp_dir("gone");
    let t = std::time::Instant::now();
    let r = run(&[
        "bench",
        "--base-url",
        &url,
        "--model",
        "m",
        "--random-input-len",
        "16",
        "--random-output-len",
        "4",
        "--request-rate",
        "50",
        "--duration",
        "20",
        "--quiet",
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    killer.join().unwrap();
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        t.elapsed()
    );
    assert!(
        r.stderr.contains("stopped accepting connections"),
        "{}",
        r.stderr
    );
    let s = summary(&dir);
    let ours = &s["vllm_loadtest"]["summary"];
    assert!(ours["not_sent"].as_u64().unwrap() > 500, "{ours}");
    assert_eq!(s["vllm_loadtest"]["status"], "failed");
}

/// A key in the URL is refused, and not echoed (issue 13, case 9).
#[test]
fn a_credential_in_the_url_is_never_echoed() {
    let _serial = serial();
    let r = run(&[
        "bench",
        "--base-url",
        "http://me:sk-abc123@127.0.0.1:9",
        "--model",
        "m",
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(!r.stderr.contains("sk-abc123"), "{}", r.stderr);
    assert!(r.stderr.contains("--api-key-env"), "{}", r.stderr);
}

/// Sizes are estimated before anything is allocated (issue 13, case 3): a prompt of 10⁸
/// tokens, or 10¹² scheduled requests, are refused at once with what to change.
#[test]
fn absurd_sizes_are_refused_before_allocating() {
    let _serial = serial();
    let t = std::time::Instant::now();
    let r = run(&[
        "bench",
        "--sim",
        "zero",
        "--random-input-len",
        "100000000",
        "--num-prompts",
        "1000",
        "--request-rate",
        "5",
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("tokens to build"), "{}", r.stderr);
    let r = run(&[
        "bench",
        "--sim",
        "zero",
        "--request-rate",
        "1000000",
        "--duration",
        "1000000",
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("more than the 1e8"), "{}", r.stderr);
    let exp = format!("{}/examples/quickstart.yaml", env!("CARGO_MANIFEST_DIR"));
    let r = run(&[
        "run",
        &exp,
        "--dry-run",
        "--set",
        "load.duration_s=1000000",
        "--set",
        "matrix.request_rate=[5,1000000]",
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("cell `c001-request_rate1000000`"),
        "{}",
        r.stderr
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        t.elapsed()
    );
}

/// Ctrl-C while a long workload is built (1,000 prompts of 32,000 tokens: over a minute)
/// is honoured within a second, not after the build (issue 13, case 3).
#[test]
fn ctrl_c_while_prompts_are_built_is_honoured_at_once() {
    let _serial = serial();
    // many long prompts (checked between prompts), and one huge prompt (a single
    // tokenizer call of minutes: the build is abandoned on its worker thread)
    for (len, n) in [("32000", "1000"), ("100000000", "1")] {
        let dir = temp_dir("build-int");
        let mut child = std::process::Command::new(bin())
            .args([
                "bench",
                "--sim",
                "zero",
                "--random-input-len",
                len,
                "--num-prompts",
                n,
                "--request-rate",
                "5",
                "--output-dir",
                dir.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build should still be going ({len} tokens)"
        );
        let t = std::time::Instant::now();
        // SAFETY: plain kill(2) on the child we started.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            t.elapsed() < std::time::Duration::from_secs(1),
            "{len} tokens: {:?}",
            t.elapsed()
        );
        assert_eq!(
            out.status.code(),
            Some(130),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("building prompts"));
    }
}

/// Smaller cases of issue 13 (11): a result folder that is a file is named before anything
/// runs; a truncated output's message shows the finish reason as text, not `Some("…")`.
#[test]
fn a_result_dir_that_is_a_file_is_named_before_running() {
    let _serial = serial();
    let dir = temp_dir("resfile");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let t = std::time::Instant::now();
    let r = run(&[
        "bench",
        "--sim",
        "zero",
        "--num-prompts",
        "50",
        "--request-rate",
        "5",
        "--save-result",
        "--result-dir",
        file.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("is a file, not a folder") && r.stderr.contains("not-a-dir"));
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "it ran first: {:?}",
        t.elapsed()
    );
}

#[test]
fn a_truncated_output_says_its_finish_reason_in_words() {
    let _serial = serial();
    let server = fake_server(|_| Behavior::Stream {
        first_ms: 1,
        gap_ms: 1,
        tokens: 3,
    });
    let dir = temp_dir("trunc-msg");
    let r = run(&[
        "bench",
        "--base-url",
        &server.url(),
        "--model",
        "m",
        "--random-input-len",
        "8",
        "--random-output-len",
        "8",
        "--num-prompts",
        "3",
        "--quiet",
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    let text = serde_json::to_string(&records(&dir)).unwrap();
    assert!(
        text.contains("3 of 8 tokens (finish_reason "),
        "{}\n{text}",
        r.stderr
    );
    assert!(!text.contains("Some("), "{text}");
}

/// The client running out of file descriptors is the client's fault, and says so (issue
/// 13, case 11: it was reported as the server's connect errors).
#[test]
fn running_out_of_file_descriptors_is_named_as_the_clients() {
    use std::os::unix::process::CommandExt;
    let _serial = serial();
    let server = fake_server(|_| Behavior::Stream {
        first_ms: 300,
        gap_ms: 1,
        tokens: 2,
    });
    let dir = temp_dir("emfile");
    let mut cmd = std::process::Command::new(bin());
    cmd.args([
        "bench",
        "--base-url",
        &server.url(),
        "--model",
        "m",
        "--random-input-len",
        "8",
        "--random-output-len",
        "2",
        "--num-prompts",
        "200",
        "--quiet",
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    // SAFETY: setrlimit on the child before exec, nothing else.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| {
            let r = libc::rlimit {
                rlim_cur: 48,
                rlim_max: 48,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let text = serde_json::to_string(&records(&dir)).unwrap();
    assert!(text.contains("client out of file descriptors"), "{stdout}");
    assert!(stdout.contains("were the client's own"), "{stdout}");
}

/// A simulator profile that cannot be used is refused before the run makes its folder: not
/// a folder of cells "not run" and an error that begins with how to resume it.
#[test]
fn a_bad_simulator_profile_is_refused_before_the_run_starts() {
    let dir = temp_dir("bad-profile");
    let negative = dir.join("negative.yaml");
    std::fs::write(&negative, "base: default\nc0_s: -0.01\n").unwrap();
    let out = dir.join("results");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart.yaml");
    for (profile, says) in [
        (negative.to_str().unwrap(), "non-negative"),
        ("/no/such/profile.yaml", "no profile file"),
    ] {
        for clock in ["real", "virtual"] {
            let set = format!("server.profile={profile}");
            let clock = format!("server.clock={clock}");
            let args = ["run", example, "--set", &set, "--set", &clock, "--output"];
            let mut args = args.to_vec();
            args.push(out.to_str().unwrap());
            fails_with(&args, &[says, "server.profile"]);
            let r = run(&args);
            assert!(!r.stderr.contains("--resume"), "{}", r.stderr);
            assert!(
                !out.exists(),
                "a folder was made for a run that cannot start"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_manifest_is_named_as_damaged_not_as_missing() {
    let dir = temp_dir("damaged-manifest");
    let missing = dir.join("empty");
    std::fs::create_dir_all(&missing).unwrap();
    fails_with(
        &["report", missing.to_str().unwrap(), "--profile", "default"],
        &["has no manifest.json"],
    );
    std::fs::write(dir.join("manifest.json"), "{\"experiment\": ").unwrap();
    fails_with(
        &["report", dir.to_str().unwrap(), "--profile", "default"],
        &[
            "manifest.json` is not a manifest this tool wrote",
            "line 1",
            "hint: restore it",
        ],
    );
}
