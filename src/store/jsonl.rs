//! `requests.jsonl`: one record per line, appended by a writer thread as requests finish.
//!
//! The thread owns the records: the runtime hands each finished record over a channel and
//! never serialises or touches the disk itself. Lines are flushed whenever the channel runs
//! dry, so a crash loses at most the records of the last instant, and a Ctrl-C none.

use crate::record::RequestRecord;
use anyhow::{Context, Result};
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

pub struct JsonlWriter {
    tx: Option<mpsc::Sender<RequestRecord>>,
    handle: Option<std::thread::JoinHandle<std::io::Result<Vec<RequestRecord>>>>,
    path: PathBuf,
}

impl JsonlWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create `{}`", path.display()))?;
        let (tx, rx) = mpsc::channel::<RequestRecord>();
        let handle = std::thread::Builder::new()
            .name("records".into())
            .spawn(move || {
                let mut out = BufWriter::with_capacity(256 * 1024, file);
                let mut kept = Vec::new();
                while let Ok(first) = rx.recv() {
                    let mut next = Some(first);
                    while let Some(r) = next {
                        serde_json::to_writer(&mut out, &r)?;
                        out.write_all(b"\n")?;
                        kept.push(r);
                        next = rx.try_recv().ok();
                    }
                    out.flush()?;
                }
                out.flush()?;
                out.get_ref().sync_data()?;
                Ok(kept)
            })
            .context("spawn record writer")?;
        Ok(Self {
            tx: Some(tx),
            handle: Some(handle),
            path: path.to_path_buf(),
        })
    }

    /// A sender for finished records (cheap to clone into tasks).
    pub fn sender(&self) -> mpsc::Sender<RequestRecord> {
        self.tx.clone().expect("writer open")
    }

    /// Close, wait for every record to be on disk, and get them all back in finish order.
    pub fn finish(mut self) -> Result<Vec<RequestRecord>> {
        drop(self.tx.take());
        let h = self.handle.take().expect("finish once");
        h.join()
            .map_err(|_| anyhow::anyhow!("record writer panicked"))?
            .with_context(|| format!("writing `{}`", self.path.display()))
    }
}

/// Read records back (for re-analysis, or to recover an interrupted run). A torn last line
/// from a crash is skipped and reported; any other bad line is an error naming it.
pub fn read(path: &Path) -> Result<(Vec<RequestRecord>, Option<String>)> {
    let f =
        std::fs::File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    let lines: Vec<String> = std::io::BufReader::new(f)
        .lines()
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading `{}`", path.display()))?;
    let mut out = Vec::with_capacity(lines.len());
    let mut warning = None;
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == lines.len() => {
                warning = Some(format!(
                    "`{}` line {}: torn last record skipped",
                    path.display(),
                    i + 1
                ))
            }
            Err(e) => anyhow::bail!("`{}` line {}: {e}", path.display(), i + 1),
        }
    }
    Ok((out, warning))
}
