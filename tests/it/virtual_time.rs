//! Experiments in virtual time (`server.clock: virtual`): the same cell predicted by the
//! simulator's discrete-event loop agrees with the real-time simulator over HTTP, every
//! output says it is predicted, and what virtual time cannot serve is refused.

use crate::support::*;
use std::path::{Path, PathBuf};

const QUICKSTART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart.yaml");
const SCALING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/scaling.yaml");

/// The command line tool, for commands other than `run`.
fn run_cmd(args: &[&str]) -> Run {
    crate::support::run(args)
}

/// Run `experiment` into `root` with `sets`; the run's folder.
fn run_experiment(experiment: &str, root: &Path, sets: &[&str]) -> PathBuf {
    let mut args = vec![
        "run",
        experiment,
        "--output",
        root.to_str().unwrap(),
        "--quiet",
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    let r = run(&args);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // <root>/<experiment name>/<timestamp>
    let named = only_entry(root);
    only_entry(named)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The only cell's `summary.json`.
fn only_cell(run: &Path) -> (PathBuf, serde_json::Value) {
    let cells: Vec<PathBuf> = std::fs::read_dir(run.join("cells"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cells.len(), 1, "{cells:?}");
    let s = json(&cells[0].join("summary.json"));
    (cells[0].clone(), s)
}

/// A profile of long steps (40 ms and more) in `dir`: the real-time engine's wake-ups,
/// late by a millisecond or two a step on a loaded two-core machine, stay a few percent of
/// a step. (With the default profile's shorter decode steps a loaded machine made
/// real-time TPOT 16% longer than the virtual timeline's.)
fn slow_steps(dir: &Path) -> PathBuf {
    let profile = dir.join("slow-steps.yaml");
    std::fs::write(
        &profile,
        "base: default\nc0_s: 0.04\nc_pf_s: 0.00002\nc_pf_attn_s: 0.00000002\nc_dec_s: 0.0002\nc_kv_s: 0.0000001\nfront_end_latency_s: 0.005\n",
    )
    .unwrap();
    profile
}

/// The quickstart with `sets` on `profile`, served in real time and predicted in virtual
/// time: the two runs, and the virtual run's settings.
fn real_and_virtual(dir: &Path, profile: &Path, sets: &[&str]) -> (PathBuf, PathBuf, Vec<String>) {
    let mut sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    sets.insert(0, format!("server.profile={}", profile.display()));
    fn as_strs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let real = run_experiment(QUICKSTART, &dir.join("real"), &as_strs(&sets));
    sets.push("server.clock=virtual".into());
    let virt = run_experiment(QUICKSTART, &dir.join("virtual"), &as_strs(&sets));
    (real, virt, sets)
}

/// A real-time and a virtual-time cell's summaries agree: throughput within `throughput`,
/// TTFT p50 within 15%, TPOT and E2E p50 within 8%. The simulator's jitter is 0: what
/// differs is the real-time server's own CPU (HTTP, tokenizing the prompt: a lone
/// request's TTFT is 4–6 ms over the timeline's 55 ms on a loaded two-core machine) and how
/// late its engine wakes up for each step. TTFT, the shortest figure, takes most of that.
fn assert_agree(r: &serde_json::Value, v: &serde_json::Value, throughput: f64) {
    for (key, tolerance) in [
        ("request_throughput", throughput),
        ("median_ttft_ms", 0.15),
        ("median_tpot_ms", 0.08),
        ("median_e2el_ms", 0.08),
    ] {
        let (a, b) = (r[key].as_f64().unwrap(), v[key].as_f64().unwrap());
        assert!(
            (b / a - 1.0).abs() <= tolerance,
            "{key}: real time {a:.3}, virtual time {b:.3}"
        );
    }
}

#[test]
fn a_cell_in_virtual_time_agrees_with_the_real_time_simulator_and_says_it_is_predicted() {
    let _serial = serial();
    let dir = temp_dir("virtual-vs-real");
    let profile = slow_steps(&dir);
    let (real, virt, vsets) = real_and_virtual(
        &dir,
        &profile,
        &[
            "matrix.request_rate=[4]",
            "workload.output_len=16",
            "load.duration_s=12",
            "load.warmup_s=2",
            "load.cooldown_s=1",
            "workload.num_prompts=100",
        ],
    );
    let ((_, r), (vcell, v)) = (only_cell(&real), only_cell(&virt));
    // the same schedule and prompts: the same requests sent
    assert_eq!(
        r["vllm_loadtest"]["summary"]["sent"],
        v["vllm_loadtest"]["summary"]["sent"]
    );
    assert_accounted(
        &vcell,
        v["vllm_loadtest"]["summary"]["sent"].as_u64().unwrap(),
    );
    assert_agree(&r, &v, 0.03);
    // predicted, everywhere it is read
    assert_eq!(v["vllm_loadtest"]["predicted"], true);
    assert!(r["vllm_loadtest"].get("predicted").is_none());
    assert_eq!(json(&virt.join("manifest.json"))["predicted"], true);
    let report = std::fs::read_to_string(virt.join("report.md")).unwrap();
    assert!(
        report.contains("predicted load test report (virtual time)"),
        "{report}"
    );
    assert!(report.contains("Predicted, not measured"), "{report}");
    let measured = std::fs::read_to_string(real.join("report.md")).unwrap();
    assert!(!measured.to_lowercase().contains("predicted"));
    // `compare` sees which side is predicted (either order) and judges it against the
    // measured cell: the same table both ways, the throughput row within the 3% above
    let cmp = |a: &Path, b: &Path| {
        let r = run(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        r.stdout
    };
    let (one, other) = (cmp(&real, &virt), cmp(&virt, &real));
    assert_eq!(one, other);
    assert!(one.starts_with("# Prediction `"), "{one}");
    let row_of = |metric: &str| {
        one.lines()
            .find(|l| l.starts_with(&format!("| request_rate=4 | {metric} |")))
            .unwrap_or_else(|| panic!("no {metric} row in {one}"))
            .to_string()
    };
    let error_of = |metric: &str| -> f64 {
        let row = row_of(metric);
        let cell = row.split('|').nth(5).unwrap().trim().trim_end_matches('%');
        cell.parse().unwrap_or_else(|_| panic!("{row}"))
    };
    let row = row_of("achieved req/s");
    assert!(error_of("achieved req/s").abs() <= 3.0, "{one}");
    // the engines' mean step, from each side's scrapes of the same iteration counter
    // (idle time between steps included on both sides)
    assert!(error_of("engine step ms").abs() <= 10.0, "{one}");
    assert!(!one.contains("did not send the same traffic"), "{one}");
    // a prediction of other traffic is judged with a warning that says what differs
    let mut osets: Vec<&str> = vsets.iter().map(String::as_str).collect();
    osets.push("workload.output_len=24");
    let other = run_experiment(QUICKSTART, &dir.join("other"), &osets);
    let r = run(&["compare", real.to_str().unwrap(), other.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.contains("did not send the same traffic") && r.stdout.contains("other prompts"),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("warning:"), "{}", r.stderr);

    // `report --profile` predicts the measured run's cells itself (inside the run's folder)
    // and puts the same judgement in the measured run's report, with a line in its summary
    let report_with = |run_dir: &Path, p: &Path| {
        run(&[
            "report",
            run_dir.to_str().unwrap(),
            "--profile",
            p.to_str().unwrap(),
        ])
    };
    let r = report_with(&real, &profile);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let md = std::fs::read_to_string(real.join("report.md")).unwrap();
    assert!(md.contains("## Predicted beside measured"), "{md}");
    let again = md
        .lines()
        .find(|l| l.starts_with("| request_rate=4 | achieved req/s |"))
        .unwrap_or_else(|| panic!("{md}"));
    assert_eq!(again, row, "the report's row is `compare`'s");
    assert!(
        md.contains("predicting these cells in virtual time, misses the measurement by (mean absolute error) achieved req/s"),
        "{md}"
    );
    // the server's speed against the profile for the measured cell's own work: the profile
    // it ran, and one whose every cost is 0.8 of it (a server now 1.25× slower than its
    // profile says)
    let speed_of = |md: &str, cell: &str| -> f64 {
        let row = md
            .lines()
            .find(|l| l.starts_with(&format!("| {cell} | ")) && l.contains("× |"))
            .unwrap_or_else(|| panic!("no speed row in {md}"));
        let cell = row.split('|').nth(4).unwrap().trim().trim_end_matches('×');
        cell.parse().unwrap_or_else(|_| panic!("{row}"))
    };
    let speed_in = |md: &str| speed_of(md, "request_rate=4");
    let same = speed_in(&md);
    assert!((same - 1.0).abs() <= 0.06, "speed {same}: {md}");
    assert!(md.contains("The server's steps took"), "{md}");
    let faster = dir.join("faster.yaml");
    std::fs::write(
        &faster,
        "base: default\nc0_s: 0.032\nc_pf_s: 0.000016\nc_pf_attn_s: 0.000000016\nc_dec_s: 0.00016\nc_kv_s: 0.00000008\nfront_end_latency_s: 0.005\n",
    )
    .unwrap();
    let r = report_with(&real, &faster);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let md = std::fs::read_to_string(real.join("report.md")).unwrap();
    let slower = speed_in(&md);
    assert!(
        (slower / same - 1.25).abs() <= 0.06,
        "speed {slower} against {same}: {md}"
    );
    // two engines: their idle time from the gauges the monitor sampled, not the records
    let two = run_experiment(
        QUICKSTART,
        &dir.join("two-engines"),
        &[
            &format!("server.profile={}", profile.display()),
            "server.dp=2",
            "matrix.request_rate=[8]",
            "workload.output_len=16",
            "load.duration_s=12",
            "load.warmup_s=2",
            "load.cooldown_s=1",
            "workload.num_prompts=100",
            "monitor.metrics_interval_s=0.25",
        ],
    );
    let speeds: Vec<f64> = [&profile, &faster]
        .map(|p| {
            let r = report_with(&two, p);
            assert_eq!(r.code, Some(0), "{}", r.stderr);
            let md = std::fs::read_to_string(two.join("report.md")).unwrap();
            speed_of(&md, "request_rate=8")
        })
        .to_vec();
    assert!(
        (speeds[1] / speeds[0] - 1.25).abs() <= 0.08,
        "two engines: speed {speeds:?}"
    );
    let predicted = only_entry(real.join("predicted"));
    assert!(predicted.is_dir(), "{}", predicted.display());
    // a prediction has no measurement to be put beside
    let r = report_with(&virt, &profile);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("is itself a prediction"), "{}", r.stderr);
    // a profile that is not there, or not a deployment, is refused before anything runs
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "base: default\nc0_s: -1\n").unwrap();
    for (p, says) in [
        (dir.join("nothing-here.yaml"), "no profile file"),
        (bad, "finite and non-negative"),
    ] {
        let before = std::fs::read_dir(real.join("predicted")).unwrap().count();
        let r = report_with(&real, &p);
        assert_eq!(r.code, Some(1), "{}", r.stderr);
        assert!(r.stderr.contains(says), "{says}: {}", r.stderr);
        let after = std::fs::read_dir(real.join("predicted")).unwrap().count();
        assert_eq!(before, after, "no prediction folder for a refused profile");
    }
}

/// Conversations in virtual time: each later turn sent the think time after the one
/// before ended, as the load point sends it; the real-time simulator's server finds each
/// turn's history in its prefix cache, and the prediction finds it too.
#[test]
fn conversations_in_virtual_time_agree_with_the_real_time_simulator() {
    let _serial = serial();
    let dir = temp_dir("virtual-conversations");
    let profile = slow_steps(&dir);
    const MULTI_TURN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/multi-turn.yaml");
    let mut sets: Vec<String> = [
        "matrix.enable_prefix_caching=[true]",
        "load.request_rate=1.5",
        "load.duration_s=14",
        "load.warmup_s=4",
        // conversations that start after the window, sent and cut as the live client does
        "load.cooldown_s=3",
        "load.drain_timeout_s=30",
        "workload.turns=3",
        "workload.think_time_s=0.5",
        "workload.input_len=96",
        "workload.output_len=12",
        "workload.num_prompts=60",
        "server.launcher=sim",
        "monitor.metrics_interval_s=1",
    ]
    .map(String::from)
    .to_vec();
    sets.push(format!("server.profile={}", profile.display()));
    let strs = |v: &[String]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let real = run_experiment(
        MULTI_TURN,
        &dir.join("real"),
        &strs(&sets).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    sets.push("server.clock=virtual".into());
    let virt = run_experiment(
        MULTI_TURN,
        &dir.join("virtual"),
        &strs(&sets).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let ((_, r), (vcell, v)) = (only_cell(&real), only_cell(&virt));
    let count = |s: &serde_json::Value, k: &str| s["vllm_loadtest"]["summary"][k].as_u64().unwrap();
    // every turn accounted for; the same conversations started, and the turns sent within
    // a request or two (a turn due near the duration's end goes or not by milliseconds)
    assert_accounted(&vcell, count(&v, "sent"));
    let (rs, vs) = (count(&r, "sent"), count(&v, "sent"));
    assert!(
        rs.abs_diff(vs) <= 2,
        "sent: real time {rs}, virtual time {vs}"
    );
    assert!(
        (count(&r, "not_sent") + rs).abs_diff(count(&v, "not_sent") + vs) <= 2,
        "sent and not sent: {r} against {v}"
    );
    assert_agree(&r, &v, 0.05);
    // the history found in the cache: the same share of prompt tokens on both sides
    let hits = |s: &serde_json::Value| {
        s["vllm_loadtest"]["monitors"]["prefix_cache"]["hit_rate"]
            .as_f64()
            .unwrap_or_else(|| panic!("{s}"))
    };
    let (rh, vh) = (hits(&r), hits(&v));
    assert!(
        rh > 0.3 && (rh - vh).abs() < 0.05,
        "hit rate: real {rh}, virtual {vh}"
    );
    // and the report reads them turn by turn
    let md = std::fs::read_to_string(virt.join("report.md")).unwrap();
    assert!(
        md.contains("## Multi-turn conversations: TTFT by turn"),
        "{md}"
    );
    assert!(md.contains("Predicted, not measured"), "{md}");
}

#[test]
fn a_closed_loop_in_virtual_time_agrees_with_the_real_time_simulator() {
    let _serial = serial();
    let dir = temp_dir("virtual-closed-loop");
    let profile = slow_steps(&dir);
    let (real, virt, _) = real_and_virtual(
        &dir,
        &profile,
        &[
            "matrix.request_rate=[inf]",
            "load.max_concurrency=6",
            "workload.output_len=16",
            "load.duration_s=10",
            "load.warmup_s=2",
            "load.cooldown_s=1",
            "workload.num_prompts=100",
        ],
    );
    let ((_, r), (vcell, v)) = (only_cell(&real), only_cell(&virt));
    // the loop kept its 6 in flight, never more, in both
    assert_eq!(r["max_concurrent_requests"], 6);
    assert_eq!(v["max_concurrent_requests"], 6);
    assert_accounted(
        &vcell,
        v["vllm_loadtest"]["summary"]["sent"].as_u64().unwrap(),
    );
    assert_eq!(v["vllm_loadtest"]["predicted"], true);
    // the simulated server times a request from its send, not from the loop's start: its
    // TTFT histogram agrees with the client's (no verdict against it)
    let vreport = std::fs::read_to_string(virt.join("report.md")).unwrap();
    assert!(!vreport.contains("vs server's own"), "{vreport}");
    assert!(
        vreport.contains("Load: closed loops of `max_concurrency` requests in flight"),
        "{vreport}"
    );
    // how many a closed loop sends follows from how fast requests end: the count too
    let sent = |x: &serde_json::Value| x["vllm_loadtest"]["summary"]["sent"].as_f64().unwrap();
    assert!(
        (sent(&v) / sent(&r) - 1.0).abs() <= 0.08,
        "{} vs {}",
        sent(&r),
        sent(&v)
    );
    assert_agree(&r, &v, 0.05);
    // and a measured closed loop can be predicted beside itself
    let r = run(&[
        "report",
        real.to_str().unwrap(),
        "--profile",
        profile.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let md = std::fs::read_to_string(real.join("report.md")).unwrap();
    assert!(md.contains("## Predicted beside measured"), "{md}");
}

#[test]
fn the_scaling_example_runs_in_virtual_time_and_its_report_is_marked_predicted() {
    let _serial = serial();
    let dir = temp_dir("virtual-scaling");
    let run = run_experiment(SCALING, &dir, &["server.clock=virtual"]);
    let cells = std::fs::read_dir(run.join("cells")).unwrap().count();
    assert_eq!(cells, 24);
    let a = json(&run.join("analysis.json"));
    // dp 4 against dp 1 at both batch sizes, each configuration saturated by 60 req/s
    assert_eq!(a["scaling"].as_array().unwrap().len(), 2, "{a}");
    for f in a["scaling"].as_array().unwrap() {
        let dp4 = &f["rows"][1];
        assert_eq!(dp4["dp"], 4, "{f}");
        let speedup = dp4["speedup"].as_f64().unwrap();
        assert!((3.5..=4.5).contains(&speedup), "{f}");
    }
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("predicted load test report (virtual time)"));
    // a hand-written profile's error is unknown, and the report says so
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        md.contains("predicted with profile `default`, written by hand"),
        "{md}"
    );
    // the simulated server's own metrics, as a measured run scrapes them: where the time
    // goes (its phase histograms over the window) and its queue over time
    assert!(
        md.contains("## Where the time goes: queue, prefill, decode")
            && md.contains(
                "1 engine (dp=1, max_num_seqs=128): at 60 req/s offered, 99% of TTFT is queueing"
            ),
        "{md}"
    );
    assert!(run.join("figs/latency-breakdown.svg").is_file());
    let cell = only_entry(run.join("cells"));
    assert!(
        cell.join("server_metrics.parquet").is_file(),
        "{}",
        cell.display()
    );
}

/// A fitted profile's report states the profile's own held-out error, metric by metric as
/// the profile records it, and the limits the experiment changed since.
#[test]
fn a_fitted_profiles_report_states_its_held_out_error() {
    let dir = temp_dir("virtual-basis");
    let profile = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/profiles/tiny-llama-cpu.yaml"
    );
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(profile).unwrap()).unwrap();
    let held_out = &yaml["provenance"]["held_out"];
    let caching = yaml["enable_prefix_caching"].as_bool().unwrap();
    let set_profile = format!("server.profile={profile}");
    let run = run_experiment(
        QUICKSTART,
        &dir,
        &[
            "server.clock=virtual",
            &set_profile,
            "server.max_num_seqs=7",
            &format!("server.enable_prefix_caching={}", !caching),
            "matrix.request_rate=[5]",
        ],
    );
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("fitted to"), "{md}");
    assert!(md.contains(held_out["load"].as_str().unwrap()), "{md}");
    let metrics = held_out["metrics"].as_sequence().unwrap();
    assert!(!metrics.is_empty());
    for m in metrics {
        let name = m["metric"].as_str().unwrap().split(" (").next().unwrap();
        let error = m["error_pct"].as_f64().unwrap();
        let said = format!("{name} {error:+.1}%");
        assert!(md.contains(&said), "`{said}` missing: {md}");
    }
    let seqs = yaml["max_num_seqs"].as_u64().unwrap();
    assert!(
        md.contains(&format!("sets `max_num_seqs` to 7 (the profile's: {seqs})")),
        "{md}"
    );
    // a switch in the experiment's words, not the manifest's 0 and 1
    let switch = format!(
        "sets `enable_prefix_caching` to {} (the profile's: {caching})",
        !caching
    );
    assert!(md.contains(&switch), "`{switch}` missing: {md}");
    assert!(!md.contains("written by hand"), "{md}");
    assert!(!md.contains("not steady"), "{md}");
    // a profile fitted on a server still warming up says so
    let mut unsteady = yaml.clone();
    unsteady["provenance"]["steadiness"] =
        serde_yaml::from_str("{last_over_first: 0.79, shapes: 12, agreeing: 10}").unwrap();
    let file = dir.join("unsteady.yaml");
    std::fs::write(&file, serde_yaml::to_string(&unsteady).unwrap()).unwrap();
    let set_unsteady = format!("server.profile={}", file.display());
    let run = run_experiment(
        QUICKSTART,
        &dir.join("unsteady"),
        &[
            "server.clock=virtual",
            &set_unsteady,
            "matrix.request_rate=[5]",
        ],
    );
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        md.contains("Its server was not steady while it was fitted: its decode steps took 21% less time in the probes' last repeat than in their first (10 of 12 batch shapes)"),
        "{md}"
    );
    // a profile calibrated on measured cells says so, and how close it came to them
    let cal = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/profiles/tiny-llama-cpu-calibrated.yaml"
    );
    let set_cal = format!("server.profile={cal}");
    let run = run_experiment(
        QUICKSTART,
        &dir.join("calibrated"),
        &["server.clock=virtual", &set_cal, "matrix.request_rate=[5]"],
    );
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        md.contains("then calibrated on measured loads (4 load(s): TTFT and TPOT within"),
        "{md}"
    );
    // its fit's held-out check judged other coefficients: not quoted
    assert!(md.contains("It was not checked on a held-out load"), "{md}");
}

/// `bench --sim P --virtual` predicts the load point the experiment's virtual cell
/// predicts (the same schedule, prompts and figures), marks it predicted in the table and
/// the summary, and refuses what it cannot serve.
#[test]
fn bench_in_virtual_time_is_the_same_prediction_and_says_so() {
    let dir = temp_dir("virtual-bench");
    let run = run_experiment(
        QUICKSTART,
        &dir.join("run"),
        &["server.clock=virtual", "matrix.request_rate=[10]"],
    );
    let (_, from_run) = only_cell(&run);
    let out = dir.join("bench");
    // a folder a sharded bench used before: its shard record must not survive
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("shard.json"), "{}").unwrap();
    let bench = |extra: &[&str]| {
        let mut args = vec![
            "bench",
            "--sim",
            "--virtual",
            "--request-rate",
            "10",
            "--num-prompts",
            "500",
            "--random-input-len",
            "512",
            "--random-output-len",
            "32",
            "--duration",
            "25",
            "--warmup",
            "8",
            "--cooldown",
            "2",
            "--output-dir",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        run_cmd(&args)
    };
    let r = bench(&[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.contains("PREDICTED Benchmark Result")
            && r.stdout
                .contains("predicted, not measured: the simulator in virtual time"),
        "{}",
        r.stdout
    );
    // no client ran: no client line
    assert!(!r.stdout.contains("Client CPU"), "{}", r.stdout);
    assert!(!out.join("shard.json").exists());
    let from_bench = json(&out.join("summary.json"));
    assert_eq!(from_bench["vllm_loadtest"]["predicted"], true);
    for key in [
        "completed",
        "median_ttft_ms",
        "p99_ttft_ms",
        "median_tpot_ms",
        "median_e2el_ms",
        "request_throughput",
    ] {
        assert_eq!(from_bench[key], from_run[key], "{key}");
    }
    let s = &from_bench["vllm_loadtest"]["summary"];
    assert_eq!(s["sent"], from_run["vllm_loadtest"]["summary"]["sent"]);
    assert_accounted(&out, s["sent"].as_u64().unwrap());
    // A cap below the load: arrivals wait for a slot, measured as the client's queue
    // delay (from the schedule's instant to the send), and those still waiting when the
    // duration ends are not sent.
    let r = bench(&["--max-concurrency", "2"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let capped = json(&out.join("summary.json"));
    let s = &capped["vllm_loadtest"]["summary"];
    assert_eq!(s["max_concurrent_requests"], 2);
    assert!(s["not_sent"].as_u64().unwrap() > 0, "{s}");
    let queued = s["latencies"]["queue_delay_ms"]["p50"].as_f64().unwrap();
    assert!(queued > 1000.0, "queue delay p50 {queued} ms");
    assert_accounted(&out, s["sent"].as_u64().unwrap());
    // each refusal with the way out that fits it
    for (extra, says, hint) in [
        (
            &["--save-result"][..],
            "--save-result",
            "hint: drop `--save-result`",
        ),
        (
            &["--start-at", "2030-01-01T00:00:00Z"][..],
            "--start-at",
            "hint: drop `--start-at`",
        ),
    ] {
        let r = bench(extra);
        assert_eq!(r.code, Some(1), "{extra:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(says) && r.stderr.contains(hint),
            "{extra:?}: {}",
            r.stderr
        );
    }
    // a real server is not predicted: `--virtual` needs `--sim`
    let r = run_cmd(&["bench", "--virtual"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    // what vLLM answers 400 (a prompt past the context) is answered 400, not served
    let r = run_cmd(&[
        "bench",
        "--sim",
        "--virtual",
        "--num-prompts",
        "3",
        "--random-input-len",
        "40000",
        "--random-output-len",
        "8",
        "--request-rate",
        "5",
        "--quiet",
        "--output-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    let s = json(&out.join("summary.json"));
    let sm = &s["vllm_loadtest"]["summary"];
    assert_eq!(
        (sm["sent"].as_u64(), sm["failed"].as_u64()),
        (Some(3), Some(3)),
        "{sm}"
    );
    assert!(
        sm["errors_by_kind"].to_string().contains("http_status"),
        "{sm}"
    );
    // refused before any prompt is built: no engine, a profile that is not there, and a
    // schedule spanning years of virtual time (its per-second figures would fill memory)
    let out_s = out.to_str().unwrap();
    for (args, says) in [
        (&["--sim", "--sim-dp", "0"][..], "--sim-dp 0"),
        (
            &["--sim", "no-such-profile.yaml"][..],
            "no-such-profile.yaml",
        ),
        (
            &["--sim", "--request-rate", "0.000001", "--num-prompts", "20"][..],
            "days of virtual time",
        ),
    ] {
        let mut all = vec!["bench", "--virtual", "--output-dir", out_s, "--quiet"];
        all.extend(args);
        let r = run_cmd(&all);
        assert_eq!(r.code, Some(1), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    }
}

/// Ctrl-C stops a long prediction within a moment and keeps nothing of it: half a
/// prediction would read as a load point that ended early.
#[test]
fn a_signal_stops_a_prediction_and_keeps_nothing() {
    let dir = temp_dir("virtual-sigint");
    let mut child = std::process::Command::new(bin())
        .args([
            "bench",
            "--sim",
            "--virtual",
            "--request-rate",
            "200",
            "--duration",
            "3600",
            "--num-prompts",
            "100",
            "--random-input-len",
            "512",
            "--random-output-len",
            "128",
            "--quiet",
            "--output-dir",
            dir.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // signal once the prediction has begun (its line is printed), not while the prompts
    // are built (a signal there also exits 130 with nothing written)
    let (began_tx, began) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("requests predicted by") {
                let _ = began_tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    if began
        .recv_timeout(std::time::Duration::from_secs(30))
        .is_err()
    {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the prediction never began: {}", reader.join().unwrap());
    }
    // the prediction takes ~15 s; well into it
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SAFETY: plain kill(2) on the child we started.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let sent = std::time::Instant::now();
    let status = wait_or_kill(
        &mut child,
        std::time::Duration::from_secs(10),
        "the prediction did not stop after SIGINT",
    );
    assert!(
        sent.elapsed() < std::time::Duration::from_secs(3),
        "stopped after {:?}",
        sent.elapsed()
    );
    assert_eq!(status.code(), Some(130));
    let stderr = reader.join().unwrap();
    assert!(stderr.contains("the prediction was stopped"), "{stderr}");
    // told what a signal does here: no requests in flight, no server to stop
    assert!(
        stderr.contains("interrupted: stopping the prediction"),
        "{stderr}"
    );
    assert!(!dir.join("summary.json").exists());
    assert!(!dir.join("requests.parquet").exists());
}

#[test]
fn virtual_time_refuses_real_servers() {
    let dir = temp_dir("virtual-refused");
    let r = run(&[
        "run",
        QUICKSTART,
        "--output",
        dir.to_str().unwrap(),
        "--dry-run",
        "--set",
        "server.clock=virtual",
        "--set",
        "server.launcher=external",
        "--set",
        "server.urls=[http://127.0.0.1:9]",
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("launcher `external` is a real server"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("clock: virtual"), "{}", r.stderr);
    // the monitor's samples are events of the simulation: a 1 µs interval over 25 s of
    // arrivals (25 million samples) is refused, not left to run for hours
    let r = run(&[
        "run",
        QUICKSTART,
        "--output",
        dir.to_str().unwrap(),
        "--quiet",
        "--set",
        "server.clock=virtual",
        "--set",
        "monitor.metrics_interval_s=0.000001",
        "--set",
        "matrix.request_rate=[5]",
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("samples the server")
            && r.stderr
                .contains("hint: a longer `monitor.metrics_interval_s`"),
        "{}",
        r.stderr
    );
}

/// The aggregate stage reads every cell from its raw records: a cell that ended but whose
/// records are gone is an error naming the missing file, not a cell silently left out of
/// the tables (a predicted run: the quickest whole folder to make).
#[test]
fn a_finished_cell_without_its_records_is_an_error_not_a_smaller_table() {
    let root = temp_dir("vt-missing-records");
    let quick = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart.yaml");
    let dir = run_experiment(quick, &root, &["server.clock=virtual"]);
    let cells: Vec<PathBuf> = std::fs::read_dir(dir.join("cells"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let events = cells[0].join("events.parquet");
    std::fs::remove_file(&events).unwrap();
    let r = run_cmd(&["aggregate", dir.to_str().unwrap()]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains(&events.display().to_string()),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint:"), "{}", r.stderr);
    // a cell never started (no status, no records) is still only pending
    std::fs::remove_dir_all(&cells[0]).unwrap();
    let r = run_cmd(&["aggregate", dir.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_closed_loop_the_server_refuses_whole_is_an_error_not_an_endless_loop() {
    // every 400 frees its slot at once and virtual time never moves: found by a probe,
    // which ran into the request guard with a hint blaming the profile's step costs
    let dir = temp_dir("virtual-refused-loop");
    let profile = dir.join("short.yaml");
    std::fs::write(&profile, "base: default\nmax_model_len: 64\n").unwrap();
    let out = dir.join("out");
    let r = run_cmd(&[
        "bench",
        "--sim",
        profile.to_str().unwrap(),
        "--virtual",
        "--max-concurrency",
        "4",
        "--request-rate",
        "inf",
        "--duration",
        "10",
        "--num-prompts",
        "20",
        "--random-input-len",
        "256",
        "--random-output-len",
        "16",
        "--output-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("every prompt of the closed loop is over the profile's context")
            && r.stderr.contains("hint: shorter prompts or outputs"),
        "{}",
        r.stderr
    );
    assert!(!out.join("summary.json").exists());
}
