//! Universal Scalability Law (Gunther): X(N) = λN / (1 + σ(N−1) + κN(N−1)).
//! σ is contention, κ coherency; with κ > 0 throughput peaks at N* = √((1−σ)/κ).
//! Fitted by least squares on the linearised form N·λ/X(N) − 1 = σ(N−1) + κN(N−1), with λ
//! the single-replica throughput.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct UslFit {
    pub lambda: f64,
    pub sigma: f64,
    pub kappa: f64,
    /// N where throughput peaks, when κ > 0.
    pub peak_n: Option<f64>,
}

impl UslFit {
    pub fn predict(&self, n: f64) -> f64 {
        self.lambda * n / (1.0 + self.sigma * (n - 1.0) + self.kappa * n * (n - 1.0))
    }
}

/// Fit from (N, X(N)) points; one of them must be N = 1. Two points fit σ alone (κ = 0).
pub fn fit(points: &[(f64, f64)]) -> Option<UslFit> {
    let lambda = points.iter().find(|(n, _)| *n == 1.0)?.1;
    if lambda <= 0.0 {
        return None;
    }
    let rows: Vec<(f64, f64, f64)> = points
        .iter()
        .filter(|(n, x)| *n > 1.0 && *x > 0.0)
        .map(|&(n, x)| (n - 1.0, n * (n - 1.0), n * lambda / x - 1.0))
        .collect();
    let (sigma, kappa) = match rows.len() {
        0 => return None,
        1 => ((rows[0].2 / rows[0].0).max(0.0), 0.0),
        _ => {
            // normal equations for y = σ·a + κ·b
            let (mut aa, mut ab, mut bb, mut ay, mut by) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for &(a, b, y) in &rows {
                aa += a * a;
                ab += a * b;
                bb += b * b;
                ay += a * y;
                by += b * y;
            }
            let det = aa * bb - ab * ab;
            if det.abs() < 1e-12 {
                return None;
            }
            let s = (ay * bb - by * ab) / det;
            let k = (aa * by - ab * ay) / det;
            if k < 0.0 {
                // no coherency penalty visible: fit σ alone
                let s1 = rows.iter().map(|r| r.0 * r.2).sum::<f64>()
                    / rows.iter().map(|r| r.0 * r.0).sum::<f64>();
                (s1.max(0.0), 0.0)
            } else {
                (s.max(0.0), k)
            }
        }
    };
    let peak_n = (kappa > 0.0 && sigma < 1.0).then(|| ((1.0 - sigma) / kappa).sqrt());
    Some(UslFit {
        lambda,
        sigma,
        kappa,
        peak_n,
    })
}
