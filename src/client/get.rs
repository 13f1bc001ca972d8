//! One-shot requests for the control plane (`/health`, `/v1/models`, `/version`,
//! `/metrics`): a fresh connection (TLS for `https`), the server's headers, the whole body
//! read, a timeout on everything.

use super::body::BodyReader;
use super::conn::Conn;
use super::head::parse_response_head;
use super::server::Server;
use anyhow::{Context, Result, bail};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Send `method path` with an optional JSON body; return the status and the whole body.
pub async fn request(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>)> {
    let url = &server.url;
    tokio::time::timeout(timeout, request_inner(server, method, path, body))
        .await
        .with_context(|| format!("{method} {url}{path}: no answer within {timeout:?}"))?
}

async fn request_inner(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<(u16, Vec<u8>)> {
    let (url, addr) = (&server.url, server.addr());
    let mut s = server
        .connector
        .connect(Duration::from_secs(3600))
        .await
        .with_context(|| format!("cannot connect to {url} ({addr})"))?;
    let body = body.unwrap_or(b"");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        url.authority,
        body.len()
    )
    .into_bytes();
    head.extend_from_slice(server.headers.lines());
    head.extend_from_slice(b"\r\n");
    s.write_all(&head).await?;
    s.write_all(body).await?;
    s.flush().await?;
    read_response(&mut s, method, path).await
}

/// The largest control-plane body read (a `/metrics` page of many engines fits).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Read one response to the end of its body, framed as its head says (`Content-Length`,
/// chunked, or the close): a server that keeps the connection open despite `Connection:
/// close` does not hold the answer back.
async fn read_response(s: &mut Conn, method: &str, path: &str) -> Result<(u16, Vec<u8>)> {
    let mut buf = Vec::with_capacity(8192);
    let mut tmp = [0u8; 8192];
    let mut framed: Option<(u16, BodyReader)> = None;
    let mut body = Vec::new();
    loop {
        let n = match s.read(&mut tmp).await {
            Ok(n) => n,
            // a TLS server that closes without close_notify (many do after `Connection:
            // close`) has still sent the whole response when it is complete
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => 0,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return match framed {
                Some((status, reader)) if reader.is_done() || reader.ends_at_close() => {
                    Ok((status, body))
                }
                Some(_) => bail!("{method} {path}: connection closed before the end of the body"),
                None => Err(not_a_response(&buf, method, path)),
            };
        }
        let fresh = match &mut framed {
            Some(_) => &tmp[..n],
            None => {
                buf.extend_from_slice(&tmp[..n]);
                match parse_response_head(&buf) {
                    Ok(Some(h)) => {
                        framed = Some((h.status, BodyReader::new(h.body)));
                        &buf[h.len..]
                    }
                    Ok(None) => continue,
                    Err(_) => return Err(not_a_response(&buf, method, path)),
                }
            }
        };
        let (_, reader) = framed.as_mut().expect("framed above");
        reader
            .feed(fresh, |p| body.extend_from_slice(p))
            .map_err(|e| anyhow::anyhow!("{method} {path}: {e}"))?;
        if body.len() > MAX_BODY {
            bail!("{method} {path}: response larger than 64 MiB");
        }
        if reader.is_done() {
            let status = framed.map(|(s, _)| s).unwrap_or(0);
            return Ok((status, body));
        }
    }
}

fn not_a_response(buf: &[u8], method: &str, path: &str) -> anyhow::Error {
    if super::tls::looks_like_tls(buf) {
        return anyhow::anyhow!(
            "{method} {path}: the server answered in TLS\nhint: use `https://` in the URL"
        );
    }
    anyhow::anyhow!(
        "{method} {path}: not an HTTP response: `{}`",
        String::from_utf8_lossy(&buf[..buf.len().min(80)])
    )
}

/// What the server says its version is, and whether it said so as vLLM does (`GET /version`
/// answering `{"version": "…"}`).
pub async fn server_version(ep: &Server) -> (String, bool) {
    match request(
        ep,
        "GET",
        &ep.url.path("/version"),
        None,
        Duration::from_secs(5),
    )
    .await
    {
        Ok((200, body)) => match serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["version"].as_str().map(str::to_owned))
        {
            Some(v) => (v, true),
            None => (ep.redact(String::from_utf8_lossy(&body).trim()), false),
        },
        Ok((status, _)) => (format!("unknown (/version answered {status})"), false),
        Err(e) => (format!("unknown ({e:#})"), false),
    }
}

/// The first model id of `GET /v1/models`.
pub async fn first_model(server: &Server) -> Result<String> {
    let (status, body) = request(
        server,
        "GET",
        &server.url.path("/v1/models"),
        None,
        Duration::from_secs(10),
    )
    .await?;
    if status != 200 {
        // redacted whole, then cut: a cut first could leave half a secret
        let said: String = server
            .redact(&String::from_utf8_lossy(&body))
            .chars()
            .take(200)
            .collect();
        let hint = match status {
            401 | 403 => {
                "the server wants credentials: set the key in `OPENAI_API_KEY` (or the variable `--api-key-env` names), or the header your gateway needs with `--header-env`"
            }
            _ => "pass `--model NAME`",
        };
        bail!("GET /v1/models answered {status}: {said}\nhint: {hint}");
    }
    let v: serde_json::Value = serde_json::from_slice(&body).context("GET /v1/models: not JSON")?;
    v.pointer("/data/0/id")
        .and_then(|x| x.as_str())
        .map(str::to_owned)
        .context("GET /v1/models lists no model\nhint: pass `--model NAME`")
}
