//! One streaming request, from the first byte written to the last byte read, turned into a
//! `RequestRecord`.
//!
//! The clock is read once per socket read, right after the bytes arrive and before any
//! parsing; every event decoded from that read carries that time. The path from socket to
//! event allocates nothing after warm-up: the read buffer, the chunked decoder and the SSE
//! decoder reuse their buffers, and a content event costs one scan of its bytes.

use super::chunk::{self, Payload};
use super::pool::{Checkout, Pool};
use super::sse::SseDecoder;
use loadtest_analysis::record::{ErrorKind, RequestError, RequestRecord, TokenSource};
use loadtest_base::clock::Clock;
use loadtest_base::http::{self, chunked::ChunkedDecoder};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// Bytes kept of an error body or message: enough to read, bounded in memory.
const MAX_MESSAGE: usize = 2048;
/// First read buffer: a streamed event is ~300 bytes and reads return what has arrived, so 4 KiB
/// is ample; it grows for a large response head. (16 KiB cost 223 MB at 10,000 streams.)
const READ_BUF: usize = 4 * 1024;

/// A request ready to go: its exact bytes on the wire and what the workload expects of it.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub bytes: Arc<[u8]>,
    pub input_tokens: u32,
    pub max_tokens: u32,
    /// `ignore_eos` was sent: fewer than `max_tokens` tokens means truncated.
    pub expect_max_tokens: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// The whole request, from send to last byte.
    pub request: Duration,
}

/// A request whose bytes the pacer thread already handed to a pooled connection at its due
/// time, so the send does not wait its turn behind the runtime's ready tasks (that wait made
/// the send lag p99 2–4 ms at 2,000 req/s on one core).
pub struct Presend {
    pub conn: Checkout,
    /// When the first byte went out; `None` if the socket took nothing yet.
    pub t_send_ns: Option<u64>,
    /// Bytes of the request already written.
    pub written: usize,
}

impl Presend {
    /// Take an idle connection of `pool` and write what its socket takes now, without
    /// blocking and from any thread. `None` when no connection is idle (the runtime then
    /// opens one and sends).
    pub fn try_send(pool: &Pool, clock: &Clock, bytes: &[u8]) -> Option<Self> {
        let conn = pool.take_idle()?;
        let t = clock.now_ns();
        // an error here (the server closed the idle connection) shows again on the
        // runtime's write, which retries on a fresh connection
        let written = conn.stream.try_write(bytes).unwrap_or(0);
        Some(Self {
            conn,
            t_send_ns: (written > 0).then_some(t),
            written,
        })
    }
}

/// What the stream said so far. Kept outside the driving future so a cancelled or timed-out
/// request still reports the events that did arrive.
#[derive(Default)]
struct Progress {
    t_send_ns: u64,
    t_last_read_ns: u64,
    connect_ns: Option<u64>,
    offsets: Vec<u64>,
    /// Tokens of each content event, from the running `usage.completion_tokens` of
    /// `continuous_usage_stats` streams; abandoned at the first content event without it.
    event_tokens: Vec<u32>,
    tokens_credited: u32,
    event_tokens_unknown: bool,
    usage_completion: Option<u32>,
    usage_prompt: Option<u32>,
    finish_reason: Option<String>,
    done: bool,
    /// Sent again after the server closed a reused connection before answering.
    resent: u8,
}

/// How a connect error that is the client's (out of file descriptors) begins.
pub const CLIENT_OUT_OF_FILES: &str = "client out of file descriptors (raise `ulimit -n`)";

/// One request of a run: which, when it was meant to go, and whether it went already.
pub struct Job<'a> {
    pub id: u64,
    pub t_intended_ns: u64,
    pub spec: &'a RequestSpec,
    pub pre: Option<Presend>,
}

/// Send the job's request (unless the pacer did) and read its stream to the end. Never
/// panics on what the server does: every outcome is a record.
pub async fn execute(
    pool: &Pool,
    clock: &Clock,
    timeouts: Timeouts,
    job: Job<'_>,
    cancel: &mut watch::Receiver<bool>,
) -> RequestRecord {
    let Job {
        id,
        t_intended_ns,
        spec,
        pre,
    } = job;
    let mut p = Progress {
        offsets: Vec::with_capacity(spec.max_tokens.min(4096) as usize + 1),
        ..Progress::default()
    };
    let deadline = tokio::time::Instant::now() + timeouts.request;
    let result = {
        let drive =
            tokio::time::timeout_at(deadline, drive(pool, clock, timeouts, spec, pre, &mut p));
        tokio::select! {
            biased;
            _ = cancelled(cancel) => Err(err(ErrorKind::Cancelled, None, "cancelled while in flight".into())),
            r = drive => match r {
                Ok(r) => r,
                Err(_) => Err(err(ErrorKind::Timeout, None, format!("no complete response within {:?}", timeouts.request))),
            },
        }
    };
    let t_end_ns = match &result {
        Ok(()) => p.t_last_read_ns,
        Err(_) => clock.now_ns(),
    };
    if p.t_send_ns == 0 {
        // never got as far as writing: the send time is when we gave up
        p.t_send_ns = t_end_ns.max(t_intended_ns);
    }
    let (output_tokens, source) = match p.usage_completion {
        Some(n) => (n, TokenSource::Usage),
        None => (p.offsets.len() as u32, TokenSource::Events),
    };
    let error = match result {
        Err(e) => Some(e),
        Ok(()) if spec.expect_max_tokens && output_tokens < spec.max_tokens => Some(err(
            ErrorKind::Truncated,
            None,
            format!(
                "{output_tokens} of {} tokens (finish_reason {})",
                spec.max_tokens,
                p.finish_reason.as_deref().unwrap_or("none")
            ),
        )),
        Ok(()) => None,
    };
    RequestRecord {
        id,
        t_intended_ns,
        t_send_ns: p.t_send_ns,
        t_end_ns: t_end_ns.max(p.t_send_ns),
        connect_ns: p.connect_ns,
        // every content event pushed its count unless one came without usage
        content_event_tokens: if p.event_tokens_unknown {
            Vec::new()
        } else {
            p.event_tokens
        },
        content_events: p.offsets,
        input_tokens: spec.input_tokens,
        server_prompt_tokens: p.usage_prompt,
        max_tokens: spec.max_tokens,
        output_tokens,
        output_tokens_source: source,
        finish_reason: p.finish_reason,
        error,
        resent: p.resent,
    }
}

async fn cancelled(rx: &mut watch::Receiver<bool>) {
    // A dropped sender means nobody can cancel any more: wait forever.
    if rx.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn err(kind: ErrorKind, http_status: Option<u16>, message: String) -> RequestError {
    let mut message = message;
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    RequestError {
        kind,
        http_status,
        cancel_reason: None,
        message,
    }
}

async fn drive(
    pool: &Pool,
    clock: &Clock,
    timeouts: Timeouts,
    spec: &RequestSpec,
    mut pre: Option<Presend>,
    p: &mut Progress,
) -> Result<(), RequestError> {
    // A reused connection the server closed meanwhile shows up as EOF before any byte of the
    // response; then (and only then) the request was never seen, so it is sent once more on a
    // fresh connection: recorded (`resent`), counted in the summary, never silent.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut written = 0;
        if let Some(Presend {
            t_send_ns: Some(t), ..
        }) = pre
        {
            p.t_send_ns = t;
        }
        let conn = match pre
            .take()
            .map(|ps| (ps.conn, ps.written))
            .or_else(|| pool.take_idle().map(|c| (c, 0)))
        {
            Some((c, w)) => {
                written = w;
                c
            }
            None => {
                let t0 = clock.now_ns();
                let c = pool.connect(timeouts.connect).await.map_err(|e| {
                    let kind = if e.kind() == std::io::ErrorKind::TimedOut {
                        ErrorKind::Timeout
                    } else {
                        ErrorKind::Connect
                    };
                    // the client's own limit, not the server refusing: say whose it is
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                        return err(
                            kind,
                            None,
                            format!("{CLIENT_OUT_OF_FILES}: connect to {}: {e}", pool.addr()),
                        );
                    }
                    err(kind, None, format!("connect to {}: {e}", pool.addr()))
                })?;
                p.connect_ns = Some(clock.now_ns() - t0);
                c
            }
        };
        match exchange(pool, clock, conn, spec, written, p).await {
            Err(Retry) if attempt == 1 => {
                p.resent += 1;
                continue;
            }
            Err(Retry) => {
                return Err(err(
                    ErrorKind::StreamBroken,
                    None,
                    "connection closed before any response byte".into(),
                ));
            }
            Ok(r) => return r,
        }
    }
}

/// The request may be retried: nothing of a response arrived on a reused connection.
struct Retry;

async fn exchange(
    pool: &Pool,
    clock: &Clock,
    conn: Checkout,
    spec: &RequestSpec,
    written: usize,
    p: &mut Progress,
) -> Result<Result<(), RequestError>, Retry> {
    let Checkout { mut stream, reused } = conn;
    // a re-send keeps the first send's time: the lost attempt is part of the latency
    if written == 0 && p.resent == 0 {
        p.t_send_ns = clock.now_ns();
    }
    if let Err(e) = stream.write_all(&spec.bytes[written..]).await {
        if reused {
            return Err(Retry);
        }
        return Ok(Err(err(
            ErrorKind::StreamBroken,
            None,
            format!("write: {e}"),
        )));
    }
    let mut buf = vec![0u8; READ_BUF];
    let mut filled = 0;
    // --- the response head
    let (status, body_kind, keep_alive, head_len) = loop {
        if filled == buf.len() {
            if buf.len() >= http::MAX_HEAD_BYTES {
                return Ok(Err(err(
                    ErrorKind::Protocol,
                    None,
                    "response head too large".into(),
                )));
            }
            buf.resize(buf.len() * 2, 0);
        }
        let n = match stream.read(&mut buf[filled..]).await {
            Ok(0) if filled == 0 && reused => return Err(Retry),
            Ok(0) => {
                return Ok(Err(err(
                    ErrorKind::StreamBroken,
                    None,
                    "connection closed before the response head".into(),
                )));
            }
            Ok(n) => n,
            Err(e) if filled == 0 && reused => {
                let _ = e;
                return Err(Retry);
            }
            Err(e) => {
                return Ok(Err(err(
                    ErrorKind::StreamBroken,
                    None,
                    format!("read: {e}"),
                )));
            }
        };
        p.t_last_read_ns = clock.now_ns();
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf[..filled]) {
            Ok(httparse::Status::Complete(len)) => {
                let status = resp.code.unwrap_or(0);
                let hs = resp.headers;
                let chunked = http::header(hs, "transfer-encoding")
                    .is_some_and(|v| http::has_token(v, "chunked"));
                let length = http::header(hs, "content-length")
                    .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
                let close = http::header(hs, "connection")
                    .is_some_and(|v| http::has_token(v, "close"))
                    || resp.version == Some(0);
                let kind = if chunked {
                    BodyKind::Chunked
                } else if let Some(n) = length {
                    BodyKind::Length(n)
                } else {
                    BodyKind::UntilClose
                };
                break (status, kind, !close, len);
            }
            Ok(httparse::Status::Partial) => continue,
            Err(e) => {
                return Ok(Err(err(
                    ErrorKind::Protocol,
                    None,
                    format!(
                        "invalid HTTP response ({e}): `{}`",
                        String::from_utf8_lossy(&buf[..filled.min(120)])
                    ),
                )));
            }
        }
    };
    let mut body = BodyReader::new(body_kind);
    if !(200..300).contains(&status) {
        let mut text = Vec::new();
        let r = body
            .read_all(
                &mut stream,
                &mut buf,
                head_len,
                filled,
                &mut text,
                MAX_MESSAGE * 4,
            )
            .await;
        let message = error_message(&text);
        if r.is_ok() && keep_alive && body.is_done() {
            pool.put(stream);
        }
        return Ok(Err(err(ErrorKind::HttpStatus, Some(status), message)));
    }
    // --- the event stream
    let mut sse = SseDecoder::new();
    let mut stream_error: Option<RequestError> = None;
    let mut t_now = p.t_last_read_ns;
    let on_event =
        |data: &[u8], t: u64, p: &mut Progress, stream_error: &mut Option<RequestError>| {
            if stream_error.is_some() || p.done {
                return;
            }
            match chunk::classify(data) {
                Ok(Payload::Done) => p.done = true,
                Ok(Payload::Chunk(c)) => {
                    if c.content {
                        p.offsets.push(t - p.t_send_ns);
                        // tokens that came without text (a chunk of its own) are carried
                        // by the next event that has some
                        match c.usage.and_then(|u| u.completion_tokens) {
                            Some(n) if !p.event_tokens_unknown => {
                                p.event_tokens.push(n.saturating_sub(p.tokens_credited));
                                p.tokens_credited = n;
                            }
                            _ => p.event_tokens_unknown = true,
                        }
                    }
                    if c.finish_reason.is_some() {
                        p.finish_reason = c.finish_reason;
                    }
                    if let Some(u) = c.usage {
                        p.usage_completion = u.completion_tokens.or(p.usage_completion);
                        p.usage_prompt = u.prompt_tokens.or(p.usage_prompt);
                    }
                }
                Ok(Payload::Error(m)) => {
                    *stream_error = Some(err(
                        ErrorKind::Protocol,
                        None,
                        format!("error event in stream: {m}"),
                    ))
                }
                Err(m) => *stream_error = Some(err(ErrorKind::Protocol, None, m)),
            }
        };
    let mut start = head_len;
    let mut end = filled;
    let outcome: Result<(), RequestError> = loop {
        let feed = body.feed(&buf[start..end], |payload| {
            sse.feed(payload, |ev| on_event(ev.data, t_now, p, &mut stream_error));
        });
        if let Err(m) = feed {
            break Err(err(ErrorKind::Protocol, None, m));
        }
        if sse.overflowed() {
            break Err(err(
                ErrorKind::Protocol,
                None,
                format!(
                    "an SSE line or event outgrew its cap ({} KiB line, {} KiB event): not a stream of chunks",
                    super::sse::MAX_LINE / 1024,
                    super::sse::MAX_EVENT / 1024
                ),
            ));
        }
        if body.is_done() {
            sse.finish(|ev| on_event(ev.data, t_now, p, &mut stream_error));
            break Ok(());
        }
        let n = match stream.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => break Err(err(ErrorKind::StreamBroken, None, format!("read: {e}"))),
        };
        t_now = clock.now_ns();
        p.t_last_read_ns = t_now;
        if n == 0 {
            if body.ends_at_close() {
                sse.finish(|ev| on_event(ev.data, t_now, p, &mut stream_error));
                break Ok(());
            }
            break Err(err(
                ErrorKind::StreamBroken,
                None,
                format!(
                    "connection closed mid-stream after {} content events",
                    p.offsets.len()
                ),
            ));
        }
        start = 0;
        end = n;
    };
    if let Err(e) = outcome {
        return Ok(Err(e));
    }
    if let Some(e) = stream_error {
        return Ok(Err(e));
    }
    if keep_alive && !body.ends_at_close() {
        pool.put(stream);
    }
    let (stray, first) = sse.stray();
    if !p.done && p.finish_reason.is_none() {
        let why = if stray > 0 && p.offsets.is_empty() {
            format!(
                "response is not an SSE stream: `{}`",
                String::from_utf8_lossy(first)
            )
        } else {
            "stream ended without a finish_reason or [DONE]".to_string()
        };
        return Ok(Err(err(ErrorKind::Protocol, None, why)));
    }
    Ok(Ok(()))
}

/// Pull the human-readable message out of an error body (OpenAI `{"error":{"message"}}`,
/// vLLM's older `{"message"}`, FastAPI's `{"detail"}`), else the text itself.
fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let m = v
            .pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .or_else(|| v.get("error"));
        if let Some(m) = m {
            return m
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| m.to_string());
        }
    }
    String::from_utf8_lossy(body).trim().to_string()
}

#[derive(Debug, Clone, Copy)]
enum BodyKind {
    Chunked,
    Length(u64),
    UntilClose,
}

/// Frames the body by its transfer coding and passes the payload bytes on.
struct BodyReader {
    kind: BodyKind,
    chunked: ChunkedDecoder,
    left: u64,
}

impl BodyReader {
    fn new(kind: BodyKind) -> Self {
        Self {
            kind,
            chunked: ChunkedDecoder::new(),
            left: match kind {
                BodyKind::Length(n) => n,
                _ => 0,
            },
        }
    }

    fn is_done(&self) -> bool {
        match self.kind {
            BodyKind::Chunked => self.chunked.is_done(),
            BodyKind::Length(_) => self.left == 0,
            BodyKind::UntilClose => false,
        }
    }

    fn ends_at_close(&self) -> bool {
        matches!(self.kind, BodyKind::UntilClose)
    }

    fn feed<'a>(
        &mut self,
        bytes: &'a [u8],
        mut payload: impl FnMut(&'a [u8]),
    ) -> Result<(), String> {
        match self.kind {
            BodyKind::Chunked => {
                self.chunked
                    .decode(bytes, payload)
                    .map_err(|e| format!("bad chunked body: {e}"))?;
            }
            BodyKind::Length(_) => {
                let take = (bytes.len() as u64).min(self.left) as usize;
                payload(&bytes[..take]);
                self.left -= take as u64;
            }
            BodyKind::UntilClose => payload(bytes),
        }
        Ok(())
    }

    /// Read a whole (error) body into `out`, keeping at most `cap` bytes of it.
    async fn read_all(
        &mut self,
        stream: &mut tokio::net::TcpStream,
        buf: &mut [u8],
        start: usize,
        end: usize,
        out: &mut Vec<u8>,
        cap: usize,
    ) -> std::io::Result<()> {
        let keep = |p: &[u8], out: &mut Vec<u8>| {
            let room = cap.saturating_sub(out.len());
            out.extend_from_slice(&p[..p.len().min(room)]);
        };
        let mut chunk_out = Vec::new();
        self.feed(&buf[start..end], |p| chunk_out.extend_from_slice(p))
            .map_err(std::io::Error::other)?;
        keep(&chunk_out, out);
        // Error bodies are small; bound the wait in case the server never finishes one.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !self.is_done() {
            let n = match tokio::time::timeout_at(deadline, stream.read(buf)).await {
                Ok(r) => r?,
                Err(_) => break,
            };
            if n == 0 {
                break;
            }
            chunk_out.clear();
            self.feed(&buf[..n], |p| chunk_out.extend_from_slice(p))
                .map_err(std::io::Error::other)?;
            keep(&chunk_out, out);
        }
        Ok(())
    }
}
