//! One load point from two processes (`bench --shard`) and `merge`: the union is the
//! one-process run, request for request, its figures a recomputation over the merged
//! records to the bit; a late start and a clock that may be off are flagged; shards that do
//! not belong together are refused.

use super::support::{records, run, serial, spawn_sim, summary, temp_dir};
use loadtest_analysis::summary as figures;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use vllm_loadtest::store::layout::CellDir;

const RATE: &str = "2000";
const PROMPTS: &str = "3000";

fn load(url: &str) -> Vec<String> {
    [
        "bench",
        "--base-url",
        url,
        "--dataset-name",
        "random",
        "--random-input-len",
        "24",
        "--random-output-len",
        "6",
        "--random-range-ratio",
        "0.5",
        "--request-rate",
        RATE,
        "--num-prompts",
        PROMPTS,
        "--seed",
        "11",
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Shard `i` of 2 starting at `at` (Unix seconds), after `delay` (a late launch).
fn shard(url: &str, i: u32, at: &str, out: &Path, delay: std::time::Duration) -> Child {
    std::thread::sleep(delay);
    Command::new(super::support::bin())
        .args(load(url))
        .args(["--shard", &format!("{i}/2"), "--start-at", at])
        // one machine, one clock
        .args(["--max-clock-error-ms", "inf", "--output-dir"])
        .arg(out)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn start_in(ms: u64) -> String {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        + std::time::Duration::from_millis(ms);
    format!("{}.{:09}", at.as_secs(), at.subsec_nanos())
}

fn finish(c: Child) {
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn merge(dirs: &[&Path], out: &Path, extra: &[&str]) -> super::support::Run {
    let mut args: Vec<String> = vec!["merge".into()];
    args.extend(dirs.iter().map(|d| d.display().to_string()));
    args.extend([
        "-o".to_string(),
        out.display().to_string(),
        "--quiet".into(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&refs)
}

/// What makes a request the same request: its id, intended time, and its prompt's and
/// output's sizes (drawn per prompt: a prompt sent under another's id shows), the prompt's
/// as the server counted its text.
fn request_set(dir: &Path) -> Vec<(u64, u64, u64, u64, u64)> {
    records(dir)
        .iter()
        .map(|r| {
            let g = |k: &str| r[k].as_u64().unwrap();
            (
                g("id"),
                g("t_intended_ns"),
                g("input_tokens"),
                g("server_prompt_tokens"),
                g("max_tokens"),
            )
        })
        .collect()
}

/// The cell's figures recomputed from its stored raw records alone.
fn recomputed(dir: &Path, percentiles: &[f64]) -> serde_json::Value {
    let cell = CellDir::new(dir);
    let compact = vllm_loadtest::store::records::read_compact(&cell).unwrap();
    let window = figures::resolve_window(None, &compact);
    let events = figures::event_figures(
        |f| vllm_loadtest::store::records::for_each(&cell, f),
        window,
        percentiles,
    )
    .unwrap();
    let scope = figures::Scope {
        window,
        offered_rate: 2000.0,
        slos: &[],
        percentiles,
    };
    serde_json::to_value(figures::summarize(&compact, events, 0, scope)).unwrap()
}

#[test]
fn two_shards_merge_into_the_one_process_run() {
    let _one = serial();
    let (mut sim, url) = spawn_sim(&["--profile", "zero"]);
    let dir = temp_dir("shards");
    let single = dir.join("single");
    let mut args = load(&url);
    args.extend(["--output-dir".into(), single.display().to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = run(&refs);
    assert_eq!(r.code, Some(0), "{}", r.stderr);

    let (s0, s1) = (dir.join("s0"), dir.join("s1"));
    // lead enough for two processes to build 3,000 prompts each on a busy machine: this
    // pair must start on time (the late one is below)
    let at = start_in(3000);
    let a = shard(&url, 0, &at, &s0, Default::default());
    let b = shard(&url, 1, &at, &s1, Default::default());
    finish(a);
    finish(b);
    let merged = dir.join("merged");
    let r = merge(&[&s1, &s0], &merged, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);

    // the same requests: ids, intended times, prompt and output sizes
    let (one, union) = (request_set(&single), request_set(&merged));
    assert_eq!(one.len(), 3000);
    assert_eq!(one, union, "the shards' union is not the one-process run");
    let half = |d: &Path| records(d).len();
    assert_eq!((half(&s0), half(&s1)), (1500, 1500));
    // a shard is configured, and judged against, its share of the load point's rate
    let own = summary(&s0);
    assert_eq!(own["request_rate"].as_f64(), Some(1000.0), "{own}");
    assert_eq!(
        own["vllm_loadtest"]["summary"]["offered_rate"].as_f64(),
        Some(1000.0)
    );

    // every figure is the one recomputed from the merged raw records, to the bit
    let s = summary(&merged);
    let stored = &s["vllm_loadtest"]["summary"];
    assert_eq!(stored, &recomputed(&merged, &[50.0, 90.0, 99.0]));
    assert_eq!(stored["sent"], 3000);
    assert_eq!(stored["ok"], 3000);
    let shards = &s["vllm_loadtest"]["shards"];
    assert_eq!(shards["count"], 2);
    assert_eq!(
        shards["shards"][0]["sent"].as_u64().unwrap()
            + shards["shards"][1]["sent"].as_u64().unwrap(),
        3000
    );
    assert_eq!(shards["apart"], serde_json::json!([]), "{shards}");
    // its throughput is the load point's, not one shard's
    let thr = s["request_throughput"].as_f64().unwrap();
    assert!(thr > 1700.0, "{thr}");

    // a shard's folder already merged cannot be merged into the same cell twice
    let again = merge(&[&s0, &s1], &merged, &[]);
    assert_ne!(again.code, Some(0));
    assert!(again.stderr.contains("not empty"), "{}", again.stderr);
    refusals(&dir, &s0, &s1, &single);
    clock_flagged(&dir, &s0, &s1);

    // a shard launched after the agreed start is late, and says so in the merged cell
    let (l0, l1) = (dir.join("l0"), dir.join("l1"));
    let at = start_in(800);
    let a = shard(&url, 0, &at, &l0, Default::default());
    let b = shard(&url, 1, &at, &l1, std::time::Duration::from_millis(1300));
    finish(a);
    finish(b);
    let late = dir.join("late");
    let r = merge(&[&l0, &l1], &late, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let apart = summary(&late)["vllm_loadtest"]["shards"]["apart"].clone();
    let text = apart.to_string();
    assert!(
        text.contains("shard 1/2 started") && !text.contains("shard 0/2 started"),
        "{text}"
    );
    let late_ms = summary(&late)["vllm_loadtest"]["shards"]["shards"][1]["late_ms"]
        .as_f64()
        .unwrap();
    assert!(late_ms > 300.0, "{late_ms}");
    // its lateness stays in its requests: sent that much after they were intended
    let lag = records(&late)
        .iter()
        .filter(|r| r["id"].as_u64().unwrap() % 2 == 1)
        .map(|r| r["t_send_ns"].as_u64().unwrap() - r["t_intended_ns"].as_u64().unwrap())
        .min()
        .unwrap();
    assert!(lag as f64 / 1e6 > late_ms - 1.0, "{lag} ns vs {late_ms} ms");
    sim.kill().unwrap();
    sim.wait().unwrap();
}

/// Folders that are not every shard of one plan, once, are refused with a reason.
fn refusals(dir: &Path, s0: &Path, s1: &Path, single: &Path) {
    let out = |n: &str| dir.join(n);
    let cases: Vec<(Vec<&Path>, &str)> = vec![
        (vec![s0], "missing"),
        (vec![s0, s0, s1], "given twice"),
        (vec![s0, single], "no `shard.json`"),
    ];
    for (i, (dirs, why)) in cases.into_iter().enumerate() {
        let r = merge(&dirs, &out(&format!("refused-{i}")), &[]);
        assert_eq!(r.code, Some(1), "{why}: {}", r.stderr);
        assert!(r.stderr.contains(why), "{why}: {}", r.stderr);
    }
    // a shard of another plan: its digest differs
    let other = copy_cell(s1, &dir.join("other-plan"));
    edit_shard(&other, |v| {
        v["digests"]["prompts"] = "0000000000000000".into()
    });
    let r = merge(&[s0, &other], &out("refused-plan"), &[]);
    assert!(r.stderr.contains("differ in the prompts"), "{}", r.stderr);
    // a shard whose accounting does not add up to its share of the schedule
    let short = copy_cell(s1, &dir.join("short"));
    edit_shard(&short, |v| {
        v["entries_total"] = 3002.into();
        v["entries"] = 1501.into();
    });
    let r = merge(&[s0, &short], &out("refused-short"), &[]);
    assert!(r.stderr.contains("accounts for"), "{}", r.stderr);
    // and one edited past sense is refused, not trusted (no panic, no huge allocation)
    // a share that does not follow from the whole
    let skewed = copy_cell(s1, &dir.join("skewed"));
    edit_shard(&skewed, |v| v["entries"] = 1499.into());
    let r = merge(&[s0, &skewed], &out("refused-skewed"), &[]);
    assert!(r.stderr.contains("has 1500, not 1499"), "{}", r.stderr);
    let absurd = copy_cell(s1, &dir.join("absurd"));
    edit_shard(&absurd, |v| {
        v["count"] = 4_000_000_000u64.into();
        v["clock_zero_unix_ns"] = i64::MIN.into();
    });
    let r = merge(&[s0, &absurd], &out("refused-absurd"), &[]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("inconsistent"), "{}", r.stderr);
}

/// A shard on another machine whose clock its kernel does not vouch for is flagged.
fn clock_flagged(dir: &Path, s0: &Path, s1: &Path) {
    let elsewhere = copy_cell(s1, &dir.join("elsewhere"));
    edit_shard(&elsewhere, |v| {
        v["clock"] = serde_json::json!({"synchronised": false, "boot_id": "another-machine", "host": "node-b"});
    });
    let out = dir.join("clock");
    let r = merge(&[s0, &elsewhere], &out, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let apart = summary(&out)["vllm_loadtest"]["shards"]["apart"].to_string();
    assert!(
        apart.contains("node-b") && apart.contains("not synchronised"),
        "{apart}"
    );
    let warnings = summary(&out)["vllm_loadtest"]["warnings"].to_string();
    assert!(warnings.contains("node-b"), "{warnings}");
    // with clocks not judged, nothing to flag
    let r = merge(
        &[s0, &elsewhere],
        &dir.join("clock-unjudged"),
        &["--max-clock-error-ms", "inf"],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let apart = &summary(&dir.join("clock-unjudged"))["vllm_loadtest"]["shards"]["apart"];
    assert_eq!(apart, &serde_json::json!([]));
}

fn copy_cell(from: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to.to_path_buf()
}

fn edit_shard(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("shard.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn a_shard_is_refused_where_its_union_would_not_be_the_load_point() {
    let url = "http://127.0.0.1:9";
    let at = start_in(60_000);
    let bad: [(&[&str], &str); 5] = [
        (
            &[
                "--request-rate",
                "inf",
                "--duration",
                "5",
                "--max-concurrency",
                "8",
            ],
            "closed loop",
        ),
        (
            &["--request-rate", "10", "--max-concurrency", "1"],
            "no slot",
        ),
        (
            &["--request-rate", "10", "--shard", "2/2"],
            "does not exist",
        ),
        (&["--search", "saturation"], "runs many, one after another"),
        (&["--sim", "--request-rate", "10"], "N servers"),
    ];
    for (extra, why) in bad {
        let mut args = vec!["bench", "--start-at", &at, "--max-clock-error-ms", "inf"];
        // `--sim` stands for the server
        if !extra.contains(&"--sim") {
            args.extend(["--base-url", url]);
        }
        if !extra.contains(&"--shard") {
            args.extend(["--shard", "1/2"]);
        }
        args.extend(extra);
        let r = run(&args);
        // refused by us (1), not by the argument parser (2), but for a malformed `--shard`
        let want = if why == "does not exist" { 2 } else { 1 };
        assert_eq!(r.code, Some(want), "{why}: {}", r.stderr);
        assert!(r.stderr.contains(why), "{why}: {}", r.stderr);
    }
    // a shard needs its start
    let shard0 = [
        "bench",
        "--base-url",
        url,
        "--request-rate",
        "10",
        "--shard",
        "0/2",
    ];
    let r = run(&shard0);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("--start-at"), "{}", r.stderr);
    // on a machine whose clock the kernel does not vouch for, the bound refuses it
    if !vllm_loadtest::shard::clock::read().synchronised {
        let r = run(&[&shard0[..], &["--start-at", &at]].concat());
        assert_eq!(r.code, Some(1), "{}", r.stderr);
        assert!(
            r.stderr.contains("not synchronised") && r.stderr.contains("--max-clock-error-ms inf"),
            "{}",
            r.stderr
        );
    }
}

/// A signal while a shard waits for its start: nothing is sent (not one request early),
/// every request of its share accounted as not sent; and a second bench given the same
/// folder is refused at once instead of interleaving its records into the first's.
#[test]
fn a_shard_stopped_before_its_start_sends_nothing_and_its_folder_is_its_own() {
    let _one = serial();
    let (_sim, url) = spawn_sim(&["--profile", "zero"]);
    let dir = temp_dir("shard-wait");
    let out = dir.join("s0");
    let at = start_in(30_000);
    // all at once: a shard that started early would send every request at the signal
    let args: Vec<String> = load(&url)
        .into_iter()
        .map(|a| if a == RATE { "inf".into() } else { a })
        .collect();
    let mut waiting = Command::new(super::support::bin())
        .args(&args)
        .args([
            "--shard",
            "0/2",
            "--start-at",
            &at,
            "--max-clock-error-ms",
            "inf",
        ])
        .arg("--output-dir")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // its `bench: shard 0/2: …` line comes once it holds its folder
    let mut err = std::io::BufReader::new(waiting.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("bench: shard 0/2") {
        let mut line = String::new();
        assert!(
            std::io::BufRead::read_line(&mut err, &mut line).unwrap() > 0,
            "the first shard ended early: {said}"
        );
        said += &line;
    }
    let r = run(&[
        "bench",
        "--base-url",
        &url,
        "--request-rate",
        "10",
        "--num-prompts",
        "10",
        "--shard",
        "1/2",
        "--start-at",
        &at,
        "--max-clock-error-ms",
        "inf",
        "--output-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("being written by another bench"),
        "{}",
        r.stderr
    );
    // SAFETY: plain kill(2) on the child we started.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(waiting.id() as i32, libc::SIGINT);
    }
    let status = waiting.wait().unwrap();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut err, &mut rest);
    assert_eq!(status.code(), Some(130), "{said}{rest}");
    let s = &summary(&out)["vllm_loadtest"]["summary"];
    assert_eq!(s["sent"], 0, "{s}");
    assert_eq!(s["not_sent"], 1500, "{s}");
}
