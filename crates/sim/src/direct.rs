//! Where an engine's tokens go: streamed responses written by the engine thread straight
//! into the client's socket, or, for non-streamed answers and injected faults, a channel to
//! the request's HTTP task.
//!
//! Why the direct path exists: at 1,024 streams × 100 tokens/s, waking one HTTP task per
//! token (a cross-thread wake-up, an eventfd write, a poll, a channel message) cost the
//! simulator about 4 µs per token on top of the `send` itself, and its 10 ms steps stretched
//! to 11.8 ms. The engine thread now formats each SSE chunk and writes it with a
//! non-blocking `send` on a duplicate of the connection's descriptor, while the next step
//! "runs" (vLLM too streams a step's outputs from another process while the GPU computes the
//! next one). The HTTP task only waits for the end of the response.
//!
//! Tokens are pushed as steps finish and flushed in rounds (see `realtime`): a stream whose
//! tokens came from several steps shorter than a round (the `zero` profile's steps take no
//! time) gets them in one write, as a server with nothing between its steps would send them.

use super::engine::TokenOut;
use super::wire::{self, Api, Stream};
use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The receiving end of one request's tokens. Tokens are `push`ed as steps finish and go
/// out at `flush`, so tokens of several short steps leave in one write.
pub struct Consumer {
    to: Sink,
    /// Pushed since the last flush.
    dirty: bool,
    finished: bool,
    gone: bool,
}

enum Sink {
    /// Tokens handed to the request's HTTP task.
    Channel(mpsc::UnboundedSender<TokenOut>),
    /// SSE chunks written by the engine thread.
    Direct(Box<DirectStream>),
}

/// What became of a consumer at a flush.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivered {
    /// More tokens may follow.
    Open,
    /// The response is complete.
    Finished,
    /// The client went away; the engine should abort the request.
    Gone,
}

impl Consumer {
    pub fn channel(tx: mpsc::UnboundedSender<TokenOut>) -> Self {
        Self::new(Sink::Channel(tx))
    }

    pub fn direct(d: DirectStream) -> Self {
        Self::new(Sink::Direct(Box::new(d)))
    }

    fn new(to: Sink) -> Self {
        Self {
            to,
            dirty: false,
            finished: false,
            gone: false,
        }
    }

    /// Take the next token. Returns true if it is the first since the last flush (the
    /// caller then owes this consumer a flush).
    pub fn push(&mut self, t: TokenOut) -> bool {
        let first = !self.dirty;
        self.dirty = true;
        self.finished |= t.finish.is_some();
        match &mut self.to {
            Sink::Channel(tx) => self.gone |= tx.send(t).is_err(),
            Sink::Direct(d) => d.format(t),
        }
        first
    }

    /// Send what was pushed.
    pub fn flush(&mut self) -> Delivered {
        self.dirty = false;
        if let Sink::Direct(d) = &mut self.to {
            if !d.flush() {
                d.end(End::Gone);
                self.gone = true;
            } else if self.finished {
                d.finish();
            }
        }
        match (self.gone, self.finished) {
            (true, _) => Delivered::Gone,
            (false, true) => Delivered::Finished,
            (false, false) => Delivered::Open,
        }
    }
}

/// How a directly streamed response ended, as told to its HTTP task.
#[derive(Debug)]
pub enum End {
    /// All chunks are formatted; these bytes the socket did not take yet (the client read
    /// slower than we wrote), and the task writes them before reading the next request.
    Finished(Vec<u8>),
    /// Writing failed: the client closed or reset the connection.
    Gone,
}

/// One streamed response owned by the engine thread.
pub struct DirectStream {
    sock: TcpStream,
    spec: DirectSpec,
    /// Bytes formatted but not yet accepted by the socket.
    unsent: Vec<u8>,
    done: Option<oneshot::Sender<End>>,
}

/// The per-request constants of a directly streamed response.
pub struct DirectSpec {
    pub api: Api,
    pub sse_id: String,
    pub created: u64,
    pub model: Arc<str>,
    pub request_id: u64,
    pub prompt_tokens: u32,
    pub include_usage: bool,
    /// `stream_options.continuous_usage_stats`: running usage in every chunk.
    pub continuous_usage: bool,
}

impl DirectStream {
    /// `sock` is a duplicate of the connection's (non-blocking) descriptor; the HTTP task
    /// must not write to the connection until `done` fires.
    pub fn new(sock: TcpStream, spec: DirectSpec, done: oneshot::Sender<End>) -> Self {
        Self {
            sock,
            spec,
            unsent: Vec::with_capacity(512),
            done: Some(done),
        }
    }

    fn format(&mut self, t: TokenOut) {
        let spec = &self.spec;
        let s = Stream {
            api: spec.api,
            id: &spec.sse_id,
            created: spec.created,
            model: &spec.model,
        };
        let running = spec.continuous_usage.then_some(spec.prompt_tokens);
        if spec.api == Api::Chat && t.index == 0 {
            s.role_chunk_counted(&mut self.unsent, running);
        }
        s.token_chunk_counted(
            &mut self.unsent,
            wire::token_text(spec.request_id, t.index),
            t.finish,
            running.map(|p| (p, t.index + 1)),
        );
        if t.finish.is_some() {
            if spec.include_usage {
                s.usage_chunk(&mut self.unsent, spec.prompt_tokens, t.index + 1);
            }
            Stream::done(&mut self.unsent);
        }
    }

    /// Write what the socket takes now; false if the connection is gone.
    fn flush(&mut self) -> bool {
        let mut at = 0;
        let ok = loop {
            if at == self.unsent.len() {
                break true;
            }
            match (&self.sock).write(&self.unsent[at..]) {
                Ok(0) => break false,
                Ok(n) => at += n,
                // the client's receive buffer is full: keep the rest for the next token
                Err(e) if e.kind() == ErrorKind::WouldBlock => break true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break false,
            }
        };
        self.unsent.drain(..at);
        ok
    }

    /// The response is complete: hand back what the socket has not taken yet.
    fn finish(&mut self) {
        let rest = std::mem::take(&mut self.unsent);
        self.end(End::Finished(rest));
    }

    fn end(&mut self, how: End) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(how);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (client, server)
    }

    fn spec(api: Api) -> DirectSpec {
        DirectSpec {
            api,
            sse_id: "cmpl-1".into(),
            created: 1,
            model: "m".into(),
            request_id: 7,
            prompt_tokens: 5,
            include_usage: true,
            continuous_usage: false,
        }
    }

    fn deliver(c: &mut Consumer, t: TokenOut) -> Delivered {
        assert!(c.push(t));
        c.flush()
    }

    fn unsent(c: &Consumer) -> usize {
        match &c.to {
            Sink::Direct(d) => d.unsent.len(),
            Sink::Channel(_) => 0,
        }
    }

    fn tok(index: u32, finish: Option<&'static str>) -> TokenOut {
        TokenOut {
            id: 7,
            index,
            finish,
        }
    }

    #[test]
    fn writes_the_same_bytes_as_the_task_path() {
        for api in [Api::Completions, Api::Chat] {
            let (mut client, server) = pair();
            let (tx, mut rx) = oneshot::channel();
            let mut d = Consumer::direct(DirectStream::new(server, spec(api), tx));
            assert_eq!(deliver(&mut d, tok(0, None)), Delivered::Open);
            // two tokens of two short steps, one flush
            assert!(d.push(tok(1, None)));
            assert!(!d.push(tok(2, Some("length"))));
            assert_eq!(d.flush(), Delivered::Finished);
            let Ok(End::Finished(rest)) = rx.try_recv() else {
                panic!("not finished")
            };
            assert!(rest.is_empty());
            drop(d);
            let mut got = Vec::new();
            client.read_to_end(&mut got).unwrap();
            // what `server::generate` builds for the same tokens
            let s = Stream {
                api,
                id: "cmpl-1",
                created: 1,
                model: "m",
            };
            let mut want = Vec::new();
            if api == Api::Chat {
                s.role_chunk(&mut want);
            }
            s.token_chunk(&mut want, wire::token_text(7, 0), None);
            s.token_chunk(&mut want, wire::token_text(7, 1), None);
            s.token_chunk(&mut want, wire::token_text(7, 2), Some("length"));
            s.usage_chunk(&mut want, 5, 3);
            Stream::done(&mut want);
            assert_eq!(got, want, "{api:?}");
        }
    }

    #[test]
    fn a_full_socket_keeps_the_rest_and_hands_it_over_at_the_end() {
        let (client, server) = pair();
        server.set_nonblocking(true).unwrap();
        let (tx, mut rx) = oneshot::channel();
        let mut d = Consumer::direct(DirectStream::new(server, spec(Api::Completions), tx));
        // the client never reads: fill its receive buffer and our send buffer
        let mut i = 0;
        while unsent(&d) == 0 {
            assert_eq!(deliver(&mut d, tok(i, None)), Delivered::Open);
            i += 1;
            assert!(i < 1_000_000, "socket never filled");
        }
        assert_eq!(deliver(&mut d, tok(i, Some("length"))), Delivered::Finished);
        let Ok(End::Finished(rest)) = rx.try_recv() else {
            panic!("not finished")
        };
        assert!(rest.ends_with(b"data: [DONE]\n\n\r\n0\r\n\r\n"));
        drop(client);
    }

    #[test]
    fn a_closed_client_is_gone() {
        let (client, server) = pair();
        drop(client);
        let (tx, mut rx) = oneshot::channel();
        let mut d = Consumer::direct(DirectStream::new(server, spec(Api::Completions), tx));
        // the first write after the peer's close draws a reset, a later one fails
        let mut got = Delivered::Open;
        for i in 0..100 {
            got = deliver(&mut d, tok(i, None));
            if got == Delivered::Gone {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(got, Delivered::Gone);
        assert!(matches!(rx.try_recv(), Ok(End::Gone)));
    }
}
