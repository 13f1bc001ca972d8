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
