//! What adding replicas bought: for server configurations that differ only in `dp`, the
//! speedup and efficiency of the plateau over the smallest DP size, the same at matched
//! per-replica load, and a USL fit. A configuration that never saturated has no plateau, only
//! a lower bound: the finding says so instead of reporting a scaling factor.

use super::saturation::GroupFinding;
use super::usl::{self, UslFit};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScalingRow {
    pub dp: u32,
    /// The plateau when saturated, else the highest throughput seen (a lower bound).
    pub max_throughput: f64,
    pub saturated: bool,
    /// None of the configuration's cells carries a verdict that taints throughput, and its
    /// plateau is steady: a speedup built on it can be presented as a result.
    pub trusted: bool,
    /// Plateau over the base configuration's plateau (a lower bound when not saturated).
    pub speedup: f64,
    /// speedup / (dp / base dp).
    pub efficiency: f64,
    /// At the offered rate per replica the base was given: achieved / (base achieved × dp ratio).
    pub matched_load_efficiency: Option<f64>,
}

impl ScalingRow {
    /// Whether this row's speedup over `base` is a result (both saturated, both trusted,
    /// and not super-linear), not a bound or a fault.
    pub fn is_result(&self, base: &ScalingRow) -> bool {
        self.saturated
            && base.saturated
            && self.trusted
            && base.trusted
            && self.efficiency <= super::verdicts::SUPER_LINEAR
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScalingFinding {
    /// The server parameters other than dp shared by these configurations.
    pub family: String,
    pub base_dp: u32,
    pub rows: Vec<ScalingRow>,
    /// Fitted only from configurations that saturated.
    pub usl: Option<UslFit>,
    pub warnings: Vec<String>,
}

/// The plateau a scaling figure is built on: the capacity when saturated, else the highest
/// throughput achieved (a lower bound).
fn plateau(g: &GroupFinding) -> f64 {
    g.saturation
        .as_ref()
        .map_or(g.max_throughput, |s| s.capacity)
}

/// `tainted`: groups with a cell whose throughput the tool itself flagged.
pub fn analyze(groups: &[GroupFinding], tainted: &[&str]) -> Vec<ScalingFinding> {
    let mut families: Vec<&str> = groups.iter().map(|g| g.family.as_str()).collect();
    families.dedup();
    families
        .into_iter()
        .filter_map(|fam| family_finding(groups, fam, tainted))
        .collect()
}

/// The finding of one family: its DP sizes against the smallest, or `None` with a single
/// DP size.
fn family_finding(groups: &[GroupFinding], fam: &str, tainted: &[&str]) -> Option<ScalingFinding> {
    let mut gs: Vec<&GroupFinding> = groups.iter().filter(|g| g.family == fam).collect();
    gs.sort_by_key(|g| g.dp);
    gs.dedup_by_key(|g| g.dp);
    if gs.len() < 2 {
        return None;
    }
    let base = gs[0];
    let rows: Vec<ScalingRow> = gs.iter().map(|g| row(base, g, tainted)).collect();
    let mut warnings = bound_warnings(&gs, &rows);
    warnings.extend(fault_warnings(base, &rows));
    let usl = usl_fit(&gs, &rows, &mut warnings);
    Some(ScalingFinding {
        family: fam.to_string(),
        base_dp: base.dp,
        rows,
        usl,
        warnings,
    })
}

fn row(base: &GroupFinding, g: &GroupFinding, tainted: &[&str]) -> ScalingRow {
    let ratio = g.dp as f64 / base.dp as f64;
    let speedup = if plateau(base) > 0.0 {
        plateau(g) / plateau(base)
    } else {
        0.0
    };
    // matched per-replica load: base at rate r vs this at rate r·ratio
    let matched = base.points.iter().find_map(|bp| {
        let p = g
            .points
            .iter()
            .find(|p| (p.offered - bp.offered * ratio).abs() < 1e-9)?;
        (bp.achieved > 0.0).then(|| p.achieved / (bp.achieved * ratio))
    });
    ScalingRow {
        dp: g.dp,
        max_throughput: plateau(g),
        saturated: g.saturation.is_some(),
        trusted: !tainted.contains(&g.group.as_str())
            && !g
                .saturation
                .as_ref()
                .is_some_and(|s| s.capacity_is_lower_bound),
        speedup,
        efficiency: speedup / ratio,
        matched_load_efficiency: matched,
    }
}

/// Configurations that never saturated: their plateau, and so their speedup, is a bound.
fn bound_warnings(gs: &[&GroupFinding], rows: &[ScalingRow]) -> Vec<String> {
    let base = gs[0];
    let mut warnings = Vec::new();
    if base.saturation.is_none() {
        warnings.push(format!(
            "dp={} never saturated in the tested range (up to {} req/s offered): its plateau is unknown, so no speedup can be computed from it; raise the offered load",
            base.dp,
            fmt_rate(base.points.last().map_or(0.0, |p| p.offered))
        ));
    }
    for (g, r) in gs.iter().zip(rows).skip(1) {
        if !r.saturated {
            let top = g.points.last().map_or(0.0, |p| p.offered);
            let mut w = format!(
                "dp={} never saturated in the tested range: {:.1} req/s achieved at {} req/s offered is a lower bound on its capacity, so the {:.2}× speedup is a lower bound too, not a scaling result",
                g.dp,
                g.max_throughput,
                fmt_rate(top),
                r.speedup
            );
            if g.short_of_offered_without_engine_queue {
                w.push_str(
                    "; achieved fell short of what arrived while the engines' queues stayed empty: the requests never reached the engines in time (client or API-server limit) or the window was too short to count their completions",
                );
            }
            warnings.push(w);
        }
    }
    warnings
}

/// Plateaus the tool flagged, and super-linear scaling: no scaling figure rests on them.
fn fault_warnings(base: &GroupFinding, rows: &[ScalingRow]) -> Vec<String> {
    let mut warnings = Vec::new();
    for r in rows {
        if !r.trusted {
            warnings.push(format!(
                "dp={}: its plateau rests on cells the tool flagged (see Verdicts), so no scaling figure is built on it",
                r.dp
            ));
        } else if r.efficiency > super::verdicts::SUPER_LINEAR
            && r.saturated
            && base.saturation.is_some()
        {
            warnings.push(format!(
                "dp={} came out at {:.0}% scaling efficiency over dp={}: super-linear data-parallel scaling is a measurement fault until proven otherwise (see Verdicts), not a result",
                r.dp,
                r.efficiency * 100.0,
                base.dp
            ));
        }
    }
    warnings
}

/// A USL fit over the plateaus that are results; without enough of them, a warning says why
/// there is none.
fn usl_fit(
    gs: &[&GroupFinding],
    rows: &[ScalingRow],
    warnings: &mut Vec<String>,
) -> Option<UslFit> {
    let (base, base_row) = (gs[0], &rows[0]);
    let saturated: Vec<(f64, f64)> = gs
        .iter()
        .zip(rows)
        .filter(|(_, r)| r.dp == base.dp || r.is_result(base_row))
        .filter(|(_, r)| r.saturated && r.trusted)
        .map(|(g, r)| (g.dp as f64 / base.dp as f64, r.max_throughput))
        .collect();
    if base.saturation.is_some() && base_row.trusted && saturated.len() >= 2 {
        usl::fit(&saturated)
    } else {
        warnings.push(
            "no USL fit: it needs the base and at least one larger configuration to saturate, with trusted, plausible plateaus"
                .into(),
        );
        None
    }
}

pub fn fmt_rate(r: f64) -> String {
    if !r.is_finite() {
        "inf".into()
    } else if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}
