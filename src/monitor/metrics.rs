//! Scrape `/metrics` of each endpoint at a fixed interval and keep vLLM's families as rows
//! (time, endpoint, metric, engine, other labels, value). `_created` series are dropped.

use crate::client::get;
use crate::clock::Clock;
use crate::prom;
use crate::store::parquet::{Column, Table};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricRow {
    pub t_ns: u64,
    pub endpoint: u32,
    pub name: String,
    pub engine: Option<String>,
    /// The other labels, as `k=v` pairs joined by `,` (sorted).
    pub labels: String,
    pub value: f64,
}

/// Where to scrape: address, `Host` authority and path prefix.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub authority: String,
    pub prefix: String,
}

#[derive(Debug, Default)]
pub struct Scraped {
    pub rows: Vec<MetricRow>,
    pub scrapes: u64,
    pub failures: u64,
    pub last_error: Option<String>,
}

/// Turn one exposition into rows at time `t_ns`.
pub fn rows_from(text: &str, t_ns: u64, endpoint: u32) -> Result<Vec<MetricRow>, String> {
    let e = prom::parse(text)?;
    Ok(e.samples
        .into_iter()
        .filter(|s| s.name.starts_with("vllm:") && !s.name.ends_with("_created"))
        .map(|mut s| {
            let engine = s.labels.remove("engine");
            s.labels.remove("model_name");
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            MetricRow {
                t_ns,
                endpoint,
                name: s.name,
                engine,
                labels,
                value: s.value,
            }
        })
        .collect())
}

/// Scrape every `interval` until `stop` turns true; one last scrape at the stop.
pub async fn scrape(
    endpoints: Vec<Endpoint>,
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
            let path = format!("{}/metrics", ep.prefix);
            out.scrapes += 1;
            match get::request(
                ep.addr,
                &ep.authority,
                "GET",
                &path,
                None,
                interval.max(Duration::from_secs(2)),
            )
            .await
            {
                Ok((200, body)) => match rows_from(&String::from_utf8_lossy(&body), t, i as u32) {
                    Ok(rows) => out.rows.extend(rows),
                    Err(e) => {
                        out.failures += 1;
                        out.last_error = Some(format!("unparsable /metrics: {e}"));
                    }
                },
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

pub fn table(rows: &[MetricRow]) -> Table {
    let mut t = Table::default();
    t.push(
        "t_ns",
        Column::I64(rows.iter().map(|r| Some(r.t_ns as i64)).collect()),
    );
    t.push(
        "endpoint",
        Column::I64(rows.iter().map(|r| Some(r.endpoint as i64)).collect()),
    );
    t.push(
        "metric",
        Column::Str(rows.iter().map(|r| Some(r.name.clone())).collect()),
    );
    t.push(
        "engine",
        Column::Str(rows.iter().map(|r| r.engine.clone()).collect()),
    );
    t.push(
        "labels",
        Column::Str(
            rows.iter()
                .map(|r| (!r.labels.is_empty()).then(|| r.labels.clone()))
                .collect(),
        ),
    );
    t.push(
        "value",
        Column::F64(rows.iter().map(|r| Some(r.value)).collect()),
    );
    t
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
        let rows = super::rows_from(&text, 5, 0).unwrap();
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
}

/// What the server's own metrics say about a cell, for the analysis: computed from the
/// scraped rows (pure), so it can be redone from `server_metrics.jsonl` at any time.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServerStats {
    /// Least-squares slope of the waiting queue (summed over engines and endpoints), per second.
    pub waiting_slope_per_s: Option<f64>,
    pub waiting_max: Option<f64>,
    pub running_mean: Option<f64>,
    pub kv_usage_max: Option<f64>,
    /// Mean TTFT the server measured over the cell (histogram sum and count deltas), ms.
    pub server_ttft_mean_ms: Option<f64>,
    pub preemptions: Option<f64>,
    pub engines: usize,
}

pub fn server_stats(rows: &[MetricRow], from_ns: u64, to_ns: u64) -> ServerStats {
    use std::collections::BTreeMap;
    let in_window = |r: &&MetricRow| r.t_ns >= from_ns && r.t_ns <= to_ns;
    // per scrape time: sums over engines/endpoints
    let mut waiting: BTreeMap<u64, f64> = BTreeMap::new();
    let mut running: BTreeMap<u64, f64> = BTreeMap::new();
    let mut kv_max: Option<f64> = None;
    let mut engines = std::collections::BTreeSet::new();
    for r in rows.iter().filter(in_window) {
        match r.name.as_str() {
            "vllm:num_requests_waiting" => *waiting.entry(r.t_ns).or_default() += r.value,
            "vllm:num_requests_running" => {
                *running.entry(r.t_ns).or_default() += r.value;
                engines.insert((r.endpoint, r.engine.clone()));
            }
            "vllm:kv_cache_usage_perc" => {
                kv_max = Some(kv_max.map_or(r.value, |m: f64| m.max(r.value)))
            }
            _ => {}
        }
    }
    let slope = (waiting.len() >= 3).then(|| {
        let n = waiting.len() as f64;
        let xs: Vec<f64> = waiting.keys().map(|t| *t as f64 / 1e9).collect();
        let ys: Vec<f64> = waiting.values().copied().collect();
        let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
        let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
        let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
        if sxx > 0.0 { sxy / sxx } else { 0.0 }
    });
    // counters: last minus first value per series, summed
    let delta = |name: &str| -> Option<f64> {
        let mut first: BTreeMap<(u32, Option<String>, String), f64> = BTreeMap::new();
        let mut last = first.clone();
        for r in rows.iter().filter(in_window).filter(|r| r.name == name) {
            let k = (r.endpoint, r.engine.clone(), r.labels.clone());
            first.entry(k.clone()).or_insert(r.value);
            last.insert(k, r.value);
        }
        (!last.is_empty()).then(|| last.iter().map(|(k, v)| v - first[k]).sum())
    };
    let ttft = match (
        delta("vllm:time_to_first_token_seconds_sum"),
        delta("vllm:time_to_first_token_seconds_count"),
    ) {
        (Some(s), Some(c)) if c > 0.0 => Some(s / c * 1000.0),
        _ => None,
    };
    ServerStats {
        waiting_slope_per_s: slope,
        waiting_max: waiting.values().copied().reduce(f64::max),
        running_mean: (!running.is_empty())
            .then(|| running.values().sum::<f64>() / running.len() as f64),
        kv_usage_max: kv_max,
        server_ttft_mean_ms: ttft,
        preemptions: delta("vllm:num_preemptions_total"),
        engines: engines.len(),
    }
}
