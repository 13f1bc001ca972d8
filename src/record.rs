//! The raw per-request record: what was intended, what was sent, every content event's
//! arrival time, how it ended. Every figure the tool reports is computed from these.
//!
//! Times are nanoseconds on the run's monotonic clock (`crate::clock`), relative to the run's
//! start. Content event times are kept as offsets from `t_send_ns` to halve their size.

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

/// A failed request's kind, HTTP status (when there was one), and the server's or the
/// system's own words, truncated to a bounded length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestError {
    pub kind: ErrorKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    pub message: String,
}

/// One request, from intention to end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Index in the workload (0-based), also the order of intended send times.
    pub id: u64,
    /// When the schedule said to send it.
    pub t_intended_ns: u64,
    /// When its first byte was handed to the socket (after any connect).
    pub t_send_ns: u64,
    /// When the response ended (last byte, error, or cancellation).
    pub t_end_ns: u64,
    /// Time spent opening a new connection, when one was opened for this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ns: Option<u64>,
    /// Arrival of each content-bearing event, as an offset from `t_send_ns`.
    pub content_event_offsets_ns: Vec<u64>,
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
}

impl RequestRecord {
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    pub fn is_cancelled(&self) -> bool {
        matches!(&self.error, Some(e) if e.kind == ErrorKind::Cancelled)
    }

    pub fn queue_delay_ns(&self) -> u64 {
        self.t_send_ns.saturating_sub(self.t_intended_ns)
    }

    /// Time to first content event, from the send.
    pub fn ttft_ns(&self) -> Option<u64> {
        self.content_event_offsets_ns.first().copied()
    }

    /// Send to last content event (the usage chunk and `[DONE]` excluded).
    pub fn e2e_ns(&self) -> Option<u64> {
        self.content_event_offsets_ns.last().copied()
    }

    /// vLLM's TPOT: (e2e − ttft) / (output_tokens − 1), when more than one token came.
    pub fn tpot_ns(&self) -> Option<f64> {
        if self.output_tokens <= 1 {
            return None;
        }
        let (first, last) = (self.ttft_ns()?, self.e2e_ns()?);
        Some((last - first) as f64 / (self.output_tokens - 1) as f64)
    }

    /// Gaps between consecutive content events, in arrival order.
    pub fn itls_ns(&self) -> impl Iterator<Item = u64> + '_ {
        self.content_event_offsets_ns
            .windows(2)
            .map(|w| w[1] - w[0])
    }
}
