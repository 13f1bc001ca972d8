//! Exact percentiles of a sample too large to hold: integer values (nanoseconds) streamed
//! twice, with memory bounded by a histogram, not by the sample.
//!
//! Pass one counts the values in log-linear buckets (every integer below 4,096, then 4,096
//! buckets per power of two) and keeps count, sum, min and max. The ranks numpy's `linear`
//! method interpolates between are then located in their buckets. Pass two keeps only the
//! values that fall in those few buckets (as a counting array over the bucket's range, or
//! the values themselves, whichever is smaller) and the squared deviations from the mean.
//! The result equals [`Distribution::from_values`] on the whole sample: the same
//! percentiles to the bit, the mean and std to rounding (the sum is exact here).
//!
//! Used for the inter-token latency, the one distribution with a value per token; the
//! others have a value per request and are held.

use super::{Distribution, STANDARD_PERCENTILES, lerp, quantile_ranks};

/// log2 of the buckets per power of two; also the values below `1 << SUB_BITS` are exact.
const SUB_BITS: u32 = 12;
const SUB: u64 = 1 << SUB_BITS;

/// The bucket of `v`: `v` itself below `SUB`, then `shift·SUB + (v >> shift)` where
/// `v >> shift` keeps the top `SUB_BITS + 1` bits.
fn bucket_of(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let shift = 63 - v.leading_zeros() - SUB_BITS;
    (shift as u64 * SUB + (v >> shift)) as usize
}

/// The smallest value of bucket `b`, and the bucket's width.
fn bucket_range(b: usize) -> (u64, u64) {
    let b = b as u64;
    if b < 2 * SUB {
        return (b, 1);
    }
    let shift = b / SUB - 1;
    let mantissa = b - shift * SUB;
    (mantissa << shift, 1 << shift)
}

/// Pass one: counts per bucket and the sample's moments.
#[derive(Debug, Default)]
pub struct FirstPass {
    counts: Vec<u64>,
    n: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl FirstPass {
    pub fn record(&mut self, v: u64) {
        let b = bucket_of(v);
        if b >= self.counts.len() {
            self.counts.resize(b + 1, 0);
        }
        self.counts[b] += 1;
        if self.n == 0 {
            (self.min, self.max) = (v, v);
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.n += 1;
        self.sum += v as u128;
    }

    /// Take in another sample's pass one: the result is pass one of the union (e.g. the
    /// repeats of a cell, or the files of several clients), so pass two over both samples
    /// gives the union's exact distribution.
    pub fn merge(&mut self, other: FirstPass) {
        if other.n == 0 {
            return;
        }
        if other.counts.len() > self.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        if self.n == 0 {
            (self.min, self.max) = (other.min, other.max);
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.n += other.n;
        self.sum += other.sum;
    }

    /// Plan pass two for the standard percentiles and `extra`, with results divided by
    /// `unit` (1e6: nanoseconds to milliseconds). `None` for an empty sample.
    pub fn plan(self, extra: &[f64], unit: f64) -> Option<SecondPass> {
        if self.n == 0 {
            return None;
        }
        let percentiles: Vec<f64> = STANDARD_PERCENTILES.iter().chain(extra).copied().collect();
        let mut ranks: Vec<u64> = percentiles
            .iter()
            .flat_map(|&p| {
                let (lo, hi, _) = quantile_ranks(self.n as usize, p);
                [lo as u64, hi as u64]
            })
            .collect();
        ranks.sort_unstable();
        ranks.dedup();
        // walk the buckets once, in order, to find each rank's bucket
        let mut targets: Vec<Target> = Vec::new();
        let mut below = 0u64;
        let mut next = ranks.iter().peekable();
        for (b, &c) in self.counts.iter().enumerate() {
            while let Some(&&r) = next.peek() {
                if r >= below + c {
                    break;
                }
                if targets.last().is_none_or(|t| t.bucket != b) {
                    targets.push(Target::new(b, below, c));
                }
                next.next();
            }
            below += c;
        }
        let mean = self.sum as f64 / self.n as f64 / unit;
        Some(SecondPass {
            targets,
            percentiles,
            n: self.n,
            min: self.min,
            max: self.max,
            mean,
            unit,
            sq_dev: 0.0,
        })
    }
}

/// A bucket holding a wanted rank: its values, gathered in pass two.
#[derive(Debug)]
struct Target {
    bucket: usize,
    /// Values of the sample in buckets before this one.
    below: u64,
    lo: u64,
    held: Held,
}

#[derive(Debug)]
enum Held {
    /// How many values equal `lo + i`, for a bucket narrower than its count.
    Counts(Vec<u64>),
    /// The values themselves (sorted after pass two).
    Values(Vec<u64>),
}

impl Target {
    fn new(bucket: usize, below: u64, count: u64) -> Self {
        let (lo, width) = bucket_range(bucket);
        let held = if width <= count {
            Held::Counts(vec![0; width as usize])
        } else {
            Held::Values(Vec::with_capacity(count as usize))
        };
        Target {
            bucket,
            below,
            lo,
            held,
        }
    }

    fn push(&mut self, v: u64) {
        match &mut self.held {
            Held::Counts(c) => c[(v - self.lo) as usize] += 1,
            Held::Values(vs) => vs.push(v),
        }
    }

    /// The `k`-th smallest value of the bucket (0-based).
    fn kth(&self, k: u64) -> u64 {
        match &self.held {
            Held::Counts(c) => {
                let mut seen = 0;
                for (i, &n) in c.iter().enumerate() {
                    seen += n;
                    if seen > k {
                        return self.lo + i as u64;
                    }
                }
                unreachable!("pass two saw fewer values than pass one")
            }
            Held::Values(vs) => vs[k as usize],
        }
    }
}

/// Pass two: the values of the wanted buckets, and the squared deviations for the std.
#[derive(Debug)]
pub struct SecondPass {
    targets: Vec<Target>,
    percentiles: Vec<f64>,
    n: u64,
    min: u64,
    max: u64,
    mean: f64,
    unit: f64,
    sq_dev: f64,
}

impl SecondPass {
    /// The same values as pass one, in any order.
    pub fn record(&mut self, v: u64) {
        let d = v as f64 / self.unit - self.mean;
        self.sq_dev += d * d;
        let b = bucket_of(v);
        if let Ok(i) = self.targets.binary_search_by_key(&b, |t| t.bucket) {
            self.targets[i].push(v);
        }
    }

    pub fn finish(mut self) -> Distribution {
        for t in &mut self.targets {
            if let Held::Values(vs) = &mut t.held {
                vs.sort_unstable();
            }
        }
        let at = |rank: usize| -> f64 {
            let r = rank as u64;
            let t = self
                .targets
                .iter()
                .rev()
                .find(|t| t.below <= r)
                .expect("every wanted rank has its bucket");
            t.kth(r - t.below) as f64 / self.unit
        };
        let q = |p: f64| {
            let (lo, hi, frac) = quantile_ranks(self.n as usize, p);
            lerp(at(lo), at(hi), frac)
        };
        let extra = self.percentiles[STANDARD_PERCENTILES.len()..]
            .iter()
            .map(|&p| (p, q(p)))
            .collect();
        Distribution {
            count: self.n as usize,
            mean: self.mean,
            std: (self.sq_dev / self.n as f64).sqrt(),
            min: self.min as f64 / self.unit,
            p50: q(50.0),
            p90: q(90.0),
            p95: q(95.0),
            p99: q(99.0),
            p999: q(99.9),
            max: self.max as f64 / self.unit,
            extra,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadtest_base::rng::Rng;

    #[test]
    fn buckets_are_contiguous_and_hold_their_values() {
        let mut prev_end = 0u64;
        for b in 0..(30 * SUB as usize) {
            let (lo, w) = bucket_range(b);
            assert_eq!(lo, prev_end, "bucket {b} starts where {} ended", b - 1);
            assert_eq!(bucket_of(lo), b);
            assert_eq!(bucket_of(lo + w - 1), b);
            prev_end = lo + w;
        }
        assert_eq!(bucket_of(u64::MAX), bucket_of(u64::MAX - 1));
        let (lo, w) = bucket_range(bucket_of(u64::MAX));
        assert_eq!(lo.checked_add(w - 1), Some(u64::MAX));
    }

    fn two_pass(xs: &[u64], extra: &[f64]) -> Option<Distribution> {
        let mut one = FirstPass::default();
        xs.iter().for_each(|&v| one.record(v));
        let mut two = one.plan(extra, 1e6)?;
        xs.iter().rev().for_each(|&v| two.record(v));
        Some(two.finish())
    }

    #[test]
    fn empty_sample_has_no_distribution() {
        assert!(two_pass(&[], &[]).is_none());
    }

    /// `n` values of one of seven shapes (by `case`), each stressing a different part of
    /// the bucketing.
    fn sample(rng: &mut Rng, case: usize, n: usize) -> Vec<u64> {
        (0..n)
            .map(|_| match case % 7 {
                // around 10 ms with µs jitter: many values per bucket (counting arrays)
                0 => 10_000_000 + rng.range_inclusive(0, 50_000),
                // exponential latencies over decades
                1 => (rng.exponential(2e6) as u64).max(1),
                // small exact values and heavy ties
                2 => rng.range_inclusive(0, 5_000),
                3 => 7_777_777,
                // dense in narrow buckets: counting arrays of 2 and 256 slots, ranks
                // falling on the boundary between two values of one bucket
                4 => 10_000 + rng.range_inclusive(0, 200),
                5 => 1_000_000 + rng.range_inclusive(0, 1_000),
                // seconds apart, few values per wide bucket (held values)
                _ => rng.range_inclusive(0, 1 << 40),
            })
            .collect()
    }

    /// The property the module promises: the same figures as sorting the whole sample.
    #[test]
    fn property_two_passes_equal_the_whole_sorted_sample() {
        let mut rng = Rng::new(11);
        let extra = [25.0, 75.0, 99.99, 12.345];
        for case in 0..400 {
            let n = rng.range_inclusive(1, 3_000) as usize;
            let xs = sample(&mut rng, case, n);
            let got = two_pass(&xs, &extra).unwrap();
            let want = Distribution::from_values_with(
                xs.iter().map(|&v| v as f64 / 1e6).collect(),
                &extra,
            )
            .unwrap();
            for (name, g, w) in [
                ("min", got.min, want.min),
                ("p50", got.p50, want.p50),
                ("p90", got.p90, want.p90),
                ("p95", got.p95, want.p95),
                ("p99", got.p99, want.p99),
                ("p99.9", got.p999, want.p999),
                ("max", got.max, want.max),
            ] {
                assert_eq!(g, w, "case {case} n {n}: {name}");
            }
            for &p in &extra {
                assert_eq!(got.percentile(p), want.percentile(p), "case {case}: p{p}");
            }
            assert_eq!(got.count, want.count);
            let tol = |x: f64| 1e-9 * x.abs().max(1e-9);
            assert!(
                (got.mean - want.mean).abs() <= tol(want.mean),
                "case {case}: mean"
            );
            assert!(
                (got.std - want.std).abs() <= tol(want.std) + 1e-9,
                "case {case}: std"
            );
        }
    }

    /// Merge = whole: pass one of two parts, merged, then pass two over both parts, gives
    /// the distribution of the whole sample.
    #[test]
    fn property_merged_first_passes_equal_the_whole() {
        let mut rng = Rng::new(5);
        for case in 0..200 {
            let n = rng.range_inclusive(0, 2_000) as usize;
            let xs = sample(&mut rng, case, n);
            // an uneven split, sometimes with an empty side
            let cut = rng.range_inclusive(0, n as u64) as usize;
            let (a, b) = xs.split_at(cut);
            let mut one = FirstPass::default();
            a.iter().for_each(|&v| one.record(v));
            let mut other = FirstPass::default();
            b.iter().for_each(|&v| other.record(v));
            one.merge(other);
            let Some(mut two) = one.plan(&[], 1e6) else {
                assert!(xs.is_empty());
                continue;
            };
            b.iter().chain(a).for_each(|&v| two.record(v));
            let got = two.finish();
            let want = two_pass(&xs, &[]).unwrap();
            assert_eq!(
                (
                    got.count, got.min, got.p50, got.p90, got.p99, got.p999, got.max
                ),
                (
                    want.count, want.min, want.p50, want.p90, want.p99, want.p999, want.max
                ),
                "case {case}: cut {cut} of {n}"
            );
            assert!((got.mean - want.mean).abs() <= 1e-12 * want.mean.abs().max(1.0));
        }
    }

    #[test]
    fn memory_is_bounded_by_the_buckets_not_the_sample() {
        // a million gaps of 10 ms ± 100 µs: the held state is the histogram and a few
        // counting arrays, whatever the sample's size
        let mut rng = Rng::new(3);
        let xs: Vec<u64> = (0..1_000_000)
            .map(|_| 9_900_000 + rng.range_inclusive(0, 200_000))
            .collect();
        let mut one = FirstPass::default();
        xs.iter().for_each(|&v| one.record(v));
        assert!(one.counts.len() < 60_000, "{} buckets", one.counts.len());
        let two = one.plan(&[], 1e6).unwrap();
        let held: usize = two
            .targets
            .iter()
            .map(|t| match &t.held {
                Held::Counts(c) => c.len(),
                Held::Values(v) => v.capacity(),
            })
            .sum();
        assert!(held <= 10 * 4096, "{held} values held for 10 ranks");
    }
}
