//! One streaming request, from the first byte written to the last byte read, turned into a
//! `RequestRecord`.
//!
//! The clock is read once per socket read, right after the bytes arrive and before any
//! parsing; every event decoded from that read carries that time. The path from socket to
//! event allocates nothing after warm-up: the read buffer, the chunked decoder and the SSE
//! decoder reuse their buffers, and a content event costs one scan of its bytes.

use super::body::BodyReader;
use super::chunk::{self, Chunk, Payload};
use super::conn::Conn;
use super::head::{self, BodyKind, HeadError, ResponseHead};
use super::pool::{Checkout, Pool};
use super::sse::SseDecoder;
use loadtest_analysis::record::{ErrorKind, RequestError, RequestRecord, TokenSource};
use loadtest_base::clock::Clock;
use std::ops::Range;
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
    /// opens one and sends), and always for TLS, whose writes only the runtime can make.
    pub fn try_send(pool: &Pool, clock: &Clock, bytes: &[u8]) -> Option<Self> {
        if pool.is_tls() {
            return None;
        }
        let conn = pool.take_idle()?;
        let t = clock.now_ns();
        // an error here (the server closed the idle connection) shows again on the
        // runtime's write, which retries on a fresh connection
        let written = conn
            .stream
            .try_write(bytes)
            .and_then(Result::ok)
            .unwrap_or(0);
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
        turn: None,
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
        let (conn, written) = match pre.take() {
            Some(ps) => {
                if let Some(t) = ps.t_send_ns {
                    p.t_send_ns = t;
                }
                (ps.conn, ps.written)
            }
            None => (checkout(pool, clock, timeouts, p).await?, 0),
        };
        match exchange(pool, clock, conn, spec, written, p).await {
            Ok(()) => return Ok(()),
            Err(Failed::Error(e)) => return Err(e),
            Err(Failed::Retry) if attempt == 1 => p.resent += 1,
            Err(Failed::Retry) => {
                return Err(broken("connection closed before any response byte"));
            }
        }
    }
}

/// An idle pooled connection, else a new one (its handshake time recorded).
async fn checkout(
    pool: &Pool,
    clock: &Clock,
    timeouts: Timeouts,
    p: &mut Progress,
) -> Result<Checkout, RequestError> {
    if let Some(c) = pool.take_idle() {
        return Ok(c);
    }
    let t0 = clock.now_ns();
    let c = pool
        .connect(timeouts.connect)
        .await
        .map_err(|e| connect_error(pool, &e))?;
    p.connect_ns = Some(clock.now_ns() - t0);
    Ok(c)
}

fn connect_error(pool: &Pool, e: &std::io::Error) -> RequestError {
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
}

/// Why an exchange produced no response.
enum Failed {
    /// Nothing of a response arrived on a reused connection: the server closed it without
    /// seeing the request, which may be sent again.
    Retry,
    Error(RequestError),
}

impl From<RequestError> for Failed {
    fn from(e: RequestError) -> Self {
        Failed::Error(e)
    }
}

/// One request and its response on one connection.
async fn exchange(
    pool: &Pool,
    clock: &Clock,
    conn: Checkout,
    spec: &RequestSpec,
    written: usize,
    p: &mut Progress,
) -> Result<(), Failed> {
    let Checkout { mut stream, reused } = conn;
    send(&mut stream, reused, clock, spec, written, p).await?;
    let mut buf = vec![0u8; READ_BUF];
    let (head, filled) = read_head(&mut stream, reused, clock, &mut buf, p).await?;
    if !head.is_success() {
        // Boxed: this cold path's state (an error body read under its own deadline) would
        // otherwise be the largest of the exchange and sit in every request's future.
        let status_error = Box::pin(status_error(pool, stream, head, &mut buf, filled));
        return Err(status_error.await.into());
    }
    let mut events = EventStream::new(head.body);
    read_events(
        &mut stream,
        clock,
        &mut buf,
        head.len..filled,
        &mut events,
        p,
    )
    .await?;
    if let Some(e) = events.failed {
        return Err(e.into());
    }
    if head.keep_alive && !events.body.ends_at_close() {
        pool.put(stream);
    }
    Ok(check_finished(&events.sse, p)?)
}

/// Write what of the request is not written yet.
async fn send(
    stream: &mut Conn,
    reused: bool,
    clock: &Clock,
    spec: &RequestSpec,
    written: usize,
    p: &mut Progress,
) -> Result<(), Failed> {
    // a re-send keeps the first send's time: the lost attempt is part of the latency
    if written == 0 && p.resent == 0 {
        p.t_send_ns = clock.now_ns();
    }
    // flushed: a TLS stream may hold the last record back until asked
    let sent = async {
        stream.write_all(&spec.bytes[written..]).await?;
        stream.flush().await
    };
    match sent.await {
        Ok(()) => Ok(()),
        Err(_) if reused => Err(Failed::Retry),
        Err(e) => Err(broken(format!("write: {e}")).into()),
    }
}

/// Read until the response head is complete. Returns it and how much of `buf` is filled:
/// the body's first bytes may already be in `buf[head.len..filled]`.
async fn read_head(
    stream: &mut Conn,
    reused: bool,
    clock: &Clock,
    buf: &mut Vec<u8>,
    p: &mut Progress,
) -> Result<(ResponseHead, usize), Failed> {
    let mut filled = 0;
    loop {
        // a long head grows the buffer; the parser caps it at `MAX_HEAD_BYTES`
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) if filled == 0 && reused => return Err(Failed::Retry),
            Ok(0) => return Err(broken("connection closed before the response head").into()),
            Ok(n) => n,
            Err(e) => return Err(broken(format!("read: {e}")).into()),
        };
        p.t_last_read_ns = clock.now_ns();
        filled += n;
        match head::parse_response_head(&buf[..filled]) {
            Ok(Some(head)) => return Ok((head, filled)),
            Ok(None) => continue,
            Err(e @ HeadError::TooLarge) => return Err(protocol(e.to_string()).into()),
            Err(HeadError::Invalid(_)) if super::tls::looks_like_tls(&buf[..filled]) => {
                return Err(
                    protocol("the server answered in TLS: use `https://` in the URL").into(),
                );
            }
            Err(e @ HeadError::Invalid(_)) => {
                let start = String::from_utf8_lossy(&buf[..filled.min(120)]);
                return Err(protocol(format!("{e}: `{start}`")).into());
            }
        }
    }
}

/// A non-2xx answer: the server's message, from its body (bounded). The connection goes back
/// to the pool only if that body was read to its end.
async fn status_error(
    pool: &Pool,
    mut stream: Conn,
    head: ResponseHead,
    buf: &mut [u8],
    filled: usize,
) -> RequestError {
    let mut body = BodyReader::new(head.body);
    let mut text = Vec::new();
    let read = body
        .read_all(
            &mut stream,
            buf,
            head.len,
            filled,
            &mut text,
            MAX_MESSAGE * 4,
        )
        .await;
    let message = error_message(&text);
    if read.is_ok() && head.keep_alive && body.is_done() {
        pool.put(stream);
    }
    err(ErrorKind::HttpStatus, Some(head.status), message)
}

/// Read the event stream to its end. The clock is read once per read, as soon as it returns,
/// and that time stamps every event in its bytes. `first` is the part of `buf` already read
/// with the head.
async fn read_events(
    stream: &mut Conn,
    clock: &Clock,
    buf: &mut [u8],
    first: Range<usize>,
    events: &mut EventStream,
    p: &mut Progress,
) -> Result<(), RequestError> {
    let mut t = p.t_last_read_ns;
    events.feed(&buf[first], t, p)?;
    while !events.body.is_done() {
        let n = stream
            .read(buf)
            .await
            .map_err(|e| broken(format!("read: {e}")))?;
        t = clock.now_ns();
        p.t_last_read_ns = t;
        if n == 0 {
            if !events.body.ends_at_close() {
                let events = p.offsets.len();
                return Err(broken(format!(
                    "connection closed mid-stream after {events} content events"
                )));
            }
            break;
        }
        events.feed(&buf[..n], t, p)?;
    }
    events.finish(t, p);
    Ok(())
}

/// The body of a 2xx answer turned into events on `Progress`: transfer framing, SSE, then
/// the chunk classifier, all over the read buffer in place.
struct EventStream {
    body: BodyReader,
    sse: SseDecoder,
    /// The first error event or unreadable chunk; the events after it are ignored. Reported
    /// once the body has ended (so the record ends when the stream did).
    failed: Option<RequestError>,
}

impl EventStream {
    fn new(body: BodyKind) -> Self {
        Self {
            body: BodyReader::new(body),
            sse: SseDecoder::new(),
            failed: None,
        }
    }

    /// Decode one read's bytes, every event in them stamped `t`.
    fn feed(&mut self, bytes: &[u8], t: u64, p: &mut Progress) -> Result<(), RequestError> {
        let Self { body, sse, failed } = self;
        body.feed(bytes, |payload| {
            sse.feed(payload, |ev| record(p, failed, ev.data, t));
        })
        .map_err(|e| protocol(format!("bad chunked body: {e}")))?;
        if sse.overflowed() {
            return Err(protocol(format!(
                "an SSE line or event outgrew its cap ({} KiB line, {} KiB event): not a stream of chunks",
                super::sse::MAX_LINE / 1024,
                super::sse::MAX_EVENT / 1024
            )));
        }
        Ok(())
    }

    /// The body ended: an event still held for want of its closing blank line counts too.
    fn finish(&mut self, t: u64, p: &mut Progress) {
        let Self { sse, failed, .. } = self;
        sse.finish(|ev| record(p, failed, ev.data, t));
    }
}

fn record(p: &mut Progress, failed: &mut Option<RequestError>, data: &[u8], t: u64) {
    if failed.is_some() || p.done {
        return;
    }
    if let Err(e) = p.record_event(data, t) {
        *failed = Some(e);
    }
}

impl Progress {
    /// One event's data, which arrived at `t`.
    fn record_event(&mut self, data: &[u8], t: u64) -> Result<(), RequestError> {
        match chunk::classify(data) {
            Ok(Payload::Done) => self.done = true,
            Ok(Payload::Chunk(c)) => self.record_chunk(c, t),
            Ok(Payload::Error(m)) => return Err(protocol(format!("error event in stream: {m}"))),
            Err(m) => return Err(protocol(m)),
        }
        Ok(())
    }

    fn record_chunk(&mut self, c: Chunk, t: u64) {
        if c.content {
            self.offsets.push(t - self.t_send_ns);
            // tokens that came without text (a chunk of its own) are carried by the next
            // event that has some
            match c.usage.and_then(|u| u.completion_tokens) {
                Some(n) if !self.event_tokens_unknown => {
                    self.event_tokens
                        .push(n.saturating_sub(self.tokens_credited));
                    self.tokens_credited = n;
                }
                _ => self.event_tokens_unknown = true,
            }
        }
        if c.finish_reason.is_some() {
            self.finish_reason = c.finish_reason;
        }
        if let Some(u) = c.usage {
            self.usage_completion = u.completion_tokens.or(self.usage_completion);
            self.usage_prompt = u.prompt_tokens.or(self.usage_prompt);
        }
    }
}

/// A stream read to its end must also have said it was finished (`[DONE]` or a
/// finish_reason); one that did neither was cut short or was never a stream of chunks.
fn check_finished(sse: &SseDecoder, p: &Progress) -> Result<(), RequestError> {
    if p.done || p.finish_reason.is_some() {
        return Ok(());
    }
    let (stray, first) = sse.stray();
    let why = if stray > 0 && p.offsets.is_empty() {
        format!(
            "response is not an SSE stream: `{}`",
            String::from_utf8_lossy(first)
        )
    } else {
        "stream ended without a finish_reason or [DONE]".to_string()
    };
    Err(protocol(why))
}

fn broken(message: impl Into<String>) -> RequestError {
    err(ErrorKind::StreamBroken, None, message.into())
}

fn protocol(message: impl Into<String>) -> RequestError {
    err(ErrorKind::Protocol, None, message.into())
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
