//! What the report (and the terminal) says of a search: its answer with the bracket, how
//! many cells it took and why it stopped; and a table of its probes.

use super::model::{Section, Table};
use crate::analysis::search::{Answer, Goal, Outcome, SearchFinding};
use crate::stats::survival::Figure;

/// A rate with three significant digits or so: 0.352, 4.27, 46.2, 1250.
pub fn rate(x: f64) -> String {
    match x {
        x if x >= 100.0 => format!("{x:.0}"),
        x if x >= 10.0 => format!("{x:.1}"),
        x if x >= 1.0 => format!("{x:.2}"),
        x => format!("{x:.3}"),
    }
}

/// The answer in one phrase: "saturates between 46.2 and 47.9 req/s offered (±1.8%, 6
/// cells); capacity 45.1 req/s (the plateau)".
pub fn answer_phrase(a: &Answer) -> String {
    let cells = format!("{} cell{}", a.cells, if a.cells == 1 { "" } else { "s" });
    let saturation = a.goal == Goal::Saturation;
    let bracket = match (a.lo, a.hi) {
        (Some(l), Some(h)) => {
            let within = format!("±{:.1}%", (h / l - 1.0) * 50.0);
            if saturation {
                format!(
                    "saturates between {} and {} req/s offered ({within}, {cells})",
                    rate(l),
                    rate(h)
                )
            } else {
                format!(
                    "meets the SLOs up to {} req/s offered, not at {} ({within}, {cells})",
                    rate(l),
                    rate(h)
                )
            }
        }
        (Some(l), None) if saturation => {
            format!("kept up at every rate up to {} req/s ({cells})", rate(l))
        }
        (Some(l), None) => format!(
            "met the SLOs at every rate up to {} req/s ({cells})",
            rate(l)
        ),
        (None, Some(h)) if saturation => {
            format!("already saturated at {} req/s ({cells})", rate(h))
        }
        (None, Some(h)) => format!("missed the SLOs already at {} req/s ({cells})", rate(h)),
        (None, None) => format!("no probe finished ({cells})"),
    };
    let why = match a.outcome {
        Outcome::Converged => String::new(),
        Outcome::Budget => format!(
            "; the cell budget ran out before ±{:.1}% (raise `max_cells`)",
            a.tolerance * 50.0
        ),
        Outcome::NeverFailed if saturation => {
            "; never saturated up to `max_rate` (raise it to find the limit)".into()
        }
        Outcome::NeverFailed => "; the SLOs held up to `max_rate`".into(),
        Outcome::NeverPassed if saturation => {
            "; saturated even at `min_rate` (lower it to find the limit)".into()
        }
        Outcome::NeverPassed => "; the SLOs failed even at `min_rate`".into(),
        Outcome::Unfinished => "; unfinished (interrupted): the bracket so far".into(),
    };
    let capacity = match a.capacity {
        Some(c) if a.capacity_is_lower_bound => {
            format!(
                "; capacity at least {} req/s (the token rate still rose)",
                rate(c)
            )
        }
        Some(c) => format!("; capacity {} req/s (the plateau)", rate(c)),
        None => String::new(),
    };
    format!("{bracket}{why}{capacity}")
}

/// The executive summary's sentence for one search.
pub fn sentence(f: &SearchFinding) -> String {
    let whose = if f.search == "search" {
        format!("server `{}`", f.group)
    } else {
        format!("server `{}`, `{}`", f.group, f.search)
    };
    format!("Search ({whose}): {}.", answer_phrase(&f.answer))
}

fn ms(f: Option<Figure>) -> String {
    match f {
        Some(f) if f.lower_bound => format!("> {:.0} ms", f.value),
        Some(f) => format!("{:.1} ms", f.value),
        None => "-".into(),
    }
}

/// Each search's answer and its probes by rate; `None` for a run without a search.
pub fn section(found: &[SearchFinding]) -> Option<Section> {
    if found.is_empty() {
        return None;
    }
    let rows = found
        .iter()
        .flat_map(|f| {
            f.answer.probes.iter().map(move |p| {
                vec![
                    f.search.clone(),
                    p.cell.clone(),
                    rate(p.rate),
                    p.achieved.map_or("-".into(), |a| format!("{a:.2}")),
                    ms(p.ttft_p50_ms),
                    p.slo_attainment
                        .map_or("-".into(), |a| format!("{:.1}%", a * 100.0)),
                    match (&p.no_completions, p.passed, f.answer.goal) {
                        (Some(_), _, _) => "nothing measured".into(),
                        (None, true, Goal::Saturation) => "kept up".into(),
                        (None, false, Goal::Saturation) => "saturated".into(),
                        (None, true, Goal::Slo) => "met".into(),
                        (None, false, Goal::Slo) => "missed".into(),
                    },
                ]
            })
        })
        .collect();
    Some(Section {
        title: "Search".into(),
        paragraphs: found.iter().map(sentence).chain([
            "A rate keeps up while it lies below the first saturated one as the saturation analysis defines it (achieved < 95% of what arrived, TTFT p50 > 3× the lowest rate's, or a growing queue), so the bracket's top edge can lie up to 1/0.95 above the plateau; for the SLO goal, a rate passes when its SLO attainment meets the target and no lower rate failed. Every probe is a normal cell of this folder.".to_string(),
        ]).collect(),
        figures: vec![],
        tables: vec![Table {
            header: ["search", "cell", "offered", "achieved", "TTFT p50", "SLO attainment", "verdict"]
                .map(String::from)
                .to_vec(),
            rows,
        }],
    })
}
