//! Arrival processes: when each request is meant to be sent, as offsets from the run start,
//! precomputed from a seeded generator so a run is reproducible.
//!
//! Gamma follows `vllm bench serve --burstiness`: inter-arrival times are
//! Gamma(shape = burstiness, scale = 1 / (rate · burstiness)), so the mean rate is `rate`
//! whatever the burstiness; 1 is Poisson, below 1 burstier, above 1 more regular.

use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrival {
    /// Everything at t = 0 (`--request-rate inf`).
    AllAtOnce,
    Poisson {
        rate: f64,
    },
    Gamma {
        rate: f64,
        burstiness: f64,
    },
    /// Evenly spaced at `rate`.
    Constant {
        rate: f64,
    },
    /// A rate moving from `start` to `end` over the run; `burstiness` infinite: evenly
    /// spaced at each instant's rate.
    Ramp {
        strategy: RampStrategy,
        start: f64,
        end: f64,
        burstiness: f64,
    },
    /// Offsets read from a trace, scaled by `1 / speed`.
    Trace {
        speed: f64,
    },
}

/// How a ramp's rate moves from its start to its end (vLLM's `--ramp-up-strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RampStrategy {
    Linear,
    Exponential,
}

impl RampStrategy {
    pub fn parse(s: &str) -> Option<RampStrategy> {
        match s {
            "linear" => Some(RampStrategy::Linear),
            "exponential" => Some(RampStrategy::Exponential),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RampStrategy::Linear => "linear",
            RampStrategy::Exponential => "exponential",
        }
    }

    /// The rate at `progress` in [0, 1] of a ramp from `start` to `end`.
    pub fn rate_at(self, start: f64, end: f64, progress: f64) -> f64 {
        match self {
            RampStrategy::Linear => start + (end - start) * progress,
            RampStrategy::Exponential => start * (end / start).powf(progress),
        }
    }
}

impl Arrival {
    /// The process for an offered `rate` (infinite: all at once): evenly spaced when
    /// `constant`, else gamma with this burstiness, which at 1 is Poisson.
    pub fn of(rate: f64, constant: bool, burstiness: f64) -> Arrival {
        if rate.is_infinite() {
            Arrival::AllAtOnce
        } else if constant {
            Arrival::Constant { rate }
        } else if burstiness == 1.0 {
            Arrival::Poisson { rate }
        } else {
            Arrival::Gamma { rate, burstiness }
        }
    }

    /// The offered rate in requests per second: infinite for all-at-once, and for a ramp
    /// or a trace, which have no single rate (vLLM stores `request_rate: inf` for both).
    pub fn rate(&self) -> f64 {
        match *self {
            Arrival::AllAtOnce | Arrival::Ramp { .. } | Arrival::Trace { .. } => f64::INFINITY,
            Arrival::Poisson { rate }
            | Arrival::Gamma { rate, .. }
            | Arrival::Constant { rate } => rate,
        }
    }

    /// What a table's "offered" column shows for a cell sent this way: the rate where there
    /// is one; else how it sent (`closed 90` for all at once under a concurrency cap, `ramp
    /// 2→24`, `trace 2×`), where vLLM's own files say `inf` for all of them.
    pub fn offered_label(&self, rate: f64, max_concurrency: Option<usize>) -> String {
        // whole numbers as they are, others to a tenth, and below 1 to two significant
        // digits (a rate of 0.05 is not 0.1)
        let num = |r: f64| {
            if r.fract() == 0.0 {
                format!("{r:.0}")
            } else if r >= 1.0 {
                format!("{r:.1}")
            } else {
                let decimals = (1.0 - r.log10().floor()).max(1.0) as usize;
                let s = format!("{r:.decimals$}");
                s.trim_end_matches('0').to_string()
            }
        };
        match (*self, max_concurrency) {
            (Arrival::AllAtOnce, Some(n)) => format!("closed {n}"),
            (Arrival::AllAtOnce, None) => "inf".into(),
            (Arrival::Ramp { start, end, .. }, _) => format!("ramp {}→{}", num(start), num(end)),
            (Arrival::Trace { speed }, _) => format!("trace {}×", num(speed)),
            _ => num(rate),
        }
    }

    pub fn describe(&self) -> String {
        match *self {
            Arrival::AllAtOnce => "all at once".into(),
            Arrival::Poisson { rate } => format!("Poisson, {rate} req/s"),
            Arrival::Gamma { rate, burstiness } => {
                format!("gamma (burstiness {burstiness}), {rate} req/s")
            }
            Arrival::Constant { rate } => format!("constant, {rate} req/s"),
            Arrival::Ramp {
                strategy,
                start,
                end,
                burstiness,
            } => format!(
                "{} ramp {start} → {end} req/s{}",
                strategy.name(),
                if burstiness.is_infinite() {
                    ", evenly spaced".to_string()
                } else if burstiness == 1.0 {
                    String::new()
                } else {
                    format!(" (burstiness {burstiness})")
                }
            ),
            Arrival::Trace { speed } => format!("trace replay at {speed}× speed"),
        }
    }

    /// Whether requests are sent on a schedule of their own (so lateness against it is a
    /// client fault worth a warning): every process but all-at-once.
    pub fn paced(&self) -> bool {
        !matches!(self, Arrival::AllAtOnce)
    }

    fn next_gap_s(&self, rng: &mut Rng) -> f64 {
        match *self {
            Arrival::AllAtOnce => 0.0,
            Arrival::Poisson { rate } => rng.exponential(1.0 / rate),
            Arrival::Gamma { rate, burstiness } => rng.gamma(burstiness, 1.0 / (rate * burstiness)),
            Arrival::Constant { rate } => 1.0 / rate,
            // their gaps depend on where they are: see `ramp_gap_s`; a trace has none
            Arrival::Ramp { .. } | Arrival::Trace { .. } => 0.0,
        }
    }
}

/// A gap drawn at `rate` with this burstiness (infinite: exactly `1 / rate`).
fn gap_at(rng: &mut Rng, rate: f64, burstiness: f64) -> f64 {
    if burstiness.is_infinite() {
        1.0 / rate
    } else if burstiness == 1.0 {
        rng.exponential(1.0 / rate)
    } else {
        rng.gamma(burstiness, 1.0 / (rate * burstiness))
    }
}

/// How many requests a schedule holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    Count(usize),
    /// Every arrival before this many seconds.
    Duration(f64),
}

/// All at once for a duration is a closed loop: a fixed number of requests in flight, the
/// next sent as soon as one ends, until the time is up. It has no schedule.
pub fn is_closed_loop(arrival: Arrival, stop: Stop) -> bool {
    matches!((arrival, stop), (Arrival::AllAtOnce, Stop::Duration(_)))
}

/// The most requests one schedule holds (800 MB of send times): `request_rate: 1e6` for a
/// `duration_s: 1e6` would otherwise be built until memory ran out.
pub const MAX_SCHEDULE: f64 = 1e8;

/// Refuse a schedule too large to hold, before building it.
pub fn check_size(arrival: Arrival, stop: Stop) -> Result<(), String> {
    let n = match (stop, arrival) {
        (Stop::Count(n), _) => n as f64,
        (Stop::Duration(_), _) if is_closed_loop(arrival, stop) => 0.0,
        // the mean rate of a ramp is at most its larger end
        (Stop::Duration(d), Arrival::Ramp { start, end, .. }) => start.max(end) * d,
        (Stop::Duration(d), _) => arrival.rate() * d,
    };
    if n > MAX_SCHEDULE {
        return Err(format!(
            "{n:.3e} requests ({} for the duration) are more than the {MAX_SCHEDULE:e} one load point sends",
            arrival.describe()
        ));
    }
    Ok(())
}

/// Intended send offsets in nanoseconds, ascending, the first at 0 (empty for a closed
/// loop, see `is_closed_loop`).
pub fn schedule(arrival: Arrival, stop: Stop, seed: u64) -> Vec<u64> {
    if is_closed_loop(arrival, stop) {
        return Vec::new();
    }
    let mut rng = Rng::derive(seed, 0xA11);
    if let Arrival::Ramp {
        strategy,
        start,
        end,
        burstiness,
    } = arrival
    {
        return ramp(strategy, start, end, burstiness, stop, &mut rng);
    }
    let mut out = Vec::new();
    let mut t = 0.0f64;
    loop {
        match stop {
            Stop::Count(n) if out.len() >= n => break,
            Stop::Duration(d) if t >= d => break,
            _ => {}
        }
        out.push((t * 1e9).round() as u64);
        t += arrival.next_gap_s(&mut rng);
    }
    out
}

/// A ramp's offsets: request 0 at 0, the gap before request `i` drawn at the ramp's rate
/// for `i` (by index for a count, by the time reached for a duration).
fn ramp(
    strategy: RampStrategy,
    start: f64,
    end: f64,
    burstiness: f64,
    stop: Stop,
    rng: &mut Rng,
) -> Vec<u64> {
    let mut out = Vec::new();
    let mut t = 0.0f64;
    loop {
        let i = out.len();
        let progress = match stop {
            Stop::Count(n) if i >= n => break,
            Stop::Duration(d) if t >= d => break,
            Stop::Count(n) => i as f64 / (n.max(2) - 1) as f64,
            Stop::Duration(d) => t / d,
        };
        if i > 0 {
            t += gap_at(rng, strategy.rate_at(start, end, progress), burstiness);
            if matches!(stop, Stop::Duration(d) if t >= d) {
                break;
            }
        }
        out.push((t * 1e9).round() as u64);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_without_one_rate_says_how_it_sent() {
        let ramp = Arrival::Ramp {
            strategy: RampStrategy::Linear,
            start: 2.0,
            end: 24.5,
            burstiness: 1.0,
        };
        let label = |a: Arrival, cap| a.offered_label(a.rate(), cap);
        assert_eq!(label(ramp, None), "ramp 2→24.5");
        assert_eq!(label(Arrival::AllAtOnce, Some(90)), "closed 90");
        assert_eq!(label(Arrival::AllAtOnce, None), "inf");
        assert_eq!(label(Arrival::Trace { speed: 2.0 }, None), "trace 2×");
        // a rate is a rate, capped or not; a multi-turn cell's is requests per second
        assert_eq!(label(Arrival::Poisson { rate: 4.0 }, Some(8)), "4");
        assert_eq!(
            Arrival::Poisson { rate: 4.0 }.offered_label(12.5, None),
            "12.5"
        );
    }

    #[test]
    fn rates_and_counts_hold() {
        for a in [
            Arrival::Poisson { rate: 50.0 },
            Arrival::Gamma {
                rate: 50.0,
                burstiness: 0.5,
            },
            Arrival::Gamma {
                rate: 50.0,
                burstiness: 4.0,
            },
            Arrival::Constant { rate: 50.0 },
        ] {
            let s = schedule(a, Stop::Count(20_000), 1);
            assert_eq!(s.len(), 20_000);
            assert_eq!(s[0], 0);
            assert!(s.windows(2).all(|w| w[0] <= w[1]));
            let rate = (s.len() - 1) as f64 / (*s.last().unwrap() as f64 / 1e9);
            assert!((rate - 50.0).abs() < 1.5, "{a:?}: {rate}");
        }
        let d = schedule(Arrival::Constant { rate: 10.0 }, Stop::Duration(2.0), 0);
        assert_eq!(d.len(), 20);
        assert!(
            schedule(Arrival::AllAtOnce, Stop::Count(5), 0)
                .iter()
                .all(|&t| t == 0)
        );
        // all at once for a duration: a closed loop, nothing scheduled ahead
        assert!(is_closed_loop(Arrival::AllAtOnce, Stop::Duration(1.0)));
        assert!(schedule(Arrival::AllAtOnce, Stop::Duration(1.0), 0).is_empty());
        assert!(!is_closed_loop(Arrival::AllAtOnce, Stop::Count(5)));
        assert!(!is_closed_loop(
            Arrival::Constant { rate: 1.0 },
            Stop::Duration(1.0)
        ));
    }

    #[test]
    fn burstiness_changes_dispersion_not_mean() {
        let cv = |b: f64| {
            let s = schedule(
                Arrival::Gamma {
                    rate: 10.0,
                    burstiness: b,
                },
                Stop::Count(50_000),
                2,
            );
            let gaps: Vec<f64> = s.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
            let m = gaps.iter().sum::<f64>() / gaps.len() as f64;
            let v = gaps.iter().map(|g| (g - m) * (g - m)).sum::<f64>() / gaps.len() as f64;
            v.sqrt() / m
        };
        // coefficient of variation of Gamma(k) is 1/sqrt(k)
        assert!((cv(1.0) - 1.0).abs() < 0.03);
        assert!((cv(0.25) - 2.0).abs() < 0.1);
        assert!((cv(4.0) - 0.5).abs() < 0.03);
    }

    #[test]
    fn same_seed_same_schedule() {
        let a = Arrival::Poisson { rate: 3.0 };
        assert_eq!(
            schedule(a, Stop::Count(50), 9),
            schedule(a, Stop::Count(50), 9)
        );
        assert_ne!(
            schedule(a, Stop::Count(50), 9),
            schedule(a, Stop::Count(50), 10)
        );
    }
}

#[cfg(test)]
mod ramp_tests {
    use super::*;

    /// Between requests `a` and `b` of a ramp of `n`, the elapsed time is a sum of
    /// independent gaps, gap `i` of mean `1/r_i` and variance `1/(k·r_i²)` (gamma of shape
    /// k): the expected time and a 4σ bound follow from the ramp alone, not from a tuned
    /// tolerance.
    fn expected_span(a: &Arrival, n: usize, from: usize, to: usize) -> (f64, f64) {
        let Arrival::Ramp {
            strategy,
            start,
            end,
            burstiness,
        } = *a
        else {
            unreachable!()
        };
        let (mut mean, mut var) = (0.0, 0.0);
        for i in from + 1..=to {
            let r = strategy.rate_at(start, end, i as f64 / (n - 1) as f64);
            mean += 1.0 / r;
            if burstiness.is_finite() {
                var += 1.0 / (burstiness * r * r);
            }
        }
        (mean, var.sqrt())
    }

    #[test]
    fn a_segments_mean_rate_follows_the_ramp() {
        let n = 20_000;
        for (k, a) in [
            (RampStrategy::Linear, 1.0),
            (RampStrategy::Exponential, 1.0),
            (RampStrategy::Linear, 0.5),
            (RampStrategy::Exponential, 4.0),
        ]
        .into_iter()
        .enumerate()
        .map(|(k, (strategy, burstiness))| {
            (
                k,
                Arrival::Ramp {
                    strategy,
                    start: 5.0,
                    end: 80.0,
                    burstiness,
                },
            )
        }) {
            for seed in 0..5u64 {
                let s = schedule(a, Stop::Count(n), seed * 10 + k as u64);
                assert_eq!(s.len(), n);
                assert_eq!(s[0], 0);
                assert!(s.windows(2).all(|w| w[0] <= w[1]));
                // five segments along the ramp: each one's span within 4σ of its expectation
                for seg in 0..5 {
                    let (from, to) = (seg * n / 5, (seg + 1) * n / 5 - 1);
                    let got = (s[to] - s[from]) as f64 / 1e9;
                    let (mean, sd) = expected_span(&a, n, from, to);
                    assert!(
                        (got - mean).abs() <= 4.0 * sd,
                        "{a:?} seed {seed} segment {seg}: {got:.3} s, expected {mean:.3} ± {:.3}",
                        4.0 * sd
                    );
                }
            }
        }
    }

    #[test]
    fn an_evenly_spaced_ramp_is_exact_and_ends_at_its_end_rate() {
        for strategy in [RampStrategy::Linear, RampStrategy::Exponential] {
            let a = Arrival::Ramp {
                strategy,
                start: 2.0,
                end: 50.0,
                burstiness: f64::INFINITY,
            };
            let s = schedule(a, Stop::Count(101), 0);
            // the gap before request i is 1 / r_i, to the nanosecond of rounding
            for i in 1..s.len() {
                let r = strategy.rate_at(2.0, 50.0, i as f64 / 100.0);
                let gap = (s[i] - s[i - 1]) as f64 / 1e9;
                assert!(
                    (gap - 1.0 / r).abs() < 2e-9,
                    "{strategy:?} {i}: {gap} vs {}",
                    1.0 / r
                );
            }
            let last = (s[100] - s[99]) as f64 / 1e9;
            assert!((1.0 / last - 50.0).abs() < 1e-3);
        }
        // the midpoint of a linear ramp is the mean of its ends; of an exponential, the
        // geometric mean
        assert_eq!(RampStrategy::Linear.rate_at(2.0, 50.0, 0.5), 26.0);
        assert!((RampStrategy::Exponential.rate_at(2.0, 50.0, 0.5) - 10.0).abs() < 1e-12);
    }

    #[test]
    fn a_ramp_by_duration_moves_with_time() {
        // 0..60 s, linear 10 → 70 req/s by time: the count in [t1, t2) is Poisson with mean
        // the integral of the rate
        let a = Arrival::Ramp {
            strategy: RampStrategy::Linear,
            start: 10.0,
            end: 70.0,
            burstiness: 1.0,
        };
        let s = schedule(a, Stop::Duration(60.0), 3);
        assert!(s.iter().all(|&t| t < 60_000_000_000));
        for (t1, t2) in [(0.0, 20.0), (20.0, 40.0), (40.0, 60.0)] {
            let got = s
                .iter()
                .filter(|&&t| (t as f64 / 1e9) >= t1 && (t as f64 / 1e9) < t2)
                .count() as f64;
            let rate = |t: f64| 10.0 + 60.0 * t / 60.0;
            let mean = (rate(t1) + rate(t2)) / 2.0 * (t2 - t1);
            assert!(
                (got - mean).abs() <= 4.0 * mean.sqrt() + 1.0,
                "[{t1}, {t2}): {got} vs {mean}"
            );
        }
        assert!(check_size(a, Stop::Duration(60.0)).is_ok());
        assert_eq!(a.rate(), f64::INFINITY);
        assert!(a.paced());
    }
}
