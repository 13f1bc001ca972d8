//! The report's charts, built from the analysis (pure): the seed's three — saturation,
//! throughput per DP size, latency per DP size — and the server's queue and KV usage over a
//! saturated cell; a ramp cell's probe (`ramp`).

use super::chart::{Axis, Figure, Panel, Series};
use crate::analysis::Analysis;
use crate::analysis::saturation::{GroupFinding, Saturation};
use crate::analysis::scaling::fmt_rate;
use crate::server_metrics::MetricRow;

/// A figure and the file stem it is saved under (`figs/<stem>.png|svg`).
pub struct Named {
    pub stem: String,
    pub figure: Figure,
}

fn label(g: &GroupFinding) -> String {
    if g.family == "all" {
        format!("dp={}", g.dp)
    } else {
        format!("dp={} {}", g.dp, g.family)
    }
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

pub fn saturation(g: &GroupFinding) -> Named {
    let mut series = throughput_series(g);
    series.push(ttft_series(g));
    series.extend(plateau_series(g));
    Named {
        stem: format!("saturation-{}", slug(&g.group)),
        figure: Figure {
            title: format!(
                "Saturation, {}: throughput and TTFT vs offered load",
                label(g)
            ),
            panels: vec![Panel {
                title: saturation_title(g),
                x_label: "offered load (req/s)".into(),
                y_label: "throughput (req/s)".into(),
                y2_label: Some("TTFT p50 (ms, log)".into()),
                log_y: false,
                log_y2: true,
                series,
                marks: onset_marks(g),
            }],
            width: 820.0,
            height: 480.0,
        },
    }
}

/// Achieved against offered, and the line where the two are equal.
fn throughput_series(g: &GroupFinding) -> Vec<Series> {
    let offered = || g.points.iter().filter(|p| p.offered.is_finite());
    vec![
        Series {
            name: "achieved throughput (req/s)".into(),
            points: offered().map(|p| (p.offered, p.achieved)).collect(),
            color: 0,
            axis: Axis::Left,
            dashed: false,
            at_least: Vec::new(),
        },
        Series {
            name: "offered = achieved".into(),
            points: offered().map(|p| (p.offered, p.offered)).collect(),
            color: 0,
            axis: Axis::Left,
            dashed: true,
            at_least: Vec::new(),
        },
    ]
}

/// TTFT p50 on the right axis, a lower bound drawn as such.
fn ttft_series(g: &GroupFinding) -> Series {
    let ttft: Vec<(f64, crate::stats::survival::Figure)> = g
        .points
        .iter()
        .filter_map(|p| Some((p.offered, p.ttft_p50_ms?)))
        .filter(|q| q.0.is_finite())
        .collect();
    Series {
        name: if ttft.iter().any(|(_, f)| f.lower_bound) {
            "TTFT p50 (ms; arrow: at least)".into()
        } else {
            "TTFT p50 (ms)".into()
        },
        points: ttft.iter().map(|(x, f)| (*x, f.value)).collect(),
        at_least: ttft.iter().map(|(_, f)| f.lower_bound).collect(),
        color: 1,
        axis: Axis::Right,
        dashed: false,
    }
}

fn lower_bound_sign(s: &Saturation) -> &'static str {
    if s.capacity_is_lower_bound {
        "≥ "
    } else {
        ""
    }
}

/// The onset as an interval: the last rate that kept up, the first that did not. A
/// configuration that never saturated has no onset to mark.
fn onset_marks(g: &GroupFinding) -> Vec<(f64, String)> {
    let mut marks = Vec::new();
    if let Some(s) = &g.saturation {
        if let Some(k) = s.kept_up {
            marks.push((k, format!("kept up {} req/s", fmt_rate(k))));
        }
        marks.push((
            s.offered,
            format!("fell behind {} req/s", fmt_rate(s.offered)),
        ));
    }
    marks
}

/// The plateau as a line across the tested range; none without saturation.
fn plateau_series(g: &GroupFinding) -> Option<Series> {
    let s = g.saturation.as_ref()?;
    let xs = g.points.iter().map(|p| p.offered).filter(|x| x.is_finite());
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    Some(Series {
        name: format!("plateau {}{:.1} req/s", lower_bound_sign(s), s.capacity),
        points: vec![(lo, s.capacity), (hi, s.capacity)],
        color: 2,
        axis: Axis::Left,
        dashed: true,
        at_least: Vec::new(),
    })
}

fn saturation_title(g: &GroupFinding) -> String {
    match &g.saturation {
        Some(s) => format!(
            "capacity {}{:.1} req/s; onset in ({}, {}] req/s offered",
            lower_bound_sign(s),
            s.capacity,
            s.kept_up.map_or("0".into(), fmt_rate),
            fmt_rate(s.offered)
        ),
        None => format!(
            "not saturated: ≥ {:.1} req/s (no plateau)",
            g.max_throughput
        ),
    }
}

pub fn throughput_by_dp(a: &Analysis) -> Option<Named> {
    let mut families: Vec<&str> = a.groups.iter().map(|g| g.family.as_str()).collect();
    families.dedup();
    if a.groups.len() < 2 {
        return None;
    }
    let panels = families
        .iter()
        .map(|fam| {
            let gs: Vec<&GroupFinding> = a.groups.iter().filter(|g| g.family == *fam).collect();
            let mut series: Vec<Series> = gs
                .iter()
                .enumerate()
                .map(|(i, g)| Series {
                    name: format!("dp={}", g.dp),
                    points: g
                        .points
                        .iter()
                        .filter(|p| p.offered.is_finite())
                        .map(|p| (p.offered, p.achieved))
                        .collect(),
                    color: i,
                    axis: Axis::Left,
                    dashed: false,
                    at_least: Vec::new(),
                })
                .collect();
            let xs: Vec<f64> = gs
                .iter()
                .flat_map(|g| g.points.iter().map(|p| p.offered))
                .filter(|x| x.is_finite())
                .collect();
            let top = xs.iter().cloned().fold(0.0, f64::max);
            series.push(Series {
                name: "ideal".into(),
                points: vec![(0.0, 0.0), (top, top)],
                color: 5,
                axis: Axis::Left,
                dashed: true,
                at_least: Vec::new(),
            });
            Panel {
                title: if *fam == "all" {
                    String::new()
                } else {
                    fam.to_string()
                },
                x_label: "offered load (req/s)".into(),
                y_label: "achieved throughput (req/s)".into(),
                y2_label: None,
                log_y: false,
                log_y2: false,
                series,
                marks: vec![],
            }
        })
        .collect::<Vec<_>>();
    let n = panels.len() as f32;
    Some(Named {
        stem: "throughput-by-dp".into(),
        figure: Figure {
            title: "Throughput vs offered load per DP size".into(),
            panels,
            width: (520.0 * n).max(820.0),
            height: 480.0,
        },
    })
}

pub fn latency_by_dp(a: &Analysis) -> Named {
    // a figure is (value, only a lower bound?)
    let series = |pick: fn(&crate::analysis::Point) -> Option<(f64, bool)>| -> Vec<Series> {
        a.groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let pts: Vec<(f64, (f64, bool))> = g
                    .points
                    .iter()
                    .filter_map(|p| Some((p.offered, pick(p)?)))
                    .filter(|q| q.0.is_finite())
                    .collect();
                Series {
                    name: label(g),
                    points: pts.iter().map(|&(x, (y, _))| (x, y)).collect(),
                    color: i,
                    axis: Axis::Left,
                    dashed: false,
                    at_least: pts.iter().map(|&(_, (_, b))| b).collect(),
                }
            })
            .collect()
    };
    Named {
        stem: "latency-by-dp".into(),
        figure: Figure {
            title: "Latency vs offered load per server configuration".into(),
            panels: vec![
                Panel {
                    title: "time to first token".into(),
                    x_label: "offered load (req/s)".into(),
                    y_label: "TTFT p50 (ms, log)".into(),
                    y2_label: None,
                    log_y: true,
                    log_y2: false,
                    series: series(|p| p.ttft_p50_ms.map(|f| (f.value, f.lower_bound))),
                    marks: vec![],
                },
                Panel {
                    title: "time per output token".into(),
                    x_label: "offered load (req/s)".into(),
                    y_label: "TPOT p50 (ms)".into(),
                    y2_label: None,
                    log_y: false,
                    log_y2: false,
                    series: series(|p| p.tpot_p50_ms.map(|v| (v, false))),
                    marks: vec![],
                },
            ],
            width: 1100.0,
            height: 480.0,
        },
    }
}

/// The server's waiting queue (all engines) and KV-cache usage over one cell.
pub fn server_over_time(cell: &str, rows: &[MetricRow]) -> Option<Named> {
    use std::collections::BTreeMap;
    let mut waiting: BTreeMap<u64, f64> = BTreeMap::new();
    let mut running: BTreeMap<u64, f64> = BTreeMap::new();
    let mut kv: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for r in rows {
        match r.name.as_str() {
            "vllm:num_requests_waiting" => *waiting.entry(r.t_ns).or_default() += r.value,
            "vllm:num_requests_running" => *running.entry(r.t_ns).or_default() += r.value,
            "vllm:kv_cache_usage_perc" => {
                let e = kv.entry(r.t_ns).or_default();
                e.0 += r.value;
                e.1 += 1.0;
            }
            _ => {}
        }
    }
    if waiting.is_empty() {
        return None;
    }
    let s = |m: &BTreeMap<u64, f64>| {
        m.iter()
            .map(|(t, v)| (*t as f64 / 1e9, *v))
            .collect::<Vec<_>>()
    };
    Some(Named {
        stem: format!("server-{}", slug(cell)),
        figure: Figure {
            title: format!("Server queue and KV cache over cell {cell}"),
            panels: vec![Panel {
                title: String::new(),
                x_label: "time in cell (s)".into(),
                y_label: "requests".into(),
                y2_label: Some("KV cache usage (%, mean of engines)".into()),
                log_y: false,
                log_y2: false,
                series: vec![
                    Series {
                        name: "waiting".into(),
                        points: s(&waiting),
                        color: 1,
                        axis: Axis::Left,
                        dashed: false,
                        at_least: Vec::new(),
                    },
                    Series {
                        name: "running".into(),
                        points: s(&running),
                        color: 0,
                        axis: Axis::Left,
                        dashed: false,
                        at_least: Vec::new(),
                    },
                    Series {
                        name: "KV usage %".into(),
                        points: kv
                            .iter()
                            .map(|(t, (sum, n))| (*t as f64 / 1e9, 100.0 * sum / n))
                            .collect(),
                        color: 2,
                        axis: Axis::Right,
                        dashed: true,
                        at_least: Vec::new(),
                    },
                ],
                marks: vec![],
            }],
            width: 820.0,
            height: 440.0,
        },
    })
}

/// A ramp cell: offered and achieved throughput over time (the knee marked where offered
/// passed the plateau), and achieved against offered second by second.
pub fn ramp(cell: &str, p: &crate::analysis::ramp::RampProbe) -> Named {
    let line = |name: &str, color, dashed, pts: Vec<(f64, f64)>| Series {
        name: name.into(),
        points: pts,
        color,
        axis: Axis::Left,
        dashed,
        at_least: Vec::new(),
    };
    let sending = || p.points.iter().filter(|q| q.t_s <= p.sending_s);
    let over_time = vec![
        line(
            "offered (req/s)",
            0,
            false,
            sending().map(|q| (q.t_s, q.offered)).collect(),
        ),
        line(
            "achieved (req/s, from output tokens)",
            1,
            false,
            p.points.iter().map(|q| (q.t_s, q.achieved)).collect(),
        ),
    ];
    let mut curve: Vec<(f64, f64)> = sending().map(|q| (q.offered, q.achieved)).collect();
    curve.sort_by(|a, b| a.0.total_cmp(&b.0));
    let diagonal = vec![(0.0, 0.0), (p.peak_offered, p.peak_offered)];
    let mark = |x: Option<f64>| -> Vec<(f64, String)> {
        x.map(|x| (x, "knee".to_string())).into_iter().collect()
    };
    Named {
        stem: format!("ramp-{}", slug(cell)),
        figure: Figure {
            title: format!("Ramp probe, cell {cell}: offered vs achieved throughput"),
            panels: vec![
                Panel {
                    title: "over time".into(),
                    x_label: "time in cell (s)".into(),
                    y_label: "throughput (req/s, 5 s mean)".into(),
                    y2_label: None,
                    log_y: false,
                    log_y2: false,
                    series: over_time,
                    marks: mark(p.knee.as_ref().map(|k| k.t_s)),
                },
                Panel {
                    title: "achieved against offered, while sending".into(),
                    x_label: "offered (req/s)".into(),
                    y_label: "achieved (req/s)".into(),
                    y2_label: None,
                    log_y: false,
                    log_y2: false,
                    series: vec![
                        line("achieved", 1, false, curve),
                        line("offered = achieved", 0, true, diagonal),
                    ],
                    marks: mark(p.knee.as_ref().map(|k| k.plateau)),
                },
            ],
            width: 1160.0,
            height: 460.0,
        },
    }
}
