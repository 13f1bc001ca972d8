//! A cell's request records read back, from wherever they are: `requests.parquet` and
//! `events.parquet` once the cell ended (the journal is then removed), or the
//! `requests.jsonl` journal of a cell that never got that far (a crash, a kill). Every
//! reader of a cell's records (the aggregate stage, the report, `bench --save-detailed`)
//! comes through here, so the two forms give the same records.

use super::jsonl;
use super::layout::CellDir;
use super::parquet::{self, Column, Table};
use anyhow::{Context, Result, bail};
use loadtest_analysis::record::{
    CancelReason, CompactRecord, ErrorKind, EventSpan, RequestError, RequestRecord, TokenSource,
    Turn,
};
use serde::Deserialize;
use serde::de::IntoDeserializer;
use std::path::Path;

/// Whether the cell's records are in its Parquet files, else in its journal. A journal
/// present is the word: the cell is running, was cut before its end, or stopped between
/// writing its Parquet files and retiring the journal (the same records); a Parquet file
/// beside a journal may be an earlier attempt's, before `--resume` ran the cell again.
fn in_parquet(cdir: &CellDir) -> bool {
    !cdir.requests_jsonl().exists()
        && cdir.requests_parquet().exists()
        && cdir.events_parquet().exists()
}

/// Whether the cell has records at all (it started).
pub fn exist(cdir: &CellDir) -> bool {
    in_parquet(cdir) || cdir.requests_jsonl().exists()
}

/// Every record of the cell with its events summarised, in workload order for Parquet,
/// finishing order for a journal.
pub fn read_compact(cdir: &CellDir) -> Result<Vec<CompactRecord>> {
    if in_parquet(cdir) {
        let path = cdir.requests_parquet();
        let t = parquet::read(&path)?;
        compact_from(&t).with_context(|| format!("reading `{}`", path.display()))
    } else {
        Ok(jsonl::read_compact(&cdir.requests_jsonl())?.0)
    }
}

/// Call `f` with every record of the cell, every content event's offset and tokens
/// included.
pub fn for_each(cdir: &CellDir, f: impl FnMut(&RequestRecord)) -> Result<()> {
    if !in_parquet(cdir) {
        return for_each_in_journal(cdir, f);
    }
    for_each_of(cdir, &read_compact(cdir)?, f)
}

/// [`for_each`] for a caller that has read the cell's records already ([`read_compact`]):
/// `requests.parquet` is not read twice. The events are read one row group at a time, so a
/// cell's memory is its records and one group of events, however many tokens it streamed.
pub fn for_each_of(
    cdir: &CellDir,
    compact: &[CompactRecord],
    f: impl FnMut(&RequestRecord),
) -> Result<()> {
    if !in_parquet(cdir) {
        return for_each_in_journal(cdir, f);
    }
    let path = cdir.events_parquet();
    let mut records = WithEvents::new(compact, f);
    // `for_each_group` names the file in its own errors; the events' errors get it here
    parquet::for_each_group(&path, Some(&EVENT_COLUMNS), |g| {
        records
            .add_group(&g)
            .with_context(|| format!("reading `{}`", path.display()))
    })?;
    records.finish();
    Ok(())
}

/// The columns of `events.parquet` a record's events are rebuilt from.
const EVENT_COLUMNS: [&str; 3] = ["request_id", "t_ns", "tokens"];

/// The records of a cell given their events from `events.parquet`, group by group: each is
/// handed on once its events are all read (a group's end may split them), the ones
/// without any events at the end.
struct WithEvents<'a, F> {
    compact: &'a [CompactRecord],
    by_id: std::collections::HashMap<u64, usize>,
    seen: Vec<bool>,
    /// The record whose events are being read, and whether every one said its tokens.
    open: Option<(RequestRecord, bool)>,
    f: F,
}

impl<'a, F: FnMut(&RequestRecord)> WithEvents<'a, F> {
    fn new(compact: &'a [CompactRecord], f: F) -> Self {
        Self {
            compact,
            by_id: compact.iter().enumerate().map(|(i, r)| (r.id, i)).collect(),
            seen: vec![false; compact.len()],
            open: None,
            f,
        }
    }

    fn add_group(&mut self, events: &parquet::Table) -> Result<()> {
        let col = |name: &str| events.column(name).expect("read by name");
        let (id, t_ns, tokens) = (col("request_id"), col("t_ns"), col("tokens"));
        for row in 0..events.rows() {
            let rid = id.i64_at(row).context("a null request id")? as u64;
            if self.open.as_ref().is_none_or(|(r, _)| r.id != rid) {
                self.open_record(rid)?;
            }
            let (r, known) = self.open.as_mut().expect("opened above");
            let t = t_ns.i64_at(row).context("a null event time")? as u64;
            r.content_events.push(t.saturating_sub(r.t_send_ns));
            match tokens.i64_at(row) {
                Some(k) => r.content_event_tokens.push(k as u32),
                None => *known = false,
            }
        }
        Ok(())
    }

    /// Hand on the record being read, and start request `rid`'s.
    fn open_record(&mut self, rid: u64) -> Result<()> {
        self.close();
        let Some(&i) = self.by_id.get(&rid) else {
            bail!("events of request {rid}, which has no row");
        };
        // a request's events are contiguous: written as its record streamed by
        if std::mem::replace(&mut self.seen[i], true) {
            bail!("the events of request {rid} are not all together");
        }
        self.open = Some((full(&self.compact[i]), true));
        Ok(())
    }

    fn close(&mut self) {
        if let Some((mut r, known)) = self.open.take() {
            if !known {
                r.content_event_tokens.clear();
            }
            (self.f)(&r);
        }
    }

    /// The last record read, then every record that had no events.
    fn finish(mut self) {
        self.close();
        for (c, seen) in self.compact.iter().zip(&self.seen) {
            if !seen {
                (self.f)(&full(c));
            }
        }
    }
}

fn for_each_in_journal(cdir: &CellDir, mut f: impl FnMut(&RequestRecord)) -> Result<()> {
    jsonl::for_each(&cdir.requests_jsonl(), |r| {
        f(&r);
        Ok(())
    })
    .map(drop)
}

/// Every record of the cell in full (events and their tokens), in workload order.
pub fn read_full(cdir: &CellDir) -> Result<Vec<RequestRecord>> {
    let mut out = Vec::new();
    for_each(cdir, |r| out.push(r.clone()))?;
    out.sort_by_key(|r| r.id);
    Ok(out)
}

/// A compact record's fields, no events yet.
fn full(c: &CompactRecord) -> RequestRecord {
    RequestRecord {
        id: c.id,
        t_intended_ns: c.t_intended_ns,
        t_send_ns: c.t_send_ns,
        t_end_ns: c.t_end_ns,
        connect_ns: c.connect_ns,
        content_events: Vec::with_capacity(c.content_events.count as usize),
        content_event_tokens: Vec::new(),
        input_tokens: c.input_tokens,
        server_prompt_tokens: c.server_prompt_tokens,
        max_tokens: c.max_tokens,
        output_tokens: c.output_tokens,
        output_tokens_source: c.output_tokens_source,
        finish_reason: c.finish_reason.clone(),
        error: c.error.clone(),
        resent: c.resent,
        turn: c.turn,
    }
}

/// A snake_case name back into its enum (the names `requests.parquet` stores).
fn named<'de, T: Deserialize<'de>>(s: &'de str, what: &str) -> Result<T> {
    T::deserialize(s.into_deserializer())
        .map_err(|e: serde::de::value::Error| anyhow::anyhow!("{what} `{s}`: {e}"))
}

fn compact_from(t: &Table) -> Result<Vec<CompactRecord>> {
    let col = |name: &str| {
        t.column(name)
            .with_context(|| format!("no column `{name}`"))
    };
    let int = |c: &Column, i: usize, name: &str| {
        c.i64_at(i)
            .with_context(|| format!("row {i}: `{name}` is null"))
    };
    let cols = [
        "request_id",
        "t_intended_ns",
        "t_send_ns",
        "t_first_token_ns",
        "t_last_token_ns",
        "t_end_ns",
        "connect_ns",
        "content_events",
        "input_tokens",
        "server_prompt_tokens",
        "max_tokens",
        "output_tokens",
        "output_tokens_source",
        "finish_reason",
        "session",
        "turn",
        "status",
        "http_status",
        "cancel_reason",
        "error_message",
        "resent",
    ];
    let c: Vec<&Column> = cols.iter().map(|n| col(n)).collect::<Result<_>>()?;
    let [
        id,
        intended,
        send,
        first,
        last,
        end,
        connect,
        events,
        input,
        server_prompt,
        max_tokens,
        output,
        source,
        finish,
        session,
        turn,
        status,
        http,
        cancel,
        message,
        resent,
    ] = c[..]
    else {
        unreachable!("one column per name")
    };
    (0..t.rows())
        .map(|i| {
            let t_send_ns = int(send, i, "t_send_ns")? as u64;
            let count = int(events, i, "content_events")? as u32;
            let span = match (first.i64_at(i), last.i64_at(i)) {
                (Some(a), Some(b)) if count > 0 => EventSpan {
                    count,
                    first_ns: a as u64 - t_send_ns,
                    last_ns: b as u64 - t_send_ns,
                },
                _ => EventSpan::default(),
            };
            let status = status.str_at(i).context("a null status")?;
            let error = match status {
                "ok" => None,
                kind => Some(RequestError {
                    kind: named::<ErrorKind>(kind, "status")?,
                    http_status: http.i64_at(i).map(|s| s as u16),
                    cancel_reason: cancel
                        .str_at(i)
                        .map(|r| named::<CancelReason>(r, "cancel reason"))
                        .transpose()?,
                    message: message.str_at(i).unwrap_or_default().to_string(),
                }),
            };
            Ok(CompactRecord {
                id: int(id, i, "request_id")? as u64,
                t_intended_ns: int(intended, i, "t_intended_ns")? as u64,
                t_send_ns,
                t_end_ns: int(end, i, "t_end_ns")? as u64,
                connect_ns: connect.i64_at(i).map(|x| x as u64),
                content_events: span,
                content_event_tokens: (),
                input_tokens: int(input, i, "input_tokens")? as u32,
                server_prompt_tokens: server_prompt.i64_at(i).map(|x| x as u32),
                max_tokens: int(max_tokens, i, "max_tokens")? as u32,
                output_tokens: int(output, i, "output_tokens")? as u32,
                output_tokens_source: named::<TokenSource>(
                    source.str_at(i).context("a null output_tokens_source")?,
                    "output_tokens_source",
                )?,
                finish_reason: finish.str_at(i).map(str::to_string),
                error,
                resent: resent.i64_at(i).unwrap_or(0) as u8,
                turn: match (session.i64_at(i), turn.i64_at(i)) {
                    (Some(s), Some(k)) => Some(Turn {
                        session: s as u32,
                        index: k as u16,
                    }),
                    _ => None,
                },
            })
        })
        .collect()
}

/// Remove the cell's journal once its Parquet files hold every record (checked against
/// the footer of `requests.parquet`: its row count must be what the run kept in memory).
pub fn retire_journal(cdir: &CellDir, records: usize) -> Result<()> {
    let back = parquet::rows(&cdir.requests_parquet())?;
    if back != records {
        bail!(
            "`{}` holds {back} records, the run kept {records}: `{}` is kept",
            cdir.requests_parquet().display(),
            cdir.requests_jsonl().display()
        );
    }
    remove(&cdir.requests_jsonl())
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove `{}`", path.display()))
        }
        _ => Ok(()),
    }
}
