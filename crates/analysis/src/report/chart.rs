//! Charts as data: a figure of panels with axes, series (lines with markers), stacked bars,
//! reference lines and legends, laid out into drawing primitives (pure); `panel` lays out
//! one panel, `legend` places a legend's entries in rows that never overlap. `draw` turns
//! the primitives into SVG and PNG.

mod legend;
mod panel;

pub use legend::LegendItem;
pub use panel::PanelBoxes;

use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Axis {
    Left,
    Right,
}

/// The shape drawn at each point of a series: several series in one colour family, or
/// lines that coincide, stay apart by their shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
    TriangleDown,
    Cross,
    Pentagon,
    Plus,
}

/// One marker per server configuration, in order (8 distinct shapes).
pub const MARKERS: [Marker; 8] = [
    Marker::Circle,
    Marker::Square,
    Marker::Triangle,
    Marker::Diamond,
    Marker::TriangleDown,
    Marker::Cross,
    Marker::Pentagon,
    Marker::Plus,
];

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
    pub marker: Marker,
    /// Hollow markers (the p99 beside a configuration's filled p50).
    pub hollow: bool,
    /// Line width (px); a later series drawn thinner over an earlier one leaves the earlier
    /// visible around it where the two coincide.
    pub width: f32,
    /// Marker radius (px).
    pub marker_r: f32,
    /// Listed in the legend; a companion line (p99 of a p50) shares its entry.
    pub in_legend: bool,
}

impl Default for Series {
    fn default() -> Self {
        Series {
            name: String::new(),
            points: Vec::new(),
            color: 0,
            axis: Axis::Left,
            dashed: false,
            at_least: Vec::new(),
            marker: Marker::Circle,
            hollow: false,
            width: 2.0,
            marker_r: 3.0,
            in_legend: true,
        }
    }
}

/// A horizontal reference line across the plot (an SLO), against the left axis.
#[derive(Debug, Clone)]
pub struct HLine {
    pub y: f64,
    pub label: String,
    pub color: [u8; 3],
}

/// A stacked bar at `x`: its parts bottom up (value, colour), and a label over it.
#[derive(Debug, Clone)]
pub struct Stack {
    pub x: f64,
    pub parts: Vec<(f64, [u8; 3])>,
    pub label: String,
}

#[derive(Debug, Clone, Default)]
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
    /// Horizontal reference lines (SLOs); the left axis covers them.
    pub hlines: Vec<HLine>,
    /// Stacked bars against the left axis.
    pub bars: Vec<Stack>,
    /// The left axis' range when fixed (a share from 0 to 100%, with room for labels).
    pub y_range: Option<(f64, f64)>,
    /// Legend entries after the series' own (line styles, bar parts).
    pub legend_extra: Vec<LegendItem>,
}

impl Panel {
    /// Rows the legend takes in a panel `width` wide (a figure's height makes room for them).
    pub fn legend_rows(&self, width: f32) -> usize {
        legend::rows(&legend::items(self), width - 2.0 * panel::LEGEND_INSET)
    }
}

#[derive(Debug, Clone)]
pub struct Figure {
    pub title: String,
    pub panels: Vec<Panel>,
    pub width: f32,
    pub height: f32,
    /// Panels per row; 0: all in one row.
    pub columns: usize,
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
    /// A closed polygon (a marker), filled or outlined.
    Poly {
        pts: Vec<(f32, f32)>,
        fill: Option<[u8; 3]>,
        stroke: Option<[u8; 3]>,
        width: f32,
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

/// Ten distinct colours (matplotlib's tab10, reordered so the first six stay as they were).
pub const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [23, 190, 207],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
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
    for (p, (x, y, w, h)) in f.panels.iter().zip(panel_boxes(f)) {
        panel::panel(&mut out, p, x, y, w, h);
    }
    out
}

/// Where each panel, its plot area and its legend entries fall on the figure (for tests
/// and checks: no two legend entries may overlap).
pub fn legend_boxes(f: &Figure) -> Vec<PanelBoxes> {
    let mut scratch = Vec::new();
    f.panels
        .iter()
        .zip(panel_boxes(f))
        .map(|(p, (x, y, w, h))| panel::panel(&mut scratch, p, x, y, w, h))
        .collect()
}

/// Each panel's box (x, y, w, h) on the figure: in rows of `columns`, under the title.
fn panel_boxes(f: &Figure) -> Vec<(f32, f32, f32, f32)> {
    let n = f.panels.len().max(1);
    let cols = if f.columns == 0 { n } else { f.columns.min(n) };
    let rows = n.div_ceil(cols);
    let (pw, ph) = (f.width / cols as f32, (f.height - 34.0) / rows as f32);
    (0..f.panels.len())
        .map(|i| {
            let (r, c) = (i / cols, i % cols);
            (c as f32 * pw, 34.0 + r as f32 * ph, pw, ph)
        })
        .collect()
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
                    at_least,
                    ..Series::default()
                }],
                ..Panel::default()
            }],
            width: 400.0,
            height: 300.0,
            columns: 0,
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
