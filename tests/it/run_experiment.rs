//! `run EXPERIMENT.yaml` end to end: the shipped examples (shortened) on the simulator, the
//! command and compose launchers with stand-ins, monitors, Ctrl-C and `--resume`.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn examples(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The single results folder a run created under `root`.
fn results_dir(root: &Path) -> PathBuf {
    let mut found = Vec::new();
    for exp in std::fs::read_dir(root).unwrap() {
        for run in std::fs::read_dir(exp.unwrap().path()).unwrap() {
            found.push(run.unwrap().path());
        }
    }
    assert_eq!(found.len(), 1, "{found:?}");
    found.pop().unwrap()
}

fn cells(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("cells"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn status(cell: &Path) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cell.join("status.json")).unwrap()).unwrap();
    v["status"].as_str().unwrap().to_string()
}

const SHORT: &[&str] = &[
    "--set",
    "load.duration_s=2",
    "--set",
    "load.warmup_s=0.5",
    "--set",
    "load.cooldown_s=0.5",
    "--set",
    "load.drain_timeout_s=3",
    "--set",
    "workload.output_len=8",
    "--set",
    "workload.input_len=64",
    "--set",
    "workload.num_prompts=50",
    "--set",
    "monitor.metrics_interval_s=0.5",
    "--quiet",
];

#[test]
fn shipped_saturation_example_runs_shortened_and_leaves_the_full_layout() {
    let _serial = serial();
    let root = temp_dir("run-sat");
    let mut args = vec![
        "run",
        &*Box::leak(examples("saturation.yaml").into_boxed_str()),
        "--output",
        root.to_str().unwrap(),
    ];
    args.extend_from_slice(SHORT);
    args.extend_from_slice(&["--set", "matrix.request_rate=[5,20,40]"]);
    let r = run(&args);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let dir = results_dir(&root);
    for f in ["experiment.yaml", "manifest.json"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["status"], "complete");
    assert_eq!(m["cells_complete"], 3);
    assert!(m["server_versions"][0][1].as_str().unwrap().contains("sim"));
    assert_eq!(cells(&dir).len(), 3);
    for c in cells(&dir) {
        let cd = dir.join("cells").join(&c);
        assert!(!cd.join("requests.jsonl").exists(), "{c}: journal retired");
        for f in [
            "requests.parquet",
            "events.parquet",
            "server_metrics.parquet",
            "summary.json",
            "status.json",
        ] {
            assert!(cd.join(f).is_file(), "{c}/{f}");
        }
        assert_eq!(status(&cd), "complete");
        let s = summary(&cd);
        let mon = &s["vllm_loadtest"]["monitors"];
        assert!(mon["metric_rows"].as_u64().unwrap() > 0, "{mon}");
        assert_eq!(mon["metric_failures"], 0);
        let sm = &s["vllm_loadtest"]["summary"];
        assert_eq!(
            sm["sent"].as_u64(),
            Some(
                sm["ok"].as_u64().unwrap()
                    + sm["failed"].as_u64().unwrap()
                    + sm["cancelled"].as_u64().unwrap()
            )
        );
    }
    // the resolved experiment is itself a valid experiment
    let check = run(&[
        "run",
        dir.join("experiment.yaml").to_str().unwrap(),
        "--dry-run",
    ]);
    assert_eq!(check.code, Some(0), "{}", check.stderr);
    assert!(check.stdout.contains("3 cell(s)"));
    // a table of all cells on stdout
    assert!(r.stdout.contains("c002-request_rate40"), "{}", r.stdout);
    same_accounting_everywhere(&dir, &r);
}

/// One accounting, `sent = ok + failed + cancelled`, with the same numbers in the terminal,
/// each `summary.json`, the report's "All cells" table and `runs.parquet`; and matrix values
/// typed there (numbers sort as numbers).
fn same_accounting_everywhere(dir: &Path, r: &Run) {
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let parquet = crate::parquet_readers::python_json(
        "import sys, json, pyarrow.parquet as pq\n\
         t = pq.read_table(sys.argv[1] + '/runs.parquet')\n\
         print(json.dumps({'types': {c: str(t.schema.field(c).type) for c in ['request_rate', 'sent']},\n\
                           'rows': t.select(['cell', 'sent', 'ok', 'failed', 'cancelled']).to_pylist()}))",
        dir,
    );
    for c in cells(dir) {
        // what the aggregate stage reads back of the run: typed, or its client figures and
        // unsent count would silently go missing
        let stored = vllm_loadtest::store::layout::CellDir::new(dir.join("cells").join(&c))
            .read_report()
            .unwrap_or_else(|| panic!("{c}: summary.json does not read back typed"));
        assert!(
            stored.client.threads >= 1 && stored.client.wall_s > 0.0,
            "{c}"
        );
        let s = &summary(&dir.join("cells").join(&c))["vllm_loadtest"]["summary"];
        assert_eq!(
            stored.summary.not_sent,
            s["not_sent"].as_u64().unwrap(),
            "{c}"
        );
        assert_eq!(stored.status, status(&dir.join("cells").join(&c)), "{c}");
        let n = |k: &str| s[k].as_u64().unwrap();
        let (sent, ok, failed, cancelled) = (n("sent"), n("ok"), n("failed"), n("cancelled"));
        assert_eq!(sent, ok + failed + cancelled, "{c}: {s}");
        let reasons: u64 = s["cancelled_by_reason"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(reasons, cancelled, "{c}: cancellations by reason add up");
        let line = format!("sent {sent} = ok {ok} + failed {failed} + cancelled {cancelled}");
        assert!(r.stderr.contains(&line), "{c}: terminal lacks `{line}`");
        let row = format!("| {sent} | {ok} | {failed} | {cancelled} |");
        assert!(
            md.lines()
                .any(|l| l.starts_with(&format!("| {c} |")) && l.ends_with(&row)),
            "{c}: report.md lacks `{row}`"
        );
        assert!(
            r.stdout.lines().any(|l| l.starts_with(&c)
                && l.split_whitespace()
                    .collect::<Vec<_>>()
                    .windows(4)
                    .any(|w| w == [sent, ok, failed, cancelled].map(|x| x.to_string()))),
            "{c}: the terminal table lacks {sent} {ok} {failed} {cancelled}"
        );
        if let Some(p) = &parquet {
            let row = p["rows"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["cell"] == c.as_str())
                .unwrap();
            assert_eq!(
                [&row["sent"], &row["ok"], &row["failed"], &row["cancelled"]].map(|v| v.as_u64()),
                [sent, ok, failed, cancelled].map(Some),
                "{c}: runs.parquet"
            );
        }
    }
    if let Some(p) = parquet {
        assert_eq!(p["types"]["request_rate"], "double", "{p}");
        assert_eq!(p["types"]["sent"], "int64", "{p}");
    }
}

/// A cell in which nothing can finish (2,000-token outputs, 3 s of sending, a 1 s drain)
/// says so: status `no_completions`, why, and no 0.0 figure anywhere.
#[test]
fn a_cell_with_no_completion_prints_no_figure_and_says_why() {
    let _serial = serial();
    let root = temp_dir("run-none");
    let r = run(&[
        "run",
        &examples("quickstart.yaml"),
        "--output",
        root.to_str().unwrap(),
        "--quiet",
        "--set",
        "workload.output_len=2000",
        "--set",
        "load.duration_s=3",
        "--set",
        "load.warmup_s=0",
        "--set",
        "load.cooldown_s=0",
        "--set",
        "load.drain_timeout_s=1",
        "--set",
        "matrix.request_rate=[5]",
    ]);
    // ran, but measured nothing: exit code 3, naming the cell and how to run it again
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(
        r.stderr.contains("measured nothing") && r.stderr.contains("--resume"),
        "{}",
        r.stderr
    );
    let dir = results_dir(&root);
    let cd = dir.join("cells").join(&cells(&dir)[0]);
    assert_eq!(status(&cd), "no_completions");
    let s = summary(&cd);
    assert!(
        s["median_ttft_ms"].is_null() && s["p99_tpot_ms"].is_null(),
        "{s}"
    );
    let why = s["vllm_loadtest"]["no_completions_reason"]
        .as_str()
        .unwrap();
    assert!(
        why.contains("still streaming") && why.contains("drain"),
        "{why}"
    );
    assert!(
        r.stderr.contains(why),
        "the cell line says why: {}",
        r.stderr
    );
    for out in [
        &r.stdout,
        &std::fs::read_to_string(dir.join("report.md")).unwrap(),
    ] {
        assert!(
            !out.contains(" 0.0 ms") && !out.contains("0.00 req/s"),
            "{out}"
        );
        assert!(
            !out.contains("plateau") || out.contains("no plateau"),
            "{out}"
        );
    }
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.contains("measured nothing usable") && md.contains("not zero"),
        "{md}"
    );
}

#[test]
fn scaling_example_with_dp_1_and_2_starts_each_server_once() {
    let _serial = serial();
    let root = temp_dir("run-scale");
    let mut args = vec![
        "run",
        &*Box::leak(examples("scaling.yaml").into_boxed_str()),
        "--output",
        root.to_str().unwrap(),
    ];
    args.extend_from_slice(SHORT);
    args.extend_from_slice(&[
        "--set",
        "matrix.dp=[1,2]",
        "--set",
        "matrix.max_num_seqs=[64]",
        "--set",
        "matrix.request_rate=[10,30]",
        "--set",
        "workload.continuous_usage_stats=true",
    ]);
    let r = run(&args);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let dir = results_dir(&root);
    assert_eq!(cells(&dir).len(), 4);
    // running usage asked for in every cell: one token per event from the simulator
    let py = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sys,pyarrow.parquet as pq; t=pq.read_table(sys.argv[1]); print(t.column('tokens_per_event_mean').to_pylist(), t.column('multi_token_event_share').to_pylist())")
        .arg(dir.join("runs.parquet"))
        .output()
        .unwrap();
    if py.status.success() {
        assert_eq!(
            String::from_utf8_lossy(&py.stdout).trim(),
            "[1.0, 1.0, 1.0, 1.0] [0.0, 0.0, 0.0, 0.0]"
        );
    } else {
        assert!(
            std::env::var("CI").is_err(),
            "{}",
            String::from_utf8_lossy(&py.stderr)
        );
    }
    assert_eq!(
        r.stderr.matches(": starting (sim)").count(),
        2,
        "{}",
        r.stderr
    );
    // dp 2 has two engines in its scraped metrics
    let c = dir
        .join("cells")
        .join("c003-dp2-max_num_seqs64-request_rate30");
    let py = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sys,pyarrow.parquet as pq; t=pq.read_table(sys.argv[1]).to_pylist(); print(sorted({r['engine'] for r in t if r['metric']=='vllm:num_requests_running'}))")
        .arg(c.join("server_metrics.parquet"))
        .output();
    if let Ok(o) = py
        && o.status.success()
    {
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "['0', '1']");
    }
}

fn write_script(dir: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn experiment_file(dir: &Path, server: &str) -> PathBuf {
    let p = dir.join("exp.yaml");
    std::fs::write(
        &p,
        format!(
            "name: launch\nserver:\n{server}\nworkload:\n  input_len: 32\n  output_len: 8\n  num_prompts: 20\nload:\n  duration_s: 1.5\n  drain_timeout_s: 2\nmonitor:\n  metrics_interval_s: 0.5\nmatrix:\n  max_num_seqs: [8, 16]\n  request_rate: [5, 10]\n"
        ),
    )
    .unwrap();
    p
}

fn pids_matching(pattern: &str) -> Vec<String> {
    let out = std::process::Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn command_launcher_substitutes_parameters_and_leaves_no_process() {
    let _serial = serial();
    let dir = temp_dir("cmd");
    let marker = format!("vlt-cmd-marker-{}", std::process::id());
    let exp = experiment_file(
        &dir,
        &format!(
            "  launcher: command\n  command: exec {} sim --port {{port}} --max-num-seqs {{max_num_seqs}} --profile zero --served-model-name {marker}\n  start_timeout_s: 30",
            bin()
        ),
    );
    let root = dir.join("results");
    let r = run(&[
        "run",
        exp.to_str().unwrap(),
        "--output",
        root.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let res = results_dir(&root);
    assert_eq!(cells(&res).len(), 4);
    for g in ["max_num_seqs8", "max_num_seqs16"] {
        let log = std::fs::read_to_string(res.join("servers").join(g).join("server.log")).unwrap();
        assert!(log.contains("listening on http://127.0.0.1:"), "{log}");
    }
    let c = res.join("cells").join("c000-max_num_seqs8-request_rate5");
    assert!(summary(&c)["model_id"].as_str().unwrap().contains(&marker));
    assert!(
        pids_matching(&marker).is_empty(),
        "a server outlived the run"
    );
}

#[test]
fn command_that_dies_or_never_gets_healthy_fails_with_its_log_tail() {
    let _serial = serial();
    let dir = temp_dir("cmd-bad");
    let exp = experiment_file(
        &dir,
        "  launcher: command\n  command: echo starting {max_num_seqs}; echo fatal error here >&2; exit 3\n  start_timeout_s: 10",
    );
    let r = run(&[
        "run",
        exp.to_str().unwrap(),
        "--output",
        dir.join("r").to_str().unwrap(),
        "--quiet",
    ]);
    assert_ne!(r.code, Some(0));
    assert!(
        r.stderr.contains("exited")
            && r.stderr.contains("fatal error here")
            && r.stderr.contains("starting 8"),
        "{}",
        r.stderr
    );
    let exp = experiment_file(
        &dir,
        "  launcher: command\n  command: sleep 600 # {port}\n  start_timeout_s: 1",
    );
    let t = std::time::Instant::now();
    let r = run(&[
        "run",
        exp.to_str().unwrap(),
        "--output",
        dir.join("r2").to_str().unwrap(),
        "--quiet",
    ]);
    assert_ne!(r.code, Some(0));
    assert!(r.stderr.contains("not healthy within 1 s"), "{}", r.stderr);
    assert!(t.elapsed() < Duration::from_secs(40));
    assert!(
        pids_matching("sleep 600 # ").is_empty(),
        "the never-healthy server was left running"
    );
}

/// Start `run` on a two-server experiment whose server command is `command` (with
/// `{marker}` in it), wait until its first cell is done, and send `sig` during the next.
fn signal_mid_run(name: &str, command: &str, sig: i32) -> (PathBuf, std::process::Child) {
    let dir = temp_dir(name);
    let exp = experiment_file(
        &dir,
        &format!("  launcher: command\n  command: {command}\n  start_timeout_s: 30"),
    );
    let root = dir.join("results");
    let child = std::process::Command::new(bin())
        .args([
            "run",
            exp.to_str().unwrap(),
            "--output",
            root.to_str().unwrap(),
            "--quiet",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // wait for the first cell to finish, then interrupt during the next one
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "first cell never finished"
        );
        if let Ok(exps) = std::fs::read_dir(&root)
            && let Some(run_dir) = exps
                .flatten()
                .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten().flatten())
                .next()
            && run_dir
                .path()
                .join("cells/c000-max_num_seqs8-request_rate5/status.json")
                .exists()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: plain kill(2) on the child we started.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
    (root, child)
}

fn sim_command(marker: &str) -> String {
    format!(
        "exec {} sim --port {{port}} --profile zero --served-model-name {marker}",
        bin()
    )
}

/// SIGTERM (a scheduler, `timeout`, systemd) is Ctrl-C: partial results, the server torn
/// down, the manifest `interrupted` (it was left `running` with the server orphaned).
#[test]
fn sigterm_mid_run_is_ctrl_c() {
    let _serial = serial();
    let marker = format!("vlt-term-marker-{}", std::process::id());
    let (root, mut child) = signal_mid_run("term", &sim_command(&marker), libc::SIGTERM);
    let exit = child.wait().unwrap();
    assert!(!exit.success());
    assert!(
        pids_matching(&marker).is_empty(),
        "the server outlived SIGTERM"
    );
    let res = results_dir(&root);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(res.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["status"], "interrupted");
}

/// A server that ignores SIGTERM holds the teardown for its grace period (30 s); a second
/// signal aborts at once, and kills the server's group on the way out.
#[test]
fn a_second_signal_aborts_at_once_and_kills_the_server() {
    let _serial = serial();
    let marker = format!("vlt-stubborn-marker-{}", std::process::id());
    let command = format!("trap '' TERM; {}", sim_command(&marker));
    let (_, mut child) = signal_mid_run("stubborn", &command, libc::SIGINT);
    // the first signal reached the run: it is now waiting out the server's grace period
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the teardown should still be waiting"
    );
    let t = std::time::Instant::now();
    // SAFETY: plain kill(2) on the child we started.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let exit = child.wait().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "abort took {:?}",
        t.elapsed()
    );
    assert_eq!(exit.code(), Some(130));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        pids_matching(&marker).is_empty(),
        "the server outlived the abort"
    );
}

#[test]
fn sigint_mid_run_tears_the_server_down_and_resume_completes_the_same_cells() {
    let _serial = serial();
    let marker = format!("vlt-resume-marker-{}", std::process::id());
    let (root, mut child) = signal_mid_run("resume", &sim_command(&marker), libc::SIGINT);
    let exit = child.wait().unwrap();
    assert!(!exit.success());
    assert!(
        pids_matching(&marker).is_empty(),
        "the server outlived Ctrl-C"
    );
    let res = results_dir(&root);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(res.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["status"], "interrupted");
    // the interrupted cell's partial rate is not a load point: left out of the analysis
    let a: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(res.join("analysis.json")).unwrap()).unwrap();
    let out = a["without_completions"].to_string();
    assert!(
        out.contains("c001-max_num_seqs8-request_rate10") && out.contains("interrupted"),
        "{out}"
    );
    let r = run(&["run", "--resume", res.to_str().unwrap(), "--quiet"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let cs = cells(&res);
    assert_eq!(
        cs,
        vec![
            "c000-max_num_seqs8-request_rate5",
            "c001-max_num_seqs8-request_rate10",
            "c002-max_num_seqs16-request_rate5",
            "c003-max_num_seqs16-request_rate10"
        ]
    );
    for c in &cs {
        let cd = res.join("cells").join(c);
        assert_eq!(status(&cd), "complete", "{c}");
        let s = summary(&cd);
        let sent = s["vllm_loadtest"]["summary"]["sent"].as_u64().unwrap();
        assert_eq!(
            records(&cd).len() as u64,
            sent,
            "{c}: one record per request, no duplicates"
        );
    }
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(res.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["status"], "complete");
    assert_eq!(m["cells_complete"], 4);
    assert!(pids_matching(&marker).is_empty());
}

#[test]
fn compose_launcher_calls_up_and_down_with_matrix_values_in_the_environment() {
    let _serial = serial();
    let dir = temp_dir("compose");
    let bindir = dir.join("bin");
    std::fs::create_dir_all(&bindir).unwrap();
    let calls = dir.join("calls.log");
    // A stand-in `docker`: records its calls, and runs the simulator for `up`.
    write_script(
        &bindir,
        "docker",
        &format!(
            "#!/bin/sh\necho \"$* DP=$DP MAX_NUM_SEQS=$MAX_NUM_SEQS PORT=$PORT\" >> {calls}\ncase \"$*\" in\n  *' up -d') {bin} sim --port $PORT --profile zero > {dir}/sim-$PORT.log 2>&1 & echo $! > {dir}/sim.pid ;;\n  *' down') kill $(cat {dir}/sim.pid) ;;\nesac\n",
            calls = calls.display(),
            bin = bin(),
            dir = dir.display()
        ),
    );
    std::fs::write(dir.join("compose.yml"), "services: {}\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let exp = experiment_file(
        &dir,
        &format!(
            "  launcher: compose\n  compose_file: compose.yml\n  port: {port}\n  start_timeout_s: 30"
        ),
    );
    let path = format!("{}:{}", bindir.display(), std::env::var("PATH").unwrap());
    let out = std::process::Command::new(bin())
        .args([
            "run",
            exp.to_str().unwrap(),
            "--output",
            dir.join("r").to_str().unwrap(),
            "--quiet",
        ])
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::read_to_string(&calls).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    let compose = dir.join("compose.yml");
    assert_eq!(
        lines,
        vec![
            format!(
                "compose -f {} up -d DP=1 MAX_NUM_SEQS=8 PORT={port}",
                compose.display()
            ),
            format!(
                "compose -f {} down DP=1 MAX_NUM_SEQS=8 PORT={port}",
                compose.display()
            ),
            format!(
                "compose -f {} up -d DP=1 MAX_NUM_SEQS=16 PORT={port}",
                compose.display()
            ),
            format!(
                "compose -f {} down DP=1 MAX_NUM_SEQS=16 PORT={port}",
                compose.display()
            ),
        ]
    );
}

/// A second Ctrl-C aborts at once; containers a `compose` launcher brought up are taken
/// down too (`down -t 0`), not left running (issue 13: only process groups were killed),
/// even while the graceful `down` of the first Ctrl-C hangs.
#[test]
fn an_abort_takes_compose_projects_down() {
    let _serial = serial();
    let dir = temp_dir("compose-abort");
    let bindir = dir.join("bin");
    std::fs::create_dir_all(&bindir).unwrap();
    let calls = dir.join("calls.log");
    let marker = format!("vlt-compose-abort-{}", std::process::id());
    write_script(
        &bindir,
        "docker",
        &format!(
            "#!/bin/sh\necho \"$*\" >> {calls}\ncase \"$*\" in\n  *' up -d') {bin} sim --port $PORT --profile zero --served-model-name {marker} > /dev/null 2>&1 & echo $! > {dir}/sim.pid ;;\n  *' down') sleep 20 ;;\n  *' down -t 0') kill $(cat {dir}/sim.pid) ;;\nesac\n",
            calls = calls.display(),
            bin = bin(),
            dir = dir.display()
        ),
    );
    std::fs::write(dir.join("compose.yml"), "services: {}\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let exp = dir.join("exp.yaml");
    std::fs::write(
        &exp,
        format!("name: abort\nserver:\n  launcher: compose\n  compose_file: compose.yml\n  port: {port}\n  start_timeout_s: 30\nworkload:\n  input_len: 32\n  output_len: 8\nload:\n  request_rate: 5\n  duration_s: 30\n"),
    )
    .unwrap();
    let path = format!("{}:{}", bindir.display(), std::env::var("PATH").unwrap());
    let child = std::process::Command::new(bin())
        .args([
            "run",
            exp.to_str().unwrap(),
            "--output",
            dir.join("r").to_str().unwrap(),
            "--quiet",
        ])
        .env("PATH", path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while pids_matching(&marker).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never came up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let interrupt = || {
        // SAFETY: plain kill(2) on the child we started.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
    };
    interrupt();
    // the graceful `down` starts, and hangs (the stand-in sleeps)
    let read_log = || std::fs::read_to_string(&calls).unwrap_or_default();
    while !read_log().lines().any(|l| l.ends_with(" down")) {
        assert!(
            std::time::Instant::now() < deadline,
            "no graceful down: {}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    interrupt();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let log = read_log();
    assert!(log.lines().any(|l| l.ends_with(" down -t 0")), "{log}");
    let gone = std::time::Instant::now() + Duration::from_secs(5);
    while !pids_matching(&marker).is_empty() {
        assert!(
            std::time::Instant::now() < gone,
            "the compose server outlived the abort: {log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn gpu_monitor_uses_nvidia_smi_when_present_and_records_absence_otherwise() {
    let _serial = serial();
    let dir = temp_dir("gpu");
    let bindir = dir.join("bin");
    std::fs::create_dir_all(&bindir).unwrap();
    write_script(
        &bindir,
        "nvidia-smi",
        "#!/bin/sh\nwhile true; do echo '0, 87, 40000, 81920, 300.5'; echo '1, 85, 39000, 81920, [N/A]'; sleep 0.2; done\n",
    );
    let exp = experiment_file(&dir, "  launcher: sim");
    let path = format!("{}:{}", bindir.display(), std::env::var("PATH").unwrap());
    let out = std::process::Command::new(bin())
        .args([
            "run",
            exp.to_str().unwrap(),
            "--output",
            dir.join("with").to_str().unwrap(),
            "--quiet",
            "--set",
            "matrix.max_num_seqs=[8]",
            "--set",
            "matrix.request_rate=[5]",
        ])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res = results_dir(&dir.join("with"));
    let cell = res.join("cells").join(&cells(&res)[0]);
    assert!(cell.join("gpu.parquet").is_file());
    assert!(
        summary(&cell)["vllm_loadtest"]["monitors"]["gpu"]
            .as_str()
            .unwrap()
            .ends_with("samples")
    );
    // without it: no file, recorded as absent, not an error
    let r = run(&[
        "run",
        exp.to_str().unwrap(),
        "--output",
        dir.join("without").to_str().unwrap(),
        "--quiet",
        "--set",
        "matrix.max_num_seqs=[8]",
        "--set",
        "matrix.request_rate=[5]",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let res = results_dir(&dir.join("without"));
    let cell = res.join("cells").join(&cells(&res)[0]);
    assert!(!cell.join("gpu.parquet").exists());
    assert_eq!(summary(&cell)["vllm_loadtest"]["monitors"]["gpu"], "absent");
}

#[test]
fn bad_experiment_file_fails_with_every_error() {
    let _serial = serial();
    let dir = temp_dir("badexp");
    let p = dir.join("bad.yaml");
    std::fs::write(
        &p,
        "name: x\nload:\n  request-rate: 5\n  duration_s: -1\nmatrix:\n  dpp: [1, 2]\n",
    )
    .unwrap();
    let r = run(&["run", p.to_str().unwrap()]);
    assert_ne!(r.code, Some(0));
    for want in [
        "line 3, column 3",
        "did you mean `request_rate`?",
        "line 4, column 3",
        "line 6, column 3",
        "did you mean `dp`?",
        "errors in experiment",
    ] {
        assert!(
            r.stderr.contains(want),
            "missing `{want}` in:\n{}",
            r.stderr
        );
    }
    let r = run(&["run", "/no/such/experiment.yaml"]);
    assert!(
        r.stderr
            .contains("cannot read experiment `/no/such/experiment.yaml`")
            && r.stderr.contains("hint:"),
        "{}",
        r.stderr
    );
}

/// A launched server killed mid-run (issue 13, case 1): the cell it died in is `failed` with
/// the reason, the run stops there with exit code 3 and the manifest says so, nothing is
/// left running, and `--resume` brings a new server up and runs the rest.
#[test]
fn a_server_that_dies_mid_run_fails_its_cell_and_resume_runs_the_rest() {
    let _serial = serial();
    let dir = temp_dir("dies");
    let marker = format!("vlt-dies-marker-{}", std::process::id());
    let exp = experiment_file(
        &dir,
        &format!(
            "  launcher: command\n  command: {}\n  start_timeout_s: 30",
            sim_command(&marker)
        ),
    );
    let root = dir.join("results");
    let child = std::process::Command::new(bin())
        .args([
            "run",
            exp.to_str().unwrap(),
            "--output",
            root.to_str().unwrap(),
            "--quiet",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // kill -9 the server once the first cell is under way
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let server = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never came up"
        );
        if let Some(p) = pids_matching(&marker).first() {
            break p.clone();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(1200));
    std::process::Command::new("kill")
        .args(["-9", &server])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("the server was lost"), "{stderr}");
    assert!(pids_matching(&marker).is_empty());
    let res = results_dir(&root);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(res.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["status"], "server_failed", "{m}");
    let first = res.join("cells").join("c000-max_num_seqs8-request_rate5");
    assert_eq!(status(&first), "failed");
    assert!(
        summary(&first)["vllm_loadtest"]["failure_reason"]
            .as_str()
            .unwrap()
            .contains("exited"),
    );
    assert_eq!(
        cells(&res).len(),
        1,
        "the run stopped after the cell the server died in"
    );
    let r = run(&["run", "--resume", res.to_str().unwrap(), "--quiet"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for c in cells(&res) {
        assert_eq!(status(&res.join("cells").join(&c)), "complete", "{c}");
    }
    assert_eq!(cells(&res).len(), 4);
    assert!(pids_matching(&marker).is_empty());
}

/// A server that hangs (`kill -STOP`: connections still accepted, nothing answered) is
/// found by the health probes, not left to time out request by request: its cell fails
/// with the reason well before the cell's 20 s, the run stops with exit code 3, and the
/// stopped server is still torn down (continued, then terminated).
#[test]
fn a_hung_server_is_found_by_its_health_probes_and_its_cell_fails() {
    let _serial = serial();
    let dir = temp_dir("hung");
    let marker = format!("vlt-hung-marker-{}", std::process::id());
    let exp = dir.join("exp.yaml");
    std::fs::write(
        &exp,
        format!(
            "name: hung\nserver:\n  launcher: command\n  command: {}\n  start_timeout_s: 30\n  health_probe_s: 0.5\nworkload:\n  input_len: 32\n  output_len: 8\n  num_prompts: 20\nload:\n  duration_s: 20\n  drain_timeout_s: 30\n  request_timeout_s: 60\nmatrix:\n  request_rate: [5, 10]\n",
            sim_command(&marker)
        ),
    )
    .unwrap();
    let root = dir.join("results");
    let started = std::time::Instant::now();
    let child = std::process::Command::new(bin())
        .args([
            "run",
            exp.to_str().unwrap(),
            "--output",
            root.to_str().unwrap(),
            "--quiet",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let server = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never came up"
        );
        if let Some(p) = pids_matching(&marker).first() {
            break p.clone();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(2000));
    std::process::Command::new("kill")
        .args(["-STOP", &server])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    // the verdict's own time below, not the wall clock: a loaded machine takes seconds more
    // to start the server and to write the report
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert!(
        pids_matching(&marker).is_empty(),
        "the stopped server was left behind"
    );
    let res = results_dir(&root);
    assert_eq!(cells(&res).len(), 1, "the run stopped after the hung cell");
    let first = res.join("cells").join(&cells(&res)[0]);
    assert_eq!(status(&first), "failed");
    let why = summary(&first)["vllm_loadtest"]["failure_reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        why.contains("stopped answering") && why.contains("health probes"),
        "{why}"
    );
    let at = lost_at_s(&why);
    assert!(
        at < 12.0,
        "found at {at} s of a 20 s cell: not by the probes"
    );
    // what was in flight is cancelled with the reason, and every request is accounted for
    let sm = &summary(&first)["vllm_loadtest"]["summary"];
    let g = |k: &str| sm[k].as_u64().unwrap();
    assert_eq!(g("sent"), g("ok") + g("failed") + g("cancelled"));
    assert!(
        records(&first)
            .iter()
            .any(|r| r["error"]["cancel_reason"] == "server_lost")
    );
}

/// Two runs of one folder at once would run the same cells into the same files (issue 13,
/// case 6): the second is refused, naming the first.
#[test]
fn a_results_folder_is_run_by_one_process_at_a_time() {
    let _serial = serial();
    let dir = temp_dir("lock");
    let exp = experiment_file(&dir, "  launcher: sim\n  profile: zero");
    let root = dir.join("results");
    let mut first = std::process::Command::new(bin())
        .args([
            "run",
            exp.to_str().unwrap(),
            "--output",
            root.to_str().unwrap(),
            "--quiet",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let res = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never started"
        );
        if let Ok(mut exps) = std::fs::read_dir(root.join("launch"))
            && let Some(Ok(e)) = exps.next()
            && e.path().join(".lock").exists()
        {
            break e.path();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let second = run(&["run", "--resume", res.to_str().unwrap(), "--quiet"]);
    assert!(first.wait().unwrap().success());
    assert_eq!(second.code, Some(1), "{}", second.stderr);
    assert!(
        second.stderr.contains("in use by another run")
            && second.stderr.contains(&format!("pid {}", first.id())),
        "{}",
        second.stderr
    );
    // once the first is done, the folder is free again
    let again = run(&["run", "--resume", res.to_str().unwrap(), "--quiet"]);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
}

/// `server.env` values (API keys, tokens) reach the server and no file of the run, no line
/// of its output (issue 13, case 9); resuming asks for them from the environment.
#[test]
fn secrets_in_server_env_reach_no_file_of_the_run() {
    let _serial = serial();
    let dir = temp_dir("secret");
    let secret = "hf-s3cr3t-value-42";
    let exp = experiment_file(
        &dir,
        &format!(
            "  launcher: command\n  command: exec {} sim --port {{port}} --profile zero\n  start_timeout_s: 30\n  env:\n    HF_TOKEN_FOR_TEST: {secret}",
            bin()
        ),
    );
    let root = dir.join("results");
    let r = run(&[
        "run",
        exp.to_str().unwrap(),
        "--output",
        root.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(!r.stdout.contains(secret) && !r.stderr.contains(secret));
    let mut files = vec![root.clone()];
    let mut checked = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            let bytes = scannable_bytes(&p);
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds the secret",
                p.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "{checked} files");
    let res = results_dir(&root);
    let saved = std::fs::read_to_string(res.join("experiment.yaml")).unwrap();
    assert!(saved.contains("HF_TOKEN_FOR_TEST: <redacted>"), "{saved}");
    // resuming needs the value back from the environment, and says so
    std::fs::remove_file(res.join("cells/c003-max_num_seqs16-request_rate10/status.json")).unwrap();
    let again = run(&["run", "--resume", res.to_str().unwrap(), "--quiet"]);
    assert_ne!(again.code, Some(0));
    assert!(
        again.stderr.contains("export HF_TOKEN_FOR_TEST"),
        "{}",
        again.stderr
    );
}
