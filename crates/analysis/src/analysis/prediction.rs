//! A prediction judged against a measurement, cell by cell: cells are matched by their
//! matrix values, a measured cell's repeats give the range the server itself varied over,
//! and each predicted figure gets its error against the measured mean and how far it lies
//! outside that range (0 inside it). The saturation point (the plateau) is compared too.
//! Pure: the two experiments' cell inputs and analyses in, rows out.

use super::{Analysis, CellInput};
use crate::engine_work::{self, StepCosts};
use crate::stats::survival::Figure;
use serde::Serialize;
use std::collections::BTreeMap;

/// The figures compared (`CellInput::figure`).
pub const METRICS: &[&str] = &[
    "achieved req/s",
    "output tok/s",
    "TTFT p50 ms",
    "TTFT p99 ms",
    "TPOT p50 ms",
    "TPOT p99 ms",
    "E2EL p50 ms",
    "engine step ms",
];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The cell's matrix values, e.g. `request_rate=4`.
    pub cell: String,
    pub offered_rate: f64,
    pub metric: &'static str,
    /// Over the measured repeats.
    pub measured_min: f64,
    pub measured_max: f64,
    pub measured_mean: f64,
    pub repeats: usize,
    /// The mean of the predicted repeats.
    pub predicted: f64,
    /// (predicted − measured mean) / measured mean, percent.
    pub error_pct: f64,
    /// How far the prediction lies outside the measured range, percent of the nearer end
    /// (0: inside).
    pub beyond_range_pct: f64,
    /// A cell of either side carries a verdict that puts its measurement in doubt (the
    /// client could not keep up, stalled, …): shown, never averaged into the summary.
    pub flagged: Option<String>,
}

/// The plateau of each side's group, when both saturated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SaturationRow {
    pub group: String,
    pub measured_capacity: f64,
    pub predicted_capacity: f64,
    pub error_pct: f64,
    /// Either side's plateau is a lower bound (the batch was still filling).
    pub lower_bound: bool,
    /// A cell of either group carries a verdict that puts its measurement in doubt.
    pub flagged: Option<String>,
}

/// The server's speed against the profile over a cell's measured work
/// (`engine_work::speed`): the engines' time over the profile's time for the same work,
/// measured and predicted, and their quotient.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpeedRow {
    pub cell: String,
    pub offered_rate: f64,
    /// The measured repeats' time ratios: mean, range, how many.
    pub measured_mean: f64,
    pub measured_min: f64,
    pub measured_max: f64,
    pub repeats: usize,
    /// The predicted run's, read the same way (its mean over repeats).
    pub predicted: f64,
    /// `measured_mean / predicted`: 1.2, the server's steps took 20% longer than the
    /// profile's for the same work.
    pub speed: f64,
    pub flagged: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    pub rows: Vec<Row>,
    /// Per cell, where both sides' servers counted their steps' work and the predicted
    /// group's step costs are known.
    pub speed: Vec<SpeedRow>,
    /// Why no cell has a speed row, when cells were judged and none has.
    pub speed_unknown: Option<String>,
    pub saturation: Vec<SaturationRow>,
    /// Figures left out because a side only knows a lower bound (requests cut off).
    pub lower_bounds_skipped: usize,
    /// Matrix points only one side has.
    pub unmatched: usize,
}

/// Judge `predicted` against `measured`; cells are `(matrix key, input)`. `costs`: the
/// step costs each predicted server configuration (group id) ran with, for the speed rows.
pub fn judge(
    measured: &[(String, CellInput)],
    predicted: &[(String, CellInput)],
    measured_analysis: &Analysis,
    predicted_analysis: &Analysis,
    costs: &BTreeMap<String, StepCosts>,
) -> Judgement {
    let group = |cells: &[(String, CellInput)]| {
        let mut by: BTreeMap<String, Vec<CellInput>> = BTreeMap::new();
        for (k, c) in cells {
            by.entry(k.clone()).or_default().push(c.clone());
        }
        by
    };
    let (m, p) = (group(measured), group(predicted));
    let doubt = |cells: &[CellInput], a: &Analysis| -> Vec<String> {
        a.verdicts
            .iter()
            .filter(|v| cells.iter().any(|c| c.id == v.cell))
            .flat_map(|v| {
                v.verdicts
                    .iter()
                    .filter(|x| x.taints_throughput())
                    .map(move |x| format!("{}: {}", v.cell, x.describe()))
            })
            .collect()
    };
    let flag = |mut d: Vec<String>| {
        d.sort();
        d.dedup();
        (!d.is_empty()).then(|| d.join("; "))
    };
    let unmatched = m.keys().filter(|k| !p.contains_key(*k)).count()
        + p.keys().filter(|k| !m.contains_key(*k)).count();
    let mut rows = Vec::new();
    let mut speed = Vec::new();
    let mut lower_bounds_skipped = 0;
    for (key, ms) in &m {
        let Some(ps) = p.get(key) else { continue };
        let mut d = doubt(ms, measured_analysis);
        d.extend(doubt(ps, predicted_analysis));
        let flagged = flag(d);
        if let Some(c) = costs.get(&ps[0].group) {
            speed.extend(speed_row(key, ms, ps, c, flagged.clone()));
        }
        for &metric in METRICS {
            let mf: Vec<Figure> = ms.iter().filter_map(|c| c.figure(metric)).collect();
            let pf: Vec<Figure> = ps.iter().filter_map(|c| c.figure(metric)).collect();
            if mf.is_empty() || pf.is_empty() {
                continue;
            }
            if mf.iter().chain(&pf).any(|f| f.lower_bound) {
                lower_bounds_skipped += 1;
                continue;
            }
            let mv: Vec<f64> = mf.iter().map(|f| f.value).collect();
            let (lo, hi) = mv
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
                    (l.min(v), h.max(v))
                });
            let mean = mv.iter().sum::<f64>() / mv.len() as f64;
            if mean == 0.0 {
                // no error relative to nothing
                continue;
            }
            let predicted = pf.iter().map(|f| f.value).sum::<f64>() / pf.len() as f64;
            let beyond = if predicted < lo {
                (predicted - lo) / lo * 100.0
            } else if predicted > hi {
                (predicted - hi) / hi * 100.0
            } else {
                0.0
            };
            rows.push(Row {
                cell: key.clone(),
                offered_rate: ms[0].offered_rate,
                metric,
                measured_min: lo,
                measured_max: hi,
                measured_mean: mean,
                repeats: mv.len(),
                predicted,
                error_pct: (predicted - mean) / mean * 100.0,
                beyond_range_pct: if beyond.is_finite() { beyond } else { 0.0 },
                flagged: flagged.clone(),
            });
        }
    }
    rows.sort_by(|a, b| {
        a.offered_rate
            .total_cmp(&b.offered_rate)
            .then(a.cell.cmp(&b.cell))
    });
    let saturation = measured_analysis
        .groups
        .iter()
        .filter_map(|mg| {
            let pg = predicted_analysis
                .groups
                .iter()
                .find(|g| g.family == mg.family && g.dp == mg.dp)
                .or_else(|| {
                    (predicted_analysis.groups.len() == 1).then(|| &predicted_analysis.groups[0])
                })?;
            let (ms, ps) = (mg.saturation.as_ref()?, pg.saturation.as_ref()?);
            let of = |cells: &[(String, CellInput)], g: &super::saturation::GroupFinding| {
                cells
                    .iter()
                    .map(|(_, c)| c)
                    .filter(|c| c.family == g.family && c.group == g.group && c.dp == g.dp)
                    .cloned()
                    .collect::<Vec<_>>()
            };
            let mut d = doubt(&of(measured, mg), measured_analysis);
            d.extend(doubt(&of(predicted, pg), predicted_analysis));
            Some(SaturationRow {
                group: mg.group.clone(),
                measured_capacity: ms.capacity,
                predicted_capacity: ps.capacity,
                error_pct: (ps.capacity - ms.capacity) / ms.capacity * 100.0,
                lower_bound: ms.capacity_is_lower_bound || ps.capacity_is_lower_bound,
                flagged: flag(d),
            })
        })
        .collect();
    speed.sort_by(|a, b| {
        a.offered_rate
            .total_cmp(&b.offered_rate)
            .then(a.cell.cmp(&b.cell))
    });
    let speed_unknown = (speed.is_empty() && !rows.is_empty()).then(|| {
        if costs.is_empty() {
            "the prediction does not say which step costs it ran with: a prediction made before its manifest kept them; predict again".to_string()
        } else {
            "no cell's server counted what pricing its work needs on both sides: vLLM's step, prompt and output counters over the window, and a request finished in it".to_string()
        }
    });
    Judgement {
        rows,
        speed,
        speed_unknown,
        saturation,
        lower_bounds_skipped,
        unmatched,
    }
}

/// A cell's speed row: every measured repeat's time ratio against the predicted repeats'
/// mean; `None` where a side's server did not count what pricing needs.
fn speed_row(
    key: &str,
    measured: &[CellInput],
    predicted: &[CellInput],
    costs: &StepCosts,
    flagged: Option<String>,
) -> Option<SpeedRow> {
    let ratios = |cells: &[CellInput]| -> Vec<f64> {
        cells
            .iter()
            .filter(|c| c.no_completions.is_none())
            .filter_map(|c| costs.time_ratio(c.server.as_ref()?.engine_work.as_ref()?))
            .collect()
    };
    let (mr, pr) = (ratios(measured), ratios(predicted));
    if mr.is_empty() || pr.is_empty() {
        return None;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (m, p) = (mean(&mr), mean(&pr));
    let speed = engine_work::speed(m, p)?;
    Some(SpeedRow {
        cell: key.to_string(),
        offered_rate: measured[0].offered_rate,
        measured_mean: m,
        measured_min: mr.iter().copied().fold(f64::INFINITY, f64::min),
        measured_max: mr.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        repeats: mr.len(),
        predicted: p,
        speed,
        flagged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::tests::cell as with_group;

    fn cell(offered: f64, achieved: f64, ttft: f64) -> CellInput {
        with_group("g", 1, offered, achieved, ttft)
    }

    #[test]
    fn a_prediction_inside_the_measured_range_is_not_beyond_it() {
        let m = vec![
            ("r=4".to_string(), cell(4.0, 3.9, 40.0)),
            ("r=4".to_string(), cell(4.0, 4.1, 50.0)),
        ];
        let p = vec![("r=4".to_string(), cell(4.0, 4.0, 60.0))];
        let a = crate::analysis::analyze(&[m[0].1.clone(), m[1].1.clone()], 0.9);
        let b = crate::analysis::analyze(&[p[0].1.clone()], 0.9);
        let j = judge(&m, &p, &a, &b, &BTreeMap::new());
        let thr = j
            .rows
            .iter()
            .find(|r| r.metric == "achieved req/s")
            .unwrap();
        assert_eq!(
            (thr.measured_min, thr.measured_max, thr.repeats),
            (3.9, 4.1, 2)
        );
        assert!(thr.error_pct.abs() < 1e-9 && thr.beyond_range_pct == 0.0);
        let ttft = j.rows.iter().find(|r| r.metric == "TTFT p50 ms").unwrap();
        // 60 against 40–50: +33% of the mean, +20% beyond the range's top
        assert!((ttft.error_pct - 100.0 / 3.0).abs() < 1e-9, "{ttft:?}");
        assert!((ttft.beyond_range_pct - 20.0).abs() < 1e-9, "{ttft:?}");
        assert_eq!(j.unmatched, 0);
    }

    #[test]
    fn a_cell_whose_measurement_is_in_doubt_is_flagged_on_its_rows() {
        let mut limited = cell(4.0, 3.0, 40.0);
        limited.send_lag_p99_ms = Some(500.0);
        let m = vec![
            ("r=4".to_string(), limited),
            ("r=2".to_string(), cell(2.0, 2.0, 30.0)),
        ];
        let p = vec![
            ("r=4".to_string(), cell(4.0, 4.0, 40.0)),
            ("r=2".to_string(), cell(2.0, 2.0, 30.0)),
        ];
        let inputs =
            |v: &[(String, CellInput)]| v.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>();
        let (a, b) = (
            crate::analysis::analyze(&inputs(&m), 0.9),
            crate::analysis::analyze(&inputs(&p), 0.9),
        );
        let j = judge(&m, &p, &a, &b, &BTreeMap::new());
        let at = |k: &str| j.rows.iter().filter(|r| r.cell == k).collect::<Vec<_>>();
        assert!(
            at("r=4")
                .iter()
                .all(|r| r.flagged.as_deref().is_some_and(|f| f.contains("g-4"))),
            "{:?}",
            at("r=4")
        );
        assert!(at("r=2").iter().all(|r| r.flagged.is_none()));
    }

    #[test]
    fn cut_off_figures_and_unmatched_cells_are_counted_not_judged() {
        let mut cut = cell(8.0, 6.0, 900.0);
        cut.ttft_p50_ms = Some(Figure {
            value: 900.0,
            lower_bound: true,
        });
        let m = vec![
            ("r=8".to_string(), cut),
            ("r=2".to_string(), cell(2.0, 2.0, 30.0)),
        ];
        let p = vec![("r=8".to_string(), cell(8.0, 6.5, 800.0))];
        let a = crate::analysis::analyze(&[], 0.9);
        let j = judge(&m, &p, &a, &a, &BTreeMap::new());
        assert!(
            j.rows
                .iter()
                .all(|r| !(r.cell == "r=8" && r.metric == "TTFT p50 ms"))
        );
        assert_eq!(j.lower_bounds_skipped, 1);
        assert_eq!(j.unmatched, 1);
    }
}
