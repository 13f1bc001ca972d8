//! `experiment::parse::parse`: experiment YAML text plus `--set` overrides to checked
//! parameters, then `experiment::plan::plan` (cells and their typed plans) on what it accepts.
//!
//! Input: the YAML text, then optional `--set` overrides, separated by NUL bytes (not
//! UTF-8: replaced lossily). The base directory for relative paths is a temporary folder
//! holding a few files (`prompts.jsonl`, `sharegpt.json`, `tokenizer.json`,
//! `compose.yml`), so both the "missing file" and the "file exists" paths run.
//!
//! Asserts: no panic (YAML errors, wrong types, overrides, cross-checks); an `Err` carries
//! at least one diagnostic and renders; an accepted experiment has `repeats >= 1` and
//! non-empty matrix dimensions; the resolved document (what is saved beside the results)
//! parses again to the same parameters and matrix; and, when the plan is small (at most
//! 4096 cells), it has one cell per (combination x repeat), unique cell ids, and every
//! server group's cells contiguous and pointing back at the group.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;
use vllm_loadtest::experiment::{parse, plan};

fn base_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("vlt-fuzz-experiment-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        for f in ["prompts.jsonl", "sharegpt.json", "tokenizer.json", "compose.yml"] {
            std::fs::write(d.join(f), "{}\n").unwrap();
        }
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let text = String::from_utf8_lossy(parts.next().unwrap_or(b""));
    let overrides: Vec<String> = parts
        .take(4)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let dir = base_dir();
    let e = match parse::parse(&text, "fuzz.yaml", dir, &overrides) {
        Ok(e) => e,
        Err(d) => {
            assert!(!d.items.is_empty(), "an Err without diagnostics");
            let shown = d.to_string();
            assert!(!shown.is_empty());
            return;
        }
    };
    assert!(e.repeats >= 1, "repeats {}", e.repeats);
    for (k, vs) in &e.matrix {
        assert!(!vs.is_empty(), "matrix dimension {k} has no values");
    }
    // the saved document runs again, to the same parameters
    let saved = serde_yaml::to_string(&e.resolved).expect("resolved document serialises");
    match parse::parse(&saved, "resolved.yaml", dir, &[]) {
        Ok(again) => {
            assert_eq!(again.base, e.base, "resolved document:\n{saved}");
            assert_eq!(again.matrix, e.matrix, "resolved document:\n{saved}");
            assert_eq!(again.repeats, e.repeats);
            assert_eq!(again.name, e.name);
        }
        Err(d) => panic!("the resolved document does not parse again: {d}\n---\n{saved}"),
    }
    let cells = e
        .matrix
        .iter()
        .try_fold(e.repeats as u64, |n, (_, vs)| n.checked_mul(vs.len() as u64));
    let Some(cells) = cells.filter(|&n| n <= 4096) else {
        return;
    };
    // what the parser accepts, the typed plan takes: every cell gets its `CellPlan`
    let p = plan::plan(&e).unwrap_or_else(|err| panic!("a checked experiment does not plan: {err:#}"));
    assert_eq!(p.cells.len() as u64, cells);
    let mut ids: Vec<&str> = p.cells.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), p.cells.len(), "duplicate cell ids");
    let mut seen = 0;
    for (gi, g) in p.groups.iter().enumerate() {
        for w in g.cells.windows(2) {
            assert_eq!(w[0] + 1, w[1], "group {} cells not contiguous", g.id);
        }
        for &c in &g.cells {
            assert_eq!(p.cells[c].group, gi);
        }
        seen += g.cells.len();
    }
    assert_eq!(seen, p.cells.len());
});
