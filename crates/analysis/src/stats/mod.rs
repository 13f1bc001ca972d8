//! Descriptive statistics: the one quantile definition of the project and the distribution
//! summary (mean, std, min, percentiles, max) every latency figure is reported with.
//!
//! Pure code: no async, no IO. The quantile is numpy's default (`method="linear"`, Hyndman &
//! Fan type 7): for sorted `x` of length `n` and `p` in [0, 100], `h = (n-1)·p/100`, and the
//! result interpolates linearly between `x[floor(h)]` and `x[floor(h)+1]`. This is what
//! `vllm bench serve` uses, so our figures can be cross-checked against vLLM's to the last
//! digit. The standard deviation is the population one (`ddof = 0`), as `numpy.std`.

pub mod exact;
pub mod survival;

use serde::Serialize;

/// The percentiles every distribution reports, besides any the user asks for.
pub const STANDARD_PERCENTILES: [f64; 5] = [50.0, 90.0, 95.0, 99.0, 99.9];

/// Where quantile `p` falls in a sorted sample of `n` (n > 0): the two ranks numpy's
/// `linear` method interpolates between, and the weight of the upper one.
pub(crate) fn quantile_ranks(n: usize, p: f64) -> (usize, usize, f64) {
    let p = p.clamp(0.0, 100.0);
    let h = (n - 1) as f64 * p / 100.0;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    (lo, hi, h - lo as f64)
}

/// numpy's `_lerp`: a + (b-a)·t, switched to b - (b-a)·(1-t) for t ≥ 0.5 so the result is
/// exact at both ends; needed to agree with vLLM's figures to the last bit.
pub(crate) fn lerp(a: f64, b: f64, frac: f64) -> f64 {
    let diff = b - a;
    if frac >= 0.5 {
        b - diff * (1.0 - frac)
    } else {
        a + diff * frac
    }
}

/// Quantile `p` (0..=100) of an ascending slice, numpy `linear` method. `None` when empty.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let (lo, hi, frac) = quantile_ranks(sorted.len(), p);
    Some(lerp(sorted[lo], sorted[hi], frac))
}

/// Mean, population standard deviation, extremes and percentiles of a sample. It keeps
/// the figures, not the sample: percentiles other than the standard ones are those asked
/// for when it was built.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Distribution {
    pub count: usize,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    /// Further percentiles asked for at construction, as (p, value).
    #[serde(skip)]
    pub(crate) extra: Vec<(f64, f64)>,
}

impl Distribution {
    /// Summarise `values` (any order; NaNs are a bug upstream and are dropped, counted out).
    /// `None` for an empty sample: a figure over nothing is not zero, it is absent.
    pub fn from_values(values: Vec<f64>) -> Option<Self> {
        Self::from_values_with(values, &[])
    }

    /// As [`Distribution::from_values`], also computing the percentiles `extra` (0..=100)
    /// so [`Distribution::percentile`] can answer them.
    pub fn from_values_with(mut values: Vec<f64>, extra: &[f64]) -> Option<Self> {
        values.retain(|v| !v.is_nan());
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len() as f64;
        let mean = pairwise_sum(&values) / n;
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let q = |p| percentile_sorted(&values, p).expect("non-empty");
        Some(Self {
            count: values.len(),
            mean,
            std: var.sqrt(),
            min: values[0],
            p50: q(50.0),
            p90: q(90.0),
            p95: q(95.0),
            p99: q(99.0),
            p999: q(99.9),
            max: values[values.len() - 1],
            extra: extra.iter().map(|&p| (p, q(p))).collect(),
        })
    }

    /// Percentile `p`: the standard ones, 0 (min), 100 (max), and any asked for at
    /// construction; `None` for any other (the sample is no longer held).
    pub fn percentile(&self, p: f64) -> Option<f64> {
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
}

/// numpy's `mean` sums with pairwise summation (blocks of 8 unrolled, 128-element leaves);
/// doing the same keeps our means equal to vLLM's to the last digit, not just to 1e-12.
fn pairwise_sum(v: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    if v.len() < 8 {
        return v.iter().fold(0.0, |a, b| a + b);
    }
    if v.len() <= BLOCK {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&v[..8]);
        let mut i = 8;
        while i + 8 <= v.len() {
            for (j, acc) in r.iter_mut().enumerate() {
                *acc += v[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for x in &v[i..] {
            res += x;
        }
        return res;
    }
    let mut half = v.len() / 2;
    half -= half % 8;
    pairwise_sum(&v[..half]) + pairwise_sum(&v[half..])
}

#[cfg(test)]
mod tests;
