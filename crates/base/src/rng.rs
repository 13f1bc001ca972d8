//! The project's seeded random numbers: xoshiro256++ with splitmix64 seeding, and the few
//! distributions the workload, the arrival process and the simulator draw from.
//!
//! Our own rather than `rand`: a run must be reproducible from its seed across versions of
//! this tool, so the generator and the samplers must never change under us.

/// xoshiro256++ (Blackman & Vigna): fast, 256 bits of state, good statistical quality.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose whole stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self {
            s: [next(), next(), next(), next()],
        }
    }

    /// An independent stream derived from this seed and a label (e.g. one per DP rank).
    pub fn derive(seed: u64, label: u64) -> Self {
        Self::new(seed ^ label.wrapping_mul(0xD1B5_4A32_D192_ED03).rotate_left(17))
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = (s[0].wrapping_add(s[3])).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1), 53 bits.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in (0, 1]: safe to take the logarithm of.
    fn f64_open0(&mut self) -> f64 {
        1.0 - self.f64()
    }

    /// Uniform integer in [lo, hi] (inclusive). Lemire's multiply-shift; the tiny bias for
    /// huge ranges does not matter for workload shapes.
    pub fn range_inclusive(&mut self, lo: u64, hi: u64) -> u64 {
        debug_assert!(lo <= hi);
        let span = hi - lo + 1;
        if span == 0 {
            return self.next_u64();
        }
        lo + ((self.next_u64() as u128 * span as u128) >> 64) as u64
    }

    /// Exponential with the given mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * self.f64_open0().ln()
    }

    /// Standard normal (Box–Muller; one of the pair is discarded for simplicity).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.f64_open0();
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Gamma(shape k, scale θ), Marsaglia & Tsang; shapes below 1 by the boost
    /// `Gamma(k) = Gamma(k+1)·U^(1/k)`. Mean k·θ.
    pub fn gamma(&mut self, shape: f64, scale: f64) -> f64 {
        if shape < 1.0 {
            let u = self.f64_open0();
            return self.gamma(shape + 1.0, scale) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = self.f64_open0();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v * scale;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_different_seed_different_stream() {
        let a: Vec<u64> = (0..8)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..8)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let c: Vec<u64> = (0..8)
            .map({
                let mut r = Rng::new(8);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    fn mean_var(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let m = xs.iter().sum::<f64>() / n;
        (m, xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n)
    }

    #[test]
    fn exponential_and_gamma_have_their_moments() {
        let mut r = Rng::new(1);
        let n = 200_000;
        let e: Vec<f64> = (0..n).map(|_| r.exponential(0.25)).collect();
        let (m, v) = mean_var(&e);
        assert!((m - 0.25).abs() < 0.005, "exp mean {m}");
        assert!((v - 0.0625).abs() < 0.003, "exp var {v}");
        for (k, theta) in [(0.5, 2.0), (1.0, 1.0), (4.0, 0.25)] {
            let g: Vec<f64> = (0..n).map(|_| r.gamma(k, theta)).collect();
            let (m, v) = mean_var(&g);
            assert!(
                (m - k * theta).abs() < 0.02 * k * theta,
                "gamma({k},{theta}) mean {m}"
            );
            let want = k * theta * theta;
            assert!((v - want).abs() < 0.05 * want, "gamma({k},{theta}) var {v}");
        }
    }

    #[test]
    fn range_inclusive_covers_both_ends() {
        let mut r = Rng::new(3);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let x = r.range_inclusive(10, 14);
            seen[(x - 10) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
