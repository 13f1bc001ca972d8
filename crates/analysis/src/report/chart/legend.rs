//! A panel's legend: its entries (the series listed in it, then the extra ones: line styles,
//! bar parts) placed left to right in rows under the x-axis label, a row wrapping before an
//! entry would cross the panel's edge, so no two entries overlap however many
//! configurations there are. Widths come from the shipped font's advances, the same the
//! drawing uses.

use super::{INK, Marker, PALETTE, Panel, Prim, text};

/// One legend entry: a sample (a line, with its marker, or a filled box) and its label.
#[derive(Debug, Clone, PartialEq)]
pub struct LegendItem {
    pub label: String,
    pub color: [u8; 3],
    pub dash: bool,
    pub marker: Option<Marker>,
    pub hollow: bool,
    /// A filled box (a bar's part) instead of a line.
    pub swatch: bool,
    /// An arrow up (a lower bound) instead of a line.
    pub arrow: bool,
}

impl LegendItem {
    /// A line style's key, in ink (e.g. "solid: p50").
    pub fn line(label: &str, dash: bool) -> Self {
        LegendItem {
            label: label.into(),
            color: INK,
            dash,
            marker: None,
            hollow: false,
            swatch: false,
            arrow: false,
        }
    }

    /// A bar part's key.
    pub fn swatch(label: &str, color: [u8; 3]) -> Self {
        LegendItem {
            label: label.into(),
            color,
            dash: false,
            marker: None,
            hollow: false,
            swatch: true,
            arrow: false,
        }
    }
}

pub(super) const FONT: f32 = 11.0;
pub(super) const ROW: f32 = 17.0;
const SAMPLE: f32 = 24.0;
const GAP: f32 = 16.0;
/// An entry's box reaches this far above its baseline, and `DESCENT` below.
const ASCENT: f32 = 10.0;
const DESCENT: f32 = 3.0;

/// The panel's entries, in order.
pub(super) fn items(p: &Panel) -> Vec<LegendItem> {
    p.series
        .iter()
        .filter(|s| s.in_legend)
        .map(|s| LegendItem {
            label: s.name.clone(),
            color: PALETTE[s.color % PALETTE.len()],
            dash: s.dashed,
            marker: Some(s.marker),
            hollow: s.hollow,
            swatch: false,
            arrow: false,
        })
        .chain(p.legend_extra.iter().cloned())
        .collect()
}

/// Each entry's place: (row, x) with x from `x0`, wrapping within `width`; and its width.
pub(super) fn place(items: &[LegendItem], width: f32) -> Vec<(usize, f32, f32)> {
    let mut out = Vec::new();
    let (mut row, mut x) = (0, 0.0);
    for it in items {
        let w = SAMPLE + 4.0 + crate::report::draw::text_width(&it.label, FONT);
        if x > 0.0 && x + w > width {
            row += 1;
            x = 0.0;
        }
        out.push((row, x, w));
        x += w + GAP;
    }
    out
}

/// Rows the legend takes.
pub(super) fn rows(items: &[LegendItem], width: f32) -> usize {
    place(items, width).last().map_or(0, |p| p.0 + 1)
}

/// Draw the entries with the first row's baseline at `y`; their boxes (x, y, w, h).
pub(super) fn draw(
    out: &mut Vec<Prim>,
    items: &[LegendItem],
    x0: f32,
    y: f32,
    width: f32,
) -> Vec<[f32; 4]> {
    let mut boxes = Vec::new();
    for (it, (row, dx, w)) in items.iter().zip(place(items, width)) {
        let (lx, ly) = (x0 + dx, y + row as f32 * ROW);
        if it.arrow {
            super::panel::arrow_up(out, lx + SAMPLE / 2.0, ly + 2.0, it.color);
        } else if it.swatch {
            out.push(Prim::Rect {
                x: lx + 4.0,
                y: ly - 9.0,
                w: 16.0,
                h: 10.0,
                fill: it.color,
                stroke: None,
            });
        } else {
            out.push(Prim::Line {
                pts: vec![(lx, ly - 4.0), (lx + SAMPLE - 2.0, ly - 4.0)],
                color: it.color,
                width: 2.0,
                dash: it.dash,
            });
            if let Some(m) = it.marker {
                super::panel::marker(
                    out,
                    m,
                    lx + SAMPLE / 2.0 - 1.0,
                    ly - 4.0,
                    3.5,
                    it.color,
                    it.hollow,
                );
            }
        }
        text(
            out,
            lx + SAMPLE + 4.0,
            ly,
            FONT,
            &it.label,
            super::Anchor::Start,
            INK,
            false,
        );
        boxes.push([lx, ly - ASCENT, w, ASCENT + DESCENT]);
    }
    boxes
}
