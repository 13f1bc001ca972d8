//! The `compose` launcher: `docker compose -f FILE up -d` with the matrix values as
//! environment variables, and `down` when done; on an abort (a second Ctrl-C), `down -t 0`
//! for every project still up, so no container outlives the run.

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// A project: its compose file and the environment it was brought up with.
type Project = (PathBuf, Vec<(String, String)>);

/// Every project brought up and not yet taken down.
static LIVE: Mutex<Vec<Project>> = Mutex::new(Vec::new());

/// `docker compose down -t 0` (containers killed, not waited for) for every project still
/// up; how many there were. For an abort, when there is no time for a graceful stop.
pub fn down_all() -> usize {
    let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
    for (file, env) in &live {
        let _ = Command::new("docker")
            .args(["compose", "-f"])
            .arg(file)
            .args(["down", "-t", "0"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
    live.len()
}

pub struct Compose {
    file: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    up: bool,
}

impl Compose {
    pub fn up(file: &Path, env: Vec<(String, String)>, log: &Path) -> Result<Self> {
        let mut c = Self {
            file: file.to_path_buf(),
            env,
            log: log.to_path_buf(),
            up: false,
        };
        // even a failed `up` may have started some services: always `down`
        c.up = true;
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((c.file.clone(), c.env.clone()));
        let ok = c.docker(&["up", "-d"])?;
        if !ok {
            bail!(
                "`docker compose -f {} up -d` failed; see `{}`",
                file.display(),
                log.display()
            );
        }
        Ok(c)
    }

    fn docker(&self, args: &[&str]) -> Result<bool> {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open `{}`", self.log.display()))?;
        let _ = writeln!(
            log,
            "$ docker compose -f {} {}",
            self.file.display(),
            args.join(" ")
        );
        let out = Command::new("docker")
            .arg("compose")
            .arg("-f")
            .arg(&self.file)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .context("cannot run `docker`\nhint: install Docker with the compose plugin, or use `launcher: command`")?;
        log.write_all(&out.stdout)?;
        log.write_all(&out.stderr)?;
        Ok(out.status.success())
    }

    /// `docker compose down`; a note if it failed.
    pub fn down(mut self) -> Option<String> {
        self.down_inner()
    }

    fn down_inner(&mut self) -> Option<String> {
        if !std::mem::take(&mut self.up) {
            return None;
        }
        let done = self.docker(&["down"]);
        // listed until `down` returns: an abort while it hangs still takes the project down
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(f, e)| !(*f == self.file && *e == self.env));
        match done {
            Ok(true) => None,
            Ok(false) => Some(format!(
                "`docker compose -f {} down` failed; see `{}`",
                self.file.display(),
                self.log.display()
            )),
            Err(e) => Some(format!("{e:#}")),
        }
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if let Some(n) = self.down_inner() {
            eprintln!("{n}");
        }
    }
}
