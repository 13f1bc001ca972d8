//! `requests.jsonl`: one record per line, appended by a writer thread as requests finish.
//!
//! The thread owns the records: the runtime hands each finished record over a channel and
//! never serialises or touches the disk itself. Lines are flushed whenever the channel runs
//! dry, so a crash loses at most the records of the last instant, and a Ctrl-C none. The
//! thread keeps each record's compact form; the content events live in the file only, and
//! whatever needs them streams the file back ([`for_each`]).

use anyhow::{Context, Result};
use loadtest_analysis::record::{CompactRecord, RequestRecord};
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

pub struct JsonlWriter {
    tx: Option<mpsc::Sender<RequestRecord>>,
    handle: Option<std::thread::JoinHandle<std::io::Result<Vec<CompactRecord>>>>,
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
                        kept.push(r.into_compact());
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

    /// Close, wait for every record to be on disk, and get them all back (compact) in
    /// finish order.
    pub fn finish(mut self) -> Result<Vec<CompactRecord>> {
        drop(self.tx.take());
        let h = self.handle.take().expect("finish once");
        h.join()
            .map_err(|_| anyhow::anyhow!("record writer panicked"))?
            .with_context(|| format!("writing `{}`", self.path.display()))
    }
}

/// Stream the records of `path` to `f`, one at a time, in file order (re-analysis, the
/// figures that need every event, recovering an interrupted run). A torn last line from a
/// crash is skipped and reported in the returned warning; any other bad line is an error
/// naming it, as is an error `f` returns.
pub fn for_each(
    path: &Path,
    mut f: impl FnMut(RequestRecord) -> Result<()>,
) -> Result<Option<String>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    let mut input = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = String::new();
    // a bad line is only forgiven if it turns out to be the last one
    let mut bad: Option<(usize, serde_json::Error)> = None;
    let mut number = 0;
    loop {
        line.clear();
        let n = input
            .read_line(&mut line)
            .with_context(|| format!("reading `{}` line {}", path.display(), number + 1))?;
        if n == 0 {
            break;
        }
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        if let Some((at, e)) = bad.take() {
            anyhow::bail!("`{}` line {at}: {e}", path.display());
        }
        match serde_json::from_str::<RequestRecord>(&line) {
            Ok(r) => f(r)?,
            Err(e) => bad = Some((number, e)),
        }
    }
    Ok(bad.map(|(at, _)| format!("`{}` line {at}: torn last record skipped", path.display())))
}

/// Every record of `path`, in full (per-event outputs that were asked for, tests).
pub fn read(path: &Path) -> Result<(Vec<RequestRecord>, Option<String>)> {
    let mut out = Vec::new();
    let warning = for_each(path, |r| {
        out.push(r);
        Ok(())
    })?;
    Ok((out, warning))
}

/// Every record of `path`, compact: what a re-analysis holds in memory.
pub fn read_compact(path: &Path) -> Result<(Vec<CompactRecord>, Option<String>)> {
    let mut out = Vec::new();
    let warning = for_each(path, |r| {
        out.push(r.into_compact());
        Ok(())
    })?;
    Ok((out, warning))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: u64) -> String {
        format!(
            r#"{{"id":{id},"t_intended_ns":0,"t_send_ns":1,"t_end_ns":9,"content_event_offsets_ns":[2,5],"input_tokens":3,"max_tokens":2,"output_tokens":2,"output_tokens_source":"usage"}}"#
        )
    }

    fn file(name: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("jsonl-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_named() {
        let p = file(
            "torn",
            &format!("{}\n\n{}\n{{\"id\":2,\"t_int", line(0), line(1)),
        );
        let (recs, warning) = read(&p).unwrap();
        assert_eq!(recs.iter().map(|r| r.id).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(recs[1].content_events, [2, 5]);
        let w = warning.expect("reported");
        assert!(w.contains("line 4") && w.contains("torn"), "{w}");
        let (compact, _) = read_compact(&p).unwrap();
        assert_eq!(compact[0].content_event_count(), 2);
        let _ = std::fs::remove_file(p);
    }

    #[test]
    fn a_bad_line_before_the_end_is_an_error_naming_it() {
        let p = file("bad", &format!("{}\nnot json\n{}\n", line(0), line(1)));
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        let _ = std::fs::remove_file(p);
    }

    #[test]
    fn an_error_of_the_consumer_stops_the_stream() {
        let p = file("stop", &format!("{}\n{}\n", line(0), line(1)));
        let mut seen = 0;
        let r = for_each(&p, |_| {
            seen += 1;
            anyhow::bail!("disk full")
        });
        assert_eq!(seen, 1);
        assert!(r.unwrap_err().to_string().contains("disk full"));
        let _ = std::fs::remove_file(p);
    }
}
