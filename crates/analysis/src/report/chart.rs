//! Charts as data: a figure of panels with axes, series and markers, laid out into drawing
//! primitives (pure). `draw` turns the primitives into SVG and PNG.

use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Axis {
    Left,
    Right,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: usize,
    pub axis: Axis,
    pub dashed: bool,
    /// Per point: only a lower bound is known (requests were cut off); drawn with an arrow
    /// pointing up. Empty: every point is a value.
    pub at_least: Vec<bool>,
}

#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub y2_label: Option<String>,
    pub log_y2: bool,
    pub log_y: bool,
    pub series: Vec<Series>,
    /// Vertical markers (x, label), e.g. the saturation point.
    pub marks: Vec<(f64, String)>,
}

#[derive(Debug, Clone)]
pub struct Figure {
    pub title: String,
    pub panels: Vec<Panel>,
    pub width: f32,
    pub height: f32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Prim {
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        fill: [u8; 3],
        stroke: Option<[u8; 3]>,
    },
    Line {
        pts: Vec<(f32, f32)>,
        color: [u8; 3],
        width: f32,
        dash: bool,
    },
    Dot {
        x: f32,
        y: f32,
        r: f32,
        color: [u8; 3],
    },
    Text {
        x: f32,
        y: f32,
        size: f32,
        text: String,
        anchor: Anchor,
        color: [u8; 3],
        vertical: bool,
    },
}

pub const PALETTE: [[u8; 3]; 6] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [23, 190, 207],
];
const INK: [u8; 3] = [30, 30, 30];
const GRID: [u8; 3] = [225, 225, 225];
const MUTED: [u8; 3] = [110, 110, 110];

/// Round tick positions covering [lo, hi] (1-2-5 steps), or decades on a log axis.
pub fn ticks(lo: f64, hi: f64, log: bool) -> Vec<f64> {
    if log {
        let (a, b) = (
            lo.max(1e-9).log10().floor() as i32,
            hi.max(1e-9).log10().ceil() as i32,
        );
        return (a..=b).map(|e| 10f64.powi(e)).collect();
    }
    let span = (hi - lo).max(1e-9);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * mag);
    let start = (lo / step).floor() * step;
    let mut out = Vec::new();
    let mut t = start;
    while t <= hi + step * 1e-6 {
        out.push(t);
        t += step;
    }
    out
}

pub fn fmt_tick(v: f64) -> String {
    let a = v.abs();
    if a >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if a >= 1.0 || v == 0.0 {
        let mut s = format!("{v:.1}");
        if s.ends_with(".0") {
            s.truncate(s.len() - 2);
        }
        s
    } else {
        format!("{v:.2}")
    }
}

struct Scale {
    lo: f64,
    hi: f64,
    log: bool,
    p0: f32,
    p1: f32,
}

impl Scale {
    fn map(&self, v: f64) -> f32 {
        let (lo, hi, v) = if self.log {
            (self.lo.log10(), self.hi.log10(), v.max(self.lo).log10())
        } else {
            (self.lo, self.hi, v)
        };
        let f = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
        self.p0 + (self.p1 - self.p0) * f as f32
    }
}

fn extent(vals: impl Iterator<Item = f64>, log: bool, zero: bool) -> (f64, f64) {
    let v: Vec<f64> = vals
        .filter(|x| x.is_finite() && (!log || *x > 0.0))
        .collect();
    if v.is_empty() {
        return if log { (1.0, 10.0) } else { (0.0, 1.0) };
    }
    let (mut lo, mut hi) = (
        v.iter().cloned().fold(f64::INFINITY, f64::min),
        v.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
    );
    if log {
        lo = 10f64.powf(lo.log10().floor());
        hi = 10f64.powf(hi.log10().ceil());
        if hi <= lo {
            hi = lo * 10.0;
        }
        return (lo, hi);
    }
    if zero {
        lo = lo.min(0.0);
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    // widen to whole tick steps so no point falls outside the axis
    let t = ticks(lo, hi, false);
    let step = if t.len() > 1 { t[1] - t[0] } else { hi - lo };
    ((lo / step).floor() * step, (hi / step).ceil() * step)
}

#[allow(clippy::too_many_arguments)] // a text primitive is its eight properties
fn text(
    out: &mut Vec<Prim>,
    x: f32,
    y: f32,
    size: f32,
    s: &str,
    anchor: Anchor,
    color: [u8; 3],
    vertical: bool,
) {
    out.push(Prim::Text {
        x,
        y,
        size,
        text: s.to_string(),
        anchor,
        color,
        vertical,
    });
}

fn panel(out: &mut Vec<Prim>, p: &Panel, x0: f32, y0: f32, w: f32, h: f32) {
    let (ml, mr, mt, mb) = (
        62.0,
        if p.y2_label.is_some() { 62.0 } else { 16.0 },
        28.0,
        64.0,
    );
    let (px0, px1, py0, py1) = (x0 + ml, x0 + w - mr, y0 + mt, y0 + h - mb);
    let (xlo, xhi) = extent(
        p.series
            .iter()
            .flat_map(|s| s.points.iter().map(|q| q.0))
            .chain(p.marks.iter().map(|m| m.0)),
        false,
        true,
    );
    let y_of = |axis: Axis| {
        p.series
            .iter()
            .filter(move |s| s.axis == axis)
            .flat_map(|s| s.points.iter().map(|q| q.1))
    };
    let (ylo, yhi) = extent(y_of(Axis::Left), p.log_y, true);
    let sx = Scale {
        lo: xlo,
        hi: xhi,
        log: false,
        p0: px0,
        p1: px1,
    };
    let sy = Scale {
        lo: ylo,
        hi: yhi,
        log: p.log_y,
        p0: py1,
        p1: py0,
    };
    out.push(Prim::Rect {
        x: px0,
        y: py0,
        w: px1 - px0,
        h: py1 - py0,
        fill: [255, 255, 255],
        stroke: Some(MUTED),
    });
    for t in ticks(ylo, yhi, p.log_y)
        .into_iter()
        .filter(|t| *t >= ylo && *t <= yhi)
    {
        let y = sy.map(t);
        out.push(Prim::Line {
            pts: vec![(px0, y), (px1, y)],
            color: GRID,
            width: 1.0,
            dash: false,
        });
        text(
            out,
            px0 - 6.0,
            y + 4.0,
            11.0,
            &fmt_tick(t),
            Anchor::End,
            INK,
            false,
        );
    }
    for t in ticks(xlo, xhi, false)
        .into_iter()
        .filter(|t| *t >= xlo && *t <= xhi)
    {
        let x = sx.map(t);
        out.push(Prim::Line {
            pts: vec![(x, py1), (x, py1 + 4.0)],
            color: MUTED,
            width: 1.0,
            dash: false,
        });
        text(
            out,
            x,
            py1 + 17.0,
            11.0,
            &fmt_tick(t),
            Anchor::Middle,
            INK,
            false,
        );
    }
    text(
        out,
        (px0 + px1) / 2.0,
        y0 + 18.0,
        13.0,
        &p.title,
        Anchor::Middle,
        INK,
        false,
    );
    text(
        out,
        (px0 + px1) / 2.0,
        py1 + 34.0,
        12.0,
        &p.x_label,
        Anchor::Middle,
        INK,
        false,
    );
    text(
        out,
        x0 + 14.0,
        (py0 + py1) / 2.0,
        12.0,
        &p.y_label,
        Anchor::Middle,
        INK,
        true,
    );
    let sy2 = p.y2_label.as_ref().map(|label| {
        let (lo, hi) = extent(y_of(Axis::Right), p.log_y2, true);
        let s = Scale {
            lo,
            hi,
            log: p.log_y2,
            p0: py1,
            p1: py0,
        };
        for t in ticks(lo, hi, p.log_y2)
            .into_iter()
            .filter(|t| *t >= lo && *t <= hi)
        {
            text(
                out,
                px1 + 6.0,
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
            x0 + w - 12.0,
            (py0 + py1) / 2.0,
            12.0,
            label,
            Anchor::Middle,
            INK,
            true,
        );
        s
    });
    for (x, label) in &p.marks {
        let px = sx.map(*x);
        out.push(Prim::Line {
            pts: vec![(px, py0), (px, py1)],
            color: MUTED,
            width: 1.2,
            dash: true,
        });
        // a label that would run past the plot's right edge goes on the line's left
        let fits = px + 4.0 + 6.5 * label.chars().count() as f32 <= px1;
        let (lx, anchor) = if fits {
            (px + 4.0, Anchor::Start)
        } else {
            (px - 4.0, Anchor::End)
        };
        text(out, lx, py0 + 13.0, 11.0, label, anchor, MUTED, false);
    }
    for s in &p.series {
        let scale = match (s.axis, &sy2) {
            (Axis::Right, Some(s2)) => s2,
            _ => &sy,
        };
        let color = PALETTE[s.color % PALETTE.len()];
        let drawable =
            |q: &(f64, f64)| q.0.is_finite() && q.1.is_finite() && (!scale.log || q.1 > 0.0);
        let pts: Vec<(f32, f32)> = s
            .points
            .iter()
            .filter(|q| drawable(q))
            .map(|q| (sx.map(q.0), scale.map(q.1)))
            .collect();
        // a lower bound: the true value is above the dot
        for (q, _) in s
            .points
            .iter()
            .zip(&s.at_least)
            .filter(|(q, b)| **b && drawable(q))
        {
            let (x, y) = (sx.map(q.0), scale.map(q.1));
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
    // legend under the x label
    let mut lx = px0;
    let ly = py1 + 52.0;
    for s in &p.series {
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

/// Lay out a figure: panels side by side under a title.
pub fn layout(f: &Figure) -> Vec<Prim> {
    let mut out = vec![Prim::Rect {
        x: 0.0,
        y: 0.0,
        w: f.width,
        h: f.height,
        fill: [255, 255, 255],
        stroke: None,
    }];
    text(
        &mut out,
        f.width / 2.0,
        24.0,
        15.0,
        &f.title,
        Anchor::Middle,
        INK,
        false,
    );
    let n = f.panels.len().max(1) as f32;
    let pw = f.width / n;
    for (i, p) in f.panels.iter().enumerate() {
        panel(&mut out, p, i as f32 * pw, 34.0, pw, f.height - 34.0);
    }
    out
}

/// Every string drawn, for accessibility metadata and tests.
pub fn texts(prims: &[Prim]) -> String {
    let mut s = String::new();
    for p in prims {
        if let Prim::Text { text, .. } = p {
            let _ = writeln!(s, "{text}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            ticks(0.0, 60.0, false),
            vec![0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
        );
        assert_eq!(ticks(0.0, 13.7, false), vec![0.0, 5.0, 10.0]);
        // the axis is widened to whole steps, so 13.7 is inside it
        assert_eq!(extent([2.0, 13.7].into_iter(), false, true), (0.0, 15.0));
        assert_eq!(
            extent([87.0, 6900.0].into_iter(), true, false),
            (10.0, 10000.0)
        );
        assert_eq!(
            ticks(80.0, 7000.0, true),
            vec![10.0, 100.0, 1000.0, 10000.0]
        );
        assert_eq!(fmt_tick(2.5), "2.5");
        assert_eq!(fmt_tick(20.0), "20");
    }

    #[test]
    fn a_lower_bound_is_drawn_with_an_arrow_up() {
        let fig = |at_least: Vec<bool>| Figure {
            title: "t".into(),
            panels: vec![Panel {
                title: "p".into(),
                x_label: "x".into(),
                y_label: "y".into(),
                y2_label: None,
                log_y2: false,
                log_y: false,
                series: vec![Series {
                    name: "s".into(),
                    points: vec![(1.0, 1.0), (2.0, 5.0)],
                    color: 0,
                    axis: Axis::Left,
                    dashed: false,
                    at_least,
                }],
                marks: vec![],
            }],
            width: 400.0,
            height: 300.0,
        };
        let lines = |f: &Figure| {
            layout(f)
                .iter()
                .filter(|p| matches!(p, Prim::Line { .. }))
                .count()
        };
        // one arrow (shaft and head) for the one bounded point
        assert_eq!(lines(&fig(vec![false, true])), lines(&fig(vec![])) + 2);
    }
}
