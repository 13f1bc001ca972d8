//! Searching for a limit over real cells: one step of a bracket-then-bisect search for (a) the
//! saturation point or (b) the highest rate meeting the SLOs. Pure: the cells measured so far
//! in, the next rate to probe (or the answer) out. As the step is a function of the probes
//! alone, in any order, a resumed search recomputes where it was from the cells on disk.
//!
//! A rate *passes* when, for `saturation`, it lies below the first saturated point as
//! [`analyze_group`] finds it (the report's own definition, so the two cannot disagree), and
//! for `slo`, when its SLO attainment meets the target and no lower probe failed. A probe that
//! measured nothing (no completion) fails. The bracket is (highest passing rate, lowest
//! failing rate); the search grows or shrinks from the start rate by `growth` until both
//! ends exist, then narrows it until `hi / lo − 1 ≤ tolerance`.
//!
//! Narrowing the saturation bracket uses what an overloaded open-loop cell says: it achieves
//! about the capacity `C`, and the definition flips (achieved < 95% of what arrived) between
//! `C` and `C / 0.95`. So the first probes go just above and just below that interval, which
//! often closes a 2× bracket in two cells where bisection needs five; when the prediction is
//! off (a TTFT or queue verdict fires earlier), the geometric midpoint takes over.

use super::CellInput;
use super::saturation::{KEEP_UP, analyze_group};
use crate::stats::survival::Figure;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// The rate where the server stops keeping up, and its capacity (the plateau).
    Saturation,
    /// The highest rate whose SLO attainment meets the target.
    Slo,
}

impl Goal {
    pub fn name(self) -> &'static str {
        match self {
            Goal::Saturation => "saturation",
            Goal::Slo => "slo",
        }
    }

    pub fn parse(s: &str) -> Option<Goal> {
        match s {
            "saturation" => Some(Goal::Saturation),
            "slo" => Some(Goal::Slo),
            _ => None,
        }
    }
}

/// What to search for and within which limits (checked by the caller: `0 < min ≤ start ≤ max`,
/// `growth > 1`, `tolerance > 0`, `max_cells ≥ 1`).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct SearchSpec {
    pub goal: Goal,
    pub start_rate: f64,
    pub min_rate: f64,
    pub max_rate: f64,
    /// Factor by which the bracketing phase grows or shrinks the rate.
    pub growth: f64,
    /// The bracket's relative width at which the search stops: `hi / lo − 1`.
    pub tolerance: f64,
    pub max_cells: usize,
}

/// What one probed cell said.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProbeVerdict {
    pub rate: f64,
    pub cell: String,
    pub passed: bool,
    pub achieved: Option<f64>,
    pub ttft_p50_ms: Option<Figure>,
    pub slo_attainment: Option<f64>,
    /// Why the cell measured nothing, when it did not (it counts as failing).
    pub no_completions: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The bracket is within the tolerance.
    Converged,
    /// The cell budget ran out first: the bracket is as far as it got.
    Budget,
    /// Even `max_rate` passed (never saturated, or met the SLOs up to there).
    NeverFailed,
    /// Even `min_rate` failed.
    NeverPassed,
    /// Stopped before an answer (interrupted): the bracket so far.
    Unfinished,
}

/// Where the search stands: the bracket, the capacity when it saturated, the probes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Answer {
    pub goal: Goal,
    /// The highest probed rate that passed (below every failing one).
    pub lo: Option<f64>,
    /// The lowest probed rate that failed.
    pub hi: Option<f64>,
    /// `hi / lo − 1`, when both exist.
    pub width: Option<f64>,
    pub tolerance: f64,
    /// Saturation goal: the plateau (highest throughput achieved at or past saturation).
    pub capacity: Option<f64>,
    /// The plateau was measured while the token rate still rose: a lower bound.
    pub capacity_is_lower_bound: bool,
    pub cells: usize,
    pub outcome: Outcome,
    /// Every probe, by rate.
    pub probes: Vec<ProbeVerdict>,
}

/// One search's answer, as the report and `analysis.json` carry it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SearchFinding {
    /// The search's matrix values (`search` without a matrix).
    pub search: String,
    /// Its server configuration.
    pub group: String,
    pub answer: Answer,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Run a cell at this rate next.
    Probe(f64),
    Done(Answer),
}

/// The next step of the search, from the cells probed so far (any order).
pub fn step(spec: &SearchSpec, probes: &[CellInput], slo_target: f64) -> Step {
    let (answer, capacity_hint) = assess(spec, probes, slo_target);
    if answer.outcome != Outcome::Unfinished {
        return Step::Done(answer);
    }
    let probed: Vec<f64> = answer.probes.iter().map(|p| p.rate).collect();
    Step::Probe(next_rate(
        spec,
        answer.lo,
        answer.hi,
        capacity_hint,
        &probed,
    ))
}

/// The answer so far: `Unfinished` when the search would probe again.
pub fn answer(spec: &SearchSpec, probes: &[CellInput], slo_target: f64) -> Answer {
    assess(spec, probes, slo_target).0
}

/// Verdicts, bracket and outcome; and the plateau to aim the next probe at (saturation).
fn assess(spec: &SearchSpec, probes: &[CellInput], slo_target: f64) -> (Answer, Option<f64>) {
    let mut cells: Vec<&CellInput> = probes
        .iter()
        .filter(|c| c.offered_rate.is_finite())
        .collect();
    cells.sort_by(|a, b| a.offered_rate.total_cmp(&b.offered_rate));
    let measured: Vec<&CellInput> = cells
        .iter()
        .copied()
        .filter(|c| c.no_completions.is_none())
        .collect();
    let finding = measured
        .first()
        .map(|c| analyze_group(&c.group, &c.family, c.dp, &measured, slo_target));
    let saturation = finding.as_ref().and_then(|f| f.saturation.as_ref());
    // the first failing rate: saturated (one definition, the report's), missed the SLOs, or
    // measured nothing
    let fails_alone = |c: &CellInput| {
        c.no_completions.is_some()
            || match spec.goal {
                Goal::Saturation => saturation.is_some_and(|s| c.offered_rate >= s.offered),
                Goal::Slo => !c.slo_attainment.is_some_and(|a| a >= slo_target),
            }
    };
    let hi = cells
        .iter()
        .find(|c| fails_alone(c))
        .map(|c| c.offered_rate);
    let probes: Vec<ProbeVerdict> = cells
        .iter()
        .map(|c| ProbeVerdict {
            rate: c.offered_rate,
            cell: c.id.clone(),
            passed: hi.is_none_or(|h| c.offered_rate < h),
            achieved: c.no_completions.is_none().then_some(c.achieved_rate),
            ttft_p50_ms: c.ttft_p50_ms,
            slo_attainment: c.slo_attainment,
            no_completions: c.no_completions.clone(),
        })
        .collect();
    let lo = probes
        .iter()
        .filter(|p| p.passed)
        .map(|p| p.rate)
        .reduce(f64::max);
    let width = lo.zip(hi).map(|(l, h)| h / l - 1.0);
    let outcome = if width.is_some_and(|w| w <= spec.tolerance) {
        Outcome::Converged
    } else if hi.is_none() && lo.is_some_and(|l| l >= spec.max_rate) {
        Outcome::NeverFailed
    } else if lo.is_none() && hi.is_some_and(|h| h <= spec.min_rate) {
        Outcome::NeverPassed
    } else if cells.len() >= spec.max_cells {
        Outcome::Budget
    } else {
        Outcome::Unfinished
    };
    let capacity = saturation.map(|s| s.capacity);
    let answer = Answer {
        goal: spec.goal,
        lo,
        hi,
        width,
        tolerance: spec.tolerance,
        capacity: capacity.filter(|_| spec.goal == Goal::Saturation),
        capacity_is_lower_bound: spec.goal == Goal::Saturation
            && saturation.is_some_and(|s| s.capacity_is_lower_bound),
        cells: cells.len(),
        outcome,
        probes,
    };
    let hint = capacity.filter(|c| spec.goal == Goal::Saturation && *c > 0.0);
    (answer, hint)
}

/// Rounded to 4 significant digits, so cell names and tables read well.
fn round4(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(3 - x.log10().floor() as i32);
    (x * scale).round() / scale
}

/// How far outside `[C, C / KEEP_UP]` the aimed probes go: enough to land clearly on either
/// side of the flip despite noise, little enough that the two of them leave a bracket one
/// bisection can finish (width ≤ 2 × tolerance) where the tolerance allows it.
fn margin(tol: f64) -> f64 {
    let q = (1.0 + 2.0 * tol) * KEEP_UP;
    ((q - 1.0) / (q + 1.0)).clamp(tol / 8.0, tol / 2.0)
}

/// The next rate: grow or shrink until the bracket has both ends, then narrow it. Always in
/// `[min_rate, max_rate]`, never a rate already probed.
fn next_rate(
    spec: &SearchSpec,
    lo: Option<f64>,
    hi: Option<f64>,
    capacity: Option<f64>,
    probed: &[f64],
) -> f64 {
    let (min, max, tol) = (spec.min_rate, spec.max_rate, spec.tolerance);
    // a candidate well inside (a, b): not within a quarter of the tolerance of either end
    let inside = |x: f64, a: f64, b: f64| x > a * (1.0 + tol / 4.0) && x < b / (1.0 + tol / 4.0);
    let raw = match (lo, hi) {
        (None, None) => spec.start_rate.clamp(min, max),
        (Some(l), None) => (l * spec.growth).min(max),
        (None, Some(h)) => {
            // an overloaded cell said where the capacity is: go just below it at once
            let below = capacity.map(|c| c * (1.0 - margin(tol)));
            match below {
                Some(b) if inside(b, min, h) => b,
                _ => (h / spec.growth).max(min),
            }
        }
        (Some(l), Some(h)) => {
            let m = margin(tol);
            let aim = capacity
                .map(|c| [c / KEEP_UP * (1.0 + m), c * (1.0 - m)])
                .unwrap_or_default();
            aim.into_iter()
                .find(|&x| x > 0.0 && inside(x, l, h))
                .unwrap_or((l * h).sqrt())
        }
    };
    let nice = round4(raw);
    let fits = |x: f64| {
        x >= min
            && x <= max
            && lo.is_none_or(|l| x > l)
            && hi.is_none_or(|h| x < h)
            && !probed.contains(&x)
    };
    if fits(nice) { nice } else { raw }
}

#[cfg(test)]
mod tests;
