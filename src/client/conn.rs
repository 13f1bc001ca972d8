//! One connection to a server, plain TCP or TLS over it, and how to open one.
//!
//! Every timestamp of a TLS stream is taken when the *decrypted* bytes reach us: the read
//! returns them after rustls has decrypted a whole record, so TTFT includes decryption
//! (microseconds per record) and a new connection's handshake (one round trip more than
//! plain TCP, in `connect_ns`).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How to open connections to one server: its address, and TLS when the URL is `https`.
#[derive(Clone)]
pub struct Connector {
    addr: SocketAddr,
    tls: Option<Tls>,
}

#[derive(Clone)]
struct Tls {
    connector: TlsConnector,
    name: rustls::pki_types::ServerName<'static>,
    /// `host:port`, for messages.
    authority: String,
}

impl Connector {
    pub fn plain(addr: SocketAddr) -> Self {
        Self { addr, tls: None }
    }

    /// TLS to `addr`, checking the certificate against `host`.
    pub fn tls(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        host: &str,
        authority: &str,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            addr,
            tls: Some(Tls {
                connector: TlsConnector::from(config),
                name: super::tls::server_name(host)?,
                authority: authority.to_string(),
            }),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Connect (and shake hands), all within `timeout`.
    pub async fn connect(&self, timeout: Duration) -> io::Result<Conn> {
        tokio::time::timeout(timeout, self.open())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
    }

    async fn open(&self) -> io::Result<Conn> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let Some(tls) = &self.tls else {
            return Ok(Conn::Plain(tcp));
        };
        match tls.connector.connect(tls.name.clone(), tcp).await {
            Ok(s) => Ok(Conn::Tls(Box::new(s))),
            // the handshake's failure, explained (kind kept: a reset stays a reset)
            Err(e) => Err(io::Error::new(
                handshake_kind(&e),
                super::tls::explain_handshake_error(&e, &tls.authority),
            )),
        }
    }
}

/// A rustls error is `InvalidData`; make it `Other` so it reads as the handshake's, not
/// the stream's. Socket errors keep their kind.
fn handshake_kind(e: &io::Error) -> io::ErrorKind {
    match e.kind() {
        io::ErrorKind::InvalidData => io::ErrorKind::Other,
        k => k,
    }
}

/// An open connection.
pub enum Conn {
    Plain(TcpStream),
    /// Boxed: rustls' state is ~1 KB, most of a pooled connection's size otherwise.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref().0,
        }
    }

    /// Write what the socket takes now, without waiting and from any thread: plain TCP
    /// only (a TLS write needs the connection's state, owned by the task that drives it).
    pub fn try_write(&self, bytes: &[u8]) -> Option<io::Result<usize>> {
        match self {
            Conn::Plain(s) => Some(s.try_write(bytes)),
            Conn::Tls(_) => None,
        }
    }

    /// An idle connection is open when reading it would wait: it has not been closed.
    /// Peeked, not read: a TLS 1.3 server may have sent a session ticket after the
    /// handshake, which must stay in the socket for rustls (and means the connection is
    /// open); a plain connection with stray bytes is not fit for the next response.
    pub fn looks_open(&self) -> bool {
        let mut probe = [0u8; 1];
        let mut buf = ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.tcp().poll_peek(&mut cx, &mut buf) {
            Poll::Pending => true,
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(_)) => matches!(self, Conn::Tls(_)),
        }
    }

    /// Make the coming close an RST (SO_LINGER 0).
    pub fn set_linger_zero(&self) {
        #[allow(deprecated)] // lingering only blocks on drop for a non-zero timeout
        let _ = self.tcp().set_linger(Some(Duration::ZERO));
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
