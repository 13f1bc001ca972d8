//! Experiment files with schedules of their own: a trace replay and a ramp plan into their
//! arrivals, and a rate beside either is refused, clearly.

use super::cell_plan::{Dataset, TraceWindow};
use super::parse::parse;
use loadtest_base::arrivals::{Arrival, RampStrategy};
use std::path::Path;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

fn errors(text: &str) -> String {
    parse(text, "exp.yaml", Path::new(EXAMPLES), &[])
        .unwrap_err()
        .to_string()
}

#[test]
fn the_shipped_trace_example_plans_into_a_trace_replay_per_speed() {
    let (_, p) = super::load(&Path::new(EXAMPLES).join("trace-replay.yaml"), &[]).unwrap();
    assert_eq!(p.cells.len(), 2);
    let c = &p.cells[1].plan;
    assert_eq!(c.load.arrival, Arrival::Trace { speed: 2.0 });
    let path = Path::new(EXAMPLES).join("traces/synthetic.jsonl");
    assert_eq!(
        c.load.trace,
        Some(TraceWindow {
            path: path.clone(),
            start_s: 0.0,
            end_s: Some(30.0)
        })
    );
    assert_eq!(
        c.workload.prompts.dataset,
        Dataset::Trace {
            path,
            block_size: 512,
            start_s: 0.0,
            end_s: Some(30.0)
        }
    );
    assert!(
        c.workload.ignore_eos,
        "built trace prompts ask for their exact output"
    );
    // the schedule is the window's timestamps at twice the speed
    let s = c.load.schedule(0).unwrap();
    assert_eq!(s[0], 15_000_000, "the first request, at 30 ms in the trace");
    assert!(s.iter().all(|&t| t < 15_000_000_000));
}

#[test]
fn the_shipped_ramp_example_plans_into_vllms_ramp() {
    let (_, p) = super::load(&Path::new(EXAMPLES).join("ramp.yaml"), &[]).unwrap();
    let l = &p.cells[0].plan.load;
    assert_eq!(
        l.arrival,
        Arrival::Ramp {
            strategy: RampStrategy::Linear,
            start: 2.0,
            end: 24.0,
            burstiness: 1.0
        }
    );
    let s = l.schedule(0).unwrap();
    assert_eq!(s.len(), 1200);
    let (_, p) = super::load(
        &Path::new(EXAMPLES).join("ramp.yaml"),
        &["load.arrival=constant".into()],
    )
    .unwrap();
    assert!(matches!(
        p.cells[0].plan.load.arrival,
        Arrival::Ramp { burstiness, .. } if burstiness.is_infinite()
    ));
}

#[test]
fn a_rate_beside_a_trace_or_a_ramp_is_refused_with_a_hint() {
    let trace = "name: t\nworkload:\n  dataset: trace\n  dataset_path: traces/synthetic.jsonl\n";
    let e = errors(&format!("{trace}matrix:\n  request_rate: [5, 10]\n"));
    assert!(
        e.contains("`matrix.request_rate`: `request_rate` does not apply: a trace replay sends on the trace's own schedule")
            && e.contains("hint: remove `request_rate`; `load.trace_speed`"),
        "{e}"
    );
    let e = errors(&format!(
        "{trace}load:\n  duration_s: 10\n  trace_end_s: 5\n  trace_start_s: 6\n"
    ));
    assert!(e.contains("`duration_s` does not apply"), "{e}");
    assert!(e.contains("the trace window [6, 5) s is empty"), "{e}");
    let ramp = "name: r\nload:\n  ramp_up_strategy: exponential\n  ramp_up_start_rps: 8\n";
    let e = errors(&format!("{ramp}  ramp_up_end_rps: 4\n  request_rate: 3\n"));
    assert!(e.contains("a ramp sets its own rate"), "{e}");
    assert!(
        e.contains("the ramp starts at 8 req/s, above its end 4 req/s"),
        "{e}"
    );
    let e = errors(ramp);
    assert!(e.contains("a ramp needs `ramp_up_end_rps`"), "{e}");
    let e = errors("name: r\nload:\n  request_rate: 3\n  ramp_up_end_rps: 4\n");
    assert!(
        e.contains("`ramp_up_end_rps` without `ramp_up_strategy`"),
        "{e}"
    );
    // a trace plans with no rate at all; a plain cell still needs one
    assert!(parse(trace, "exp.yaml", Path::new(EXAMPLES), &[]).is_ok());
    assert!(errors("name: n\n").contains("no `request_rate`"));
}
