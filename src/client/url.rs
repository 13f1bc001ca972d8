//! The server's address as the user gave it (`--base-url http://host:port[/prefix]`).

use anyhow::{Context, Result, bail};
use std::net::SocketAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// `host:port` for the `Host` header.
    pub authority: String,
    pub host: String,
    pub port: u16,
    /// Path prefix without trailing slash (empty for none).
    pub prefix: String,
}

impl BaseUrl {
    pub fn parse(url: &str) -> Result<Self> {
        // never echo a credential: every message shows the URL redacted
        let shown = crate::secrets::redact_url(url);
        let rest = if let Some(r) = url.strip_prefix("http://") {
            r
        } else if url.starts_with("https://") {
            bail!(
                "`{shown}`: https is not supported yet\nhint: benchmark the server over plain http (for example from the same network), or put a TLS-terminating proxy in front of the client"
            );
        } else {
            bail!(
                "`{shown}` is not an http URL\nhint: write it as `http://HOST:PORT`, e.g. `http://127.0.0.1:8000`"
            );
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            bail!(
                "`{shown}`: credentials in the URL are not sent\nhint: pass the key with `--api-key-env NAME` (a Bearer token read from that variable)"
            );
        }
        if authority.is_empty() {
            bail!("`{shown}` has no host\nhint: e.g. `http://127.0.0.1:8000`");
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']').to_string(),
                p.parse::<u16>()
                    .with_context(|| format!("`{shown}`: `{p}` is not a port number"))?,
            ),
            _ => (authority.to_string(), 80),
        };
        let mut prefix = path.trim_end_matches('/').to_string();
        // `--base-url http://h:8000/v1` is a common slip: the endpoint already has `/v1`.
        if prefix.ends_with("/v1") {
            prefix.truncate(prefix.len() - 3);
        }
        Ok(Self {
            authority: authority.to_string(),
            host,
            port,
            prefix,
        })
    }

    pub fn path(&self, endpoint: &str) -> String {
        format!("{}{}", self.prefix, endpoint)
    }

    pub async fn resolve(&self) -> Result<SocketAddr> {
        tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("cannot resolve host `{}`", self.host))?
            .next()
            .with_context(|| format!("host `{}` has no address", self.host))
    }
}

impl std::fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_prefix_and_rejects_others() {
        let u = BaseUrl::parse("http://127.0.0.1:8000").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("127.0.0.1", 8000, "")
        );
        let u = BaseUrl::parse("http://localhost:9/api/v1/").unwrap();
        assert_eq!(u.path("/v1/completions"), "/api/v1/completions");
        assert_eq!(BaseUrl::parse("http://h").unwrap().port, 80);
        assert!(BaseUrl::parse("https://h").is_err());
        assert!(BaseUrl::parse("h:80").is_err());
        assert!(BaseUrl::parse("http://h:xx").is_err());
    }
}
