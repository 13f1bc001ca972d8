//! Event-loop lag: how late the client's runtime gets to a timer it set. A loop busy with
//! responses (or starved of CPU) is late to everything, including sending on schedule; this
//! says so per cell, beside the send lag of the requests themselves.

use loadtest_analysis::stats::Distribution;
use std::time::Duration;
use tokio::sync::watch;

const PERIOD: Duration = Duration::from_millis(10);

/// Lateness (ms) of a 10 ms ticker over the cell, until `stop`. Tokio's timer rounds to the
/// millisecond, so about 1 ms is the floor of an idle loop.
pub async fn measure(mut stop: watch::Receiver<bool>) -> Option<Distribution> {
    let mut lags = Vec::new();
    loop {
        let due = tokio::time::Instant::now() + PERIOD;
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {
                lags.push((tokio::time::Instant::now() - due).as_secs_f64() * 1000.0);
            }
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    Distribution::from_values(lags)
}
