//! The seed's three notebooks (`analysis/*.ipynb`) execute, cell by cell, on the results of
//! a short run (`jupyter nbconvert --execute`), so they cannot rot as the Parquet files
//! change. CI installs pinned Jupyter, pandas and matplotlib (`.ci/run`); elsewhere the test
//! says what it skipped.

use crate::support::*;

#[test]
fn the_three_notebooks_execute_on_a_short_scaling_run() {
    let _serial = serial();
    let have = std::process::Command::new("python3")
        .args([
            "-c",
            "import nbconvert, nbclient, ipykernel, pandas, matplotlib, pyarrow",
        ])
        .output()
        .expect("python3");
    if !have.status.success() {
        assert!(
            std::env::var("CI").is_err(),
            "CI installs jupyter, pandas and matplotlib: {}",
            String::from_utf8_lossy(&have.stderr)
        );
        eprintln!("skipped: jupyter/pandas/matplotlib not installed here (CI installs them)");
        return;
    }
    let root = temp_dir("notebooks");
    let exp = format!("{}/examples/scaling.yaml", env!("CARGO_MANIFEST_DIR"));
    let r = run(&[
        "run",
        &exp,
        "--output",
        root.to_str().unwrap(),
        "--set",
        "load.duration_s=1.5",
        "--set",
        "load.warmup_s=0.2",
        "--set",
        "load.cooldown_s=0.2",
        "--set",
        "load.drain_timeout_s=2",
        "--set",
        "workload.input_len=64",
        "--set",
        "workload.output_len=8",
        "--set",
        "monitor.metrics_interval_s=0.5",
        // predicted: the same layout (the server's metrics included) in a second, not 15
        "--set",
        "server.clock=virtual",
        "--set",
        "matrix.dp=[1,2]",
        "--set",
        "matrix.max_num_seqs=[4,64]",
        "--set",
        "matrix.request_rate=[5,60]",
        "--quiet",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let run_dir = only_entry(root.join("scaling-1v4gpu"));
    let analysis = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("analysis");
    let out_dir = root.join("executed");
    let notebooks = ["1_low_load", "2_saturation", "3_scaling"];
    let mut cmd = std::process::Command::new("python3");
    cmd.args(["-m", "nbconvert", "--to", "notebook", "--execute"])
        .arg("--ExecutePreprocessor.timeout=120")
        .arg("--output-dir")
        .arg(&out_dir)
        .env("RESULTS_DIR", &run_dir);
    for n in notebooks {
        cmd.arg(analysis.join(format!("{n}.ipynb")));
    }
    let out = cmd.output().expect("python3 -m nbconvert");
    assert!(
        out.status.success(),
        "a notebook failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // each executed notebook drew its charts from this run, and said what it found
    for n in notebooks {
        let text = std::fs::read_to_string(out_dir.join(format!("{n}.ipynb"))).unwrap();
        let nb: serde_json::Value = serde_json::from_str(&text).unwrap();
        let outputs: Vec<&serde_json::Value> = nb["cells"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["outputs"].as_array().into_iter().flatten())
            .collect();
        assert!(
            outputs.iter().all(|o| o["output_type"] != "error"),
            "{n}: {outputs:?}"
        );
        let images = outputs
            .iter()
            .filter(|o| o["data"]["image/png"].is_string())
            .count();
        assert!(images >= 1, "{n}: no chart");
        assert!(text.contains(&run_dir.display().to_string()), "{n}");
    }
    let sat = std::fs::read_to_string(out_dir.join("2_saturation.ipynb")).unwrap();
    // dp 1 with max_num_seqs 4 cannot take 60 req/s: the notebook names where it saturates
    assert!(sat.contains("saturates at 60 req/s offered"), "{sat}");
    let scaling = std::fs::read_to_string(out_dir.join("3_scaling.ipynb")).unwrap();
    assert!(scaling.contains("speedup"), "{scaling}");
}
