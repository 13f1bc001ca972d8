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

    /// The offered rate in requests per second (infinite for all-at-once).
    pub fn rate(&self) -> f64 {
        match *self {
            Arrival::AllAtOnce => f64::INFINITY,
            Arrival::Poisson { rate }
            | Arrival::Gamma { rate, .. }
            | Arrival::Constant { rate } => rate,
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
        }
    }

    fn next_gap_s(&self, rng: &mut Rng) -> f64 {
        match *self {
            Arrival::AllAtOnce => 0.0,
            Arrival::Poisson { rate } => rng.exponential(1.0 / rate),
            Arrival::Gamma { rate, burstiness } => rng.gamma(burstiness, 1.0 / (rate * burstiness)),
            Arrival::Constant { rate } => 1.0 / rate,
        }
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
    let n = match stop {
        Stop::Count(n) => n as f64,
        Stop::Duration(_) if is_closed_loop(arrival, stop) => 0.0,
        Stop::Duration(d) => arrival.rate() * d,
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

#[cfg(test)]
mod tests {
    use super::*;

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
