//! Fitting a profile's step-cost coefficients to what a client observes.
//!
//! The step model (`profile`): a step takes `c0 + c_pf·P + c_pf_attn·A + c_dec·D + c_kv·K`
//! (P prefill tokens and A their attention pairs, D decoding sequences, K their context
//! tokens), and a request enters its engine `front_end_latency` after it arrives. Two designed probes make each term visible from
//! token timings alone, so any streaming server can be fitted from outside:
//!
//! - **Prefill**: one request alone, prompt `P`, on an idle engine. Its first token ends
//!   the step that computed the whole prompt: `TTFT = fe + c0 + c_pf·P + c_pf_attn·P(P+1)/2`
//!   (for `P` within the batched-token budget). Over several `P`: `c_pf`, `c_pf_attn`, and
//!   the intercept `fe + c0`. (A real CPU vLLM's TTFT grows visibly faster than linearly
//!   with the prompt: a line through it would put the intercept below zero.)
//! - **Decode**: `B` requests sent together, prompt `P` each. Once all are decoding, every
//!   step decodes all `B`: the gap before a stream's token `j` (0-based) is
//!   `c0 + c_dec·B + c_kv·B·(P + j − 1)` (a sequence's context is its prompt and the
//!   tokens before `j`). Over several `B` at a short and a long `P`: `c0`, `c_dec`,
//!   `c_kv`; then `fe` from the prefill intercept.
//!
//! Both are ordinary least squares; each coefficient comes with its standard error and each
//! regression with its relative residual, so a fit says how far it can be trusted.

use super::profile::Profile;
use anyhow::{Result, bail};

/// A request's time to first token, alone on an idle engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrefillSample {
    pub prompt_tokens: u32,
    pub ttft_s: f64,
}

/// One inter-token gap while `batch` sequences decode together holding `context_tokens`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeSample {
    pub batch: u32,
    pub context_tokens: u64,
    pub itl_s: f64,
}

/// A fitted coefficient and its standard error (same unit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub value: f64,
    pub std_error: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    /// `base` with the fitted coefficients (limits and the rest as given).
    pub profile: Profile,
    pub c0: Estimate,
    pub c_pf: Estimate,
    pub c_pf_attn: Estimate,
    pub c_dec: Estimate,
    pub c_kv: Estimate,
    pub front_end: Estimate,
    /// Root-mean-square residual of each regression, relative to its mean observation.
    pub prefill_rel_rms: f64,
    pub decode_rel_rms: f64,
    pub samples: (usize, usize),
    /// Coefficients fitted negative, so held at 0 with the others refitted.
    pub fixed_at_zero: Vec<&'static str>,
}

/// Fit the step model to the probes' samples; limits (`max_num_seqs`, blocks, …) are
/// `base`'s. Refuses samples that cannot separate the terms (one prompt length, one batch
/// size, one context) rather than returning a guess.
pub fn fit(prefill: &[PrefillSample], decode: &[DecodeSample], base: &Profile) -> Result<Fit> {
    let distinct = |v: Vec<f64>| {
        let mut v = v;
        v.sort_by(f64::total_cmp);
        v.dedup();
        v.len()
    };
    if distinct(prefill.iter().map(|s| s.prompt_tokens as f64).collect()) < 3 {
        bail!("the prefill probe needs at least three prompt lengths");
    }
    if distinct(decode.iter().map(|s| s.batch as f64).collect()) < 2 {
        bail!("the decode probe needs at least two batch sizes");
    }
    let (d, d_rms, d_fixed) = nonnegative(
        decode
            .iter()
            .map(|s| ([1.0, s.batch as f64, s.context_tokens as f64], s.itl_s))
            .collect(),
    )?;
    let (p, p_rms, p_fixed) = nonnegative(
        prefill
            .iter()
            .map(|s| {
                let n = s.prompt_tokens as f64;
                ([1.0, n, n * (n + 1.0) / 2.0], s.ttft_s)
            })
            .collect(),
    )?;
    let fixed_at_zero = ["c_dec_s", "c_kv_s"]
        .iter()
        .zip(&d_fixed[1..])
        .chain(["c_pf_s", "c_pf_attn_s"].iter().zip(&p_fixed[1..]))
        .filter(|(_, f)| **f)
        .map(|(n, _)| *n)
        .collect();
    let [c0, c_dec, c_kv] = d;
    let [intercept, c_pf, c_pf_attn] = p;
    // fe = (fe + c0) − c0: independent errors add in quadrature
    let front_end = Estimate {
        value: intercept.value - c0.value,
        std_error: intercept.std_error.hypot(c0.std_error),
    };
    let profile = Profile {
        c0_s: c0.value.max(0.0),
        c_pf_s: c_pf.value.max(0.0),
        c_pf_attn_s: c_pf_attn.value.max(0.0),
        c_dec_s: c_dec.value.max(0.0),
        c_kv_s: c_kv.value.max(0.0),
        front_end_latency_s: front_end.value.max(0.0),
        jitter: 0.0,
        ..base.clone()
    };
    Ok(Fit {
        profile,
        c0,
        c_pf,
        c_pf_attn,
        c_dec,
        c_kv,
        front_end,
        prefill_rel_rms: p_rms,
        decode_rel_rms: d_rms,
        samples: (prefill.len(), decode.len()),
        fixed_at_zero,
    })
}

/// Least squares with every coefficient but the first (the intercept) at least 0: a term
/// fitted negative (a cost cannot be) is fixed at 0 and the others refitted, the most
/// negative (by its t) first, until none is. Which were fixed comes back with the fit.
fn nonnegative<const N: usize>(
    rows: Vec<([f64; N], f64)>,
) -> Result<([Estimate; N], f64, [bool; N])> {
    let mut fixed = [false; N];
    loop {
        let (est, rms) = least_squares(&rows, fixed)?;
        let worst = (1..N)
            .filter(|&j| !fixed[j] && est[j].value < 0.0)
            .min_by(|&a, &b| {
                let t = |j: usize| est[j].value / est[j].std_error.max(f64::MIN_POSITIVE);
                t(a).total_cmp(&t(b))
            });
        match worst {
            Some(j) => fixed[j] = true,
            None => return Ok((est, rms, fixed)),
        }
    }
}

/// Ordinary least squares `y ≈ X·β` over rows `(x, y)`, the `fixed` coefficients held at
/// 0: `β` with standard errors, and the residual's RMS relative to the mean `y`. Columns
/// are scaled to unit size before solving (context tokens run to 10⁵ beside a column of
/// ones).
fn least_squares<const N: usize>(
    rows: &[([f64; N], f64)],
    fixed: [bool; N],
) -> Result<([Estimate; N], f64)> {
    let free = fixed.iter().filter(|f| !**f).count();
    if rows.len() <= free {
        bail!("{} samples for {free} coefficients", rows.len());
    }
    let mut scale = [0.0f64; N];
    for (x, _) in rows {
        for j in 0..N {
            scale[j] = scale[j].max(x[j].abs());
        }
    }
    if (0..N).any(|j| !fixed[j] && scale[j] == 0.0) {
        bail!("a term never varies from zero: it cannot be fitted");
    }
    // a fixed column is zero: its normal equation is β_j = 0
    let mut a = [[0.0f64; N]; N];
    let mut b = [0.0f64; N];
    for (j, f) in fixed.iter().enumerate() {
        if *f {
            a[j][j] = 1.0;
            scale[j] = 1.0;
        }
    }
    let x_of = |x: &[f64; N], j: usize| if fixed[j] { 0.0 } else { x[j] / scale[j] };
    for (x, y) in rows {
        for i in 0..N {
            let xi = x_of(x, i);
            b[i] += xi * y;
            for (j, aij) in a[i].iter_mut().enumerate() {
                *aij += xi * x_of(x, j);
            }
        }
    }
    let inv = invert(a).ok_or_else(|| {
        anyhow::anyhow!("the samples cannot separate the terms (collinear probes)")
    })?;
    let mut beta = [0.0f64; N];
    for i in 0..N {
        beta[i] = (0..N).map(|j| inv[i][j] * b[j]).sum();
    }
    let (mut ss, mut sum_y) = (0.0, 0.0);
    for (x, y) in rows {
        let fit: f64 = (0..N).map(|j| beta[j] * x_of(x, j)).sum();
        ss += (y - fit).powi(2);
        sum_y += y;
    }
    let n = rows.len() as f64;
    let sigma2 = ss / (n - free as f64);
    let mut est = [Estimate {
        value: 0.0,
        std_error: 0.0,
    }; N];
    for j in 0..N {
        est[j] = if fixed[j] {
            Estimate {
                value: 0.0,
                std_error: 0.0,
            }
        } else {
            Estimate {
                value: beta[j] / scale[j],
                std_error: (sigma2 * inv[j][j]).max(0.0).sqrt() / scale[j],
            }
        };
    }
    let mean_y = sum_y / n;
    let rel_rms = if mean_y != 0.0 {
        (ss / n).sqrt() / mean_y.abs()
    } else {
        f64::NAN
    };
    Ok((est, rel_rms))
}

/// Gauss–Jordan inverse with partial pivoting; `None` when singular.
fn invert<const N: usize>(a: [[f64; N]; N]) -> Option<[[f64; N]; N]> {
    let mut m = a;
    let mut inv = [[0.0f64; N]; N];
    for (i, row) in inv.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for col in 0..N {
        let pivot = (col..N).max_by(|&x, &y| m[x][col].abs().total_cmp(&m[y][col].abs()))?;
        if m[pivot][col].abs() < 1e-12 {
            return None;
        }
        m.swap(col, pivot);
        inv.swap(col, pivot);
        let p = m[col][col];
        for j in 0..N {
            m[col][j] /= p;
            inv[col][j] /= p;
        }
        for r in 0..N {
            if r != col {
                let f = m[r][col];
                for j in 0..N {
                    m[r][j] -= f * m[col][j];
                    inv[r][j] -= f * inv[col][j];
                }
            }
        }
    }
    Some(inv)
}

/// The designed probes: which requests to send, and how their token times become samples.
pub mod probes {
    use super::{DecodeSample, PrefillSample};

    /// Prompt lengths of the prefill probe (one request each, alone): all within the
    /// smallest batched-token budget vLLM uses by default (2,048), so no prompt is chunked.
    pub const PREFILL_PROMPTS: [u32; 5] = [64, 256, 512, 1024, 1536];
    /// Tokens each prefill request asks for (a few: only the first is used).
    pub const PREFILL_OUTPUT: u32 = 4;
    /// Batch sizes of the decode probe, and its prompt and output per request. Up to the
    /// batches a saturated server runs (vLLM's default `max_num_seqs` on a CPU is 128):
    /// a step cost fitted on small batches only is extrapolated where capacity is decided.
    /// A batch the server cannot hold at once is left out (`decoded_together`).
    pub const DECODE_BATCHES: [u32; 8] = [1, 2, 4, 8, 16, 32, 64, 128];
    pub const DECODE_PROMPT: u32 = 32;
    /// The same probe at a long context, a few small batches: context tokens then vary
    /// apart from the batch size, which is what separates `c_kv` from `c_dec` on a noisy
    /// server (at 32-token prompts the context is nearly proportional to the batch).
    pub const DECODE_LONG_PROMPT: u32 = 1024;
    pub const DECODE_LONG_BATCHES: [u32; 4] = [1, 2, 4, 8];
    pub const DECODE_OUTPUT: u32 = 48;
    /// Gaps before this token index are skipped: until then some streams may still be in
    /// their prefill (the batch's requests do not all reach the engine in one step).
    pub const DECODE_FIRST_GAP: usize = 4;

    /// Whether a batch's streams decoded together: every stream's first token came no later
    /// than the middle token of the stream that started first. When not, the server did
    /// not take the whole batch at once (its `max_num_seqs` or memory is smaller than the
    /// batch): some streams waited for others to finish, and the gaps do not belong to a
    /// batch of that size. (A looser test than "before token 4": a real API server
    /// delivers tokens in bunches, several in one read, so early indices can tie.)
    pub fn decoded_together(streams: &[Vec<u64>]) -> bool {
        let last_first = streams.iter().filter_map(|s| s.first()).max();
        let earliest = streams
            .iter()
            .filter(|s| !s.is_empty())
            .min_by_key(|s| s[0]);
        match (last_first, earliest) {
            (Some(&f), Some(e)) => f <= e[e.len() / 2],
            _ => false,
        }
    }

    /// Whether a stream's tokens came mostly in bunches: its median gap under a quarter of
    /// its mean gap (half its tokens or more arrived together with another). Its times
    /// then say when the server's front end flushed, not when the engine stepped.
    pub fn bunched(times: &[u64]) -> bool {
        if times.len() < 3 {
            return true;
        }
        let mut gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = (times[times.len() - 1] - times[0]) as f64 / gaps.len() as f64;
        gaps.sort_unstable();
        (gaps[gaps.len() / 2] as f64) < 0.25 * mean
    }

    /// A prefill sample from one request's arrival and first token (ns).
    pub fn prefill(prompt_tokens: u32, arrival_ns: u64, first_token_ns: u64) -> PrefillSample {
        PrefillSample {
            prompt_tokens,
            ttft_s: first_token_ns.saturating_sub(arrival_ns) as f64 / 1e9,
        }
    }

    /// The decode sample of a batch of `streams.len()` requests of `prompt` tokens each,
    /// from their token times (ns): the step time while all of them decode, at the context
    /// of the window's middle token.
    ///
    /// A real server delivers tokens unevenly (an API server that lags sends several in
    /// one read, then none for a while), so single gaps say little: the step time is each
    /// stream's slope over half its window, `(t[i+h] − t[i]) / h`, the median over `i`
    /// (a bunch or a stall moves few of those spans), then the median over the streams.
    /// For the step model the span's mean step is that of its middle token, so the
    /// context is the window's middle: exact when the steps are.
    pub fn decode(prompt: u32, streams: &[Vec<u64>]) -> Vec<DecodeSample> {
        let batch = streams.len() as u32;
        let n = streams.iter().map(Vec::len).min().unwrap_or(0);
        let first = DECODE_FIRST_GAP.max(1);
        if n < first + 4 {
            return Vec::new();
        }
        let h = (n - first) / 2;
        let mut slopes: Vec<f64> = streams
            .iter()
            .filter(|s| !bunched(&s[first..n]))
            .map(|s| {
                let mut spans: Vec<u64> = (first..n - h).map(|i| s[i + h] - s[i]).collect();
                spans.sort_unstable();
                spans[spans.len() / 2] as f64 / h as f64
            })
            .collect();
        if slopes.is_empty() {
            return Vec::new();
        }
        slopes.sort_by(f64::total_cmp);
        let itl_ns = slopes[slopes.len() / 2];
        // token j (0-based) ends the step whose sequences hold prompt + j − 1 computed
        // tokens each; the spans' middle token is the window's middle
        let mid_j = (first + n - 1) as f64 / 2.0;
        let context = f64::from(batch) * (f64::from(prompt) + mid_j - 1.0);
        if itl_ns <= 0.0 {
            return Vec::new();
        }
        vec![DecodeSample {
            batch,
            context_tokens: context.round() as u64,
            itl_s: itl_ns / 1e9,
        }]
    }
}

#[cfg(test)]
mod tests;
