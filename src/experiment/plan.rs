//! Experiment files, stage two: checked parameters to the cells to run, grouped by server
//! configuration so a server is restarted only when one of its parameters changes.

use super::cell_plan::CellPlan;
use super::fields;
use super::parse::{Experiment, Params};
use anyhow::{Context, Result};
use serde_yaml::Value;

#[derive(Debug, Clone)]
pub struct Cell {
    /// Position in the run order (0-based).
    pub index: usize,
    /// Folder name: index, matrix values, repeat.
    pub id: String,
    pub group: usize,
    pub repeat: u32,
    /// Every parameter of this cell (defaults, sections, its matrix values), as written:
    /// what `summary.json` records. Code reads `plan`.
    pub params: Params,
    /// The same parameters, typed.
    pub plan: CellPlan,
    /// This cell's matrix values, in matrix order.
    pub matrix_values: Vec<(&'static str, Value)>,
}

#[derive(Debug, Clone)]
pub struct ServerGroup {
    pub id: String,
    /// The server parameters of its cells (identical across them).
    pub server_values: Vec<(&'static str, Value)>,
    pub cells: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub cells: Vec<Cell>,
    pub groups: Vec<ServerGroup>,
    /// With a `search:` section, one per combination of matrix values; `cells` then holds
    /// only the probes run so far (`Plan::add_probe`).
    pub searches: Vec<super::search::Search>,
}

fn is_server(key: &str) -> bool {
    fields::find(key).is_some_and(|(s, _)| s.name == "server")
}

pub fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

pub(super) fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub fn plan(e: &Experiment) -> Result<Plan> {
    // server dimensions vary slowest, so each server configuration is brought up once
    let mut dims: Vec<&(&'static str, Vec<Value>)> =
        e.matrix.iter().filter(|(k, _)| is_server(k)).collect();
    dims.extend(e.matrix.iter().filter(|(k, _)| !is_server(k)));
    let mut combos: Vec<Vec<(&'static str, Value)>> = vec![Vec::new()];
    for (k, vs) in &dims {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                vs.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((*k, v.clone()));
                    c
                })
            })
            .collect();
    }
    let mut cells = Vec::new();
    let mut groups: Vec<ServerGroup> = Vec::new();
    let mut searches = Vec::new();
    for combo in combos {
        let server_values: Vec<(&'static str, Value)> = combo
            .iter()
            .filter(|(k, _)| is_server(k))
            .cloned()
            .collect();
        let group = match groups.iter().position(|g| g.server_values == server_values) {
            Some(g) => g,
            None => {
                let id = if server_values.is_empty() {
                    "server".to_string()
                } else {
                    server_values
                        .iter()
                        .map(|(k, v)| format!("{k}{}", slug(&scalar(v))))
                        .collect::<Vec<_>>()
                        .join("-")
                };
                groups.push(ServerGroup {
                    id,
                    server_values: server_values.clone(),
                    cells: Vec::new(),
                });
                groups.len() - 1
            }
        };
        if e.search {
            let mut params = e.base.clone();
            params.extend(combo.iter().cloned());
            searches.push(super::search::search(
                searches.len(),
                group,
                params,
                &combo,
            )?);
            continue;
        }
        for repeat in 0..e.repeats {
            let index = cells.len();
            let mut params = e.base.clone();
            for (k, v) in &combo {
                params.insert(k, v.clone());
            }
            let mut id = format!("c{index:03}");
            for (k, v) in &combo {
                id.push_str(&format!("-{k}{}", slug(&scalar(v))));
            }
            if e.repeats > 1 {
                id.push_str(&format!("-rep{repeat}"));
            }
            groups[group].cells.push(index);
            let plan = CellPlan::from_params(&params).with_context(|| format!("cell `{id}`"))?;
            cells.push(Cell {
                index,
                id,
                group,
                repeat,
                params,
                plan,
                matrix_values: combo.clone(),
            });
        }
    }
    // server dimensions are the outer loops, so each group's cells are already contiguous
    Ok(Plan {
        cells,
        groups,
        searches,
    })
}

/// Access to a cell's parameters by name (all checked at parse time): for this module's
/// tests and `cell_plan`; everything else reads the typed `CellPlan`.
#[cfg(test)]
pub(super) trait ParamsExt {
    fn f64(&self, k: &str) -> Option<f64>;
    fn u64(&self, k: &str) -> Option<u64>;
    fn str(&self, k: &str) -> Option<&str>;
}

#[cfg(test)]
impl ParamsExt for Params {
    fn f64(&self, k: &str) -> Option<f64> {
        self.get(k).and_then(Value::as_f64)
    }
    fn u64(&self, k: &str) -> Option<u64> {
        self.get(k).and_then(Value::as_u64)
    }
    fn str(&self, k: &str) -> Option<&str> {
        self.get(k).and_then(Value::as_str)
    }
}
