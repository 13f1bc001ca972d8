//! The server's address as the user gave it (`--base-url http[s]://host:port[/prefix]`).

use anyhow::{Context, Result, bail};
use std::net::SocketAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// `https`: TLS to the server (see `client::tls`).
    pub tls: bool,
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
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            bail!(
                "`{shown}` is not an http(s) URL\nhint: write it as `http://HOST:PORT` or `https://HOST`, e.g. `http://127.0.0.1:8000`"
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
            _ => (authority.to_string(), if tls { 443 } else { 80 }),
        };
        let mut prefix = path.trim_end_matches('/').to_string();
        // `--base-url http://h:8000/v1` is a common slip: the endpoint already has `/v1`.
        if prefix.ends_with("/v1") {
            prefix.truncate(prefix.len() - 3);
        }
        Ok(Self {
            tls,
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
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority, self.prefix)
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
        let u = BaseUrl::parse("https://gw.example/v1").unwrap();
        assert!(u.tls && u.port == 443 && u.prefix.is_empty());
        assert_eq!(u.to_string(), "https://gw.example");
        assert!(!BaseUrl::parse("http://h").unwrap().tls);
        assert!(BaseUrl::parse("h:80").is_err());
        assert!(BaseUrl::parse("http://h:xx").is_err());
    }
}
