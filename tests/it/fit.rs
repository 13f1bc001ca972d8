//! `fit` against the simulator over HTTP: a server whose step costs we chose comes out as
//! those costs, its `max_num_seqs` is probed, the profile carries its provenance and its
//! own held-out error, and a refit from the saved probes gives the same profile.

use crate::support::*;
use std::path::Path;

const TRUTH: &str = "\
base: default
c0_s: 0.006
c_pf_s: 0.00003
c_dec_s: 0.00015
c_kv_s: 0.0000001
front_end_latency_s: 0.003
max_num_seqs: 16
";

fn profile(path: &Path) -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn close(what: &str, got: &serde_yaml::Value, want: f64, rel: f64) {
    let got = got.as_f64().unwrap_or_else(|| panic!("{what}: {got:?}"));
    assert!(
        (got - want).abs() <= rel * want,
        "{what}: fitted {got:e}, true {want:e} (±{}%)",
        rel * 100.0
    );
}

#[test]
fn a_fit_recovers_the_servers_step_costs_and_states_its_own_error() {
    let _g = serial();
    let dir = temp_dir("fit");
    let truth = dir.join("truth.yaml");
    std::fs::write(&truth, TRUTH).unwrap();
    let (mut sim, url) = spawn_sim(&["--profile", truth.to_str().unwrap()]);
    let probes = dir.join("probes");
    let out = dir.join("fitted.yaml");
    let r = run(&[
        "fit",
        "--base-url",
        &url,
        "--repeats",
        "1",
        "--held-out-seconds",
        "3",
        "--load-seconds",
        "2",
        "--probes-dir",
        probes.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let _ = sim.kill();
    let _ = sim.wait();
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("profile written to"), "{}", r.stderr);
    let calibrated = profile(&out);

    // the burst fit alone (the probes refitted without the open-loop loads) recovers the
    // server's costs; the calibration then absorbs what the real-time simulator's HTTP
    // side adds under open-loop load, which is not the step costs configured
    let burst = dir.join("burst.yaml");
    let r = run(&[
        "fit",
        probes.to_str().unwrap(),
        "--load-seconds",
        "0",
        "-o",
        burst.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let p = profile(&burst);
    assert!(p["provenance"].get("open_loop").is_none(), "{p:?}");
    close("c0", &p["c0_s"], 0.006, 0.2);
    close("c_dec", &p["c_dec_s"], 150e-6, 0.25);
    // the prefill curve (one sample per length: its linear and quadratic terms trade off
    // within the noise, the time to first token they give does not), within 20%: the
    // real-time simulator's HTTP side and tokenizing add 2–3 ms to a lone request's 17 ms
    // at 256 tokens (it read 19.3 and 19.5 ms in two runs of seven)
    let f = |k: &str| p[k].as_f64().unwrap();
    for n in [256.0, 1024.0, 1536.0] {
        let fitted = f("front_end_latency_s")
            + f("c0_s")
            + f("c_pf_s") * n
            + f("c_pf_attn_s") * n * (n + 1.0) / 2.0;
        let truth = 0.003 + 0.006 + 30e-6 * n;
        assert!(
            (fitted - truth).abs() < 0.2 * truth,
            "TTFT at {n} tokens: fitted {fitted}, true {truth}"
        );
    }
    // the limits: the cache from /metrics, max_num_seqs probed (16 decode together, 32 not)
    assert_eq!(p["max_num_seqs"].as_u64(), Some(16), "{p:?}");
    let prov = &p["provenance"];
    let limits = &prov["limits"];
    assert!(
        limits["max_num_seqs"]
            .as_str()
            .unwrap()
            .starts_with("probed"),
        "{limits:?}"
    );
    assert_eq!(
        limits["num_gpu_blocks"].as_str(),
        Some("/metrics vllm:cache_config_info")
    );
    assert!(
        limits["max_num_batched_tokens"]
            .as_str()
            .unwrap()
            .starts_with("assumed"),
        "{limits:?}"
    );
    assert_eq!(
        calibrated["provenance"]["source"].as_str(),
        Some(url.as_str())
    );
    assert!(prov["std_errors"]["c0_s"].as_f64().unwrap() > 0.0);
    // calibrated on two open-loop loads: both predicted within 5% on TPOT, and no worse
    // than the burst fit predicted them, beyond a 2 s load's own noise (~1%: a burst fit
    // already within 0.1% was "beaten" by a calibrated 1.1% in 3 of 6 runs)
    let open = &calibrated["provenance"]["open_loop"];
    let loads = open["loads"].as_sequence().unwrap();
    assert_eq!(loads.len(), 2, "{open:?}");
    for l in loads {
        let m = l["metrics"].as_sequence().unwrap();
        let e = |name: &str| {
            m.iter()
                .find(|x| x["metric"].as_str() == Some(name))
                .unwrap_or_else(|| panic!("{name} in {m:?}"))["error_pct"]
                .as_f64()
                .unwrap()
                .abs()
        };
        assert!(
            e("TPOT (ms), calibrated") <= e("TPOT (ms), before").max(1.0) + 1.0,
            "{m:?}"
        );
        assert!(e("TPOT (ms), calibrated") < 5.0, "{m:?}");
    }
    assert!(probes.join("load-0").is_dir() && probes.join("load-1").is_dir());
    // the held-out load, predicted beside measured: throughput close, TTFT near
    let held: Vec<serde_yaml::Value> = calibrated["provenance"]["held_out"]["metrics"]
        .as_sequence()
        .unwrap()
        .clone();
    let err = |name: &str| {
        held.iter()
            .find(|m| m["metric"].as_str().unwrap().starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {held:?}"))["error_pct"]
            .as_f64()
            .unwrap()
    };
    assert!(err("request throughput").abs() < 10.0, "{held:?}");
    assert!(err("TTFT p50").abs() < 35.0, "{held:?}");
    assert!(err("TPOT p50").abs() < 25.0, "{held:?}");

    // the probes saved are enough to refit, without the server, to the same coefficients
    let again = dir.join("refit.yaml");
    let r = run(&[
        "fit",
        probes.to_str().unwrap(),
        "-o",
        again.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let (p, q) = (calibrated, profile(&again));
    for k in [
        "c0_s",
        "c_pf_s",
        "c_dec_s",
        "c_kv_s",
        "front_end_latency_s",
        "max_num_seqs",
    ] {
        assert_eq!(p[k], q[k], "{k}");
    }
    assert!(
        q["provenance"]["held_out"]["metrics"]
            .as_sequence()
            .is_some()
    );
    // and the fitted profile is one the simulator takes
    let r = run(&[
        "bench",
        "--sim",
        out.to_str().unwrap(),
        "--num-prompts",
        "5",
        "--random-input-len",
        "64",
        "--random-output-len",
        "8",
        "--output-dir",
        dir.join("bench").to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The speed load: a live fit measures the server's speed on an open-loop load against
/// its burst fit and scales every step cost by it. The simulator steps at its configured
/// costs under any load, so a fit of it reads ~1; the same folder refitted with an
/// open-loop cell of a server 1.3× slower (every cost × 1.3) as its speed load reads ~1.3
/// and scales the burst fit's costs by it, and `--speed-seconds 0` keeps the burst fit.
#[test]
fn the_speed_load_scales_the_step_costs_by_the_servers_open_loop_speed() {
    let _g = serial();
    let dir = temp_dir("fit-speed");
    let fit_of = |truth: &str, name: &str| {
        let t = dir.join(format!("{name}.yaml"));
        std::fs::write(&t, truth).unwrap();
        let (mut sim, url) = spawn_sim(&["--profile", t.to_str().unwrap()]);
        let probes = dir.join(format!("{name}-probes"));
        let out = dir.join(format!("{name}-fitted.yaml"));
        let r = run(&[
            "fit",
            "--base-url",
            &url,
            "--repeats",
            "1",
            "--held-out-seconds",
            "0",
            "--speed-seconds",
            "4",
            "--probes-dir",
            probes.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--quiet",
        ]);
        let _ = sim.kill();
        let _ = sim.wait();
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        (probes, profile(&out))
    };
    let speed_of = |p: &serde_yaml::Value| {
        let s = &p["provenance"]["open_loop_speed"];
        assert_eq!(s["applied"].as_bool(), Some(true), "{s:?}");
        s["speed"].as_f64().unwrap()
    };
    let (probes, fitted) = fit_of(TRUTH, "truth");
    let own = speed_of(&fitted);
    assert!((own - 1.0).abs() < 0.12, "the simulator's own speed: {own}");
    let slower = TRUTH
        .replace("c0_s: 0.006", "c0_s: 0.0078")
        .replace("c_pf_s: 0.00003", "c_pf_s: 0.000039")
        .replace("c_dec_s: 0.00015", "c_dec_s: 0.000195")
        .replace("c_kv_s: 0.0000001", "c_kv_s: 0.00000013");
    let slow = dir.join("slower.yaml");
    std::fs::write(&slow, slower).unwrap();
    // an open-loop cell measured on the slower server, its /metrics scraped (any cell is a
    // speed load: the refit replays its records), in place of the first server's
    let quickstart = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart.yaml");
    let runs = dir.join("slower-run");
    let r = run(&[
        "run",
        quickstart,
        "--output",
        runs.to_str().unwrap(),
        "--quiet",
        "--set",
        &format!("server.profile={}", slow.display()),
        "--set",
        "matrix.request_rate=[4]",
        "--set",
        "workload.input_len=192",
        "--set",
        "workload.output_len=48",
        "--set",
        "workload.num_prompts=40",
        "--set",
        "load.duration_s=6",
        "--set",
        "load.warmup_s=0",
        "--set",
        "load.cooldown_s=0",
        "--set",
        "monitor.metrics_interval_s=1",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let cells = only_entry(only_entry(&runs)).join("cells");
    let speed_load = probes.join("speed-load");
    std::fs::remove_dir_all(&speed_load).unwrap();
    std::fs::rename(only_entry(&cells), &speed_load).unwrap();
    let refit = |extra: &[&str], name: &str| {
        let out = dir.join(name);
        let mut args = vec!["fit", probes.to_str().unwrap(), "-o", out.to_str().unwrap()];
        args.extend(extra);
        let r = run(&args);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        profile(&out)
    };
    let burst = refit(&["--speed-seconds", "0"], "burst.yaml");
    assert!(burst["provenance"].get("open_loop_speed").is_none());
    let scaled = refit(&[], "scaled.yaml");
    let speed = speed_of(&scaled);
    assert!(
        (speed / own - 1.3).abs() < 0.12,
        "speed {speed} against {own}"
    );
    for k in ["c0_s", "c_pf_s", "c_dec_s", "c_kv_s"] {
        let (b, s) = (burst[k].as_f64().unwrap(), scaled[k].as_f64().unwrap());
        assert!(
            (s / b - speed).abs() < 1e-9,
            "{k}: {s} against {b} × {speed}"
        );
    }
    // the front end and the limits are the burst fit's
    for k in ["front_end_latency_s", "max_num_seqs"] {
        assert_eq!(burst[k], scaled[k], "{k}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_fit_without_probes_or_with_a_folder_for_output_says_what_to_do() {
    let dir = temp_dir("fit-bad");
    let r = run(&["fit", dir.to_str().unwrap(), "-o", "x.yaml"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("server.json"), "{}", r.stderr);
    assert!(r.stderr.contains("hint:"), "{}", r.stderr);
    let r = run(&["fit", dir.to_str().unwrap(), "-o", dir.to_str().unwrap()]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("is a folder"), "{}", r.stderr);
    // nothing answers on this port: a clear error, no probes folder left half-made
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let probes = dir.join("probes");
    let r = run(&[
        "fit",
        "--base-url",
        &format!("http://127.0.0.1:{port}"),
        "--probes-dir",
        probes.to_str().unwrap(),
        "-o",
        dir.join("p.yaml").to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("is the server running"), "{}", r.stderr);
    assert!(!probes.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_shipped_tiny_cpu_profile_loads_with_its_provenance() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/profiles/tiny-llama-cpu.yaml"
    );
    let p = vllm_sim::Profile::resolve(path).unwrap();
    p.validate().unwrap();
    let prov = p
        .provenance
        .clone()
        .expect("a fitted profile says where it came from");
    assert_eq!(prov.server_version.as_deref(), Some("0.32.0"));
    let held = prov.held_out.expect("and its own held-out error");
    assert!(
        held.metrics
            .iter()
            .any(|m| m.metric.starts_with("TTFT p50"))
    );
    // capacity at the validation's lengths near the 11.65 req/s measured (docs/simulator.md)
    let c = p.capacity(256, 128);
    assert!((9.0..16.0).contains(&c), "{c}");
    // and its calibration on a measured run: the same prefill terms, its own c0 and c_dec,
    // no held-out check of the coefficients before (it would be quoted as this one's)
    let cal = vllm_sim::Profile::resolve(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/profiles/tiny-llama-cpu-calibrated.yaml"
    ))
    .unwrap();
    cal.validate().unwrap();
    assert_eq!((cal.c_pf_s, cal.c_kv_s), (p.c_pf_s, p.c_kv_s));
    let prov = cal.provenance.unwrap();
    let open = prov.open_loop.expect("what it was calibrated on");
    assert_eq!((open.before_c0_s, open.before_c_dec_s), (p.c0_s, p.c_dec_s));
    assert_eq!(open.loads.len(), 4);
    assert!(prov.held_out.is_none());
    // and the fit of the settled server: steady while probed, with the server's limit
    let settled = vllm_sim::Profile::resolve(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/profiles/tiny-llama-cpu-settled.yaml"
    ))
    .unwrap();
    settled.validate().unwrap();
    assert_eq!(settled.max_num_seqs, 128);
    let steady = settled.provenance.unwrap().steadiness.unwrap();
    assert!(!steady.unsteady() && steady.shapes >= 8, "{steady:?}");
    // and the fit with the speed load: its costs scaled by the speed it measured, its
    // held-out load predicted with them
    let open = vllm_sim::Profile::resolve(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/profiles/tiny-llama-cpu-open-loop.yaml"
    ))
    .unwrap();
    open.validate().unwrap();
    let prov = open.provenance.unwrap();
    let speed = prov.open_loop_speed.expect("the speed it was scaled by");
    assert!(
        speed.applied && (1.0..1.3).contains(&speed.speed),
        "{speed:?}"
    );
    assert!(prov.held_out.is_some() && prov.open_loop.is_none());
}

/// `fit --profile BASE --calibrate-on CELL…`: a profile whose per-step and per-sequence
/// costs are half the server's, calibrated on two cells measured on that server, predicts
/// both within 5% on TPOT (the burst-like start missed by ~40%); a folder without records,
/// and a predicted cell, are refused with a hint.
#[test]
fn calibrating_on_measured_cells_makes_a_profile_predict_them() {
    let _g = serial();
    let dir = temp_dir("fit-calibrate-on");
    let truth = dir.join("truth.yaml");
    std::fs::write(
        &truth,
        "base: default\nc0_s: 0.02\nc_pf_s: 0.00002\nc_dec_s: 0.0004\nc_kv_s: 0\nfront_end_latency_s: 0.005\n",
    )
    .unwrap();
    let start = dir.join("start.yaml");
    std::fs::write(
        &start,
        "base: default\nc0_s: 0.01\nc_pf_s: 0.00002\nc_dec_s: 0.0002\nc_kv_s: 0\nfront_end_latency_s: 0.005\n",
    )
    .unwrap();
    let (mut sim, url) = spawn_sim(&["--profile", truth.to_str().unwrap()]);
    // a load point of this test's shape (4 s, 128 in / 32 out) against `server`
    let bench = |server: &[&str], rate: &str, out: &Path| {
        let mut args = vec!["bench"];
        args.extend_from_slice(server);
        args.extend([
            "--request-rate",
            rate,
            "--duration",
            "4",
            "--random-input-len",
            "128",
            "--random-output-len",
            "32",
            "--quiet",
            "--output-dir",
            out.to_str().unwrap(),
        ]);
        run(&args)
    };
    let mut cells = Vec::new();
    for rate in ["3", "12"] {
        let out = dir.join(format!("rate{rate}"));
        let r = bench(&["--base-url", &url], rate, &out);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        cells.push(out);
    }
    let _ = sim.kill();
    let _ = sim.wait();
    let out = dir.join("calibrated.yaml");
    let mut args = vec![
        "fit",
        "--profile",
        start.to_str().unwrap(),
        "--calibrate-on",
    ];
    args.extend(cells.iter().map(|c| c.to_str().unwrap()));
    args.extend(["-o", out.to_str().unwrap()]);
    let r = run(&args);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let p = profile(&out);
    for l in p["provenance"]["open_loop"]["loads"].as_sequence().unwrap() {
        let m = l["metrics"].as_sequence().unwrap();
        let e = |name: &str| {
            m.iter()
                .find(|x| x["metric"].as_str() == Some(name))
                .unwrap()["error_pct"]
                .as_f64()
                .unwrap()
                .abs()
        };
        assert!(e("TPOT (ms), calibrated") < 5.0, "{m:?}");
        assert!(e("TPOT (ms), before") > 20.0, "{m:?}");
    }
    // the costs moved toward the server's
    let c0 = p["c0_s"].as_f64().unwrap();
    assert!(c0 > 0.015, "c0 {c0}");
    // a folder without records
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let r = run(&[
        "fit",
        "--profile",
        start.to_str().unwrap(),
        "--calibrate-on",
        empty.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("no request records") && r.stderr.contains("hint:"),
        "{}",
        r.stderr
    );
    // a prediction's cell (virtual time) is no measurement of a server
    let predicted = dir.join("predicted");
    let r = bench(
        &["--sim", start.to_str().unwrap(), "--virtual"],
        "3",
        &predicted,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let r = run(&[
        "fit",
        "--profile",
        start.to_str().unwrap(),
        "--calibrate-on",
        cells[0].to_str().unwrap(),
        predicted.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("is a prediction"), "{}", r.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}
