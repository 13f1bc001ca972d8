//! `compare` when one side is predicted (virtual time) and the other measured: the
//! prediction judged cell by cell against the measured range over repeats, and the
//! saturation plateau against the measured one (`loadtest_analysis::analysis::prediction`).

use crate::aggregate::{Aggregated, CellData};
use crate::store::layout::RunDir;
use anyhow::Result;
use loadtest_analysis::analysis::{self, CellInput, prediction};
use loadtest_analysis::engine_work::StepCosts;
use loadtest_analysis::report::{markdown, prediction_text};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// The step costs each server configuration of a predicted run ran with, from its
/// manifest (empty for a run predicted before the manifest kept them).
fn costs_of(predicted: &RunDir) -> BTreeMap<String, StepCosts> {
    predicted
        .read_manifest()
        .map(|m| {
            m.predicted_with
                .into_iter()
                .filter_map(|w| Some((w.server, w.step_costs?)))
                .collect()
        })
        .unwrap_or_default()
}

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

/// `predicted` (stored in `predicted_dir`) judged against `measured`, cell by cell
/// (matched by matrix values).
pub fn judge(
    measured: &Aggregated,
    predicted: &Aggregated,
    predicted_dir: &RunDir,
) -> prediction::Judgement {
    prediction::judge(
        &keyed(measured),
        &keyed(predicted),
        &analysed(measured),
        &analysed(predicted),
        &costs_of(predicted_dir),
    )
}

/// Where the two runs sent different traffic to cells of the same id: a prediction judged
/// against a measurement of other prompts or another load is no judgement of the profile.
fn traffic_differences(measured: &Aggregated, predicted: &Aggregated) -> Vec<String> {
    let mut out = Vec::new();
    for m in &measured.cells {
        let Some(p) = predicted.cells.iter().find(|p| p.cell.id == m.cell.id) else {
            continue;
        };
        let (mw, pw) = (&m.cell.plan.workload, &p.cell.plan.workload);
        if mw.endpoint != pw.endpoint {
            out.push(format!("`{}`: another endpoint", m.cell.id));
        }
        if mw.prompts.key() != pw.prompts.key() {
            out.push(format!(
                "`{}`: other prompts (dataset, lengths or seed)",
                m.cell.id
            ));
        }
        if m.cell.plan.load != p.cell.plan.load {
            out.push(format!(
                "`{}`: another load (arrivals, duration, warm-up or seed)",
                m.cell.id
            ));
        }
    }
    out
}

/// Print the judgement as Markdown to `out`; an error when no cell matches.
pub fn print(
    out: &mut impl Write,
    measured: (&Aggregated, &Path),
    predicted: (&Aggregated, &Path),
) -> Result<()> {
    let j = judge(measured.0, predicted.0, &RunDir::new(predicted.1));
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
    let differ = traffic_differences(measured.0, predicted.0);
    if !differ.is_empty() {
        let shown: Vec<&str> = differ.iter().take(5).map(String::as_str).collect();
        let more = differ.len().saturating_sub(shown.len());
        let line = format!(
            "**Warning:** the two runs did not send the same traffic, so the errors below compare different loads, not the profile with the server: {}{}. Predict the measured experiment itself (`report MEASURED --profile P`, or `run` its `experiment.yaml` with `--set server.launcher=sim --set server.clock=virtual`).",
            shown.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        );
        eprintln!("warning: {}", line.trim_start_matches("**Warning:** "));
        writeln!(out, "{line}\n")?;
    }
    markdown::section(out, &prediction_text::section("Cell by cell", &j))?;
    if j.rows.is_empty() {
        anyhow::bail!(
            "the two experiments have no cell in common (cells are matched by their matrix values)"
        );
    }
    Ok(())
}
