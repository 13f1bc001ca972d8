//! A server as the client reaches it: its URL, how to connect (address, TLS) and the
//! headers every request carries. Made once per run (`Access::reach`) and shared by the
//! load, the control-plane requests and the `/metrics` monitor, so all three speak to the
//! server the same way.

use super::conn::Connector;
use super::headers::{HeaderSpec, Headers};
use super::tls::{self, TlsOptions};
use super::url::BaseUrl;
use anyhow::Result;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

#[derive(Clone)]
pub struct Server {
    pub url: BaseUrl,
    pub connector: Connector,
    pub headers: Arc<Headers>,
}

impl Server {
    pub fn addr(&self) -> SocketAddr {
        self.connector.addr()
    }

    /// A server's words with the values this run sends it hidden (see `Headers::redact`).
    pub fn redact(&self, text: &str) -> String {
        self.headers.redact(text)
    }
}

impl std::fmt::Debug for Server {
    // the headers may hold secrets: only their names are shown
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("url", &self.url)
            .field("addr", &self.addr())
            .field("tls", &self.connector.is_tls())
            .field("headers", &self.headers.names())
            .finish()
    }
}

/// How a run reaches its servers: TLS trust and the headers. The TLS configuration is
/// built on first use, so a plain-http run never reads the system's certificates.
pub struct Access {
    tls: TlsOptions,
    tls_config: OnceLock<Arc<rustls::ClientConfig>>,
    headers: Arc<Headers>,
    /// `--ca-cert`/`--insecure` given for an `http://` URL was said once.
    warned_plain: std::sync::atomic::AtomicBool,
}

impl Access {
    /// Resolves the headers' values now (a missing environment variable is an error before
    /// anything is sent).
    pub fn new(tls: TlsOptions, headers: &HeaderSpec) -> Result<Self> {
        if tls.insecure {
            eprintln!("{}", tls::INSECURE_WARNING);
        }
        Ok(Self {
            tls,
            tls_config: OnceLock::new(),
            headers: Arc::new(headers.resolve()?),
            warned_plain: Default::default(),
        })
    }

    /// Plain access with no extra headers (the built-in simulator, tests).
    pub fn plain() -> Self {
        Self {
            tls: TlsOptions::default(),
            tls_config: OnceLock::new(),
            headers: Arc::new(Headers::default()),
            warned_plain: Default::default(),
        }
    }

    pub fn headers(&self) -> &Arc<Headers> {
        &self.headers
    }

    /// Resolve `url` and make the server reachable over http or https.
    pub async fn reach(&self, url: &BaseUrl) -> Result<Server> {
        let addr = url.resolve().await?;
        self.at(url, addr)
    }

    /// The server at a known address (no name lookup).
    pub fn at(&self, url: &BaseUrl, addr: SocketAddr) -> Result<Server> {
        let connector = if url.tls {
            Connector::tls(addr, self.tls_config()?, &url.host, &url.authority)?
        } else {
            let tls_asked = self.tls.ca_cert.is_some() || self.tls.insecure;
            if tls_asked
                && !self
                    .warned_plain
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                eprintln!(
                    "warning: `{url}` is plain http: `--ca-cert`/`--insecure` (`server.ca_cert`/`insecure`) do not apply\nhint: `https://` if the server speaks TLS"
                );
            }
            Connector::plain(addr)
        };
        Ok(Server {
            url: url.clone(),
            connector,
            headers: self.headers.clone(),
        })
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        if let Some(c) = self.tls_config.get() {
            return Ok(c.clone());
        }
        let c = tls::client_config(&self.tls)?;
        Ok(self.tls_config.get_or_init(|| c).clone())
    }
}
