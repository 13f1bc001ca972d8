//! The engines that run shards from many machines (`deploy/`): the Kubernetes manifests
//! against the API's own schemas and our invariants (and the check made to fail on broken
//! copies), and a real two-node Ray cluster on loopback running a sharded cell end to end.
//! CI installs the pinned Python packages (`.ci/run`); elsewhere a test says what it skipped.

use std::path::Path;
use std::process::Command;

/// Run a deploy script with Python; `None` when its packages are not installed here
/// (exit 77) outside CI, where that is a failure.
fn python(script: &str, args: &[&str]) -> Option<std::process::Output> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(root.join(script))
        .args(args)
        .current_dir(root)
        .output()
        .expect("python3");
    if out.status.code() == Some(77) {
        let why = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            std::env::var("CI").is_err(),
            "CI installs the packages `{script}` needs: {why}"
        );
        eprintln!("skipped: {script} needs packages not installed here (CI installs them): {why}");
        return None;
    }
    Some(out)
}

fn assert_ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_kubernetes_manifests_are_valid_and_their_check_can_fail() {
    let Some(out) = python("deploy/k8s/check.py", &[]) else {
        return;
    };
    assert_ok(&out, "deploy/k8s/check.py");
    // every broken copy (a misspelled field, a wrong type, completions ≠ parallelism, …)
    // must be refused, and the unbroken one accepted
    let out = python("deploy/k8s/check.py", &["--self-test"]).expect("installed a moment ago");
    assert_ok(&out, "deploy/k8s/check.py --self-test");
}

#[test]
fn a_sharded_cell_runs_on_a_two_node_ray_cluster_and_leaves_nothing_running() {
    // a head and a worker raylet on 127.0.0.1, the simulator, the driver: split, shipped
    // binary, spread, refusals, SIGINT/SIGTERM/SIGKILL of the driver, nothing left behind
    // (its own checks, listed in deploy/ray/README.md)
    let Some(out) = python(
        "deploy/ray/test_two_nodes.py",
        &["--binary", super::support::bin()],
    ) else {
        return;
    };
    assert_ok(&out, "deploy/ray/test_two_nodes.py");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains(" 0 failed"), "{text}");
}
