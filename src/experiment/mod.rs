//! Experiment files: `fields` (every key, its type and meaning), `parse` (YAML to checked
//! parameters, all errors with line and column), `plan` (the cells and server groups),
//! `cell_plan` (one cell's parameters, typed: the only place a parameter is read by name),
//! `schema` (the JSON Schema editors use, generated from `fields`), `search` (a `search:`
//! section's checks, and its probe cells made as the search goes), `planned` (how long a
//! cell is planned to take).

pub mod cell_plan;
pub mod fields;
pub mod parse;
pub mod plan;
pub mod planned;
pub mod schema;
pub mod search;

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_schedules;

use anyhow::{Context, Result};
use std::path::Path;

pub use cell_plan::{CellPlan, Dataset, Launcher};
pub use parse::{Diagnostics, Experiment};
pub use plan::{Cell, Plan, ServerGroup};

/// Read, check and plan `path` with `--set` overrides.
pub fn load(path: &Path, overrides: &[String]) -> Result<(Experiment, Plan)> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!("cannot read experiment `{}`\nhint: give the path of a YAML file, e.g. `examples/saturation.yaml`", path.display())
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let e = parse::parse(&text, &path.display().to_string(), base, overrides)?;
    let p = plan::plan(&e)?;
    Ok((e, p))
}
