//! Searching for the limit on the simulator, where the truth is known: a small profile whose
//! closed-form capacity is 46.3 req/s at 64 in / 16 out, cells of 3 s. `run` with a
//! `search:` section, started 2× over it with a budget of 8 cells, finds that capacity
//! within its tolerance in at most 6 (4 taken), and
//! `--resume` re-runs a probe cut short under its own name; `bench --search slo` finds the
//! highest rate meeting a TTFT SLO, checked against the cells' own attainment.
//!
//! The experiment's search runs in virtual time (under a second, against 20 s served: the
//! search is the same code either way, and the cells' figures are exact there); `bench
//! --search` runs its probes against the simulator over HTTP.

use crate::support::*;
use std::path::{Path, PathBuf};
use vllm_sim::Profile;

/// 1 / (16/16 · 20 ms + 64 · 20 µs + 16 · 20 µs) = 46.3 req/s; a request spends ~0.35 s in
/// the batch, so a 2 s window holds many generations of it.
const PROFILE: &str = "base: default\nc0_s: 0.02\nc_pf_s: 0.00002\nc_dec_s: 0.00002\nc_kv_s: 0\nmax_num_seqs: 16\nfront_end_latency_s: 0.002\n";

/// Short cells: constant arrivals; a whole-second warm-up (the client's backlog is sampled
/// at whole seconds, and one taken at t = 0 reads the first second's fill as growth).
const SHORT: &[&str] = &[
    "--set",
    "workload.input_len=64",
    "--set",
    "workload.output_len=16",
    "--set",
    "workload.num_prompts=200",
    "--set",
    "load.duration_s=3",
    "--set",
    "load.warmup_s=1",
    "--set",
    "load.cooldown_s=0",
    "--set",
    "load.drain_timeout_s=2",
    "--set",
    "monitor.metrics_interval_s=0.5",
    "--quiet",
];

fn results_dir(root: &Path) -> PathBuf {
    let exp = only_entry(root);
    only_entry(exp)
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn cell_ids(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("cells"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_saturation_search_finds_the_closed_form_capacity_within_its_tolerance_in_at_most_6_cells() {
    let _serial = serial();
    let dir = temp_dir("search-sat");
    let profile = dir.join("fast.yaml");
    std::fs::write(&profile, PROFILE).unwrap();
    let closed_form = Profile::from_yaml(PROFILE).unwrap().capacity(64, 16);
    let root = dir.join("r");
    let example = format!("{}/examples/search.yaml", env!("CARGO_MANIFEST_DIR"));
    let set_profile = format!("server.profile={}", profile.display());
    let mut args = vec![
        "run",
        &example,
        "--output",
        root.to_str().unwrap(),
        "--set",
        &set_profile,
        "--set",
        "search.start_rate=100",
        "--set",
        "search.max_cells=8",
        "--set",
        "search.tolerance=0.05",
        "--set",
        "server.clock=virtual",
    ];
    args.extend_from_slice(SHORT);
    let r = run(&args);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let res = results_dir(&root);
    let a = json(&res.join("analysis.json"));
    let answer = &a["searches"][0]["answer"];
    let f = |k: &str| answer[k].as_f64().unwrap();
    let (lo, hi, plateau) = (f("lo"), f("hi"), f("capacity"));
    eprintln!(
        "closed form {closed_form:.2}, plateau {plateau:.2}, bracket [{lo}, {hi}], {} cells",
        answer["cells"]
    );
    assert_eq!(answer["outcome"], "converged", "{answer}");
    // from 2× over: the overloaded cell shows the plateau and the next probes aim around it
    // (plain halving and bisection take 7 or more here: mutation-checked)
    assert!(answer["cells"].as_u64().unwrap() <= 6, "{answer}");
    assert!(hi / lo - 1.0 <= 0.05, "{answer}");
    assert!(
        (plateau / closed_form - 1.0).abs() <= 0.05,
        "plateau {plateau:.2} vs closed form {closed_form:.2}"
    );
    // the bracket is where the shared definition flips: between the measured plateau P
    // (held within 5% of the closed form above) and P / 0.95. (Not against the closed form
    // itself: a 3 s cell's plateau counts the completions in its window, 47.0 vs 46.3 in
    // virtual time and 48.0 served over HTTP, and the flip moves with it.)
    assert!(
        lo >= plateau * 0.95 && hi <= plateau / 0.95 * 1.05,
        "[{lo}, {hi}] vs plateau {plateau:.2} (closed form {closed_form:.2})"
    );
    // every probe is a normal cell: recorded in order, whole, in the tables and the report
    let probes = json(&res.join("search.json"))["probes"].clone();
    let ids = cell_ids(&res);
    assert_eq!(probes.as_array().unwrap().len(), ids.len());
    for (i, p) in probes.as_array().unwrap().iter().enumerate() {
        let id = p["cell"].as_str().unwrap();
        assert_eq!(id, ids[i]);
        assert!(
            id.starts_with(&format!("c{i:03}-search{i:02}-request_rate")),
            "{id}"
        );
        let s = summary(&res.join("cells").join(id));
        assert_eq!(s["vllm_loadtest"]["status"], "complete", "{id}");
        assert_eq!(s["request_rate"].as_f64(), p["rate"].as_f64(), "{id}");
    }
    let md = std::fs::read_to_string(res.join("report.md")).unwrap();
    let said = format!("saturates between {lo:.1} and {hi:.1} req/s offered");
    assert!(
        md.contains(&said) && md.contains("## Search"),
        "{said}\n{md}"
    );
    assert!(r.stdout.contains(&said), "{}", r.stdout);

    // a probe cut short (no status: the run died in it) runs again, under its own name,
    // after the pure step retraces the same probes from the cells on disk
    let last = res.join("cells").join(ids.last().unwrap());
    std::fs::remove_file(last.join("status.json")).unwrap();
    std::fs::write(last.join("marker"), "before").unwrap();
    let again = run(&["run", "--resume", res.to_str().unwrap(), "--quiet"]);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    let after = cell_ids(&res);
    assert_eq!(
        after[..ids.len()],
        ids[..],
        "the same probes, the same names"
    );
    assert!(!last.join("marker").exists(), "the cut probe ran again");
    // a search is not predicted cell for cell: its rates followed from its measurements
    let r = run(&["report", res.to_str().unwrap(), "--profile", "default"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("is a search"), "{}", r.stderr);
    assert_eq!(summary(&last)["vllm_loadtest"]["status"], "complete");
    assert_eq!(
        again.stderr.matches(": predicting in virtual time").count(),
        1 + after.len() - ids.len(),
        "only the cut probe (and any the search then asked for) ran: {}",
        again.stderr
    );
}

#[test]
fn bench_search_slo_finds_the_highest_rate_meeting_a_ttft_slo() {
    let _serial = serial();
    let dir = temp_dir("search-slo");
    let profile = dir.join("fast.yaml");
    std::fs::write(&profile, PROFILE).unwrap();
    let out = dir.join("out");
    let r = run(&[
        "bench",
        "--sim",
        profile.to_str().unwrap(),
        "--random-input-len",
        "64",
        "--random-output-len",
        "16",
        "--num-prompts",
        "200",
        "--arrival",
        "constant",
        "--duration",
        "3",
        "--warmup",
        "1",
        "--drain-timeout",
        "2",
        "--goodput",
        "ttft:60",
        "--search",
        "slo",
        "--search-start",
        "40",
        "--search-max-cells",
        "10",
        "--output-dir",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.contains("meets the SLOs up to"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    // the probes, by rate, with their own cells' attainment
    let mut probes: Vec<(f64, bool, f64)> = r
        .stdout
        .lines()
        .skip(1)
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let s = summary(Path::new(w.last().unwrap()));
            let attained = s["vllm_loadtest"]["summary"]["slo_attainment"]
                .as_f64()
                .unwrap();
            (w[0].parse().unwrap(), w[2] == "met", attained)
        })
        .collect();
    probes.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(probes.len() >= 3 && probes.len() <= 10, "{probes:?}");
    let edge = probes.iter().position(|p| !p.1).expect("a failing rate");
    let (found, next) = (probes[edge - 1], probes[edge]);
    eprintln!("SLO edge between {found:?} and {next:?}");
    // the rate found met the SLO in its own cell, the bracket's next edge did not, and every
    // rate below it met it too
    assert!(found.2 >= 0.9 && next.2 < 0.9, "{probes:?}");
    assert!(probes[..edge].iter().all(|p| p.1 && p.2 >= 0.9));
    assert!(next.0 / found.0 - 1.0 <= 0.05 + 0.002, "{probes:?}");
}
