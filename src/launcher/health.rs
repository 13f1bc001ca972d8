//! Waiting until a server answers `GET /health` with 200 and then lists its models.

use super::command::ProcessGroup;
use crate::client::{BaseUrl, get};
use anyhow::{Result, bail};
use std::time::{Duration, Instant};

/// Poll every endpoint until healthy, the timeout passes, or the launched process dies.
pub async fn wait_healthy(
    urls: &[BaseUrl],
    timeout: Duration,
    mut process: Option<&mut ProcessGroup>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    for url in urls {
        let mut last = String::from("no answer yet");
        loop {
            if let Some(p) = process.as_deref_mut()
                && let Some(code) = p.exited()
            {
                bail!("the server process exited ({code}) before `{url}/health` answered");
            }
            if let Ok(addr) = url.resolve().await {
                let probe = async {
                    let (h, _) = get::request(
                        addr,
                        &url.authority,
                        "GET",
                        &url.path("/health"),
                        None,
                        Duration::from_secs(5),
                    )
                    .await?;
                    if h != 200 {
                        anyhow::bail!("/health answered {h}");
                    }
                    let (m, _) = get::request(
                        addr,
                        &url.authority,
                        "GET",
                        &url.path("/v1/models"),
                        None,
                        Duration::from_secs(5),
                    )
                    .await?;
                    if m != 200 {
                        anyhow::bail!("/v1/models answered {m}");
                    }
                    Ok(())
                };
                match probe.await {
                    Ok(()) => break,
                    Err(e) => last = format!("{e:#}"),
                }
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
