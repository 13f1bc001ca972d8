//! One panel laid out: its plot area inside the margins, the axes with their ticks and
//! labels, the markers, the series (lower bounds as arrows up) and the legend.

use super::{
    Anchor, Axis, GRID, INK, MUTED, PALETTE, Panel, Prim, Scale, Series, extent, fmt_tick, text,
    ticks,
};

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

impl Area {
    fn new(p: &Panel, x0: f32, y0: f32, w: f32, h: f32) -> Self {
        let (ml, mr, mt, mb) = (
            62.0,
            if p.y2_label.is_some() { 62.0 } else { 16.0 },
            28.0,
            64.0,
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

/// The x axis covers every point and every marker.
fn x_scale(p: &Panel, a: &Area) -> Scale {
    let (lo, hi) = extent(
        p.series
            .iter()
            .flat_map(|s| s.points.iter().map(|q| q.0))
            .chain(p.marks.iter().map(|m| m.0)),
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

/// A y axis covers the points of the series drawn against it.
fn y_scale(p: &Panel, axis: Axis, log: bool, a: &Area) -> Scale {
    let (lo, hi) = extent(
        p.series
            .iter()
            .filter(|s| s.axis == axis)
            .flat_map(|s| s.points.iter().map(|q| q.1)),
        log,
        true,
    );
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

pub(super) fn panel(out: &mut Vec<Prim>, p: &Panel, x0: f32, y0: f32, w: f32, h: f32) {
    let a = Area::new(p, x0, y0, w, h);
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
    for s in &p.series {
        let scale = match (s.axis, &sy2) {
            (Axis::Right, Some(s2)) => s2,
            _ => &sy,
        };
        series(out, s, &sx, scale);
    }
    legend(out, &p.series, &a);
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
            width: 2.0,
            dash: s.dashed,
        });
    }
    for (x, y) in pts {
        out.push(Prim::Dot {
            x,
            y,
            r: 3.0,
            color,
        });
    }
}

/// A lower bound: the true value is above the dot.
fn arrow_up(out: &mut Vec<Prim>, x: f32, y: f32, color: [u8; 3]) {
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

/// The legend, in a row under the x label.
fn legend(out: &mut Vec<Prim>, series: &[Series], a: &Area) {
    let mut lx = a.px0;
    let ly = a.py1 + 52.0;
    for s in series {
        let color = PALETTE[s.color % PALETTE.len()];
        out.push(Prim::Line {
            pts: vec![(lx, ly - 4.0), (lx + 18.0, ly - 4.0)],
            color,
            width: 2.0,
            dash: s.dashed,
        });
        text(out, lx + 22.0, ly, 11.0, &s.name, Anchor::Start, INK, false);
        lx += 30.0 + 6.5 * s.name.chars().count() as f32;
    }
}
