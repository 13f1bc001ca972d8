//! Scrape `/metrics` of each endpoint at a fixed interval and keep vLLM's families as rows
//! (time, endpoint, metric, engine, other labels, value). `_created` series are dropped.
//! Stored by `store::metrics_table` (`server_metrics.parquet`, a column per label); an
//! exposition becomes rows in `prom::rows_from`.

use crate::client::{Server, get};
use crate::prom;
use loadtest_analysis::server_metrics::MetricRow;
use loadtest_base::clock::Clock;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Default)]
pub struct Scraped {
    pub rows: Vec<MetricRow>,
    pub scrapes: u64,
    pub failures: u64,
    pub last_error: Option<String>,
}

/// Scrape every `interval` until `stop` turns true; one last scrape at the stop.
pub async fn scrape(
    endpoints: Vec<Server>,
    interval: Duration,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) -> Scraped {
    let mut out = Scraped::default();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        for (i, ep) in endpoints.iter().enumerate() {
            let t = clock.now_ns();
            let path = ep.url.path("/metrics");
            out.scrapes += 1;
            match get::request(ep, "GET", &path, None, interval.max(Duration::from_secs(2))).await {
                Ok((200, body)) => {
                    match prom::rows_from(&String::from_utf8_lossy(&body), t, i as u32) {
                        Ok(rows) => out.rows.extend(rows),
                        Err(e) => {
                            out.failures += 1;
                            out.last_error = Some(format!("unparsable /metrics: {e}"));
                        }
                    }
                }
                Ok((status, _)) => {
                    out.failures += 1;
                    out.last_error = Some(format!("GET /metrics answered {status}"));
                }
                Err(e) => {
                    out.failures += 1;
                    out.last_error = Some(format!("{e:#}"));
                }
            }
        }
        if last {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_vllm_series_per_engine_from_real_dp2_metrics() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/vllm/metrics-dp2.txt"
        ))
        .unwrap();
        let rows = crate::prom::rows_from(&text, 5, 0).unwrap();
        assert!(
            rows.iter()
                .all(|r| r.name.starts_with("vllm:") && !r.name.ends_with("_created"))
        );
        let running: Vec<_> = rows
            .iter()
            .filter(|r| r.name == "vllm:num_requests_running")
            .collect();
        assert_eq!(running.len(), 2);
        assert_eq!(running[1].engine.as_deref(), Some("1"));
        assert!(rows.iter().any(|r| r.name == "vllm:request_success_total"
            && r.labels.contains("finished_reason=length")));
    }

    /// Golden figures from real vLLM 0.32 bytes: each fixture read as the end of a window
    /// that began on a fresh server (every counter 0), so the window's means are the
    /// fixture's `_sum / _count`, engine by engine and pooled over engines.
    #[test]
    fn the_latency_breakdown_of_real_vllm_metrics() {
        use loadtest_analysis::latency_breakdown::breakdown;
        use loadtest_analysis::server_metrics::counter_delta;
        let s = 1_000_000_000;
        // (file, engine or "all", queue, prefill, decode, TPOT, TTFT: ms)
        let golden = [
            (
                "metrics.txt",
                "e0",
                0.028484,
                33.879477,
                754.170115,
                12.214706,
                86.645071,
            ),
            (
                "metrics.txt",
                "all",
                0.028484,
                33.879477,
                754.170115,
                12.214706,
                86.645071,
            ),
            (
                "metrics-dp2.txt",
                "e0",
                0.065923,
                92.076419,
                1124.453177,
                17.848463,
                142.039371,
            ),
            (
                "metrics-dp2.txt",
                "e1",
                0.080225,
                94.604022,
                1147.171780,
                19.083942,
                160.367621,
            ),
            (
                "metrics-dp2.txt",
                "all",
                0.072698,
                93.273705,
                1135.214621,
                18.433690,
                150.721174,
            ),
        ];
        for file in ["metrics.txt", "metrics-dp2.txt"] {
            let text = std::fs::read_to_string(format!(
                "{}/tests/fixtures/vllm/{file}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            let end = crate::prom::rows_from(&text, 10 * s, 0).unwrap();
            let mut rows: Vec<_> = end
                .iter()
                .map(|r| loadtest_analysis::server_metrics::MetricRow {
                    t_ns: 0,
                    value: 0.0,
                    ..r.clone()
                })
                .collect();
            rows.extend(end);
            let b = breakdown(&rows, s, 9 * s).unwrap();
            for (_, engine, queue, prefill, decode, tpot, ttft) in
                golden.iter().filter(|g| g.0 == file)
            {
                let p = if *engine == "all" {
                    b.all
                } else {
                    b.engines[*engine]
                };
                let close = |got: Option<f64>, want: f64| (got.unwrap() - want).abs() < 1e-5;
                assert!(
                    close(p.queue_ms, *queue)
                        && close(p.prefill_ms, *prefill)
                        && close(p.decode_ms, *decode)
                        && close(p.tpot_ms, *tpot)
                        && close(p.ttft_ms, *ttft),
                    "{file} {engine}: {p:?}"
                );
            }
            // vLLM's RUNNING phase is prefill then decode: their means add up to its own
            let inference =
                counter_delta(&rows, "vllm:request_inference_time_seconds_sum", s, 9 * s).unwrap()
                    / counter_delta(&rows, "vllm:request_inference_time_seconds_count", s, 9 * s)
                        .unwrap()
                    * 1000.0;
            let (pf, dec) = (b.all.prefill_ms.unwrap(), b.all.decode_ms.unwrap());
            assert!(
                (pf + dec - inference).abs() < 1e-6 * inference,
                "{file}: {pf} + {dec} vs {inference}"
            );
            assert_eq!(b.engines.len(), if file == "metrics.txt" { 1 } else { 2 });
        }
    }
}
