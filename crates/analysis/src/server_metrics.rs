//! The server's scraped metrics as rows (one sample of one vLLM family at one scrape), and
//! what they say about a cell's window. Pure: the monitor (which scrapes) produces the rows,
//! the aggregate stage and the report read them.

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
