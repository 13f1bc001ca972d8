//! A prediction judged against a measurement (`analysis::prediction::Judgement`) in words
//! and tables: the section `compare` prints for a predicted run beside a measured one, and
//! the one `report DIR --profile P` adds to the measured run's report. Pure.

use super::model::{Section, Table};
use crate::analysis::prediction::{self, Judgement, Row};

/// The judgement as a report section, titled `title`. The row table, the saturation table
/// and the per-metric averages (unflagged cells only); a flagged cell's note once.
pub fn section(title: &str, j: &Judgement) -> Section {
    let mut paragraphs = vec![
        "Error: (predicted − measured mean) / measured mean. Beyond range: how far the prediction lies outside the measured repeats' range (0: inside it; the server itself varied that much). A row marked ⚑ rests on a cell the tool flagged (its measurement is in doubt, listed below): shown, not averaged.".to_string(),
    ];
    if j.saturation.is_empty() {
        paragraphs.push(
            "Saturation: not compared (a side never saturated, or its plateau is unknown).".into(),
        );
    }
    paragraphs.extend(flags(j).into_iter().map(|f| format!("⚑ {f}")));
    paragraphs.push(format!(
        "{} figures judged; {} left out where a side only knows a lower bound (requests cut off); {} matrix points on one side only.",
        j.rows.len(),
        j.lower_bounds_skipped,
        j.unmatched
    ));
    let mut tables = vec![rows_table(j)];
    if !j.saturation.is_empty() {
        tables.push(saturation_table(j));
    }
    tables.push(averages_table(j));
    if !j.speed.is_empty() {
        paragraphs.push(SPEED.into());
        paragraphs.extend(speed_sentence(j));
        tables.push(speed_table(j));
    } else if let Some(why) = &j.speed_unknown {
        paragraphs.push(format!(
            "The server's speed against the profile: not known ({why})."
        ));
    }
    Section {
        title: title.to_string(),
        paragraphs,
        figures: Vec::new(),
        tables,
    }
}

const SPEED: &str = "The server's speed against the profile (last table): the engines' busy time over what the profile's step costs give for the work the measured cell's engines did (steps, prompt tokens computed, tokens decoded: vLLM's counters; busy: with one engine, while a request was in flight), beside the same reading of the predicted run, whose steps cost exactly the profile's; speed is their quotient, so what the reading adds (means standing in for length distributions; with more engines, their idle time) cancels. Speed 1.20: the server's steps took 20% longer than the profile's for the same work — it ran slower than when the profile was fitted, or a cost the model lacks showed; a latency missed the same way follows from it, and refitting (`fit --base-url`) or calibrating on these cells (`fit --profile P --calibrate-on CELL…`) is the remedy. Speed near 1 with a latency missed: the step costs held, and the miss lies in what the model schedules, queues or delivers.";

/// The speed rows' range over the unflagged cells, in one sentence.
fn speed_sentence(j: &Judgement) -> Option<String> {
    let (lo, hi, n) = speed_range(j)?;
    let cells = if n == 1 { "cell" } else { "cells" };
    Some(format!(
        "Over the {n} unflagged {cells} the server stepped at {} the profile's time for the same work.",
        times(lo, hi)
    ))
}

/// `1.12–1.38×`, or `1.12×` for one value.
fn times(lo: f64, hi: f64) -> String {
    if format!("{lo:.2}") == format!("{hi:.2}") {
        format!("{lo:.2}×")
    } else {
        format!("{lo:.2}–{hi:.2}×")
    }
}

/// Lowest and highest speed of the unflagged cells, and how many.
fn speed_range(j: &Judgement) -> Option<(f64, f64, usize)> {
    let v: Vec<f64> = j
        .speed
        .iter()
        .filter(|r| r.flagged.is_none())
        .map(|r| r.speed)
        .collect();
    (!v.is_empty()).then(|| {
        (
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            v.len(),
        )
    })
}

fn speed_table(j: &Judgement) -> Table {
    Table {
        header: header(&[
            "cell",
            "measured: engines' time ÷ profile's for its work (range, repeats)",
            "predicted, read the same way",
            "speed",
            "",
        ]),
        rows: j
            .speed
            .iter()
            .map(|r| {
                vec![
                    r.cell.clone(),
                    format!(
                        "{:.2} ({:.2}–{:.2}, {})",
                        r.measured_mean, r.measured_min, r.measured_max, r.repeats
                    ),
                    format!("{:.2}", r.predicted),
                    format!("{:.2}×", r.speed),
                    mark(&r.flagged),
                ]
            })
            .collect(),
    }
}

/// One sentence for the executive summary: the mean absolute error of the unflagged cells
/// per metric the reader asks first (throughput, TTFT and TPOT p50), and the saturation
/// point's; `None` when no cell matched.
pub fn summary_line(profile: &str, j: &Judgement) -> Option<String> {
    if j.rows.is_empty() {
        return None;
    }
    let mut parts: Vec<String> = ["achieved req/s", "TTFT p50 ms", "TPOT p50 ms"]
        .into_iter()
        .filter_map(|m| mean_abs_error(j, m).map(|(e, n)| format!("{m} {e:.1}% ({n} cells)")))
        .collect();
    // a plateau judged on a flagged cell is in the section, marked, not in this sentence
    parts.extend(
        j.saturation
            .iter()
            .filter(|s| s.flagged.is_none())
            .map(|s| {
                format!(
                    "saturation of `{}` {:+.1}%{}",
                    s.group,
                    s.error_pct,
                    if s.lower_bound {
                        " (a lower bound)"
                    } else {
                        ""
                    }
                )
            }),
    );
    let flagged = j.rows.iter().filter(|r| r.flagged.is_some()).count()
        + j.saturation.iter().filter(|s| s.flagged.is_some()).count();
    let speed = speed_range(j).map_or(String::new(), |(lo, hi, _)| {
        format!(
            " The server's steps took {} the profile's time for the same work.",
            times(lo, hi)
        )
    });
    Some(format!(
        "Profile `{profile}`, predicting these cells in virtual time, misses the measurement by (mean absolute error) {}{} (see Predicted beside measured).{speed}",
        if parts.is_empty() {
            "nothing it could average: every matched cell is flagged".to_string()
        } else {
            parts.join(", ")
        },
        if flagged > 0 {
            format!("; {flagged} figures rest on flagged cells and are left out")
        } else {
            String::new()
        }
    ))
}

/// The mean absolute error of `metric` over the unflagged rows, and how many.
fn mean_abs_error(j: &Judgement, metric: &str) -> Option<(f64, usize)> {
    let rows: Vec<&Row> = unflagged(j, metric).collect();
    (!rows.is_empty()).then(|| {
        let e = rows.iter().map(|r| r.error_pct.abs()).sum::<f64>() / rows.len() as f64;
        (e, rows.len())
    })
}

fn unflagged<'a>(j: &'a Judgement, metric: &'a str) -> impl Iterator<Item = &'a Row> + 'a {
    j.rows
        .iter()
        .filter(move |r| r.metric == metric && r.flagged.is_none())
}

fn flags(j: &Judgement) -> Vec<&str> {
    let mut flags: Vec<&str> = j
        .rows
        .iter()
        .filter_map(|r| r.flagged.as_deref())
        .chain(j.saturation.iter().filter_map(|s| s.flagged.as_deref()))
        .collect();
    flags.sort_unstable();
    flags.dedup();
    flags
}

fn header(cols: &[&str]) -> Vec<String> {
    cols.iter().map(|s| s.to_string()).collect()
}

fn mark(flagged: &Option<String>) -> String {
    if flagged.is_some() { "⚑" } else { "" }.to_string()
}

fn rows_table(j: &Judgement) -> Table {
    Table {
        header: header(&[
            "cell",
            "metric",
            "measured (range, repeats)",
            "predicted",
            "error",
            "beyond range",
            "",
        ]),
        rows: j
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.cell.clone(),
                    r.metric.to_string(),
                    format!(
                        "{:.2} ({:.2}–{:.2}, {})",
                        r.measured_mean, r.measured_min, r.measured_max, r.repeats
                    ),
                    format!("{:.2}", r.predicted),
                    format!("{:+.1}%", r.error_pct),
                    if r.beyond_range_pct == 0.0 {
                        "inside".to_string()
                    } else {
                        format!("{:+.1}%", r.beyond_range_pct)
                    },
                    mark(&r.flagged),
                ]
            })
            .collect(),
    }
}

fn saturation_table(j: &Judgement) -> Table {
    Table {
        header: header(&["group", "measured plateau req/s", "predicted", "error", ""]),
        rows: j
            .saturation
            .iter()
            .map(|s| {
                vec![
                    s.group.clone(),
                    format!(
                        "{:.2}{}",
                        s.measured_capacity,
                        if s.lower_bound { " (lower bound)" } else { "" }
                    ),
                    format!("{:.2}", s.predicted_capacity),
                    format!("{:+.1}%", s.error_pct),
                    mark(&s.flagged),
                ]
            })
            .collect(),
    }
}

fn averages_table(j: &Judgement) -> Table {
    Table {
        header: header(&[
            "metric (unflagged cells)",
            "mean abs error",
            "cells inside the measured range",
        ]),
        rows: prediction::METRICS
            .iter()
            .filter_map(|&m| {
                let (e, n) = mean_abs_error(j, m)?;
                let inside = unflagged(j, m)
                    .filter(|r| r.beyond_range_pct == 0.0)
                    .count();
                Some(vec![
                    m.to_string(),
                    format!("{e:.1}%"),
                    format!("{inside} of {n}"),
                ])
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::prediction::SaturationRow;

    fn row(metric: &'static str, error_pct: f64, flagged: bool) -> Row {
        Row {
            cell: "request_rate=4".into(),
            offered_rate: 4.0,
            metric,
            measured_min: 1.0,
            measured_max: 1.0,
            measured_mean: 1.0,
            repeats: 1,
            predicted: 1.0 + error_pct / 100.0,
            error_pct,
            beyond_range_pct: error_pct,
            flagged: flagged.then(|| "the client stalled".to_string()),
        }
    }

    /// The summary sentence averages unflagged cells only, and leaves a plateau judged on
    /// a flagged cell out too, counting both.
    #[test]
    fn the_summary_line_leaves_flagged_figures_out_and_counts_them() {
        let j = Judgement {
            rows: vec![
                row("achieved req/s", 2.0, false),
                row("achieved req/s", 40.0, true),
                row("TTFT p50 ms", -10.0, false),
            ],
            saturation: vec![SaturationRow {
                group: "server".into(),
                measured_capacity: 10.0,
                predicted_capacity: 12.0,
                error_pct: 20.0,
                lower_bound: false,
                flagged: Some("the client stalled".into()),
            }],
            speed: [(1.25, false), (3.0, true), (0.9, false)]
                .into_iter()
                .map(|(speed, flagged)| prediction::SpeedRow {
                    cell: "request_rate=4".into(),
                    offered_rate: 4.0,
                    measured_mean: speed,
                    measured_min: speed,
                    measured_max: speed,
                    repeats: 1,
                    predicted: 1.0,
                    speed,
                    flagged: flagged.then(|| "the client stalled".to_string()),
                })
                .collect(),
            speed_unknown: None,
            lower_bounds_skipped: 0,
            unmatched: 0,
        };
        let line = summary_line("p", &j).unwrap();
        // the speed of the unflagged cells only
        assert!(
            line.contains("took 0.90–1.25× the profile's time"),
            "{line}"
        );
        let one = Judgement {
            speed: j.speed[..1].to_vec(),
            ..j.clone()
        };
        let text = section("s", &one).paragraphs.join("\n");
        assert!(
            text.contains("Over the 1 unflagged cell the server stepped at 1.25× the"),
            "{text}"
        );
        assert!(line.contains("achieved req/s 2.0% (1 cells)"), "{line}");
        assert!(line.contains("TTFT p50 ms 10.0% (1 cells)"), "{line}");
        assert!(!line.contains("saturation"), "{line}");
        assert!(line.contains("2 figures rest on flagged cells"), "{line}");
        assert_eq!(summary_line("p", &Judgement { rows: vec![], ..j }), None);
    }
}
