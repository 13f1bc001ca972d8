//! A ramp cell read as a one-run saturation probe: offered and achieved throughput over
//! time, and the offered rate at which achieved throughput stopped following (the knee).
//!
//! Achieved is measured from output tokens, not completions: an LLM server finishes requests
//! in waves (a batch admitted together ends together), so completions per second jump while
//! the token rate is smooth. Each successful request's tokens are spread over its first to
//! last content event, and the rate is divided by the mean output length, in req/s.
//!
//! The plateau is the best achieved rate while the ramp still sends (after the last send,
//! the draining server does no prefill and decodes faster than it can under load). The ramp
//! saturated the server when the plateau is under 90% of the highest offered rate; the knee
//! is then where the offered rate passed the plateau, the saturation analysis's "where the
//! offered load meets the plateau". Both rates are averaged over 5 s.

use crate::record::CompactRecord;
use serde::Serialize;

/// Seconds averaged over, centred.
const SMOOTH_S: usize = 5;
/// A plateau under this share of the highest offered rate: the ramp passed the capacity.
const FOLLOWING: f64 = 0.9;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RampPoint {
    /// Start of the second, from the cell's start.
    pub t_s: f64,
    /// Requests intended per second (smoothed).
    pub offered: f64,
    /// Output tokens per second over the mean output length (smoothed), in req/s.
    pub achieved: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Knee {
    /// When the offered rate passed the plateau (s from the cell's start).
    pub t_s: f64,
    /// The plateau: achieved throughput stopped following the offered rate there.
    pub plateau: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RampProbe {
    pub points: Vec<RampPoint>,
    /// The last send (s from the cell's start): the plateau is read up to here.
    pub sending_s: f64,
    pub knee: Option<Knee>,
    /// The highest offered rate: the ramp's own highest rate where the caller knows it (a
    /// smoothed per-second count of a random process overshoots it: a Poisson ramp to 24
    /// req/s counts 26 in some 5 s), else the highest smoothed count while sending.
    pub peak_offered: f64,
    /// The highest achieved rate while sending.
    pub peak_achieved: f64,
}

/// The probe of a ramp cell's records, given the ramp's highest rate by its plan where
/// known; `None` with too few successful requests to read.
pub fn probe(records: &[CompactRecord], planned_peak: Option<f64>) -> Option<RampProbe> {
    let ok: Vec<&CompactRecord> = records
        .iter()
        .filter(|r| r.is_ok() && r.output_tokens > 0)
        .collect();
    if ok.len() < 20 {
        return None;
    }
    let sending_s = records.iter().map(|r| r.t_intended_ns).max()? as f64 / 1e9;
    let end_s = records.iter().map(|r| r.t_end_ns).max()? as f64 / 1e9;
    let seconds = end_s.ceil() as usize + 1;
    let mut offered = vec![0.0; seconds];
    for r in records {
        offered[(r.t_intended_ns / 1_000_000_000) as usize] += 1.0;
    }
    let mut tokens = vec![0.0; seconds];
    for r in &ok {
        let ev = &r.content_events;
        let a = (r.t_send_ns + ev.first_ns) as f64 / 1e9;
        let b = (r.t_send_ns + ev.last_ns) as f64 / 1e9;
        spread(&mut tokens, a, b, r.output_tokens as f64);
    }
    let mean_out = ok.iter().map(|r| r.output_tokens as f64).sum::<f64>() / ok.len() as f64;
    let offered = smooth(&offered);
    let achieved: Vec<f64> = smooth(&tokens).iter().map(|t| t / mean_out).collect();
    // read where the whole smoothing span lies in whole seconds before the last send
    let half = SMOOTH_S / 2;
    let inside = half..((sending_s.floor() as usize).saturating_sub(half)).max(half + 1);
    let max_in = |xs: &[f64]| xs[inside.clone()].iter().copied().fold(0.0, f64::max);
    let peak_offered = planned_peak.unwrap_or_else(|| max_in(&offered));
    let plateau = max_in(&achieved);
    let knee = (plateau < FOLLOWING * peak_offered)
        .then(|| inside.clone().find(|&k| offered[k] >= plateau))
        .flatten()
        .map(|k| Knee {
            t_s: k as f64,
            plateau,
        });
    Some(RampProbe {
        points: (0..seconds)
            .map(|k| RampPoint {
                t_s: k as f64,
                offered: offered[k],
                achieved: achieved[k],
            })
            .collect(),
        sending_s,
        knee,
        peak_offered,
        peak_achieved: plateau,
    })
}

/// Add `n` spread evenly over `[a, b]` seconds to per-second bins (all in `a`'s second
/// when the span is empty).
fn spread(bins: &mut [f64], a: f64, b: f64, n: f64) {
    let last = bins.len() - 1;
    if b <= a {
        bins[(a as usize).min(last)] += n;
        return;
    }
    let mut k = a.floor();
    while k < b {
        let share = (b.min(k + 1.0) - a.max(k)) / (b - a);
        bins[(k as usize).min(last)] += n * share;
        k += 1.0;
    }
}

/// A centred moving average over `SMOOTH_S` seconds (shorter at the edges).
fn smooth(c: &[f64]) -> Vec<f64> {
    let half = SMOOTH_S / 2;
    (0..c.len())
        .map(|k| {
            let (lo, hi) = (k.saturating_sub(half), (k + half + 1).min(c.len()));
            c[lo..hi].iter().sum::<f64>() / (hi - lo) as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{EventSpan, RequestRecord, TokenSource};

    /// 10 tokens streamed over the request's last 0.4 s.
    fn rec(id: u64, intended_s: f64, end_s: f64) -> CompactRecord {
        let span = ((end_s - intended_s) * 1e9) as u64;
        RequestRecord {
            id,
            t_intended_ns: (intended_s * 1e9) as u64,
            t_send_ns: (intended_s * 1e9) as u64,
            t_end_ns: (end_s * 1e9) as u64,
            connect_ns: None,
            content_events: EventSpan {
                count: 10,
                first_ns: span - 400_000_000,
                last_ns: span,
            },
            content_event_tokens: (),
            input_tokens: 1,
            server_prompt_tokens: None,
            max_tokens: 1,
            output_tokens: 10,
            output_tokens_source: TokenSource::Usage,
            finish_reason: None,
            error: None,
            resent: 0,
            turn: None,
        }
    }

    /// A linear ramp by index from 2 to 40 req/s (Poisson gaps from a fixed generator, or
    /// evenly spaced) into a server of known capacity `mu`: a FIFO that serves one request
    /// per `1/mu` s after a fixed 0.4 s of work. It follows any rate below `mu` and
    /// completes `mu` per second above it; once sending stops it drains 1.5× as fast (no
    /// more prefill to interleave, as the simulator and vLLM do).
    fn ramp_into(mu: f64, poisson: bool) -> Vec<CompactRecord> {
        let n = 1500;
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut t = 0.0f64;
        let arrivals: Vec<f64> = (0..n)
            .map(|i| {
                if i > 0 {
                    let r = 2.0 + 38.0 * i as f64 / (n - 1) as f64;
                    t += if poisson {
                        -(1.0 - uniform()).ln() / r
                    } else {
                        1.0 / r
                    };
                }
                t
            })
            .collect();
        let last = t;
        let mut free_at = 0.0f64;
        arrivals
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let start = free_at.max(t + 0.4);
                free_at = start
                    + if start < last {
                        1.0 / mu
                    } else {
                        1.0 / (1.5 * mu)
                    };
                rec(i as u64, t, free_at)
            })
            .collect()
    }

    #[test]
    fn the_knee_is_where_offered_passes_the_known_capacity() {
        for poisson in [false, true] {
            let p = probe(&ramp_into(20.0, poisson), None).unwrap();
            let k = p.knee.clone().expect("a knee");
            // the plateau is the capacity, within the 5 s average's noise (±1 request)
            assert!(
                (k.plateau - 20.0).abs() <= 1.0,
                "poisson {poisson}: plateau {}",
                k.plateau
            );
            // the offered rate passes 20 req/s at request 711 of the ramp, 90.7 s in (the
            // even ramp's sum of gaps); the noise of a 5 s average moves the crossing
            assert!(
                (k.t_s - 90.7).abs() <= 6.0,
                "poisson {poisson}: knee at {} s",
                k.t_s
            );
            assert!(p.peak_offered > 35.0);
            // the planned end, where known, is the peak, not the noisy count
            let planned = probe(&ramp_into(20.0, poisson), Some(40.0)).unwrap();
            assert_eq!(planned.peak_offered, 40.0);
            assert_eq!(planned.knee, p.knee);
        }
    }

    #[test]
    fn a_server_that_keeps_up_has_no_knee() {
        let p = probe(&ramp_into(100.0, true), Some(40.0)).unwrap();
        assert_eq!(p.knee, None, "{:?}", p.knee);
        assert!((p.peak_achieved - p.peak_offered).abs() / p.peak_offered < 0.15);
        // too few to read
        assert_eq!(probe(&ramp_into(100.0, true)[..10], None), None);
    }
}
