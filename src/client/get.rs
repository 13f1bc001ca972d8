//! Plain one-shot requests for the control plane (`/health`, `/v1/models`, `/version`,
//! `/metrics`): a fresh connection, the whole body read, a timeout on everything.

use anyhow::{Context, Result, bail};
use loadtest_base::http::{self, chunked::ChunkedDecoder};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Send `method path` with an optional JSON body; return the status and the whole body.
pub async fn request(
    addr: SocketAddr,
    authority: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>)> {
    tokio::time::timeout(timeout, request_inner(addr, authority, method, path, body))
        .await
        .with_context(|| {
            format!("{method} http://{authority}{path}: no answer within {timeout:?}")
        })?
}

async fn request_inner(
    addr: SocketAddr,
    authority: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to http://{authority} ({addr})"))?;
    let body = body.unwrap_or(b"");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    let mut buf = Vec::with_capacity(8192);
    let mut tmp = [0u8; 8192];
    loop {
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&tmp[..n]);
        if buf.len() > 64 * 1024 * 1024 {
            bail!("{method} {path}: response larger than 64 MiB");
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(&buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => bail!(
            "{method} {path}: not an HTTP response: `{}`",
            String::from_utf8_lossy(&buf[..buf.len().min(80)])
        ),
    };
    let status = resp.code.unwrap_or(0);
    let chunked = http::header(resp.headers, "transfer-encoding")
        .is_some_and(|v| http::has_token(v, "chunked"));
    let raw = &buf[head_len..];
    let body = if chunked {
        let mut out = Vec::new();
        ChunkedDecoder::new()
            .decode(raw, |p| out.extend_from_slice(p))
            .map_err(|e| anyhow::anyhow!("{method} {path}: {e}"))?;
        out
    } else {
        raw.to_vec()
    };
    Ok((status, body))
}

/// The first model id of `GET /v1/models`.
pub async fn first_model(addr: SocketAddr, authority: &str, prefix: &str) -> Result<String> {
    let (status, body) = request(
        addr,
        authority,
        "GET",
        &format!("{prefix}/v1/models"),
        None,
        Duration::from_secs(10),
    )
    .await?;
    if status != 200 {
        bail!(
            "GET /v1/models answered {status}: {}\nhint: pass `--model NAME`",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&body).context("GET /v1/models: not JSON")?;
    v.pointer("/data/0/id")
        .and_then(|x| x.as_str())
        .map(str::to_owned)
        .context("GET /v1/models lists no model\nhint: pass `--model NAME`")
}
