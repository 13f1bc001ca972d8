//! `compare` when one side is predicted (virtual time) and the other measured: the
//! prediction judged cell by cell against the measured range over repeats, and the
//! saturation plateau against the measured one (`loadtest_analysis::analysis::prediction`).

use crate::aggregate::{Aggregated, CellData};
use anyhow::Result;
use loadtest_analysis::analysis::{self, CellInput, prediction};
use std::io::Write;
use std::path::Path;

/// The cells keyed by their matrix values (repeats share a key).
fn keyed(a: &Aggregated) -> Vec<(String, CellInput)> {
    a.cells
        .iter()
        .map(|d: &CellData| {
            let key = d
                .input
                .matrix
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            (key, d.input.clone())
        })
        .collect()
}

fn analysed(a: &Aggregated) -> analysis::Analysis {
    let inputs: Vec<CellInput> = a.cells.iter().map(|c| c.input.clone()).collect();
    analysis::analyze(&inputs, a.slo_target)
}

/// Print the judgement as Markdown to `out`; an error when no cell matches.
pub fn print(
    out: &mut impl Write,
    measured: (&Aggregated, &Path),
    predicted: (&Aggregated, &Path),
) -> Result<()> {
    let j = prediction::judge(
        &keyed(measured.0),
        &keyed(predicted.0),
        &analysed(measured.0),
        &analysed(predicted.0),
    );
    writeln!(
        out,
        "# Prediction `{}` against measurement `{}`\n",
        predicted.0.experiment.name, measured.0.experiment.name
    )?;
    writeln!(
        out,
        "Measured: `{}`  \nPredicted (virtual time): `{}`\n",
        measured.1.display(),
        predicted.1.display()
    )?;
    writeln!(
        out,
        "Error: (predicted − measured mean) / measured mean. Beyond range: how far the prediction lies outside the measured repeats' range (0: inside it; the server itself varied that much). A row marked ⚑ rests on a cell the tool flagged (its measurement is in doubt, listed below): shown, not averaged.\n"
    )?;
    writeln!(
        out,
        "| cell | metric | measured (range, repeats) | predicted | error | beyond range | |"
    )?;
    writeln!(out, "|---|---|---:|---:|---:|---:|---|")?;
    for r in &j.rows {
        writeln!(
            out,
            "| {} | {} | {:.2} ({:.2}–{:.2}, {}) | {:.2} | {:+.1}% | {} | {} |",
            r.cell,
            r.metric,
            r.measured_mean,
            r.measured_min,
            r.measured_max,
            r.repeats,
            r.predicted,
            r.error_pct,
            if r.beyond_range_pct == 0.0 {
                "inside".to_string()
            } else {
                format!("{:+.1}%", r.beyond_range_pct)
            },
            if r.flagged.is_some() { "⚑" } else { "" }
        )?;
    }
    if j.saturation.is_empty() {
        writeln!(
            out,
            "\nSaturation: not compared (a side never saturated, or its plateau is unknown)."
        )?;
    } else {
        writeln!(
            out,
            "\n| group | measured plateau req/s | predicted | error | |"
        )?;
        writeln!(out, "|---|---:|---:|---:|---|")?;
        for s in &j.saturation {
            writeln!(
                out,
                "| {} | {:.2}{} | {:.2} | {:+.1}% | {} |",
                s.group,
                s.measured_capacity,
                if s.lower_bound { " (lower bound)" } else { "" },
                s.predicted_capacity,
                s.error_pct,
                if s.flagged.is_some() { "⚑" } else { "" }
            )?;
        }
    }
    writeln!(
        out,
        "\n| metric (unflagged cells) | mean abs error | cells inside the measured range |"
    )?;
    writeln!(out, "|---|---:|---:|")?;
    for &m in prediction::METRICS {
        let rows: Vec<&prediction::Row> = j
            .rows
            .iter()
            .filter(|r| r.metric == m && r.flagged.is_none())
            .collect();
        if rows.is_empty() {
            continue;
        }
        let mae = rows.iter().map(|r| r.error_pct.abs()).sum::<f64>() / rows.len() as f64;
        let inside = rows.iter().filter(|r| r.beyond_range_pct == 0.0).count();
        writeln!(out, "| {m} | {mae:.1}% | {inside} of {} |", rows.len())?;
    }
    let mut flags: Vec<&str> = j
        .rows
        .iter()
        .filter_map(|r| r.flagged.as_deref())
        .chain(j.saturation.iter().filter_map(|s| s.flagged.as_deref()))
        .collect();
    flags.sort_unstable();
    flags.dedup();
    for f in flags {
        writeln!(out, "\n⚑ {f}")?;
    }
    writeln!(
        out,
        "\n{} figures judged; {} left out where a side only knows a lower bound (requests cut off); {} matrix points on one side only.",
        j.rows.len(),
        j.lower_bounds_skipped,
        j.unmatched
    )?;
    if j.rows.is_empty() {
        anyhow::bail!(
            "the two experiments have no cell in common (cells are matched by their matrix values)"
        );
    }
    Ok(())
}
