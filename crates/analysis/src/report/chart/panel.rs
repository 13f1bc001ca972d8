//! One panel laid out: its plot area inside the margins, the axes with their ticks and
//! labels, the vertical marks and reference lines, the stacked bars, the series (markers
//! per point, lower bounds as arrows up) and the legend (`legend`).

use super::{
    Anchor, Axis, GRID, INK, MUTED, Marker, PALETTE, Panel, Prim, Scale, Series, extent, fmt_tick,
    legend, text, ticks,
};

/// Where a panel's parts went: its box, its plot area and its legend entries' boxes, each
/// (x, y, w, h).
#[derive(Debug, Clone)]
pub struct PanelBoxes {
    pub panel: [f32; 4],
    pub plot: [f32; 4],
    pub legend: Vec<[f32; 4]>,
}

/// A panel's box on the figure, and the plot area inside its margins (room for the tick
/// labels, axis labels and legend).
struct Area {
    x0: f32,
    y0: f32,
    w: f32,
    px0: f32,
    px1: f32,
    py0: f32,
    py1: f32,
}

/// The legend spans the panel less this on each side.
pub(super) const LEGEND_INSET: f32 = 12.0;

impl Area {
    fn new(p: &Panel, x0: f32, y0: f32, w: f32, h: f32, legend_rows: usize) -> Self {
        let extra_rows = legend_rows.saturating_sub(1) as f32;
        let (ml, mr, mt, mb) = (
            62.0,
            if p.y2_label.is_some() { 62.0 } else { 16.0 },
            28.0,
            64.0 + legend::ROW * extra_rows,
        );
        Area {
            x0,
            y0,
            w,
            px0: x0 + ml,
            px1: x0 + w - mr,
            py0: y0 + mt,
            py1: y0 + h - mb,
        }
    }
}

/// The smallest gap between two bars' x values (the bar width follows it).
fn bar_step(p: &Panel) -> Option<f64> {
    let mut xs: Vec<f64> = p.bars.iter().map(|b| b.x).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let step = xs
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(f64::INFINITY, f64::min);
    match xs.len() {
        0 => None,
        1 => Some(xs[0].abs().max(1.0)),
        _ => Some(step),
    }
}

/// The x axis covers every point and every marker, and a margin beside the outer bars (half
/// a bar's step, at most 8% of the farthest bar's x; never below 0 for bars at x ≥ 0).
fn x_scale(p: &Panel, a: &Area) -> Scale {
    let far = p.bars.iter().map(|b| b.x.abs()).fold(0.0, f64::max);
    let pad = bar_step(p).map_or(0.0, |s| (s / 2.0).min(0.08 * far));
    let floor = |x: f64| {
        if x >= 0.0 {
            (x - pad).max(0.0)
        } else {
            x - pad
        }
    };
    let (lo, hi) = extent(
        p.series
            .iter()
            .flat_map(|s| s.points.iter().map(|q| q.0))
            .chain(p.marks.iter().map(|m| m.0))
            .chain(p.bars.iter().flat_map(|b| [floor(b.x), b.x + pad])),
        false,
        true,
    );
    Scale {
        lo,
        hi,
        log: false,
        p0: a.px0,
        p1: a.px1,
    }
}

/// A y axis covers the points of the series drawn against it; the left one also the
/// reference lines and the bars, or its fixed range.
fn y_scale(p: &Panel, axis: Axis, log: bool, a: &Area) -> Scale {
    let left = axis == Axis::Left;
    let (lo, hi) = match p.y_range {
        Some(r) if left => r,
        _ => extent(
            p.series
                .iter()
                .filter(|s| s.axis == axis)
                .flat_map(|s| s.points.iter().map(|q| q.1))
                .chain(p.hlines.iter().filter(|_| left).map(|h| h.y))
                .chain(
                    p.bars
                        .iter()
                        .filter(|_| left)
                        .map(|b| b.parts.iter().map(|q| q.0).sum()),
                ),
            log,
            true,
        ),
    };
    Scale {
        lo,
        hi,
        log,
        p0: a.py1,
        p1: a.py0,
    }
}

/// The ticks of `s` that fall on the axis.
fn ticks_on(s: &Scale) -> Vec<f64> {
    ticks(s.lo, s.hi, s.log)
        .into_iter()
        .filter(|t| *t >= s.lo && *t <= s.hi)
        .collect()
}

pub(super) fn panel(
    out: &mut Vec<Prim>,
    p: &Panel,
    x0: f32,
    y0: f32,
    w: f32,
    h: f32,
) -> PanelBoxes {
    let entries = legend::items(p);
    let legend_w = w - 2.0 * LEGEND_INSET;
    let a = Area::new(p, x0, y0, w, h, legend::rows(&entries, legend_w));
    let sx = x_scale(p, &a);
    let sy = y_scale(p, Axis::Left, p.log_y, &a);
    out.push(Prim::Rect {
        x: a.px0,
        y: a.py0,
        w: a.px1 - a.px0,
        h: a.py1 - a.py0,
        fill: [255, 255, 255],
        stroke: Some(MUTED),
    });
    left_axis(out, &sy, &a);
    bottom_axis(out, &sx, &a);
    titles(out, p, &a);
    let sy2 = p.y2_label.as_ref().map(|label| {
        let s = y_scale(p, Axis::Right, p.log_y2, &a);
        right_axis(out, &s, label, &a);
        s
    });
    for (x, label) in &p.marks {
        mark(out, sx.map(*x), label, &a);
    }
    bars(out, p, &sx, &sy);
    for h in &p.hlines {
        hline(out, sy.map(h.y), &h.label, h.color, &a);
    }
    for s in &p.series {
        let scale = match (s.axis, &sy2) {
            (Axis::Right, Some(s2)) => s2,
            _ => &sy,
        };
        series(out, s, &sx, scale);
    }
    let legend = legend::draw(out, &entries, x0 + LEGEND_INSET, a.py1 + 52.0, legend_w);
    PanelBoxes {
        panel: [x0, y0, w, h],
        plot: [a.px0, a.py0, a.px1 - a.px0, a.py1 - a.py0],
        legend,
    }
}

/// A reference line across the plot, labelled at its right end above the line.
fn hline(out: &mut Vec<Prim>, py: f32, label: &str, color: [u8; 3], a: &Area) {
    out.push(Prim::Line {
        pts: vec![(a.px0, py), (a.px1, py)],
        color,
        width: 1.3,
        dash: true,
    });
    text(
        out,
        a.px1 - 4.0,
        py - 4.0,
        10.5,
        label,
        Anchor::End,
        color,
        false,
    );
}

/// Stacked bars, parts bottom up, each bar's label over it.
fn bars(out: &mut Vec<Prim>, p: &Panel, sx: &Scale, sy: &Scale) {
    let Some(step) = bar_step(p) else { return };
    let widest = ((sx.map(step) - sx.map(0.0)).abs() * 0.6).clamp(4.0, 44.0);
    for b in &p.bars {
        let cx = sx.map(b.x);
        // a bar near an end of the axis stays inside the plot
        let bw = widest
            .min(2.0 * (cx - sx.p0).min(sx.p1 - cx) - 2.0)
            .max(2.0);
        let mut base = 0.0;
        for (v, color) in &b.parts {
            let (y0, y1) = (sy.map(base), sy.map(base + v));
            if y0 - y1 > 0.0 {
                out.push(Prim::Rect {
                    x: cx - bw / 2.0,
                    y: y1,
                    w: bw,
                    h: y0 - y1,
                    fill: *color,
                    stroke: None,
                });
            }
            base += v;
        }
        text(
            out,
            cx,
            sy.map(base) - 4.0,
            10.0,
            &b.label,
            Anchor::Middle,
            INK,
            false,
        );
    }
}

/// Tick labels on the left, with a grid line across the plot at each.
fn left_axis(out: &mut Vec<Prim>, sy: &Scale, a: &Area) {
    for t in ticks_on(sy) {
        let y = sy.map(t);
        out.push(Prim::Line {
            pts: vec![(a.px0, y), (a.px1, y)],
            color: GRID,
            width: 1.0,
            dash: false,
        });
        text(
            out,
            a.px0 - 6.0,
            y + 4.0,
            11.0,
            &fmt_tick(t),
            Anchor::End,
            INK,
            false,
        );
    }
}

fn bottom_axis(out: &mut Vec<Prim>, sx: &Scale, a: &Area) {
    for t in ticks_on(sx) {
        let x = sx.map(t);
        out.push(Prim::Line {
            pts: vec![(x, a.py1), (x, a.py1 + 4.0)],
            color: MUTED,
            width: 1.0,
            dash: false,
        });
        text(
            out,
            x,
            a.py1 + 17.0,
            11.0,
            &fmt_tick(t),
            Anchor::Middle,
            INK,
            false,
        );
    }
}

/// The panel's title, and the labels of its x and left y axes.
fn titles(out: &mut Vec<Prim>, p: &Panel, a: &Area) {
    text(
        out,
        (a.px0 + a.px1) / 2.0,
        a.y0 + 18.0,
        13.0,
        &p.title,
        Anchor::Middle,
        INK,
        false,
    );
    text(
        out,
        (a.px0 + a.px1) / 2.0,
        a.py1 + 34.0,
        12.0,
        &p.x_label,
        Anchor::Middle,
        INK,
        false,
    );
    text(
        out,
        a.x0 + 14.0,
        (a.py0 + a.py1) / 2.0,
        12.0,
        &p.y_label,
        Anchor::Middle,
        INK,
        true,
    );
}

/// Tick labels on the right (no grid: the left axis has it), and the axis label.
fn right_axis(out: &mut Vec<Prim>, s: &Scale, label: &str, a: &Area) {
    for t in ticks_on(s) {
        text(
            out,
            a.px1 + 6.0,
            s.map(t) + 4.0,
            11.0,
            &fmt_tick(t),
            Anchor::Start,
            INK,
            false,
        );
    }
    text(
        out,
        a.x0 + a.w - 12.0,
        (a.py0 + a.py1) / 2.0,
        12.0,
        label,
        Anchor::Middle,
        INK,
        true,
    );
}

/// A vertical marker at `px`, labelled at the top.
fn mark(out: &mut Vec<Prim>, px: f32, label: &str, a: &Area) {
    out.push(Prim::Line {
        pts: vec![(px, a.py0), (px, a.py1)],
        color: MUTED,
        width: 1.2,
        dash: true,
    });
    // a label that would run past the plot's right edge goes on the line's left
    let fits = px + 4.0 + 6.5 * label.chars().count() as f32 <= a.px1;
    let (lx, anchor) = if fits {
        (px + 4.0, Anchor::Start)
    } else {
        (px - 4.0, Anchor::End)
    };
    text(out, lx, a.py0 + 13.0, 11.0, label, anchor, MUTED, false);
}

/// A series as its lower-bound arrows, then its line, then a dot per point.
fn series(out: &mut Vec<Prim>, s: &Series, sx: &Scale, scale: &Scale) {
    let color = PALETTE[s.color % PALETTE.len()];
    let drawable = |q: &(f64, f64)| q.0.is_finite() && q.1.is_finite() && (!scale.log || q.1 > 0.0);
    let pts: Vec<(f32, f32)> = s
        .points
        .iter()
        .filter(|q| drawable(q))
        .map(|q| (sx.map(q.0), scale.map(q.1)))
        .collect();
    for (q, _) in s
        .points
        .iter()
        .zip(&s.at_least)
        .filter(|(q, b)| **b && drawable(q))
    {
        arrow_up(out, sx.map(q.0), scale.map(q.1), color);
    }
    if pts.len() > 1 {
        out.push(Prim::Line {
            pts: pts.clone(),
            color,
            width: s.width,
            dash: s.dashed,
        });
    }
    for (x, y) in pts {
        marker(out, s.marker, x, y, s.marker_r, color, s.hollow);
    }
}

/// A marker of shape `m` and radius `r` centred on (x, y).
pub(super) fn marker(
    out: &mut Vec<Prim>,
    m: Marker,
    x: f32,
    y: f32,
    r: f32,
    color: [u8; 3],
    hollow: bool,
) {
    use std::f32::consts::PI;
    let ring = |n: usize, r: f32, turn: f32| -> Vec<(f32, f32)> {
        (0..n)
            .map(|i| {
                let a = turn + 2.0 * PI * i as f32 / n as f32;
                (x + r * a.cos(), y + r * a.sin())
            })
            .collect()
    };
    // a cross or plus: twelve corners of two crossed bars, t their half thickness
    let bars = |t: f32, r: f32, turn: f32| -> Vec<(f32, f32)> {
        let (c, s) = (turn.cos(), turn.sin());
        [
            (t, t),
            (t, r),
            (-t, r),
            (-t, t),
            (-r, t),
            (-r, -t),
            (-t, -t),
            (-t, -r),
            (t, -r),
            (t, -t),
            (r, -t),
            (r, t),
        ]
        .iter()
        .map(|(u, v)| (x + u * c - v * s, y + u * s + v * c))
        .collect()
    };
    let pts = match m {
        Marker::Circle => ring(16, r, 0.0),
        Marker::Square => ring(4, r * 1.25, PI / 4.0),
        Marker::Triangle => ring(3, r * 1.35, -PI / 2.0),
        Marker::TriangleDown => ring(3, r * 1.35, PI / 2.0),
        Marker::Diamond => ring(4, r * 1.35, 0.0),
        Marker::Pentagon => ring(5, r * 1.2, -PI / 2.0),
        Marker::Cross => bars(r * 0.35, r * 1.35, PI / 4.0),
        Marker::Plus => bars(r * 0.35, r * 1.3, 0.0),
    };
    out.push(Prim::Poly {
        pts,
        fill: (!hollow).then_some(color),
        stroke: Some(color),
        width: if hollow { 1.4 } else { 0.8 },
    });
}

/// A lower bound: the true value is above the dot.
pub(super) fn arrow_up(out: &mut Vec<Prim>, x: f32, y: f32, color: [u8; 3]) {
    out.push(Prim::Line {
        pts: vec![(x, y), (x, y - 12.0)],
        color,
        width: 1.5,
        dash: false,
    });
    out.push(Prim::Line {
        pts: vec![(x - 3.5, y - 7.5), (x, y - 12.0), (x + 3.5, y - 7.5)],
        color,
        width: 1.5,
        dash: false,
    });
}
