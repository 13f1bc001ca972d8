//! The `command` launcher: a command template run by `sh -c` in its own process group, its
//! output to `server.log`, and the whole group torn down (SIGTERM, then SIGKILL): an
//! orphaned vLLM would hold its GPUs.

use anyhow::{Context, Result, bail};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the group may take to exit after SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(30);

/// Every process group started and not yet torn down, so an abort (a second Ctrl-C, a
/// second SIGTERM) can kill them before the process exits.
static LIVE: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// SIGKILL every server process group still up; how many there were.
pub fn kill_all() -> usize {
    let groups = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
    for &g in &groups {
        signal_group(g, libc::SIGKILL);
    }
    groups.len()
}

/// Count a process group started elsewhere (the Ray driver of a `run`) among those an
/// abort kills; [`untrack`] when it is gone.
pub fn track(pgid: i32) {
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).push(pgid);
}

pub fn untrack(pgid: i32) {
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|&g| g != pgid);
}

/// Substitute `{name}` placeholders: any parameter, `{port}`, `{model}`.
pub fn render(template: &str, values: &[(&str, String)], port: u16) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            bail!("`server.command`: unclosed `{{` in `{template}`");
        };
        let name = &rest[open + 1..open + close];
        let value = match name {
            "port" => port.to_string(),
            _ => match values.iter().find(|(k, _)| *k == name) {
                Some((_, v)) => v.clone(),
                None => {
                    let known: Vec<&str> = values.iter().map(|(k, _)| *k).collect();
                    bail!(
                        "`server.command`: no value for `{{{name}}}`\nhint: placeholders are {{port}} and parameters that are set: {}",
                        known.join(", ")
                    );
                }
            },
        };
        out.push_str(&value);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

pub struct ProcessGroup {
    child: Option<Child>,
    line: String,
}

impl ProcessGroup {
    pub fn spawn(line: &str, env: &[(String, String)], log: &Path) -> Result<Self> {
        let out = std::fs::File::create(log)
            .with_context(|| format!("cannot create `{}`", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new("sh")
            .arg("-c")
            .arg(line)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // its own process group: we signal the whole tree, and a terminal's Ctrl-C
            // reaches us, not the server, so the teardown is ours to do
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start `{line}`"))?;
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(child.id() as i32);
        Ok(Self {
            child: Some(child),
            line: line.to_string(),
        })
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<String> {
        let c = self.child.as_mut()?;
        match c.try_wait() {
            Ok(Some(s)) => Some(s.to_string()),
            _ => None,
        }
    }

    /// SIGTERM the group, wait up to the grace period, then SIGKILL it. Returns a note when
    /// the group had to be killed.
    pub fn stop(mut self) -> Option<String> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Option<String> {
        let mut child = self.child.take()?;
        let pgid = child.id() as i32;
        signal_group(pgid, libc::SIGTERM);
        // a stopped (hung, `kill -STOP`ped) server handles SIGTERM only once continued
        signal_group(pgid, libc::SIGCONT);
        let deadline = Instant::now() + GRACE;
        let mut note = None;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                _ => {
                    signal_group(pgid, libc::SIGKILL);
                    let _ = child.wait();
                    note = Some(format!(
                        "`{}` ignored SIGTERM for {:?}: killed",
                        self.line, GRACE
                    ));
                    break;
                }
            }
        }
        // children that outlived the leader still carry its group id
        signal_group(pgid, libc::SIGKILL);
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&g| g != pgid);
        note
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(n) = self.stop_inner() {
            eprintln!("{n}");
        }
    }
}

pub fn signal_group(pgid: i32, sig: i32) {
    // SAFETY: killpg only sends a signal to the process group we created.
    #[allow(unsafe_code)]
    unsafe {
        libc::killpg(pgid, sig);
    }
}

/// The last `n` lines of a log, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut out = lines[start..].join("\n");
    if out.is_empty() {
        out = "(empty)".into();
    }
    out
}
