//! `compare` when one side is predicted (virtual time) and the other measured: the
//! prediction judged cell by cell against the measured range over repeats, and the
//! saturation plateau against the measured one (`loadtest_analysis::analysis::prediction`).

use crate::aggregate::{Aggregated, CellData};
use anyhow::Result;
use loadtest_analysis::analysis::{self, CellInput, prediction};
use loadtest_analysis::report::{markdown, prediction_text};
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

/// `predicted` judged against `measured`, cell by cell (matched by matrix values).
pub fn judge(measured: &Aggregated, predicted: &Aggregated) -> prediction::Judgement {
    prediction::judge(
        &keyed(measured),
        &keyed(predicted),
        &analysed(measured),
        &analysed(predicted),
    )
}

/// Print the judgement as Markdown to `out`; an error when no cell matches.
pub fn print(
    out: &mut impl Write,
    measured: (&Aggregated, &Path),
    predicted: (&Aggregated, &Path),
) -> Result<()> {
    let j = judge(measured.0, predicted.0);
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
    markdown::section(out, &prediction_text::section("Cell by cell", &j))?;
    if j.rows.is_empty() {
        anyhow::bail!(
            "the two experiments have no cell in common (cells are matched by their matrix values)"
        );
    }
    Ok(())
}
