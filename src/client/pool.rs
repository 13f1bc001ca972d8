//! One shared pool of keep-alive HTTP/1.1 connections to one server.
//!
//! A request takes an idle connection or opens one; a connection goes back only after its
//! response was read to the end. The pool never holds more than it was sized for (the
//! concurrency), so it neither leaks sockets nor makes each request pay a handshake.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Servers close idle keep-alive connections (uvicorn, which vLLM runs on, after 5 s). A
/// connection idle for longer than this is dropped rather than raced against that close.
const MAX_IDLE: Duration = Duration::from_secs(4);

pub struct Pool {
    addr: SocketAddr,
    max_idle: usize,
    idle: Mutex<Vec<(TcpStream, Instant)>>,
}

/// A connection checked out of the pool, and whether it was opened for this request.
pub struct Checkout {
    pub stream: TcpStream,
    pub reused: bool,
}

impl Pool {
    pub fn new(addr: SocketAddr, max_idle: usize) -> Self {
        Self {
            addr,
            max_idle: max_idle.max(1),
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// An idle live connection, if there is one.
    pub fn take_idle(&self) -> Option<Checkout> {
        let mut idle = self.idle.lock().expect("pool lock");
        while let Some((stream, since)) = idle.pop() {
            if since.elapsed() > MAX_IDLE || !looks_open(&stream) {
                continue;
            }
            return Some(Checkout {
                stream,
                reused: true,
            });
        }
        None
    }

    /// Open a new connection.
    pub async fn connect(&self, timeout: Duration) -> std::io::Result<Checkout> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(self.addr))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        stream.set_nodelay(true)?;
        Ok(Checkout {
            stream,
            reused: false,
        })
    }

    /// Return a connection whose last response was read completely.
    pub fn put(&self, stream: TcpStream) {
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.len() < self.max_idle {
            idle.push((stream, Instant::now()));
        }
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().expect("pool lock").len()
    }
}

/// An idle connection with nothing to read is open; one that reads EOF (or stray bytes) is not.
fn looks_open(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}
