//! Where a request's time goes on the server: the mean time in vLLM's queue, prefill and
//! decode phases over a cell's measurement window, per engine and over all engines, from
//! the server's own histograms (`vllm:request_queue_time_seconds`,
//! `vllm:request_prefill_time_seconds`, `vllm:request_decode_time_seconds`, and
//! `vllm:request_time_per_output_token_seconds`). Pure: scraped rows in, means out.
//!
//! A histogram's `_sum` and `_count` are cumulative since the server started, so a phase's
//! mean over the window is `Δsum / Δcount` between the scrape at or before the window's
//! start and the one at or after its end (as `server_metrics::counter_delta` spans it): the
//! requests observed in that span, not every request the server ever saw. vLLM observes
//! these histograms when a request finishes (the simulator: queue at its first schedule,
//! prefill at its first token), so each mean covers the requests that reached that point
//! in the window. TTFT is split against the server's own TTFT mean over the same window
//! (the same requests, near enough), not the client's: under a growing queue the requests
//! the client sent in the window are not the ones the server scheduled in it.

use crate::server_metrics::{MetricRow, series_deltas};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const QUEUE: &str = "vllm:request_queue_time_seconds";
pub const PREFILL: &str = "vllm:request_prefill_time_seconds";
pub const DECODE: &str = "vllm:request_decode_time_seconds";
pub const TPOT: &str = "vllm:request_time_per_output_token_seconds";
pub const TTFT: &str = "vllm:time_to_first_token_seconds";

/// Mean time per request in each phase (ms); `None` where the server exports no such
/// histogram or observed no request of it in the window (unknown, never 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Phases {
    /// Waiting for a place in the batch (vLLM's WAITING).
    pub queue_ms: Option<f64>,
    /// From first scheduled to the first token.
    pub prefill_ms: Option<f64>,
    /// From the first token to the last.
    pub decode_ms: Option<f64>,
    /// The server's mean time per output token of a request (its TPOT).
    pub tpot_ms: Option<f64>,
    /// The server's mean TTFT (from its arrival at the server to its first token).
    #[serde(default)]
    pub ttft_ms: Option<f64>,
    /// Requests whose queue time was observed in the window (the weight of these means).
    pub requests: f64,
}

impl Phases {
    /// Known when at least the queue or the prefill phase was observed.
    pub fn is_known(&self) -> bool {
        self.queue_ms.is_some() || self.prefill_ms.is_some()
    }

    /// The mean of several cells' phases (repeats of one load point), each phase over the
    /// cells that know it.
    pub fn mean<'a>(all: impl Iterator<Item = &'a Phases>) -> Option<Phases> {
        let v: Vec<&Phases> = all.filter(|p| p.is_known()).collect();
        if v.is_empty() {
            return None;
        }
        let m = |f: fn(&Phases) -> Option<f64>| {
            let xs: Vec<f64> = v.iter().filter_map(|p| f(p)).collect();
            (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
        };
        Some(Phases {
            queue_ms: m(|p| p.queue_ms),
            prefill_ms: m(|p| p.prefill_ms),
            decode_ms: m(|p| p.decode_ms),
            tpot_ms: m(|p| p.tpot_ms),
            ttft_ms: m(|p| p.ttft_ms),
            requests: v.iter().map(|p| p.requests).sum(),
        })
    }
}

/// A cell's phases over all engines (every endpoint's), and engine by engine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    pub all: Phases,
    /// Keyed `e<engine>` on one endpoint, `<endpoint>/e<engine>` on several.
    pub engines: BTreeMap<String, Phases>,
}

/// An engine on an endpoint.
type EngineKey = (u32, Option<String>);
/// A histogram's growth over the window per engine: (Δsum, Δcount).
type Deltas = BTreeMap<EngineKey, (f64, f64)>;

/// `Δsum / Δcount` in ms, when some request was observed.
fn mean_ms(sum: f64, count: f64) -> Option<f64> {
    (count > 0.0 && sum.is_finite()).then(|| sum / count * 1000.0)
}

/// The phases of the requests the server observed in `[from_ns, to_ns]`; `None` when it
/// exports none of vLLM's phase histograms (a server other than vLLM) or observed no
/// request in any phase there.
pub fn breakdown(rows: &[MetricRow], from_ns: u64, to_ns: u64) -> Option<Breakdown> {
    // per (endpoint, engine): Δsum, Δcount of each histogram
    let delta = |name: &str| {
        let s = series_deltas(rows, &format!("{name}_sum"), from_ns, to_ns);
        let c = series_deltas(rows, &format!("{name}_count"), from_ns, to_ns);
        let mut out = Deltas::new();
        for ((ep, engine, _), v) in s {
            out.entry((ep, engine.map(str::to_string))).or_default().0 += v;
        }
        for ((ep, engine, _), v) in c {
            out.entry((ep, engine.map(str::to_string))).or_default().1 += v;
        }
        out
    };
    let (queue, prefill, decode, tpot, ttft) = (
        delta(QUEUE),
        delta(PREFILL),
        delta(DECODE),
        delta(TPOT),
        delta(TTFT),
    );
    let mut keys: Vec<&EngineKey> = queue
        .keys()
        .chain(prefill.keys())
        .chain(decode.keys())
        .collect();
    keys.sort();
    keys.dedup();
    let endpoints: std::collections::BTreeSet<u32> = keys.iter().map(|k| k.0).collect();
    let phases = |pick: &dyn Fn(&Deltas) -> (f64, f64)| {
        let get = |m| {
            let (s, c) = pick(m);
            mean_ms(s, c)
        };
        Phases {
            queue_ms: get(&queue),
            prefill_ms: get(&prefill),
            decode_ms: get(&decode),
            tpot_ms: get(&tpot),
            ttft_ms: get(&ttft),
            requests: pick(&queue).1.max(0.0),
        }
    };
    let mut engines = BTreeMap::new();
    for k in &keys {
        let name = match (&k.1, endpoints.len()) {
            (Some(e), 1) => format!("e{e}"),
            (Some(e), _) => format!("{}/e{e}", k.0),
            (None, _) => format!("{}", k.0),
        };
        let p = phases(&|m| m.get(*k).copied().unwrap_or((0.0, 0.0)));
        if p.is_known() {
            engines.insert(name, p);
        }
    }
    let total = |m: &Deltas| {
        m.values()
            .fold((0.0, 0.0), |(s, c), (ds, dc)| (s + ds, c + dc))
    };
    let all = phases(&total);
    all.is_known().then_some(Breakdown { all, engines })
}

/// Where a load point's TTFT goes: the server's mean TTFT split into its mean queue and
/// prefill time and the rest (before the engine: the API server, tokenisation, routing);
/// the client's mean TTFT beside it (the network and the client on top).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TtftSplit {
    /// The whole: the server's mean TTFT (the client's where the server has no TTFT
    /// histogram), or queue + prefill where those add up to more (the histograms are
    /// observed at different moments of a request, so their requests differ a little).
    pub total_ms: f64,
    /// The whole is the server's TTFT (else the client's).
    pub of_server: bool,
    pub queue_ms: f64,
    pub prefill_ms: f64,
    pub other_ms: f64,
    /// The client's mean TTFT of successful requests.
    pub client_ms: Option<f64>,
}

impl TtftSplit {
    /// `None` without both server phases, or without a TTFT to split.
    pub fn new(client_ttft_mean_ms: Option<f64>, p: &Phases) -> Option<TtftSplit> {
        let (q, pf) = (p.queue_ms?, p.prefill_ms?);
        let ttft = p.ttft_ms.or(client_ttft_mean_ms)?;
        let total = ttft.max(q + pf);
        (total > 0.0).then_some(TtftSplit {
            total_ms: total,
            of_server: p.ttft_ms.is_some(),
            queue_ms: q,
            prefill_ms: pf,
            // exactly 0 where the phases are the whole (no -0.0 from rounding)
            other_ms: if total - q - pf > 1e-9 * total {
                total - q - pf
            } else {
                0.0
            },
            client_ms: client_ttft_mean_ms,
        })
    }

    pub fn queue_share(&self) -> f64 {
        self.queue_ms / self.total_ms
    }
    pub fn prefill_share(&self) -> f64 {
        self.prefill_ms / self.total_ms
    }
    pub fn other_share(&self) -> f64 {
        self.other_ms / self.total_ms
    }
    /// What the rest is, in words.
    pub fn other_name(&self) -> &'static str {
        if self.of_server {
            "before the engine (API server, tokenisation, routing)"
        } else {
            "front end and network"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t_s: u64, endpoint: u32, engine: &str, name: &str, value: f64) -> MetricRow {
        MetricRow {
            t_ns: t_s * 1_000_000_000,
            endpoint,
            name: name.into(),
            engine: Some(engine.into()),
            labels: String::new(),
            value,
        }
    }

    /// A histogram's sum and count on one engine at one scrape.
    fn hist(rows: &mut Vec<MetricRow>, t: u64, engine: &str, name: &str, sum: f64, n: f64) {
        rows.push(row(t, 0, engine, &format!("{name}_sum"), sum));
        rows.push(row(t, 0, engine, &format!("{name}_count"), n));
    }

    #[test]
    fn the_window_delta_not_the_cumulative_mean_is_the_cells_mean() {
        let s = 1_000_000_000;
        let mut rows = Vec::new();
        // a warm-up left 100 requests that queued 0.1 s each (10 s in all) before the window
        hist(&mut rows, 0, "0", QUEUE, 10.0, 100.0);
        hist(&mut rows, 0, "0", PREFILL, 5.0, 100.0);
        // in the window: 50 requests queued 2 s each, prefilled 40 ms each
        hist(&mut rows, 10, "0", QUEUE, 110.0, 150.0);
        hist(&mut rows, 10, "0", PREFILL, 7.0, 150.0);
        let b = breakdown(&rows, 1, 9 * s).unwrap();
        assert!((b.all.queue_ms.unwrap() - 2000.0).abs() < 1e-9, "{b:?}");
        assert!((b.all.prefill_ms.unwrap() - 40.0).abs() < 1e-9);
        assert_eq!(b.all.requests, 50.0);
        // decode was not exported: unknown, not 0
        assert_eq!(b.all.decode_ms, None);
        // cumulative since start it would have been 110 / 150 s = 733 ms
    }

    #[test]
    fn engines_are_split_and_pooled_by_request_count() {
        let mut rows = Vec::new();
        for (e, q, n) in [("0", 1.0, 10.0), ("1", 9.0, 30.0)] {
            hist(&mut rows, 0, e, QUEUE, 0.0, 0.0);
            hist(&mut rows, 5, e, QUEUE, q, n);
        }
        let b = breakdown(&rows, 0, 5_000_000_000).unwrap();
        assert_eq!(b.engines.len(), 2);
        assert!((b.engines["e0"].queue_ms.unwrap() - 100.0).abs() < 1e-9);
        assert!((b.engines["e1"].queue_ms.unwrap() - 300.0).abs() < 1e-9);
        // pooled: 10 s over 40 requests, not the mean of the two means (200 ms)
        assert!((b.all.queue_ms.unwrap() - 250.0).abs() < 1e-9);
    }

    #[test]
    fn no_phase_histograms_or_no_request_in_the_window_is_no_breakdown() {
        let gauges = vec![row(1, 0, "0", "vllm:num_requests_running", 3.0)];
        assert_eq!(breakdown(&gauges, 0, u64::MAX), None);
        let mut idle = Vec::new();
        hist(&mut idle, 0, "0", QUEUE, 4.0, 8.0);
        hist(&mut idle, 5, "0", QUEUE, 4.0, 8.0);
        assert_eq!(breakdown(&idle, 0, 5_000_000_000), None);
    }

    #[test]
    fn the_ttft_split_adds_up_and_never_goes_negative() {
        let mut p = Phases {
            queue_ms: Some(930.0),
            prefill_ms: Some(40.0),
            ttft_ms: Some(1000.0),
            ..Phases::default()
        };
        // the server's TTFT is the whole, the client's (more, the network on top) beside it
        let t = TtftSplit::new(Some(1100.0), &p).unwrap();
        assert!(t.of_server && (t.queue_share() - 0.93).abs() < 1e-12);
        assert!((t.queue_share() + t.prefill_share() + t.other_share() - 1.0).abs() < 1e-12);
        assert_eq!(t.client_ms, Some(1100.0));
        // without the server's TTFT, the client's is the whole
        p.ttft_ms = None;
        let t = TtftSplit::new(Some(1000.0), &p).unwrap();
        assert!(!t.of_server && (t.queue_share() - 0.93).abs() < 1e-12);
        // the phases exceed the whole: the rest is 0, not negative
        let t = TtftSplit::new(Some(900.0), &p).unwrap();
        assert_eq!((t.total_ms, t.other_ms), (970.0, 0.0));
        assert_eq!(TtftSplit::new(None, &p), None);
    }
}
