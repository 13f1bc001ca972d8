//! Property: parse ∘ render is the identity on experiments. An experiment file as run is
//! saved (`experiment.yaml`) and read back by `--resume`, `aggregate` and `report`: what
//! they read must be what ran, for any valid file, whatever its layout.

use super::parse::parse;
use super::plan::plan;
use proptest::prelude::*;
use std::path::Path;

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u32..500).prop_map(|n| n.to_string()),
        (0.1f64..200.0).prop_map(|x| format!("{x}")),
        (1u32..9).prop_map(|n| format!("{n}e1")),
    ]
}

/// A matrix dimension's values: distinct, as the parser requires.
fn list<S: Strategy<Value = String>>(s: S) -> impl Strategy<Value = String> {
    prop::collection::vec(s, 1..4).prop_map(|v| {
        let mut distinct: Vec<String> = Vec::new();
        for x in v {
            if !distinct.contains(&x) {
                distinct.push(x);
            }
        }
        format!("[{}]", distinct.join(", "))
    })
}

/// A valid experiment: some sections, some matrix dimensions, in any order, flow or block
/// style, comments and blank lines between.
fn experiment() -> impl Strategy<Value = String> {
    (
        "[a-z][a-z0-9_-]{0,12}",
        prop::option::of("[A-Za-z ,.]{0,30}"),
        prop::option::of((1u32..9, 1u32..5)),
        prop::option::of((1u32..4096, 1u32..2048, 1u32..2000)),
        prop::option::of((number(), number(), 0u32..5, 0u32..5)),
        prop::option::of(list(number())),
        prop::option::of(list((1u32..512).prop_map(|n| n.to_string()))),
        prop::option::of((number(), number())),
        any::<bool>(),
    )
        .prop_map(
            |(name, desc, server, workload, load, rates, seqs, slo, flow)| {
                let mut doc = format!("# generated\nname: {name}\n");
                if let Some(d) = desc {
                    doc += &format!("description: \"{d}\"\n");
                }
                if let Some((dp, tp)) = server {
                    doc += &format!("server:\n  dp: {dp}\n  tp: {tp}\n");
                }
                if let Some((i, o, n)) = workload {
                    if flow {
                        doc += &format!(
                            "workload: {{input_len: {i}, output_len: {o}, num_prompts: {n}}}\n"
                        );
                    } else {
                        doc += &format!(
                            "\nworkload:\n  input_len: {i}\n  output_len: {o}\n  num_prompts: {n}\n"
                        );
                    }
                }
                let rate_in_matrix = rates.is_some();
                doc += "load:\n";
                if !rate_in_matrix {
                    doc += "  request_rate: 7\n";
                }
                if let Some((d, _, w, c)) = &load {
                    doc += &format!(
                        "  duration_s: {}\n  warmup_s: {w}\n  cooldown_s: {c}\n",
                        d.parse::<f64>().unwrap_or(1.0) + 20.0
                    );
                }
                if rates.is_some() || seqs.is_some() {
                    doc += "matrix:\n";
                    if let Some(r) = rates {
                        doc += &format!("  request_rate: {r}\n");
                    }
                    if let Some(s) = seqs {
                        doc += &format!("  max_num_seqs: {s}\n");
                    }
                }
                if let Some((t, p)) = slo {
                    doc += &format!("slo:\n  ttft_ms: {t}\n  tpot_ms: {p}\n");
                }
                doc
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn parse_of_render_is_the_experiment_as_run(text in experiment()) {
        let dir = Path::new("/tmp");
        let first = parse(&text, "gen.yaml", dir, &[])
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let rendered = serde_yaml::to_string(&first.resolved).unwrap();
        let again = parse(&rendered, "experiment.yaml", dir, &[])
            .map_err(|e| TestCaseError::fail(format!("{e}\n{rendered}")))?;
        prop_assert_eq!(&again.resolved, &first.resolved);
        let (a, b) = (plan(&first).unwrap(), plan(&again).unwrap());
        prop_assert_eq!(a.cells.len(), b.cells.len());
        for (x, y) in a.cells.iter().zip(&b.cells) {
            prop_assert_eq!(&x.id, &y.id);
            prop_assert_eq!(&x.params, &y.params);
        }
    }
}
