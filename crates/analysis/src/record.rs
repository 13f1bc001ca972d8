//! The raw per-request record: what was intended, what was sent, every content event's
//! arrival time, how it ended. Every figure the tool reports is computed from these.
//!
//! Times are nanoseconds on the run's monotonic clock (`crate::clock`), relative to the run's
//! start. Content event times are kept as offsets from `t_send_ns` to halve their size.
//!
//! A record comes in two shapes that share every field but the content events: as written
//! to `requests.jsonl` (every event's offset, [`RequestRecord`]) and as kept in memory while
//! a run goes on ([`CompactRecord`]: first, last and count only), so the client's memory
//! grows with the number of requests, not with the number of tokens. Figures that need every
//! event (ITL, tokens per second, `events.parquet`) stream them back from the file.

use serde::{Deserialize, Serialize};

/// Where `output_tokens` came from, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// The server's `usage.completion_tokens`.
    Usage,
    /// Our tokenizer's count of the generated text.
    Tokenizer,
    /// The number of content events (one token per event assumed).
    Events,
}

/// Why a request did not complete normally. Counted by kind, never folded into a zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// TCP connect failed (refused, unreachable).
    Connect,
    /// A timeout: connect, first byte, between bytes, or the whole request.
    Timeout,
    /// The server answered with a non-2xx status.
    HttpStatus,
    /// The connection closed or failed before the stream was complete.
    StreamBroken,
    /// Bytes that are not valid HTTP, SSE or the expected JSON, or an error event in the stream.
    Protocol,
    /// Stopped by us (Ctrl-C or the end of a duration-bounded run) while in flight.
    Cancelled,
    /// Ended normally but with fewer tokens than requested under `ignore_eos`.
    Truncated,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::HttpStatus,
        ErrorKind::StreamBroken,
        ErrorKind::Protocol,
        ErrorKind::Cancelled,
        ErrorKind::Truncated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::StreamBroken => "stream_broken",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Truncated => "truncated",
        }
    }
}

/// Why we cancelled a request that was still in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// The drain limit (`drain_timeout_s`) ended while it was still running. When it was
    /// sent inside the measurement window its latency is right-censored, not dropped.
    DrainLimit,
    /// Sent after the measurement window (cool-down), cancelled once every request of the
    /// window had finished: it is in no figure.
    AfterWindow,
    /// The server stopped accepting connections (`SERVER_LOST_AFTER` refusals in a row):
    /// sending stopped, and what was still in flight was cut.
    ServerLost,
}

impl CancelReason {
    pub const ALL: [CancelReason; 4] = [
        CancelReason::Interrupted,
        CancelReason::DrainLimit,
        CancelReason::AfterWindow,
        CancelReason::ServerLost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::Interrupted => "interrupted",
            CancelReason::DrainLimit => "drain_limit",
            CancelReason::AfterWindow => "after_window",
            CancelReason::ServerLost => "server_lost",
        }
    }
}

/// A failed request's kind, HTTP status (when there was one), and the server's or the
/// system's own words, truncated to a bounded length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestError {
    pub kind: ErrorKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Set when `kind` is `cancelled`: what made us stop it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<CancelReason>,
    pub message: String,
}

/// The content events of a request as kept in memory: how many, and the first and last
/// offsets from the send (both 0 when there were none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventSpan {
    pub count: u32,
    pub first_ns: u64,
    pub last_ns: u64,
}

/// What the per-request figures need of a record's content events.
pub trait ContentEvents {
    fn count(&self) -> usize;
    fn first_ns(&self) -> Option<u64>;
    fn last_ns(&self) -> Option<u64>;
}

impl ContentEvents for Vec<u64> {
    fn count(&self) -> usize {
        self.len()
    }
    fn first_ns(&self) -> Option<u64> {
        self.first().copied()
    }
    fn last_ns(&self) -> Option<u64> {
        self.last().copied()
    }
}

impl ContentEvents for EventSpan {
    fn count(&self) -> usize {
        self.count as usize
    }
    fn first_ns(&self) -> Option<u64> {
        (self.count > 0).then_some(self.first_ns)
    }
    fn last_ns(&self) -> Option<u64> {
        (self.count > 0).then_some(self.last_ns)
    }
}

/// Per-event token counts as written (`Vec<u32>`, empty when unknown), or as not kept at
/// all in memory (`()`: the compact form pays nothing for them).
pub trait TokenCounts: Default {
    fn is_empty(&self) -> bool;
}

impl TokenCounts for Vec<u32> {
    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }
}

impl TokenCounts for () {
    fn is_empty(&self) -> bool {
        true
    }
}

/// A record as kept in memory during a run: every field, the events summarised, no
/// per-event token counts.
pub type CompactRecord = RequestRecord<EventSpan, ()>;

/// One request, from intention to end. `E` is how its content events are held: every
/// offset (`Vec<u64>`, the default and the on-disk form) or an [`EventSpan`]; `K` their
/// token counts: `Vec<u32>` on disk, `()` in the compact form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord<E = Vec<u64>, K: TokenCounts = Vec<u32>> {
    /// Index in the workload (0-based), also the order of intended send times.
    pub id: u64,
    /// When the schedule said to send it.
    pub t_intended_ns: u64,
    /// When its first byte was handed to the socket (after any connect).
    pub t_send_ns: u64,
    /// When the response ended (last byte, error, or cancellation).
    pub t_end_ns: u64,
    /// Time spent opening a new connection, when one was opened for this request (open
    /// loops open them ahead of the schedule: set only when none was ready in time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ns: Option<u64>,
    /// Arrival of each content-bearing event, as an offset from `t_send_ns`.
    #[serde(rename = "content_event_offsets_ns")]
    pub content_events: E,
    /// Tokens each content event carried, one per event, when the server said so
    /// (`continuous_usage_stats`); empty when unknown, and always in the compact form.
    /// Tokens that came in chunks without text count toward the next event with some; any
    /// after the last one are carried by none (the sum can then fall short of
    /// `output_tokens`: seen once in 40 real vLLM chat streams). A gap before an event of
    /// k tokens is still one ITL sample, never k.
    #[serde(default, skip_serializing_if = "TokenCounts::is_empty")]
    pub content_event_tokens: K,
    /// Prompt tokens as the workload built them.
    pub input_tokens: u32,
    /// Prompt tokens as the server counted them (`usage.prompt_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_prompt_tokens: Option<u32>,
    /// `max_tokens` requested.
    pub max_tokens: u32,
    /// Generated tokens, and where that number came from.
    pub output_tokens: u32,
    pub output_tokens_source: TokenSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// `None` when the request completed normally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RequestError>,
    /// Times it was sent again on a fresh connection because the server closed a reused
    /// one before answering (its latencies count from the first send). Never silent: the
    /// summary counts them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resent: u8,
    /// A turn of a multi-turn conversation: which conversation, and which turn of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<Turn>,
}

/// Where a request sits in a multi-turn conversation (`dataset: multi_turn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// The conversation's index in the run (its arrival order).
    pub session: u32,
    /// 0-based: turn 0 is the conversation's first request.
    pub index: u16,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

impl RequestRecord {
    /// The in-memory form: the same record with its events reduced to first, last, count.
    /// Its fields moved, not copied: the writer thread does this once per request.
    pub fn into_compact(self) -> CompactRecord {
        let span = self.span();
        RequestRecord {
            id: self.id,
            t_intended_ns: self.t_intended_ns,
            t_send_ns: self.t_send_ns,
            t_end_ns: self.t_end_ns,
            connect_ns: self.connect_ns,
            content_events: span,
            content_event_tokens: (),
            input_tokens: self.input_tokens,
            server_prompt_tokens: self.server_prompt_tokens,
            max_tokens: self.max_tokens,
            output_tokens: self.output_tokens,
            output_tokens_source: self.output_tokens_source,
            finish_reason: self.finish_reason,
            error: self.error,
            resent: self.resent,
            turn: self.turn,
        }
    }

    /// The in-memory form of a record that stays whole (its events are not copied): for
    /// figures over records already all in memory.
    pub fn to_compact(&self) -> CompactRecord {
        RequestRecord {
            id: self.id,
            t_intended_ns: self.t_intended_ns,
            t_send_ns: self.t_send_ns,
            t_end_ns: self.t_end_ns,
            connect_ns: self.connect_ns,
            content_events: self.span(),
            content_event_tokens: (),
            input_tokens: self.input_tokens,
            server_prompt_tokens: self.server_prompt_tokens,
            max_tokens: self.max_tokens,
            output_tokens: self.output_tokens,
            output_tokens_source: self.output_tokens_source,
            finish_reason: self.finish_reason.clone(),
            error: self.error.clone(),
            resent: self.resent,
            turn: self.turn,
        }
    }

    fn span(&self) -> EventSpan {
        let ev = &self.content_events;
        EventSpan {
            count: u32::try_from(ev.len()).unwrap_or(u32::MAX),
            first_ns: ev.first().copied().unwrap_or(0),
            last_ns: ev.last().copied().unwrap_or(0),
        }
    }

    /// Gaps between consecutive content events, in arrival order.
    pub fn itls_ns(&self) -> impl Iterator<Item = u64> + '_ {
        self.content_events.windows(2).map(|w| w[1] - w[0])
    }
}

impl<E: ContentEvents, K: TokenCounts> RequestRecord<E, K> {
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    pub fn is_cancelled(&self) -> bool {
        matches!(&self.error, Some(e) if e.kind == ErrorKind::Cancelled)
    }

    /// Cut off before it could finish (cancelled, or the request timeout): its latencies
    /// are "at least" its time to the cut, right-censored. A request that never left the
    /// client has no time to be censored at.
    pub fn is_cut(&self) -> bool {
        matches!(&self.error, Some(e) if matches!(e.kind, ErrorKind::Cancelled | ErrorKind::Timeout))
            && self.t_end_ns > self.t_send_ns
    }

    /// Send to end (last byte, error, or cancellation).
    pub fn follow_up_ns(&self) -> u64 {
        self.t_end_ns.saturating_sub(self.t_send_ns)
    }

    pub fn queue_delay_ns(&self) -> u64 {
        self.t_send_ns.saturating_sub(self.t_intended_ns)
    }

    /// Time to first content event, from the send.
    pub fn ttft_ns(&self) -> Option<u64> {
        self.content_events.first_ns()
    }

    /// Send to last content event (the usage chunk and `[DONE]` excluded).
    pub fn e2e_ns(&self) -> Option<u64> {
        self.content_events.last_ns()
    }

    /// Content-bearing events received.
    pub fn content_event_count(&self) -> usize {
        self.content_events.count()
    }

    /// vLLM's TPOT: (e2e − ttft) / (output_tokens − 1), when more than one token came.
    pub fn tpot_ns(&self) -> Option<f64> {
        if self.output_tokens <= 1 {
            return None;
        }
        let (first, last) = (self.ttft_ns()?, self.e2e_ns()?);
        Some((last - first) as f64 / (self.output_tokens - 1) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every request costs the client for the whole run (plus its finish reason's
    /// heap bytes and the vector's slack): a field added here is paid per request, so it
    /// should be deliberate. Per-event data never belongs here.
    #[test]
    fn a_compact_record_stays_small() {
        assert_eq!(std::mem::size_of::<EventSpan>(), 24);
        // 152 + 16 for the multi-turn `turn` (a u32 and a u16 behind an option)
        assert!(
            std::mem::size_of::<CompactRecord>() <= 168,
            "{} bytes",
            std::mem::size_of::<CompactRecord>()
        );
    }

    #[test]
    fn compacting_keeps_every_per_request_figure() {
        let r = RequestRecord {
            id: 3,
            t_intended_ns: 10,
            t_send_ns: 12,
            t_end_ns: 90,
            connect_ns: Some(1),
            content_events: vec![20, 35, 60],
            content_event_tokens: vec![1, 2, 1],
            input_tokens: 5,
            server_prompt_tokens: Some(5),
            max_tokens: 4,
            output_tokens: 4,
            output_tokens_source: TokenSource::Usage,
            finish_reason: Some("length".into()),
            error: None,
            resent: 0,
            turn: None,
        };
        let c = r.clone().into_compact();
        // the borrowing form is the same record
        assert_eq!(r.to_compact(), c, "to_compact");
        assert_eq!(
            (c.ttft_ns(), c.e2e_ns(), c.tpot_ns(), c.queue_delay_ns()),
            (r.ttft_ns(), r.e2e_ns(), r.tpot_ns(), r.queue_delay_ns())
        );
        assert_eq!(c.content_event_count(), 3);
        assert!(c.is_ok());
        assert_eq!(c.finish_reason, r.finish_reason);
    }
}
