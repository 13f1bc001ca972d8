//! A `search:` experiment's run: per server configuration, each of its searches probed cell
//! by cell. The next rate always comes from the pure step over the probes already on disk,
//! so a run and a `--resume` of it take the same steps; a probe is recorded (`search.json`)
//! before its cell runs, so an interrupted one is run again under the same name.

use super::{Cell, RunEnd, Session};
use crate::aggregate::search_inputs;
use crate::experiment::Plan;
use crate::store::layout::SearchProbe;
use crate::store::manifest::Manifest;
use anyhow::Result;
use loadtest_analysis::analysis::search::{self, Step};
use loadtest_analysis::report::search_text;
use loadtest_base::arrivals;

impl Session<'_> {
    /// Every search not yet answered, a server configuration at a time.
    pub(super) async fn searches(
        &mut self,
        plan: &mut Plan,
        manifest: &mut Manifest,
    ) -> Result<RunEnd> {
        for g in 0..plan.groups.len() {
            let mut todo = Vec::new();
            for s in (0..plan.searches.len()).filter(|&s| plan.searches[s].group == g) {
                match self.next_step(plan, s)? {
                    Step::Done(_) => {}
                    Step::Probe(_) => todo.push(s),
                }
            }
            let Some(&first) = todo.first() else {
                continue;
            };
            if self.interrupted() {
                return Ok(RunEnd::Interrupted);
            }
            let id = plan.groups[g].id.clone();
            let template: Cell = plan.searches[first].template.clone();
            let Some(mut server) = self.start_server(&id, &template, manifest).await? else {
                return Ok(RunEnd::Interrupted);
            };
            let mut lost = None;
            'searches: for s in todo {
                loop {
                    let rate = match self.next_step(plan, s)? {
                        Step::Done(answer) => {
                            eprintln!(
                                "search `{}`: {}",
                                plan.searches[s].id,
                                search_text::answer_phrase(&answer)
                            );
                            break;
                        }
                        Step::Probe(rate) => rate,
                    };
                    let i = self.probe(plan, s, rate)?;
                    if let Err(stop) = self.cell_or_stop(&plan.cells[i], &mut server).await? {
                        lost = stop;
                        break 'searches;
                    }
                }
            }
            if let Some(end) = self.stop_server(&id, server, lost)? {
                return Ok(end);
            }
        }
        Ok(RunEnd::Complete)
    }

    fn next_step(&self, plan: &Plan, s: usize) -> Result<Step> {
        let inputs = search_inputs(self.dir, plan, s)?;
        let target = plan.searches[s].template.plan.slo.target;
        Ok(search::step(&plan.searches[s].spec, &inputs, target))
    }

    /// The cell of search `s` at `rate`: a recorded probe that never finished (its run was
    /// cut short) runs again; else a new probe, recorded before it runs.
    fn probe(&self, plan: &mut Plan, s: usize, rate: f64) -> Result<usize> {
        let again = plan.searches[s].probes.iter().copied().find(|&i| {
            let c = &plan.cells[i];
            c.plan.load.arrival.rate() == rate
                && !matches!(
                    self.dir.cell(&c.id).read_status().as_deref(),
                    Some("complete" | "no_completions")
                )
        });
        if let Some(i) = again {
            return Ok(i);
        }
        let i = plan.add_probe(s, rate)?;
        let c = &plan.cells[i];
        arrivals::check_size(c.plan.load.arrival, c.plan.load.stop).map_err(|e| {
            anyhow::anyhow!(
                "cell `{}`: {e}\nhint: a lower `search.max_rate` or a shorter `duration_s`",
                c.id
            )
        })?;
        self.dir.record_probe(SearchProbe {
            search: plan.searches[s].id.clone(),
            cell: c.id.clone(),
            rate,
        })?;
        Ok(i)
    }
}
