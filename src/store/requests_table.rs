//! Records as columns: `requests.parquet` (one row per request, from the compact records)
//! and `events.parquet` (one row per content event, streamed from `requests.jsonl` in row
//! groups). Times are nanoseconds from the cell's clock zero (`*_ns`), and the same instants
//! as `TIMESTAMP(NANOS, UTC)` (`*_at`) from the wall-clock time of that zero; units are in
//! the names.

use super::parquet::{Column, FileWriter, Table};
use anyhow::Result;
use loadtest_analysis::record::{CompactRecord, RequestRecord};
use loadtest_analysis::summary::Window;
use std::path::Path;

/// Rows per row group of `requests.parquet`: its columns are built a group at a time, so
/// writing it costs a bounded few MB on top of the records, however many there are.
pub const REQUEST_ROWS_PER_GROUP: usize = 1 << 16;

/// `requests.parquet`, one row per request in workload order. `origin_unix_ns`: the
/// wall-clock time of the cell's clock zero, for the absolute `*_at` columns.
pub fn write_requests(
    path: &Path,
    records: &[CompactRecord],
    window: Window,
    origin_unix_ns: i64,
) -> Result<()> {
    let mut sorted: Vec<&CompactRecord> = records.iter().collect();
    sorted.sort_by_key(|r| r.id);
    let mut file = FileWriter::create(path)?;
    for group in sorted.chunks(REQUEST_ROWS_PER_GROUP) {
        file.row_group(&requests(group, window, origin_unix_ns))?;
    }
    if sorted.is_empty() {
        file.row_group(&requests(&[], window, origin_unix_ns))?;
    }
    file.finish()
}

/// The columns of `sorted` requests.
fn requests(sorted: &[&CompactRecord], window: Window, origin_unix_ns: i64) -> Table {
    let i64s = |f: &dyn Fn(&CompactRecord) -> Option<i64>| {
        Column::I64(sorted.iter().map(|r| f(r)).collect())
    };
    let f64s = |f: &dyn Fn(&CompactRecord) -> Option<f64>| {
        Column::F64(sorted.iter().map(|r| f(r)).collect())
    };
    let strs = |f: &dyn Fn(&CompactRecord) -> Option<String>| {
        Column::Str(sorted.iter().map(|r| f(r)).collect())
    };
    let at = |f: &dyn Fn(&CompactRecord) -> Option<u64>| {
        Column::Timestamp(
            sorted
                .iter()
                .map(|r| f(r).map(|ns| origin_unix_ns + ns as i64))
                .collect(),
        )
    };
    let mut t = Table::default();
    t.push("request_id", i64s(&|r| Some(r.id as i64)));
    t.push("intended_at", at(&|r| Some(r.t_intended_ns)));
    t.push("send_at", at(&|r| Some(r.t_send_ns)));
    t.push(
        "first_token_at",
        at(&|r| r.ttft_ns().map(|x| r.t_send_ns + x)),
    );
    t.push("end_at", at(&|r| Some(r.t_end_ns)));
    t.push("t_intended_ns", i64s(&|r| Some(r.t_intended_ns as i64)));
    t.push("t_send_ns", i64s(&|r| Some(r.t_send_ns as i64)));
    t.push(
        "t_first_token_ns",
        i64s(&|r| r.ttft_ns().map(|x| (r.t_send_ns + x) as i64)),
    );
    t.push(
        "t_last_token_ns",
        i64s(&|r| r.e2e_ns().map(|x| (r.t_send_ns + x) as i64)),
    );
    t.push("t_end_ns", i64s(&|r| Some(r.t_end_ns as i64)));
    t.push("queue_delay_ns", i64s(&|r| Some(r.queue_delay_ns() as i64)));
    t.push("connect_ns", i64s(&|r| r.connect_ns.map(|x| x as i64)));
    t.push("ttft_ms", f64s(&|r| r.ttft_ns().map(|x| x as f64 / 1e6)));
    t.push("tpot_ms", f64s(&|r| r.tpot_ns().map(|x| x / 1e6)));
    t.push("e2el_ms", f64s(&|r| r.e2e_ns().map(|x| x as f64 / 1e6)));
    t.push(
        "ttft_from_intended_ms",
        f64s(&|r| r.ttft_ns().map(|x| (x + r.queue_delay_ns()) as f64 / 1e6)),
    );
    t.push("input_tokens", i64s(&|r| Some(r.input_tokens as i64)));
    t.push(
        "server_prompt_tokens",
        i64s(&|r| r.server_prompt_tokens.map(i64::from)),
    );
    t.push("max_tokens", i64s(&|r| Some(r.max_tokens as i64)));
    t.push("output_tokens", i64s(&|r| Some(r.output_tokens as i64)));
    t.push(
        "output_tokens_source",
        strs(&|r| Some(format!("{:?}", r.output_tokens_source).to_lowercase())),
    );
    t.push(
        "content_events",
        i64s(&|r| Some(r.content_event_count() as i64)),
    );
    t.push("finish_reason", strs(&|r| r.finish_reason.clone()));
    // multi-turn conversations: null for single requests
    t.push("session", i64s(&|r| r.turn.map(|t| t.session as i64)));
    t.push("turn", i64s(&|r| r.turn.map(|t| t.index as i64)));
    t.push(
        "status",
        strs(&|r| {
            Some(
                r.error
                    .as_ref()
                    .map_or("ok", |e| e.kind.as_str())
                    .to_string(),
            )
        }),
    );
    t.push(
        "http_status",
        i64s(&|r| r.error.as_ref().and_then(|e| e.http_status).map(i64::from)),
    );
    t.push(
        "cancel_reason",
        strs(&|r| {
            r.error
                .as_ref()
                .and_then(|e| e.cancel_reason)
                .map(|c| c.as_str().to_string())
        }),
    );
    t.push(
        "error_message",
        strs(&|r| r.error.as_ref().map(|e| e.message.clone())),
    );
    t.push("resent", i64s(&|r| Some(i64::from(r.resent))));
    t.push(
        "in_window",
        Column::Bool(
            sorted
                .iter()
                .map(|r| Some(r.t_send_ns >= window.start_ns && r.t_send_ns < window.end_ns))
                .collect(),
        ),
    );
    t
}

/// Rows per row group of `events.parquet`: ~20 MB of columns and page at a time, whatever
/// the run's length.
pub const EVENT_ROWS_PER_GROUP: usize = 1 << 18;

/// `events.parquet`, written as the records stream by (in the order they finished; sort by
/// `request_id`, `event_index` for the workload's order).
pub struct EventsWriter {
    file: FileWriter,
    origin_unix_ns: i64,
    rows_per_group: usize,
    groups: usize,
    id: Vec<Option<i64>>,
    idx: Vec<Option<i64>>,
    t_ns: Vec<Option<i64>>,
    tokens: Vec<Option<i64>>,
}

impl EventsWriter {
    /// `origin_unix_ns`: the wall-clock time of the cell's clock zero (the `at` column).
    pub fn create(path: &Path, rows_per_group: usize, origin_unix_ns: i64) -> Result<Self> {
        Ok(Self {
            file: FileWriter::create(path)?,
            origin_unix_ns,
            rows_per_group: rows_per_group.max(1),
            groups: 0,
            id: Vec::new(),
            idx: Vec::new(),
            t_ns: Vec::new(),
            tokens: Vec::new(),
        })
    }

    pub fn push(&mut self, r: &RequestRecord) -> Result<()> {
        // null where the server did not say (no `continuous_usage_stats`)
        let known = r.content_event_tokens.len() == r.content_events.len();
        for (i, off) in r.content_events.iter().enumerate() {
            self.id.push(Some(r.id as i64));
            self.t_ns.push(Some((r.t_send_ns + off) as i64));
            self.idx.push(Some(i as i64));
            self.tokens
                .push(known.then(|| r.content_event_tokens[i] as i64));
            if self.id.len() >= self.rows_per_group {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let mut t = Table::default();
        t.push("request_id", Column::I64(std::mem::take(&mut self.id)));
        t.push("event_index", Column::I64(std::mem::take(&mut self.idx)));
        let at = self
            .t_ns
            .iter()
            .map(|t| t.map(|t| self.origin_unix_ns + t))
            .collect();
        t.push("t_ns", Column::I64(std::mem::take(&mut self.t_ns)));
        t.push("at", Column::Timestamp(at));
        t.push("tokens", Column::I64(std::mem::take(&mut self.tokens)));
        self.groups += 1;
        self.file.row_group(&t)
    }

    /// Write the last rows (an empty group if there were no events at all, so the file
    /// still has its columns) and close.
    pub fn finish(mut self) -> Result<()> {
        if !self.id.is_empty() || self.groups == 0 {
            self.flush()?;
        }
        self.file.finish()
    }
}
