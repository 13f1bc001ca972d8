//! Experiments with a `search:` section: its checks at parse time, the typed spec, and the
//! probe cells. A search has no cells up front; each probe is made from its search's
//! template (the cell it would be, at the start rate) with `request_rate` set, appended to
//! the plan as a normal cell, and replayed in the same order when a results folder is read
//! back (the order is recorded beside the manifest, see `store::layout::SearchProbe`).

use super::cell_plan::CellPlan;
use super::parse::Params;
use super::plan::{Cell, Plan, scalar, slug};
use anyhow::{Context, Result, bail};
use loadtest_analysis::analysis::search::{Goal, SearchSpec};
use serde_yaml::Value;

/// One search: a server configuration and one combination of the other matrix values.
#[derive(Debug, Clone)]
pub struct Search {
    /// Its matrix values (`max_num_seqs8-input_len128`), or `search` without a matrix.
    pub id: String,
    pub group: usize,
    /// Every parameter of its cells, `request_rate` at the start rate: what a probe is made
    /// from (and what brings its server up).
    pub template: Cell,
    pub spec: SearchSpec,
    /// Its probe cells (indexes into `Plan::cells`), in the order they ran.
    pub probes: Vec<usize>,
}

/// A contradiction in a `search:` experiment, for the parser's diagnostics.
pub(super) struct Problem {
    pub section: Option<&'static str>,
    pub key: &'static str,
    pub message: String,
    pub hint: String,
}

/// What a search cannot be combined with, and a range that is not one.
pub(super) fn check(
    base: &Params,
    matrix: &[(&'static str, Vec<Value>)],
    repeats: u32,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let hint = "remove it: the search picks the rates; bound it with `search.min_rate` and `search.max_rate`";
    if matrix.iter().any(|(k, _)| *k == "request_rate") {
        out.push(Problem {
            section: Some("matrix"),
            key: "request_rate",
            message: "cannot be a matrix dimension of a `search:` experiment".into(),
            hint: hint.into(),
        });
    }
    if base.contains_key("request_rate") {
        out.push(Problem {
            section: Some("load"),
            key: "request_rate",
            message: "cannot be set in a `search:` experiment".into(),
            hint: hint.into(),
        });
    }
    let ramp = base.contains_key("ramp_up_strategy")
        || matrix.iter().any(|(k, _)| *k == "ramp_up_strategy");
    if ramp || base.get("dataset").and_then(Value::as_str) == Some("trace") {
        out.push(Problem {
            section: Some("search"),
            key: "goal",
            message:
                "a search sets each cell's rate; a ramp or a trace replay has its own schedule"
                    .into(),
            hint: "drop the ramp or the trace, or drop `search:` and read the ramp's knee".into(),
        });
    }
    if base.get("dataset").and_then(Value::as_str) == Some("multi_turn") {
        out.push(Problem {
            section: Some("search"),
            key: "goal",
            message: "a search over multi-turn conversations is not supported yet (its rates count requests, a conversation is several)".into(),
            hint: "search with single requests, or run `multi_turn` at listed `request_rate`s".into(),
        });
    }
    if repeats > 1 {
        out.push(Problem {
            section: None,
            key: "repeats",
            message: format!("a search probes each rate once, not {repeats} times"),
            hint: "remove `repeats`; a smaller `search.tolerance` narrows the answer".into(),
        });
    }
    let rate = |k: &str| base.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let (min, start, max) = (rate("min_rate"), rate("start_rate"), rate("max_rate"));
    if min >= max {
        out.push(Problem {
            section: Some("search"),
            key: "min_rate",
            message: format!("`min_rate` {min} is not below `max_rate` {max}"),
            hint: "the search probes rates in [min_rate, max_rate]".into(),
        });
    } else if !(min..=max).contains(&start) {
        out.push(Problem {
            section: Some("search"),
            key: "start_rate",
            message: format!("`start_rate` {start} lies outside [{min}, {max}]"),
            hint: "start inside [min_rate, max_rate]".into(),
        });
    }
    let slos = ["ttft_ms", "tpot_ms", "e2el_ms"];
    if base.get("goal").and_then(Value::as_str) == Some("slo")
        && !slos.iter().any(|k| base.contains_key(k))
    {
        out.push(Problem {
            section: Some("search"),
            key: "goal",
            message: "`goal: slo` needs an SLO to meet".into(),
            hint: "set `slo.ttft_ms`, `slo.tpot_ms` or `slo.e2el_ms` (and `slo.target`)".into(),
        });
    }
    out
}

/// The typed spec of the `search:` section's (checked) values.
fn spec(p: &Params) -> Result<SearchSpec> {
    let num = |k: &str| {
        p.get(k)
            .and_then(Value::as_f64)
            .with_context(|| format!("`search.{k}` has no value"))
    };
    let goal = p.get("goal").and_then(Value::as_str).unwrap_or_default();
    Ok(SearchSpec {
        goal: Goal::parse(goal).with_context(|| format!("unknown search goal `{goal}`"))?,
        start_rate: num("start_rate")?,
        min_rate: num("min_rate")?,
        max_rate: num("max_rate")?,
        growth: num("growth")?,
        tolerance: num("tolerance")?,
        max_cells: num("max_cells")? as usize,
    })
}

/// The search of one combination of matrix values (`index` = searches made so far).
pub(super) fn search(
    index: usize,
    group: usize,
    params: Params,
    combo: &[(&'static str, Value)],
) -> Result<Search> {
    let spec = spec(&params)?;
    let id = if combo.is_empty() {
        "search".to_string()
    } else {
        combo
            .iter()
            .map(|(k, v)| format!("{k}{}", slug(&scalar(v))))
            .collect::<Vec<_>>()
            .join("-")
    };
    let template = cell(index, &id, 0, group, &params, combo, spec.start_rate)
        .with_context(|| format!("search `{id}`"))?;
    Ok(Search {
        id,
        group,
        template,
        spec,
        probes: Vec::new(),
    })
}

/// A cell of `params` at `rate`: `c<index>-<matrix values>-search<NN>-request_rate<rate>`.
fn cell(
    index: usize,
    search_id: &str,
    n: usize,
    group: usize,
    params: &Params,
    combo: &[(&'static str, Value)],
    rate: f64,
) -> Result<Cell> {
    let mut params = params.clone();
    params.insert("request_rate", Value::from(rate));
    let mut id = format!("c{index:03}");
    if !combo.is_empty() {
        id.push_str(&format!("-{search_id}"));
    }
    id.push_str(&format!(
        "-search{n:02}-request_rate{}",
        slug(&rate.to_string())
    ));
    let plan = CellPlan::from_params(&params).with_context(|| format!("cell `{id}`"))?;
    let mut matrix_values = combo.to_vec();
    matrix_values.push(("request_rate", Value::from(rate)));
    Ok(Cell {
        index,
        id,
        group,
        repeat: 0,
        params,
        plan,
        matrix_values,
    })
}

impl Plan {
    /// Append search `s`'s next probe, at `rate`, as a normal cell; its index in `cells`.
    pub fn add_probe(&mut self, s: usize, rate: f64) -> Result<usize> {
        let index = self.cells.len();
        let search = &self.searches[s];
        let mut combo = search.template.matrix_values.clone();
        combo.retain(|(k, _)| *k != "request_rate");
        let c = cell(
            index,
            &search.id,
            search.probes.len(),
            search.group,
            &search.template.params,
            &combo,
            rate,
        )?;
        self.groups[c.group].cells.push(index);
        self.searches[s].probes.push(index);
        self.cells.push(c);
        Ok(index)
    }

    /// Re-make recorded probes in their order: (search id, cell id, rate) each.
    pub fn replay_probes<'a>(
        &mut self,
        probes: impl IntoIterator<Item = (&'a str, &'a str, f64)>,
    ) -> Result<()> {
        for (search, cell, rate) in probes {
            let Some(s) = self.searches.iter().position(|x| x.id == search) else {
                bail!(
                    "the recorded probe `{cell}` belongs to no search `{search}` of the experiment"
                );
            };
            let i = self.add_probe(s, rate)?;
            if self.cells[i].id != cell {
                bail!(
                    "the recorded probe `{cell}` would be `{}` now: the record and the experiment disagree",
                    self.cells[i].id
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::super::plan::plan;
    use std::path::Path;

    fn errors(text: &str) -> String {
        parse(text, "exp.yaml", Path::new("/tmp"), &[])
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_search_plans_no_cells_and_makes_probes_by_matrix_values() {
        let text = "name: s\nload:\n  duration_s: 5\nsearch:\n  start_rate: 4\nmatrix:\n  max_num_seqs: [8, 16]\n  input_len: [64, 128]\n";
        let e = parse(text, "exp.yaml", Path::new("/tmp"), &[]).unwrap();
        let mut p = plan(&e).unwrap();
        assert!(p.cells.is_empty());
        assert_eq!(p.groups.len(), 2);
        let ids: Vec<&str> = p.searches.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "max_num_seqs8-input_len64",
                "max_num_seqs8-input_len128",
                "max_num_seqs16-input_len64",
                "max_num_seqs16-input_len128"
            ]
        );
        let s = &p.searches[1].spec;
        // the section's defaults, where it is present
        assert_eq!(
            (s.start_rate, s.min_rate, s.tolerance, s.max_cells),
            (4.0, 0.1, 0.05, 12)
        );
        let a = p.add_probe(1, 4.0).unwrap();
        let b = p.add_probe(1, 12.5).unwrap();
        assert_eq!(
            p.cells[a].id,
            "c000-max_num_seqs8-input_len128-search00-request_rate4"
        );
        assert_eq!(
            p.cells[b].id,
            "c001-max_num_seqs8-input_len128-search01-request_rate12.5"
        );
        assert_eq!(p.cells[b].plan.load.arrival.rate(), 12.5);
        assert_eq!(p.groups[0].cells, [0, 1]);
        // replayed from the record, the same cells; a record that disagrees is refused
        let mut again = plan(&e).unwrap();
        let rec = [
            ("max_num_seqs8-input_len128", p.cells[a].id.as_str(), 4.0),
            ("max_num_seqs8-input_len128", p.cells[b].id.as_str(), 12.5),
        ];
        again.replay_probes(rec).unwrap();
        assert_eq!(again.cells[1].id, p.cells[b].id);
        let err = plan(&e)
            .unwrap()
            .replay_probes([("max_num_seqs8-input_len128", "c000-other", 4.0)])
            .unwrap_err();
        assert!(err.to_string().contains("disagree"), "{err}");
        // a file without the section gets none of its defaults
        let plain = parse(
            "name: s\nload:\n  request_rate: 3\n",
            "e.yaml",
            Path::new("/"),
            &[],
        )
        .unwrap();
        assert!(!plain.search && !plain.base.contains_key("goal"));
        assert!(plain.resolved.get("search").is_none());
    }

    #[test]
    fn a_search_refuses_listed_rates_repeats_a_bad_range_and_an_slo_goal_without_slos() {
        let e = errors(
            "name: s\nrepeats: 2\nsearch:\n  goal: slo\n  min_rate: 5\n  start_rate: 1\nmatrix:\n  request_rate: [1, 2]\n",
        );
        for want in [
            "line 8, column 3: `matrix.request_rate`: cannot be a matrix dimension of a `search:` experiment",
            "hint: remove it: the search picks the rates",
            "line 2, column 1: `repeats`: a search probes each rate once, not 2 times",
            "line 6, column 3: `search.start_rate`: `start_rate` 1 lies outside [5, 1000]",
            "line 4, column 3: `search.goal`: `goal: slo` needs an SLO to meet",
        ] {
            assert!(e.contains(want), "missing `{want}` in:\n{e}");
        }
        let e = errors("name: s\nload:\n  request_rate: 3\nsearch:\n  tolerance: 0\n");
        assert!(
            e.contains("line 3, column 3: `load.request_rate`: cannot be set"),
            "{e}"
        );
        assert!(
            e.contains("`search.tolerance`: must be at least 0.001"),
            "{e}"
        );
    }
}
