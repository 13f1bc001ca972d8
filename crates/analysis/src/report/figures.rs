//! The report's charts, built from the analysis (pure): the seed's three — saturation,
//! throughput per DP size, latency per DP size (p50 and p99, the SLOs) — the latency
//! breakdown (where TTFT goes: the server's queue and prefill, and the rest; TPOT beside the
//! server's decode time per token), and the server's queue and KV usage over a saturated
//! cell; a ramp cell's probe (`ramp`).

use super::chart::{
    Axis, Figure, HLine, LegendItem, MARKERS, Marker, Panel, Series, Stack, fmt_tick,
};
use crate::analysis::saturation::{GroupFinding, Saturation};
use crate::analysis::scaling::fmt_rate;
use crate::analysis::{Analysis, Point};
use crate::latency_breakdown::TtftSplit;
use crate::server_metrics::MetricRow;
use crate::summary::goodput::Slo;

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
                ..Panel::default()
            }],
            width: 820.0,
            height: 480.0,
            columns: 0,
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
            ..Series::default()
        },
        Series {
            name: "offered = achieved".into(),
            points: offered().map(|p| (p.offered, p.offered)).collect(),
            color: 0,
            axis: Axis::Left,
            dashed: true,
            at_least: Vec::new(),
            ..Series::default()
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
        ..Series::default()
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
        ..Series::default()
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
                    marker: config_style(i, gs.len()).1,
                    width: config_style(i, gs.len()).2,
                    marker_r: config_style(i, gs.len()).3,
                    ..Series::default()
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
                ..Series::default()
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
                ..Panel::default()
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
            columns: 0,
        },
    })
}

/// A configuration's style in charts across `n` configurations: its colour, marker, line
/// width and marker size. The first half is drawn wide, the second thin on top: the
/// configurations are ordered by family, then DP size, so two that coincide (the same DP
/// size in two families) are one wide and one thin, and the wide one shows around the other.
fn config_style(i: usize, n: usize) -> (usize, Marker, f32, f32) {
    let wide = i < n.div_ceil(2);
    (
        i,
        MARKERS[i % MARKERS.len()],
        if wide { 4.2 } else { 1.8 },
        if wide { 5.2 } else { 3.4 },
    )
}

const SLO_COLOR: [u8; 3] = [120, 120, 120];

/// TTFT and TPOT against offered load, one colour and marker per server configuration:
/// p50 solid with filled markers, p99 dashed with hollow ones, and the experiment's SLOs as
/// horizontal lines.
pub fn latency_by_dp(a: &Analysis, slos: &[Slo]) -> Named {
    // a figure is (value, only a lower bound?)
    type Pick = fn(&Point) -> Option<(f64, bool)>;
    let series = |p50: Pick, p99: Pick| -> Vec<Series> {
        let line = |g: &GroupFinding, pick: Pick| -> (Vec<(f64, f64)>, Vec<bool>) {
            g.points
                .iter()
                .filter(|p| p.offered.is_finite())
                .filter_map(|p| Some(((p.offered, pick(p)?.0), pick(p)?.1)))
                .unzip()
        };
        a.groups
            .iter()
            .enumerate()
            .flat_map(|(i, g)| {
                let (color, marker, width, marker_r) = config_style(i, a.groups.len());
                let (pts50, lb50) = line(g, p50);
                let (pts99, lb99) = line(g, p99);
                [
                    Series {
                        name: label(g),
                        points: pts50,
                        at_least: lb50,
                        color,
                        marker,
                        width,
                        marker_r,
                        ..Series::default()
                    },
                    Series {
                        name: format!("{} p99", label(g)),
                        points: pts99,
                        at_least: lb99,
                        color,
                        marker,
                        dashed: true,
                        hollow: true,
                        width: 1.3,
                        marker_r,
                        in_legend: false,
                        ..Series::default()
                    },
                ]
            })
            .collect()
    };
    let slo_lines = |which: fn(&Slo) -> Option<f64>, what: &str| -> Vec<HLine> {
        slos.iter()
            .filter_map(which)
            .map(|v| HLine {
                y: v,
                label: format!("SLO: {what} ≤ {} ms", fmt_tick(v)),
                color: SLO_COLOR,
            })
            .collect()
    };
    let keys = |hlines: &[HLine]| {
        let mut k = vec![
            LegendItem::line("p50 (solid, filled)", false),
            LegendItem::line("p99 (dashed, hollow)", true),
        ];
        if !hlines.is_empty() {
            k.push(LegendItem {
                color: SLO_COLOR,
                ..LegendItem::line("SLO", true)
            });
        }
        k
    };
    let ttft_slo = slo_lines(
        |s| match s {
            Slo::TtftMs(v) => Some(*v),
            _ => None,
        },
        "TTFT",
    );
    let tpot_slo = slo_lines(
        |s| match s {
            Slo::TpotMs(v) => Some(*v),
            _ => None,
        },
        "TPOT",
    );
    let any_bound = a
        .groups
        .iter()
        .flat_map(|g| &g.points)
        .any(|p| p.ttft_p99_ms.is_some_and(|f| f.lower_bound));
    let panels = vec![
        Panel {
            title: "time to first token".into(),
            x_label: "offered load (req/s)".into(),
            y_label: "TTFT (ms, log)".into(),
            log_y: true,
            series: series(
                |p| p.ttft_p50_ms.map(|f| (f.value, f.lower_bound)),
                |p| p.ttft_p99_ms.map(|f| (f.value, f.lower_bound)),
            ),
            legend_extra: {
                let mut k = keys(&ttft_slo);
                if any_bound {
                    k.push(LegendItem {
                        arrow: true,
                        ..LegendItem::line("at least (requests cut off)", false)
                    });
                }
                k
            },
            hlines: ttft_slo,
            ..Panel::default()
        },
        Panel {
            title: "time per output token".into(),
            x_label: "offered load (req/s)".into(),
            y_label: "TPOT (ms)".into(),
            series: series(
                |p| p.tpot_p50_ms.map(|v| (v, false)),
                |p| p.tpot_p99_ms.map(|v| (v, false)),
            ),
            legend_extra: keys(&tpot_slo),
            hlines: tpot_slo,
            ..Panel::default()
        },
    ];
    let width = 1100.0;
    let rows = panels
        .iter()
        .map(|p| p.legend_rows(width / 2.0))
        .max()
        .unwrap_or(1);
    Named {
        stem: "latency-by-dp".into(),
        figure: Figure {
            title: "Latency vs offered load per server configuration (p50 and p99)".into(),
            panels,
            width,
            height: 460.0 + 17.0 * rows as f32,
            columns: 0,
        },
    }
}

/// Colours of the parts of TTFT in the breakdown.
pub const QUEUE_COLOR: [u8; 3] = [214, 39, 40];
pub const PREFILL_COLOR: [u8; 3] = [31, 119, 180];
pub const OTHER_COLOR: [u8; 3] = [199, 199, 199];

/// `1.2 s` or `87 ms`.
fn short_ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.1} s", v / 1000.0)
    } else {
        format!("{v:.0} ms")
    }
}

/// Where the time goes, per server configuration and offered load: each bar is the server's
/// mean TTFT (its value over the bar; the client's where the server has none) split into
/// its mean queue and prefill time and the rest (before the engine); against the right
/// axis, the client's TPOT p50 and the server's mean time per output token (its decode
/// phase per token). `None` when no cell's server exported vLLM's phase histograms: then
/// there is nothing to split.
pub fn latency_breakdown(a: &Analysis) -> Option<Named> {
    let groups: Vec<(usize, &GroupFinding)> = a
        .groups
        .iter()
        .enumerate()
        .filter(|(_, g)| g.points.iter().any(|p| split(p).is_some()))
        .collect();
    if groups.is_empty() {
        return None;
    }
    let panels: Vec<Panel> = groups.iter().map(|&(i, g)| breakdown_panel(i, g)).collect();
    let columns = panels.len().min(2);
    let rows = panels.len().div_ceil(columns);
    let width = if columns == 1 { 820.0 } else { 1100.0 };
    let legend_rows = panels
        .iter()
        .map(|p| p.legend_rows(width / columns as f32))
        .max()
        .unwrap_or(1);
    Some(Named {
        stem: BREAKDOWN_STEM.into(),
        figure: Figure {
            title: "Where the time goes: the server's TTFT split into queue, prefill and the rest; TPOT beside the server's".into(),
            panels,
            width,
            height: 34.0 + rows as f32 * (400.0 + 17.0 * legend_rows as f32),
            columns,
        },
    })
}

pub const BREAKDOWN_STEM: &str = "latency-breakdown";

/// A point's TTFT split, when both the client and the server measured it.
pub fn split(p: &Point) -> Option<TtftSplit> {
    TtftSplit::new(p.ttft_mean_ms, p.phases.as_ref()?)
}

fn breakdown_panel(i: usize, g: &GroupFinding) -> Panel {
    let marker = MARKERS[i % MARKERS.len()];
    let pts = || g.points.iter().filter(|p| p.offered.is_finite());
    let bars = pts()
        .filter_map(|p| {
            let s = split(p)?;
            Some(Stack {
                x: p.offered,
                parts: vec![
                    (100.0 * s.queue_share(), QUEUE_COLOR),
                    (100.0 * s.prefill_share(), PREFILL_COLOR),
                    (100.0 * s.other_share(), OTHER_COLOR),
                ],
                label: short_ms(s.total_ms),
            })
        })
        .collect();
    let client_tpot: Vec<(f64, f64)> = pts()
        .filter_map(|p| Some((p.offered, p.tpot_p50_ms?)))
        .collect();
    let server_tpot: Vec<(f64, f64)> = pts()
        .filter_map(|p| Some((p.offered, p.phases?.tpot_ms?)))
        .collect();
    Panel {
        title: label(g),
        x_label: "offered load (req/s)".into(),
        y_label: "share of TTFT mean (%)".into(),
        y2_label: Some("TPOT (ms)".into()),
        y_range: Some((0.0, 118.0)),
        bars,
        series: vec![
            Series {
                name: "client TPOT p50".into(),
                points: client_tpot,
                color: 4,
                axis: Axis::Right,
                marker,
                ..Series::default()
            },
            Series {
                name: "server TPOT mean".into(),
                points: server_tpot,
                color: 2,
                axis: Axis::Right,
                dashed: true,
                hollow: true,
                marker,
                ..Series::default()
            },
        ],
        legend_extra: vec![
            LegendItem::swatch("queue", QUEUE_COLOR),
            LegendItem::swatch("prefill", PREFILL_COLOR),
            LegendItem::swatch("rest (before the engine)", OTHER_COLOR),
        ],
        ..Panel::default()
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
                        ..Series::default()
                    },
                    Series {
                        name: "running".into(),
                        points: s(&running),
                        color: 0,
                        axis: Axis::Left,
                        dashed: false,
                        at_least: Vec::new(),
                        ..Series::default()
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
                        ..Series::default()
                    },
                ],
                marks: vec![],
                ..Panel::default()
            }],
            width: 820.0,
            height: 440.0,
            columns: 0,
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
        ..Series::default()
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
                    ..Panel::default()
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
                    ..Panel::default()
                },
            ],
            width: 1160.0,
            height: 460.0,
            columns: 0,
        },
    }
}
