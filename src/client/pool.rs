//! One shared pool of keep-alive HTTP/1.1 connections to one server.
//!
//! A request takes an idle connection or opens one; a connection goes back only after its
//! response was read to the end. The pool never holds more than it was sized for (the
//! concurrency), so it neither leaks sockets nor makes each request pay a handshake.

use super::conn::{Conn, Connector};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Servers close idle keep-alive connections (uvicorn, which vLLM runs on, after 5 s). A
/// connection idle for longer than this is dropped rather than raced against that close.
const MAX_IDLE: Duration = Duration::from_secs(4);

pub struct Pool {
    connector: Connector,
    max_idle: usize,
    idle: Mutex<Vec<(Conn, Instant)>>,
}

/// A connection checked out of the pool, and whether it was opened for this request.
pub struct Checkout {
    pub stream: Conn,
    pub reused: bool,
}

impl Pool {
    pub fn new(connector: Connector, max_idle: usize) -> Self {
        Self {
            connector,
            max_idle: max_idle.max(1),
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.connector.addr()
    }

    /// TLS connections cannot be written from the pacer thread (see `Conn::try_write`).
    pub fn is_tls(&self) -> bool {
        self.connector.is_tls()
    }

    /// An idle live connection, if there is one.
    pub fn take_idle(&self) -> Option<Checkout> {
        let mut idle = self.idle.lock().expect("pool lock");
        // dead ones are closed after the lock is let go (see `fresh_idle`)
        let mut dead = Vec::new();
        let found = loop {
            let Some((stream, since)) = idle.pop() else {
                break None;
            };
            if since.elapsed() > MAX_IDLE || !stream.looks_open() {
                dead.push(stream);
                continue;
            }
            break Some(Checkout {
                stream,
                reused: true,
            });
        };
        drop(idle);
        drop(dead);
        found
    }

    /// Open a new connection (with its TLS handshake for `https`).
    pub async fn connect(&self, timeout: Duration) -> std::io::Result<Checkout> {
        let stream = self.connector.connect(timeout).await?;
        Ok(Checkout {
            stream,
            reused: false,
        })
    }

    /// Return a connection whose last response was read completely.
    pub fn put(&self, stream: Conn) {
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.len() < self.max_idle {
            idle.push((stream, Instant::now()));
        }
    }

    /// The most idle connections the pool keeps.
    pub fn capacity(&self) -> usize {
        self.max_idle
    }

    /// Idle connections that will still be fresh `ahead` from now, after dropping those
    /// that will not (cheap: ages only, no syscall). The idle list is in the order the
    /// connections were returned, so the stale ones are its front.
    pub fn fresh_idle(&self, ahead: Duration) -> usize {
        let mut idle = self.idle.lock().expect("pool lock");
        let limit = MAX_IDLE.saturating_sub(ahead);
        let n = idle.partition_point(|(_, since)| since.elapsed() > limit);
        let stale: Vec<_> = idle.drain(..n).collect();
        let fresh = idle.len();
        // closed after the lock is let go: closing a burst's worth of sockets takes a
        // millisecond, which the pacer thread would otherwise wait out for its next send
        drop(idle);
        drop(stale);
        fresh
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().expect("pool lock").len()
    }
}
