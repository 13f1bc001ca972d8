//! Waiting until a server answers `GET /health` with 200 and then lists its models.

use super::command::ProcessGroup;
use crate::client::{Access, BaseUrl, Server, get};
use anyhow::{Result, bail};
use std::time::{Duration, Instant};

/// Poll every endpoint until healthy, the timeout passes, or the launched process dies.
pub async fn wait_healthy(
    urls: &[BaseUrl],
    access: &Access,
    timeout: Duration,
    mut process: Option<&mut ProcessGroup>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    for url in urls {
        let mut last;
        loop {
            if let Some(p) = process.as_deref_mut()
                && let Some(code) = p.exited()
            {
                bail!("the server process exited ({code}) before `{url}/health` answered");
            }
            // a name that does not resolve yet may resolve later (a container starting)
            match url.resolve().await {
                Err(e) => last = format!("{e:#}"),
                Ok(addr) => match probe(&access.at(url, addr)?).await {
                    Ok(()) => break,
                    // a certificate the client does not trust will not become trusted
                    Err(e) if crate::client::tls::is_handshake_verdict(&e) => return Err(e),
                    Err(e) => last = format!("{e:#}"),
                },
            }
            if Instant::now() >= deadline {
                bail!(
                    "`{url}` not healthy within {:.0} s (last: {last})",
                    timeout.as_secs_f64()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(())
}

/// One probe: `/health` answers 200 and `/v1/models` lists the models.
async fn probe(server: &Server) -> Result<()> {
    for path in ["/health", "/v1/models"] {
        let (status, _) = get::request(
            server,
            "GET",
            &server.url.path(path),
            None,
            Duration::from_secs(5),
        )
        .await?;
        if status != 200 {
            bail!("{path} answered {status}");
        }
    }
    Ok(())
}
