//! How a run's end is told to the shell: what a signal after the last cell says, and what
//! an interrupted run that another command made leaves behind. (The signals themselves are
//! sent in the integration tests; where one lands relative to the last cell is not theirs to
//! choose, so these call the ending directly.)

use super::{RunEnd, how_it_ended};
use crate::experiment;
use crate::store::layout::RunDir;

fn plan_in(name: &str) -> (RunDir, experiment::Plan) {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart.yaml");
    let (_, plan) = experiment::load(std::path::Path::new(example), &[]).unwrap();
    let root = std::env::temp_dir().join(format!("run-ending-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    (RunDir::new(root), plan)
}

fn end_with(dir: &RunDir, plan: &experiment::Plan, nested: bool) -> String {
    let e = how_it_ended(Ok(RunEnd::Interrupted), plan, dir, nested).unwrap_err();
    let ended = e
        .downcast_ref::<super::super::Ended>()
        .expect("a typed end");
    assert_eq!(ended.exit_code(), 130);
    ended.to_string()
}

#[test]
fn a_signal_after_every_cell_ended_points_at_report_not_resume() {
    let (dir, plan) = plan_in("ended");
    for c in &plan.cells {
        let cell = dir.cell(&c.id);
        std::fs::create_dir_all(cell.root()).unwrap();
        cell.write_status("complete").unwrap();
    }
    let said = end_with(&dir, &plan, false);
    assert!(said.contains("after every cell had ended"), "{said}");
    assert!(said.contains("vllm-loadtest report "), "{said}");
    assert!(!said.contains("--resume"), "{said}");
    // a cell that measured nothing is not "whole": resume runs it again
    let first = dir.cell(&plan.cells[0].id);
    first.write_status("no_completions").unwrap();
    let said = end_with(&dir, &plan, false);
    assert!(
        said.contains("resume with `vllm-loadtest run --resume"),
        "{said}"
    );
    first.write_status("complete").unwrap();
    // nor is one cut by the signal
    dir.cell(&plan.cells[1].id)
        .write_status("interrupted")
        .unwrap();
    let said = end_with(&dir, &plan, false);
    assert!(
        said.contains("resume with `vllm-loadtest run --resume"),
        "{said}"
    );
    std::fs::remove_dir_all(dir.root()).unwrap();
}

#[test]
fn an_interrupted_run_another_command_made_is_removed_not_left_half_done() {
    let (dir, plan) = plan_in("nested");
    std::fs::write(dir.root().join("manifest.json"), "{}").unwrap();
    let said = end_with(&dir, &plan, true);
    assert!(said.contains("its partial results were removed"), "{said}");
    assert!(!dir.root().exists());
    // one that measured nothing is an error pointing at its report, which says why; kept
    let (dir, plan) = plan_in("nested-whole");
    let e = how_it_ended(Ok(RunEnd::Complete), &plan, &dir, true).unwrap_err();
    assert!(format!("{e:#}").contains("report.md"), "{e:#}");
    assert!(dir.root().exists());
    // a whole one stays, quietly
    let first = dir.cell(&plan.cells[0].id);
    std::fs::create_dir_all(first.root()).unwrap();
    first.write_status("complete").unwrap();
    how_it_ended(Ok(RunEnd::Complete), &plan, &dir, true).unwrap();
    assert!(dir.root().exists());
    std::fs::remove_dir_all(dir.root()).unwrap();
}
