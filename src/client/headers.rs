//! The extra header lines every request to a server carries: the API key as a Bearer
//! token, and the user's own (`--header 'K: V'`, `--header-env 'K: VAR'`; `server.headers`
//! and `server.header_env` in an experiment), for gateways that route or authorise on them.
//!
//! Rendered once, before the run, into the bytes the request heads embed. Values may be
//! secrets: they live only in memory and in the requests on the wire. What a run writes
//! down is [`Headers::names`], never a value.

use anyhow::{Result, bail};

/// Where the API key comes from when nothing says otherwise (as the OpenAI clients do).
pub const DEFAULT_API_KEY_ENV: &str = "OPENAI_API_KEY";

/// Headers the client writes itself: framing and routing it must control.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "content-type",
];

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// `Name: value\r\n` for each header, in order.
    lines: Vec<u8>,
    names: Vec<String>,
    /// Every value sent (the key included): what [`Headers::redact`] hides when a server
    /// echoes it back in an error.
    values: Vec<String>,
}

/// What the user asked for, before values are looked up.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeaderSpec {
    /// Environment variable holding the API key (sent as `Authorization: Bearer`); its
    /// absence is not an error (servers without `--api-key` need none).
    pub api_key_env: String,
    /// Headers given with their value.
    pub literal: Vec<(String, String)>,
    /// Headers whose value is read from an environment variable (secrets).
    pub from_env: Vec<(String, String)>,
}

impl HeaderSpec {
    /// Look the values up in the environment and render the header lines.
    pub fn resolve(&self) -> Result<Headers> {
        self.resolve_with(|k| std::env::var(k).ok())
    }

    /// [`resolve`](Self::resolve) with the environment given (tests).
    pub fn resolve_with(&self, env: impl Fn(&str) -> Option<String>) -> Result<Headers> {
        let mut h = Headers::default();
        for (name, value) in &self.literal {
            if value == crate::secrets::REDACTED {
                bail!(
                    "header `{name}`: its value was redacted when the experiment was saved\nhint: give secret headers with `server.header_env` (the value stays in an environment variable), or set it again with `--set`"
                );
            }
            h.push(name, value)?;
        }
        for (name, var) in &self.from_env {
            let Some(value) = env(var).filter(|v| !v.is_empty()) else {
                bail!(
                    "header `{name}`: environment variable `{var}` is not set or is empty\nhint: `export {var}=…` before the run (a variable name: letters, digits, `_`), or drop the header"
                );
            };
            h.push(name, &value)?;
        }
        // an explicit Authorization header wins over the key from the environment
        if !h.has("authorization")
            && let Some(key) = env(&self.api_key_env).filter(|k| !k.is_empty())
        {
            h.push("Authorization", &format!("Bearer {key}"))?;
        }
        Ok(h)
    }
}

// Debug output (a plan printed in an error, a log) shows header names, never values.
impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Headers")
            .field("names", &self.names)
            .finish()
    }
}

impl std::fmt::Debug for HeaderSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |v: &[(String, String)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        f.debug_struct("HeaderSpec")
            .field("api_key_env", &self.api_key_env)
            .field("literal", &names(&self.literal))
            .field("from_env", &self.from_env)
            .finish()
    }
}

impl Headers {
    /// The header lines, ready to go into a request head.
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// The names sent (what results may record; never the values).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// `text` (a server's words: an error body, a version string) with every header value
    /// this run sends replaced by `<redacted>`: a gateway that echoes the request's
    /// headers in its 401 must not put the key into a record or onto the terminal.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        self.redact_in_place(&mut out);
        out
    }

    /// [`redact`](Self::redact) without a copy when nothing matches (the error path of
    /// every failed request).
    pub fn redact_in_place(&self, text: &mut String) {
        for v in &self.values {
            // a token shorter than this would redact ordinary words
            if v.len() >= 4 && text.contains(v.as_str()) {
                *text = text.replace(v.as_str(), crate::secrets::REDACTED);
            }
        }
    }

    fn has(&self, lower: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(lower))
    }

    fn push(&mut self, name: &str, value: &str) -> Result<()> {
        check_name(name)?;
        if RESERVED.iter().any(|r| name.eq_ignore_ascii_case(r)) {
            bail!(
                "header `{name}` is set by the client itself and cannot be overridden\nhint: drop it; the client writes Host, Content-Length, Content-Type, Connection and the framing"
            );
        }
        if self.has(name) {
            bail!("header `{name}` is given twice\nhint: give each header once");
        }
        // the value is not shown: it may be a secret
        if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            bail!(
                "header `{name}`: its value holds a line break or NUL, which would split the request"
            );
        }
        let value = value.trim();
        self.lines.extend_from_slice(name.as_bytes());
        self.lines.extend_from_slice(b": ");
        self.lines.extend_from_slice(value.as_bytes());
        self.lines.extend_from_slice(b"\r\n");
        self.names.push(name.to_string());
        // a Bearer key is also echoed without its scheme
        self.values
            .extend(value.strip_prefix("Bearer ").map(str::to_string));
        self.values.push(value.to_string());
        Ok(())
    }
}

/// An HTTP field name is a token (RFC 9110 §5.1).
fn check_name(name: &str) -> Result<()> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(tchar) {
        bail!("`{name}` is not a header name\nhint: letters, digits and `-`, e.g. `X-Tenant`");
    }
    Ok(())
}

/// `--header 'Name: value'` (and `--header-env 'Name: VAR'`) split at the first colon.
pub fn parse_flag(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err("expected `Name: value`, e.g. `X-Tenant: team-a`".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(literal: &[(&str, &str)], from_env: &[(&str, &str)]) -> HeaderSpec {
        let own = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        HeaderSpec {
            api_key_env: "KEY".into(),
            literal: own(literal),
            from_env: own(from_env),
        }
    }

    #[test]
    fn renders_literal_env_and_key_in_order() {
        let env = |k: &str| match k {
            "KEY" => Some("sk-1".to_string()),
            "TOKEN" => Some("t0k".to_string()),
            _ => None,
        };
        let h = spec(&[("X-Tenant", "a")], &[("X-Token", "TOKEN")])
            .resolve_with(env)
            .unwrap();
        assert_eq!(
            h.lines(),
            b"X-Tenant: a\r\nX-Token: t0k\r\nAuthorization: Bearer sk-1\r\n"
        );
        assert_eq!(h.names(), ["X-Tenant", "X-Token", "Authorization"]);
        // an explicit Authorization wins over the key
        let h = spec(&[("authorization", "Basic x")], &[])
            .resolve_with(env)
            .unwrap();
        assert_eq!(h.lines(), b"authorization: Basic x\r\n");
        // no key: nothing
        assert!(
            spec(&[], &[])
                .resolve_with(|_| None)
                .unwrap()
                .lines()
                .is_empty()
        );
    }

    #[test]
    fn refuses_what_would_break_the_request_without_echoing_values() {
        let none = |_: &str| None;
        let e = spec(&[], &[("X-Token", "MISSING")])
            .resolve_with(none)
            .unwrap_err();
        assert!(format!("{e}").contains("`MISSING` is not set"), "{e}");
        for bad in [
            ("Host", "x"),
            ("Content-Length", "1"),
            ("X Y", "1"),
            ("", "1"),
        ] {
            assert!(spec(&[bad], &[]).resolve_with(none).is_err(), "{bad:?}");
        }
        let e = spec(&[("X-A", "secret\r\nX-Evil: 1")], &[])
            .resolve_with(none)
            .unwrap_err();
        assert!(!format!("{e}").contains("secret"), "{e}");
        assert!(
            spec(&[("X-A", "1"), ("x-a", "2")], &[])
                .resolve_with(none)
                .is_err()
        );
        assert_eq!(parse_flag("X-A: b: c"), Ok(("X-A".into(), "b: c".into())));
        assert!(parse_flag("novalue").is_err());
        // Debug shows names only
        let shown = format!(
            "{:?} {:?}",
            spec(&[("X-A", "s3cr3t-v")], &[]),
            spec(&[("X-A", "s3cr3t-v")], &[])
                .resolve_with(|_| None)
                .unwrap()
        );
        assert!(
            !shown.contains("s3cr3t-v") && shown.contains("X-A"),
            "{shown}"
        );
        let h = spec(&[("X-A", "tok-123456")], &[])
            .resolve_with(|k| (k == "KEY").then(|| "sk-abcdef".to_string()))
            .unwrap();
        assert_eq!(
            h.redact("401: {'X-A': 'tok-123456', 'Authorization': 'Bearer sk-abcdef'} sk-abcdef"),
            "401: {'X-A': '<redacted>', 'Authorization': 'Bearer <redacted>'} <redacted>"
        );
    }
}
