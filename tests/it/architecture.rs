//! The workspace's shape, checked: the pure stages and the shared base build without an async
//! runtime, and the simulator stands alone (it does not depend on the load tester or the
//! analysis). `cargo tree` reads the committed `Cargo.lock`, offline.

use std::process::Command;

/// The packages `package` depends on for its own build (normal edges, no dev/build ones).
fn normal_dependencies(package: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}", "-p", package])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != package)
        .map(str::to_string)
        .collect()
}

#[test]
fn pure_crates_have_no_async_runtime_and_the_simulator_stands_alone() {
    for pure in ["loadtest-analysis", "loadtest-base"] {
        let deps = normal_dependencies(pure);
        assert!(!deps.is_empty(), "{pure}: cargo tree listed nothing");
        for banned in ["tokio", "vllm-loadtest", "vllm-sim", "mio"] {
            assert!(
                !deps.iter().any(|d| d == banned),
                "{pure} depends on {banned}: {deps:?}"
            );
        }
    }
    assert!(
        !normal_dependencies("loadtest-analysis")
            .iter()
            .any(|d| d == "loadtest-base"),
        "the analysis needs nothing of the base outside its tests"
    );
    let sim = normal_dependencies("vllm-sim");
    assert!(sim.iter().any(|d| d == "tokio"), "{sim:?}");
    for banned in ["vllm-loadtest", "loadtest-analysis"] {
        assert!(
            !sim.iter().any(|d| d == banned),
            "the simulator depends on {banned}"
        );
    }
}

/// Every `.rs` file under `dir`, with its text up to its first `#[cfg(test)]` (tests may
/// spell anything).
fn sources(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            sources(&path, out);
        } else if name.ends_with(".rs") && !matches!(name.as_str(), "tests.rs" | "props.rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
            out.push((path, code));
        }
    }
}

/// One home per thing: a result file's name is spelled only by the run-folder layout, and a
/// cell's parameters are read by name only in `experiment/` (everything else reads the
/// typed plan).
#[test]
fn result_file_names_live_in_the_layout_and_parameters_in_the_plan() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    sources(&root.join("crates"), &mut files);
    assert!(files.len() > 50, "found only {} source files", files.len());
    let names = [
        "requests.jsonl",
        "requests.parquet",
        "events.parquet",
        "summary.json",
        "status.json",
        "server_metrics.parquet",
        "server_metrics.jsonl",
        "gpu.parquet",
        "server.log",
        "manifest.json",
        "experiment.yaml",
        "runs.parquet",
        "timeseries.parquet",
        "analysis.json",
        "report.md",
        "report.html",
        "search.json",
    ];
    let layout = root.join("src/store/layout.rs");
    let experiment = root.join("src/experiment");
    let mut found = Vec::new();
    for (path, code) in &files {
        if *path != layout {
            for n in names {
                if code.contains(&format!("\"{n}\"")) {
                    found.push(format!("{}: \"{n}\"", path.display()));
                }
            }
        }
        if !path.starts_with(&experiment) {
            for pattern in ["ParamsExt", "Params", ".params.get(", "parse::Params"] {
                let hit = code.match_indices(pattern).any(|(i, _)| {
                    // `Params` as a word, not `CellParams`/`ParamsFoo`
                    let before = code[..i].chars().next_back();
                    let after = code[i + pattern.len()..].chars().next();
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                        && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if hit {
                    found.push(format!("{}: {pattern}", path.display()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "outside their home:\n{}",
        found.join("\n")
    );
}

/// The main crate's folders depend on each other one way only (a cycle is two layers that
/// cannot be understood, tested or split apart alone).
#[test]
fn the_main_crates_folders_have_no_cycles() {
    use std::collections::{BTreeMap, BTreeSet};
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, code) in &files {
        let rel = path.strip_prefix(&src).unwrap();
        let folder = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() && name != folder {
                uses.entry(folder.clone()).or_default().insert(name);
            }
        }
    }
    assert!(uses.len() > 5, "read too little: {uses:?}");
    // depth-first search for a way back to where it started
    for start in uses.keys() {
        let mut stack: Vec<Vec<&String>> = vec![vec![start]];
        while let Some(way) = stack.pop() {
            for next in uses.get(*way.last().unwrap()).into_iter().flatten() {
                assert!(next != start, "a cycle: {way:?} → {next}");
                if !way.contains(&next) {
                    let mut longer = way.clone();
                    longer.push(next);
                    stack.push(longer);
                }
            }
        }
    }
}
