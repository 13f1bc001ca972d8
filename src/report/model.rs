//! The report model: every sentence and table of the report, computed once from the analysis
//! and the run's metadata. The renderers (Markdown, HTML, terminal) only lay it out. Pure.

use crate::analysis::saturation::{GroupFinding, Reason};
use crate::analysis::scaling::{ScalingFinding, fmt_rate};
use crate::analysis::{Analysis, CellInput};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Section {
    pub title: String,
    pub paragraphs: Vec<String>,
    /// Charts shown in this section: (file stem under `figs/`, caption).
    pub figures: Vec<(String, String)>,
    pub tables: Vec<Table>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub title: String,
    pub description: Option<String>,
    pub executive_summary: Vec<String>,
    pub sections: Vec<Section>,
    /// `generated at …` line; the only part that changes between two renders of the same data.
    pub generated_at: String,
}

/// What the report says about the run itself.
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    pub experiment: String,
    pub description: Option<String>,
    pub tool: String,
    pub host: String,
    pub cpu: String,
    pub started_at: String,
    pub finished_at: String,
    pub status: String,
    pub server_versions: Vec<(String, String)>,
    pub launcher: String,
    pub workload: String,
    pub load: String,
    pub slo: Option<String>,
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(x) if x >= 1000.0 => format!("{:.0} ms", x),
        Some(x) => format!("{x:.1} ms"),
        None => "-".into(),
    }
}

fn group_label(g: &GroupFinding) -> String {
    // DP ranks are GPUs on a GPU server, engines on vLLM's CPU build or the simulator
    let gpus = if g.dp == 1 {
        "1 engine".to_string()
    } else {
        format!("{} engines", g.dp)
    };
    if g.family == "all" {
        format!("{gpus} (dp={})", g.dp)
    } else {
        format!("{gpus} (dp={}, {})", g.dp, g.family)
    }
}

fn saturation_sentence(g: &GroupFinding) -> String {
    let label = group_label(g);
    match &g.saturation {
        Some(s) => {
            let why: Vec<&str> = s
                .reasons
                .iter()
                .map(|r| match r {
                    Reason::Throughput => "throughput stopped following the offered load",
                    Reason::Ttft => "TTFT passed 3× its low-load value",
                    Reason::Queue => "the waiting queue kept growing",
                })
                .collect();
            let blowup = match (g.low_load_ttft_ms, s.after.ttft_p50_ms) {
                (Some(lo), Some(hi)) if lo > 0.0 => format!(
                    "; TTFT p50 rises from {} to {} ({:.0}×) at {} req/s offered",
                    ms(Some(lo)),
                    ms(Some(hi)),
                    hi / lo,
                    fmt_rate(s.after.offered)
                ),
                _ => String::new(),
            };
            format!(
                "{label} saturates at {} req/s offered ({}): throughput plateaus at {:.1} req/s{blowup}.",
                fmt_rate(s.offered),
                why.join(", "),
                g.max_throughput
            )
        }
        None => {
            let top = g.points.last();
            let mut s = format!(
                "{label} did not saturate in the tested range: {:.1} req/s achieved at {} req/s offered, TTFT p50 {}; its capacity is above what was tested.",
                top.map_or(0.0, |p| p.achieved),
                top.map_or("-".into(), |p| fmt_rate(p.offered)),
                ms(top.and_then(|p| p.ttft_p50_ms))
            );
            if g.short_of_offered_without_engine_queue {
                s.push_str(" Achieved fell short of offered while the engines' queues stayed empty: the load never reached the engines (a client or API-server limit), so this is not a server result.");
            }
            s
        }
    }
}

fn scaling_sentence(f: &ScalingFinding) -> Vec<String> {
    let mut out = Vec::new();
    let base = &f.rows[0];
    for r in f.rows.iter().skip(1) {
        if base.saturated && r.saturated {
            out.push(format!(
                "dp={} vs dp={}{}: {:.2}× the plateau ({:.1} vs {:.1} req/s), {:.0}% scaling efficiency{}.",
                r.dp,
                base.dp,
                if f.family == "all" { String::new() } else { format!(" ({})", f.family) },
                r.speedup,
                r.max_throughput,
                base.max_throughput,
                r.efficiency * 100.0,
                r.matched_load_efficiency
                    .map(|m| format!("; at matched per-replica load {:.0}%", m * 100.0))
                    .unwrap_or_default()
            ));
        }
    }
    out.extend(f.warnings.iter().cloned());
    if let Some(u) = &f.usl {
        out.push(format!(
            "Universal Scalability Law fit: σ = {:.3}, κ = {:.4}{}.",
            u.sigma,
            u.kappa,
            u.peak_n
                .map(|n| format!(", throughput would peak near {n:.0}× dp={}", f.base_dp))
                .unwrap_or_default()
        ));
    }
    out
}

/// `server_chart`: the stem and cell of the server-over-time chart, when one was drawn.
pub fn build(
    facts: &RunFacts,
    analysis: &Analysis,
    cells: &[CellInput],
    server_chart: Option<(String, String)>,
    generated_at: String,
) -> Report {
    let mut exec = Vec::new();
    for g in &analysis.groups {
        exec.push(saturation_sentence(g));
    }
    for f in &analysis.scaling {
        exec.extend(scaling_sentence(f));
    }
    if !analysis.without_offered_rate.is_empty() {
        exec.push(format!(
            "{} cell(s) ({}) ran without an offered rate (all at once, or a closed loop of `max_concurrency`): they are in the tables, not in the saturation analysis, which reads throughput and latency along the offered rate.",
            analysis.without_offered_rate.len(),
            analysis.without_offered_rate.join(", ")
        ));
    }
    if let Some(slo) = &facts.slo {
        for g in &analysis.groups {
            exec.push(match g.goodput_rate {
                Some(r) => format!(
                    "{}: the highest offered rate where at least {:.0}% of requests met {slo} is {} req/s.",
                    group_label(g),
                    analysis.slo_target * 100.0,
                    fmt_rate(r)
                ),
                None => format!(
                    "{}: no tested rate had {:.0}% of requests meeting {slo}.",
                    group_label(g),
                    analysis.slo_target * 100.0
                ),
            });
        }
    }
    let flagged = analysis
        .verdicts
        .iter()
        .filter(|v| !v.verdicts.is_empty())
        .count();
    if flagged > 0 {
        exec.push(format!(
            "{flagged} of {} cells carry validity warnings; read them before quoting their numbers (see Verdicts).",
            analysis.verdicts.len()
        ));
    }
    let mut sections = Vec::new();
    sections.push(Section {
        title: "Experiment".into(),
        figures: vec![],
        paragraphs: vec![
            format!(
                "Experiment `{}`, {} cells, status {}.",
                facts.experiment,
                cells.len(),
                facts.status
            ),
            format!(
                "Server: {}. Workload: {}. Load: {}.",
                facts.launcher, facts.workload, facts.load
            ),
            format!(
                "Run from {} to {} by {} on {} ({}).{}",
                facts.started_at,
                facts.finished_at,
                facts.tool,
                facts.host,
                facts.cpu,
                if facts.server_versions.is_empty() {
                    String::new()
                } else {
                    format!(
                        " Server versions: {}.",
                        facts
                            .server_versions
                            .iter()
                            .map(|(g, v)| format!("{g} {v}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ),
        ],
        tables: vec![],
    });
    for g in &analysis.groups {
        let rows = g
            .points
            .iter()
            .map(|p| {
                vec![
                    fmt_rate(p.offered),
                    format!("{:.2}", p.achieved),
                    ms(p.ttft_p50_ms),
                    ms(p.ttft_p99_ms),
                    ms(p.tpot_p50_ms),
                    p.slo_attainment
                        .map_or("-".into(), |a| format!("{:.0}%", a * 100.0)),
                    if g.saturation
                        .as_ref()
                        .is_some_and(|s| s.offered == p.offered)
                    {
                        "← saturation".into()
                    } else {
                        String::new()
                    },
                ]
            })
            .collect();
        sections.push(Section {
            title: format!("Saturation: {}", group_label(g)),
            paragraphs: vec![saturation_sentence(g)],
            figures: vec![(
                super::figures::saturation(g).stem,
                format!("Throughput and TTFT vs offered load, {}", group_label(g)),
            )],
            tables: vec![Table {
                header: [
                    "offered req/s",
                    "achieved req/s",
                    "TTFT p50",
                    "TTFT p99",
                    "TPOT p50",
                    "SLO met",
                    "",
                ]
                .map(String::from)
                .to_vec(),
                rows,
            }],
        });
    }
    for f in &analysis.scaling {
        sections.push(Section {
            title: format!(
                "Scaling{}",
                if f.family == "all" {
                    String::new()
                } else {
                    format!(": {}", f.family)
                }
            ),
            paragraphs: scaling_sentence(f),
            figures: vec![],
            tables: vec![Table {
                header: [
                    "dp",
                    "plateau req/s",
                    "saturated",
                    "speedup",
                    "efficiency",
                    "matched-load efficiency",
                ]
                .map(String::from)
                .to_vec(),
                rows: f
                    .rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.dp.to_string(),
                            format!("{:.2}", r.max_throughput),
                            if r.saturated {
                                "yes".into()
                            } else {
                                "no (lower bound)".into()
                            },
                            format!("{:.2}×", r.speedup),
                            format!("{:.0}%", r.efficiency * 100.0),
                            r.matched_load_efficiency
                                .map_or("-".into(), |m| format!("{:.0}%", m * 100.0)),
                        ]
                    })
                    .collect(),
            }],
        });
    }
    if analysis.groups.len() >= 2 {
        sections.push(Section {
            title: "Throughput and latency per server configuration".into(),
            paragraphs: vec!["Achieved throughput against offered load for each DP size (the dashed line is perfect keeping-up), then TTFT and TPOT.".into()],
            figures: vec![
                ("throughput-by-dp".into(), "Throughput vs offered load per DP size".into()),
                ("latency-by-dp".into(), "TTFT and TPOT vs offered load".into()),
            ],
            tables: vec![],
        });
    } else {
        sections.push(Section {
            title: "Latency".into(),
            paragraphs: vec![],
            figures: vec![(
                "latency-by-dp".into(),
                "TTFT and TPOT vs offered load".into(),
            )],
            tables: vec![],
        });
    }
    if let Some((stem, cell)) = server_chart {
        sections.push(Section {
            title: "Inside the server".into(),
            paragraphs: vec![format!(
                "The server's own gauges (`/metrics`) over cell `{cell}`: requests waiting and running, and KV-cache usage."
            )],
            figures: vec![(stem, format!("Server queue and KV usage, cell {cell}"))],
            tables: vec![],
        });
    }
    let verdict_rows: Vec<Vec<String>> = analysis
        .verdicts
        .iter()
        .filter(|v| !v.verdicts.is_empty())
        .map(|v| vec![v.cell.clone(), v.describe_all()])
        .collect();
    sections.push(Section {
        title: "Verdicts".into(),
        paragraphs: vec![if verdict_rows.is_empty() {
            "No cell carries a validity warning.".into()
        } else {
            "Cells whose numbers should not be read at face value, and why.".into()
        }],
        figures: vec![],
        tables: if verdict_rows.is_empty() {
            vec![]
        } else {
            vec![Table {
                header: vec!["cell".into(), "verdicts".into()],
                rows: verdict_rows,
            }]
        },
    });
    sections.push(Section {
        title: "All cells".into(),
        paragraphs: vec!["Recomputed from each cell's raw records (`cells/*/requests.jsonl`); the same figures are in `runs.parquet`.".into()],
        figures: vec![],
        tables: vec![Table {
            header: ["cell", "offered", "achieved", "out tok/s", "TTFT p50", "TTFT p99", "TPOT p50", "sent", "failed"]
                .map(String::from)
                .to_vec(),
            rows: cells
                .iter()
                .map(|c| {
                    vec![
                        c.id.clone(),
                        fmt_rate(c.offered_rate),
                        format!("{:.2}", c.achieved_rate),
                        format!("{:.0}", c.output_throughput),
                        ms(c.ttft_p50_ms),
                        ms(c.ttft_p99_ms),
                        ms(c.tpot_p50_ms),
                        c.sent.to_string(),
                        c.failed.to_string(),
                    ]
                })
                .collect(),
        }],
    });
    Report {
        title: format!("{}: load test report", facts.experiment),
        description: facts.description.clone(),
        executive_summary: exec,
        sections,
        generated_at,
    }
}
