//! Latency over every request, finished or not: the product-limit (Kaplan–Meier) estimator
//! for right-censored samples (DESIGN §3, "unfinished is censored, not dropped").
//!
//! A request cut off before it finished (the drain limit, a request timeout, Ctrl-C) did not
//! take "its time to the cut": it took *at least* that long. Dropping it keeps the survivors
//! only, which at overload are the fast ones; counting it at its cut understates it. The
//! estimator keeps it in the population as "still waiting at t": its mass moves to the right
//! of its cut, shared among the requests still at risk there.
//!
//! One quantile definition for the project: with no censored value every figure is exactly
//! [`Distribution`]'s (numpy's `linear`, to the bit). With censored values, the order
//! statistics numpy interpolates between are placed where the estimator puts them: an event
//! time whose estimated CDF steps from `F₋` to `F₊` spans the ranks `N·F₋ ..= N·F₊ − 1` of a
//! sample of `N`, and rank `h = (N−1)·p/100` is read off (or interpolated between two event
//! times) as numpy would. That reduces to numpy's ranks when nothing is censored.
//!
//! A percentile is *known* only where no cut request can move it: the same quantile with
//! every cut request at its cut and at +∞ agree. Elsewhere it falls in censored mass and is
//! reported as a *lower bound*, flagged and printed `> x`, with x the estimator's value, or,
//! where the estimator cannot reach `p` (its CDF stops short because the tail is censored),
//! the quantile with every cut request at its cut (each true value is at least its cut, and
//! a quantile is monotone in every order statistic); never below the percentile under it.
//! "At least" because of what cuts requests here: the drain limit, the request timeout and
//! Ctrl-C all stop the requests that have waited longest, so the estimator, which assumes
//! a cut says nothing about the time left, errs low, never high. Mean and max are lower
//! bounds whenever anything was censored.
//!
//! Pure code: no async, no IO.

use super::{Distribution, lerp};
use serde::{Serialize, Serializer};

/// One observation: the time, and whether it is only "at least this long".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub value: f64,
    pub censored: bool,
}

impl Observation {
    pub fn done(value: f64) -> Self {
        Self {
            value,
            censored: false,
        }
    }

    pub fn cut(value: f64) -> Self {
        Self {
            value,
            censored: true,
        }
    }
}

/// A figure, known or only bounded from below. Serialised as a plain number when known and
/// as `{"at_least": x}` when not, so no consumer can take a bound for a value by accident.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    pub value: f64,
    pub lower_bound: bool,
}

impl Figure {
    /// A figure known exactly.
    pub fn known(value: f64) -> Self {
        Self {
            value,
            lower_bound: false,
        }
    }

    /// `12.3` or `> 12.3` with `decimals` digits (the units are the caller's).
    pub fn display(&self, decimals: usize) -> String {
        let v = format!("{:.*}", decimals, self.value);
        if self.lower_bound {
            format!("> {v}")
        } else {
            v
        }
    }
}

impl Serialize for Figure {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if self.lower_bound {
            let mut m = s.serialize_map(Some(1))?;
            m.serialize_entry("at_least", &self.value)?;
            m.end()
        } else {
            s.serialize_f64(self.value)
        }
    }
}

/// The summary of a censored sample: the figures of [`Distribution`], each flagged when it
/// is only a lower bound.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Survival {
    /// The population: finished and cut off.
    pub count: usize,
    /// How many of them were cut off (right-censored).
    pub censored: usize,
    pub mean: Figure,
    pub min: Figure,
    pub p50: Figure,
    pub p90: Figure,
    pub p95: Figure,
    pub p99: Figure,
    pub p999: Figure,
    pub max: Figure,
    #[serde(skip)]
    extra: Vec<(f64, Figure)>,
}

impl Survival {
    /// Summarise `obs` (any order; NaN values dropped). `None` when empty: no figure from
    /// nothing. `extra` are percentiles wanted beyond the standard ones.
    pub fn from_observations(mut obs: Vec<Observation>, extra: &[f64]) -> Option<Self> {
        obs.retain(|o| !o.value.is_nan());
        if obs.is_empty() {
            return None;
        }
        let censored = obs.iter().filter(|o| o.censored).count();
        let at_cut: Vec<f64> = obs.iter().map(|o| o.value).collect();
        let bound = Distribution::from_values_with(at_cut, extra).expect("non-empty");
        if censored == 0 {
            return Some(Self::exact(bound, extra));
        }
        // The same quantile with every cut request at +∞: where it equals the one at the
        // cut, no cut request can move it and the figure is known; elsewhere it is not.
        let mut open: Vec<f64> = obs
            .iter()
            .map(|o| if o.censored { f64::INFINITY } else { o.value })
            .collect();
        open.sort_by(f64::total_cmp);
        let curve = Curve::new(&mut obs);
        // Every percentile wanted, ascending: a figure is never below a lower percentile's
        // (an unreachable one's bound can fall under the estimate just before it).
        let mut wanted: Vec<f64> = [50.0, 90.0, 95.0, 99.0, 99.9]
            .iter()
            .chain(extra)
            .copied()
            .collect();
        wanted.sort_by(f64::total_cmp);
        wanted.dedup();
        let mut floor = f64::NEG_INFINITY;
        let figures: Vec<(f64, Figure)> = wanted
            .into_iter()
            .map(|p| {
                let at_cut = bound.percentile(p).expect("asked for");
                let settled = quantile_open(&open, p) == at_cut;
                let value = match curve.quantile(p) {
                    // known: numpy's value over the sample, to the bit
                    _ if settled => at_cut,
                    // never below what is known for sure (guards the interpolation's rounding)
                    Some(v) => v.max(at_cut),
                    None => at_cut,
                }
                .max(floor);
                floor = value;
                (
                    p,
                    Figure {
                        value,
                        lower_bound: !settled,
                    },
                )
            })
            .collect();
        let q = |p: f64| {
            figures
                .iter()
                .find(|(x, _)| *x == p)
                .map(|&(_, f)| f)
                .expect("computed above")
        };
        let smallest = obs[0];
        Some(Self {
            count: obs.len(),
            censored,
            mean: Figure {
                value: bound.mean,
                lower_bound: true,
            },
            min: Figure {
                value: smallest.value,
                lower_bound: smallest.censored,
            },
            p50: q(50.0),
            p90: q(90.0),
            p95: q(95.0),
            p99: q(99.0),
            p999: q(99.9),
            max: Figure {
                value: bound.max.max(floor),
                lower_bound: true,
            },
            extra: extra.iter().map(|&p| (p, q(p))).collect(),
        })
    }

    fn exact(d: Distribution, extra: &[f64]) -> Self {
        let k = Figure::known;
        Self {
            count: d.count,
            censored: 0,
            mean: k(d.mean),
            min: k(d.min),
            p50: k(d.p50),
            p90: k(d.p90),
            p95: k(d.p95),
            p99: k(d.p99),
            p999: k(d.p999),
            max: k(d.max),
            extra: extra
                .iter()
                .map(|&p| (p, k(d.percentile(p).expect("asked for"))))
                .collect(),
        }
    }

    /// Percentile `p`: the standard ones, 0 (min), 100 (max), and those asked for at
    /// construction; `None` for any other.
    pub fn percentile(&self, p: f64) -> Option<Figure> {
        let named = [
            (0.0, self.min),
            (50.0, self.p50),
            (90.0, self.p90),
            (95.0, self.p95),
            (99.0, self.p99),
            (99.9, self.p999),
            (100.0, self.max),
        ];
        named
            .iter()
            .chain(&self.extra)
            .find(|(q, _)| *q == p)
            .map(|&(_, v)| v)
    }

    /// Whether any figure is only a lower bound.
    pub fn has_bounds(&self) -> bool {
        self.censored > 0
    }
}

/// Quantile `p` (numpy's linear) of an ascending sample that may end in +∞ (the cut
/// requests, unbounded): +∞ wherever an unbounded value takes part.
fn quantile_open(sorted: &[f64], p: f64) -> f64 {
    let (lo, hi, frac) = super::quantile_ranks(sorted.len(), p);
    let (a, b) = (sorted[lo], sorted[hi]);
    if a.is_infinite() || (b.is_infinite() && frac > 0.0) {
        f64::INFINITY
    } else {
        lerp(a, b, frac)
    }
}

/// The estimated CDF at each distinct event time, as rank spans of a sample of `n`.
struct Curve {
    n: usize,
    /// (event time, first rank, last rank) in ascending time.
    steps: Vec<(f64, f64, f64)>,
}

impl Curve {
    /// `obs` is sorted in place: by time, and at equal times the finished ones first (a
    /// request cut at t was still at risk of finishing at t).
    fn new(obs: &mut [Observation]) -> Self {
        obs.sort_by(|a, b| {
            a.value
                .total_cmp(&b.value)
                .then(a.censored.cmp(&b.censored))
        });
        let n = obs.len();
        let mut at_risk = n;
        let mut survival = 1.0f64;
        let mut steps = Vec::new();
        let mut i = 0;
        while i < n {
            let t = obs[i].value;
            let (mut events, mut cut) = (0usize, 0usize);
            while i < n && obs[i].value == t {
                if obs[i].censored {
                    cut += 1;
                } else {
                    events += 1;
                }
                i += 1;
            }
            if events > 0 {
                let before = 1.0 - survival;
                survival *= 1.0 - events as f64 / at_risk as f64;
                let after = 1.0 - survival;
                steps.push((t, n as f64 * before, n as f64 * after - 1.0));
            }
            at_risk -= events + cut;
        }
        Self { n, steps }
    }

    /// Quantile `p` (0..=100), or `None` where the estimated CDF never reaches it.
    fn quantile(&self, p: f64) -> Option<f64> {
        let h = (self.n - 1) as f64 * p.clamp(0.0, 100.0) / 100.0;
        // a rank a hair past the last one (float rounding of N·F) still belongs to it
        const SLACK: f64 = 1e-9;
        for (k, &(t, first, last)) in self.steps.iter().enumerate() {
            if h <= last + SLACK {
                if h >= first - SLACK || k == 0 {
                    return Some(t);
                }
                // between two event times: interpolate as numpy does between neighbours
                let (t0, _, last0) = self.steps[k - 1];
                return Some(lerp(t0, t, (h - last0) / (first - last0)));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
