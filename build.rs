//! Records the git commit the binary was built from, for every result's manifest and for
//! `--version`.
//!
//! Where the commit comes from, first that answers:
//! 1. `VLLM_LOADTEST_GIT_COMMIT` in the build's environment (a packager building from a
//!    tarball who knows the commit);
//! 2. `git rev-parse HEAD` of the checkout this crate is the top of (not of some other
//!    repository the sources were unpacked into);
//! 3. `unknown` (no git, or not a checkout): the build goes on, `--version` says so.
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=VLLM_LOADTEST_GIT_COMMIT");
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let (commit, how) = match std::env::var("VLLM_LOADTEST_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => (c.trim().to_string(), "commit"),
        _ => match git_commit(&dir) {
            Some(c) => (c, "commit"),
            None => (
                "unknown".to_string(),
                "commit unknown: built outside a git checkout;",
            ),
        },
    };
    println!("cargo:rustc-env=VLLM_LOADTEST_GIT_COMMIT={commit}");
    let version = match commit.as_str() {
        "unknown" => format!(
            "{} ({how} set VLLM_LOADTEST_GIT_COMMIT when building to name it)",
            env!("CARGO_PKG_VERSION")
        ),
        c => format!("{} ({how} {c})", env!("CARGO_PKG_VERSION")),
    };
    println!("cargo:rustc-env=VLLM_LOADTEST_VERSION={version}");
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// The short commit of the checkout whose top is `dir`, and the files that change with it
/// watched (in a worktree `.git` is a file: git names the real paths).
fn git_commit(dir: &Path) -> Option<String> {
    let top = PathBuf::from(git(dir, &["rev-parse", "--show-toplevel"])?);
    if top.canonicalize().ok()? != dir.canonicalize().ok()? {
        return None;
    }
    let commit = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    let mut watch = vec![git(dir, &["rev-parse", "--git-path", "HEAD"])?];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watch.push(git(dir, &["rev-parse", "--git-path", &branch])?);
        watch.push(git(dir, &["rev-parse", "--git-path", "packed-refs"])?);
    }
    for w in watch {
        let p = dir.join(w);
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    Some(commit)
}
