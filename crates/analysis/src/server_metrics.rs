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
/// scraped rows (pure), so it can be redone from `server_metrics.parquet` at any time.
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
    /// Prompt tokens the prefix cache was asked about and found over the cell, summed over
    /// engines (`vllm:prefix_cache_queries_total`, `…_hits_total`); `None` when the server
    /// does not export them.
    #[serde(default)]
    pub prefix_cache_queries: Option<f64>,
    #[serde(default)]
    pub prefix_cache_hits: Option<f64>,
    pub engines: usize,
    /// The engines' mean time per step over the window, ms (`engine_work`: the span over
    /// the steps the engines counted, idle time between steps included — on a prediction's
    /// side too); `None` for a server without vLLM's iteration counter, or when no engine
    /// stepped in the window.
    #[serde(default)]
    pub engine_step_ms: Option<f64>,
    /// Tokens (prompt and output) an engine step processed on average over the window.
    #[serde(default)]
    pub tokens_per_step: Option<f64>,
    /// The engines' steps and the work in them, for pricing with a profile's step costs.
    #[serde(default)]
    pub engine_work: Option<crate::engine_work::EngineWork>,
    /// Mean queue, prefill and decode time per request over the window, from vLLM's
    /// phase histograms; `None` for a server without them.
    #[serde(default)]
    pub breakdown: Option<crate::latency_breakdown::Breakdown>,
}

impl ServerStats {
    /// Hits / queries over the cell; `None` when unknown: counters not exported, or no
    /// lookup counted (prefix caching off, or nothing admitted), never a 0 for "unknown".
    pub fn prefix_cache_hit_rate(&self) -> Option<f64> {
        match (self.prefix_cache_hits, self.prefix_cache_queries) {
            (Some(h), Some(q)) if q > 0.0 => Some(h / q),
            _ => None,
        }
    }
}

/// How much a counter grew over `[from_ns, to_ns]`, summed over its series (engines,
/// endpoints, labels): from the last scrape at or before the window's start to the first
/// at or after its end, so work done between the window's edge and the nearest scrape
/// inside it is not lost (a cell's last scrape comes after its last response). A series
/// without a scrape on one side uses its nearest one inside the window. `None` when no
/// series of that name was scraped near the window.
pub fn counter_delta(rows: &[MetricRow], name: &str, from_ns: u64, to_ns: u64) -> Option<f64> {
    let d = series_deltas(rows, name, from_ns, to_ns);
    (!d.is_empty()).then(|| d.values().sum())
}

/// A series of one metric: endpoint, engine, other labels.
pub type SeriesKey<'a> = (u32, Option<&'a str>, &'a str);

/// `counter_delta` series by series: each series' growth over the window, for the series
/// with a scrape near it.
pub fn series_deltas<'a>(
    rows: &'a [MetricRow],
    name: &str,
    from_ns: u64,
    to_ns: u64,
) -> std::collections::BTreeMap<SeriesKey<'a>, f64> {
    use std::collections::BTreeMap;
    // each series' samples in time order
    let mut series: BTreeMap<SeriesKey, Vec<(u64, f64)>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.name == name) {
        series
            .entry((r.endpoint, r.engine.as_deref(), r.labels.as_str()))
            .or_default()
            .push((r.t_ns, r.value));
    }
    let mut out = BTreeMap::new();
    for (key, mut samples) in series {
        samples.sort_by_key(|s| s.0);
        let inside = |s: &&(u64, f64)| s.0 >= from_ns && s.0 <= to_ns;
        let first = samples
            .iter()
            .rev()
            .find(|s| s.0 <= from_ns)
            .or_else(|| samples.iter().find(inside));
        let last = samples
            .iter()
            .find(|s| s.0 >= to_ns)
            .or_else(|| samples.iter().rev().find(inside));
        if let (Some(a), Some(b)) = (first, last)
            && b.0 >= a.0
        {
            out.insert(key, b.1 - a.1);
        }
    }
    out
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
    let work = crate::engine_work::engine_work(rows, from_ns, to_ns);
    ServerStats {
        waiting_slope_per_s: slope,
        waiting_max: waiting.values().copied().reduce(f64::max),
        running_mean: (!running.is_empty())
            .then(|| running.values().sum::<f64>() / running.len() as f64),
        kv_usage_max: kv_max,
        server_ttft_mean_ms: ttft,
        preemptions: delta("vllm:num_preemptions_total"),
        prefix_cache_queries: counter_delta(
            rows,
            "vllm:prefix_cache_queries_total",
            from_ns,
            to_ns,
        ),
        prefix_cache_hits: counter_delta(rows, "vllm:prefix_cache_hits_total", from_ns, to_ns),
        engines: engines.len(),
        engine_step_ms: work.map(|w| w.step_ms()),
        tokens_per_step: work.and_then(|w| w.tokens_per_step()),
        engine_work: work,
        breakdown: crate::latency_breakdown::breakdown(rows, from_ns, to_ns),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A scrape's row of `name` from `engine` at `t_s` seconds.
    pub(crate) fn row(t_s: u64, engine: &str, name: &str, value: f64) -> MetricRow {
        MetricRow {
            t_ns: t_s * 1_000_000_000,
            endpoint: 0,
            name: name.into(),
            engine: Some(engine.into()),
            labels: String::new(),
            value,
        }
    }

    const Q: &str = "vllm:prefix_cache_queries_total";
    const H: &str = "vllm:prefix_cache_hits_total";

    #[test]
    fn the_hit_rate_spans_the_window_from_the_scrapes_around_it() {
        let s = |t: u64| t * 1_000_000_000;
        let rows = vec![
            // a scrape before the window, two inside, one after it (the cell's last)
            row(0, "0", Q, 100.0),
            row(0, "0", H, 10.0),
            row(2, "0", Q, 300.0),
            row(2, "0", H, 90.0),
            row(4, "0", Q, 500.0),
            row(4, "0", H, 170.0),
            row(6, "0", Q, 900.0),
            row(6, "0", H, 410.0),
            // a second engine, scraped only inside the window
            row(2, "1", Q, 0.0),
            row(2, "1", H, 0.0),
            row(4, "1", Q, 200.0),
            row(4, "1", H, 100.0),
        ];
        let st = server_stats(&rows, s(1), s(5));
        assert_eq!(st.prefix_cache_queries, Some(800.0 + 200.0));
        assert_eq!(st.prefix_cache_hits, Some(400.0 + 100.0));
        assert_eq!(st.prefix_cache_hit_rate(), Some(0.5));
    }

    #[test]
    fn no_counters_or_no_lookups_is_an_unknown_hit_rate_not_zero() {
        let none = server_stats(
            &[row(1, "0", "vllm:num_requests_running", 1.0)],
            0,
            u64::MAX,
        );
        assert_eq!(none.prefix_cache_queries, None);
        assert_eq!(none.prefix_cache_hit_rate(), None);
        let rows = vec![
            row(1, "0", Q, 0.0),
            row(2, "0", Q, 0.0),
            row(1, "0", H, 0.0),
        ];
        let off = server_stats(&rows, 0, u64::MAX);
        assert_eq!(off.prefix_cache_queries, Some(0.0));
        assert_eq!(off.prefix_cache_hit_rate(), None);
    }

    const STEPS: &str = "vllm:iteration_tokens_total_count";
    const TOKENS: &str = "vllm:iteration_tokens_total_sum";

    #[test]
    fn an_engines_step_is_its_scrapes_span_over_the_steps_counted_in_it() {
        let ms = |t: u64| t * 1_000_000;
        let at = |t_ms: u64, engine: &str, name: &str, value: f64| MetricRow {
            t_ns: ms(t_ms),
            ..row(0, engine, name, value)
        };
        let rows = vec![
            // engine 0: 100 steps of 64 tokens between its scrapes at 1 and 3 s; the scrape
            // before the window is not its span (with it: 150 steps over 3 s)
            at(0, "0", STEPS, 0.0),
            at(1000, "0", STEPS, 50.0),
            at(1000, "0", TOKENS, 3_200.0),
            at(2000, "0", STEPS, 100.0),
            at(2000, "0", TOKENS, 6_400.0),
            at(3000, "0", STEPS, 150.0),
            at(3000, "0", TOKENS, 9_600.0),
            // engine 1: 40 steps of 16 tokens over the same 2 s
            at(1000, "1", STEPS, 10.0),
            at(1000, "1", TOKENS, 160.0),
            at(3000, "1", STEPS, 50.0),
            at(3000, "1", TOKENS, 800.0),
            // engine 2 did not step: no step time of its own, not an infinite one
            at(1000, "2", STEPS, 7.0),
            at(3000, "2", STEPS, 7.0),
        ];
        let st = server_stats(&rows, ms(500), ms(3500));
        // 4 s of scrape spans over 140 steps: each step weighs the same
        assert_eq!(st.engine_step_ms, Some(4_000.0 / 140.0));
        assert_eq!(st.tokens_per_step, Some((6_400.0 + 640.0) / 140.0));
        // one scrape inside the window says nothing of a span
        let one = server_stats(&rows, ms(1500), ms(2500));
        assert_eq!((one.engine_step_ms, one.tokens_per_step), (None, None));
        // a server without the histogram: unknown
        let none = server_stats(
            &[row(1, "0", "vllm:num_requests_running", 1.0)],
            0,
            u64::MAX,
        );
        assert_eq!(none.engine_step_ms, None);
    }

    #[test]
    fn a_restarted_engine_counts_from_zero_and_a_missing_sum_leaves_tokens_unknown() {
        let rows = vec![
            // 30 steps, a restart (the count falls to 5: 5 steps since), 20 more: 55 in 3 s
            row(1, "0", STEPS, 100.0),
            row(2, "0", STEPS, 130.0),
            row(3, "0", STEPS, 5.0),
            row(4, "0", STEPS, 25.0),
        ];
        let st = server_stats(&rows, 0, u64::MAX);
        assert_eq!(st.engine_step_ms, Some(3_000.0 / 55.0));
        assert_eq!(st.tokens_per_step, None);
    }
}
