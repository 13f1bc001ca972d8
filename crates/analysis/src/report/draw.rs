//! Drawing primitives to SVG and PNG. Text becomes glyph outlines from the font shipped in
//! the binary (DejaVu Sans, `assets/fonts/`), so both formats read the same on a machine with
//! no fonts at all; the SVG also carries each string as an `aria-label` and in `<desc>`.

use super::chart::{Anchor, Prim};
use std::fmt::Write;
use std::sync::OnceLock;

static FONT_BYTES: &[u8] = include_bytes!("../../../../assets/fonts/DejaVuSans.ttf");

fn face() -> &'static ttf_parser::Face<'static> {
    static FACE: OnceLock<ttf_parser::Face<'static>> = OnceLock::new();
    FACE.get_or_init(|| ttf_parser::Face::parse(FONT_BYTES, 0).expect("the shipped font parses"))
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Move(f32, f32),
    Line(f32, f32),
    Quad(f32, f32, f32, f32),
    Cubic(f32, f32, f32, f32, f32, f32),
    Close,
}

/// Collects one glyph's outline, placed and scaled (and turned for vertical text).
struct Pen {
    ops: Vec<Op>,
    ox: f32,
    oy: f32,
    scale: f32,
    /// anchor of a vertical string: glyph space is rotated −90° around it
    pivot: Option<(f32, f32)>,
}

impl Pen {
    fn p(&self, x: f32, y: f32) -> (f32, f32) {
        let (px, py) = (self.ox + x * self.scale, self.oy - y * self.scale);
        match self.pivot {
            Some((ax, ay)) => (ax + (py - ay), ay - (px - ax)),
            None => (px, py),
        }
    }
}

impl ttf_parser::OutlineBuilder for Pen {
    fn move_to(&mut self, x: f32, y: f32) {
        let (a, b) = self.p(x, y);
        self.ops.push(Op::Move(a, b));
    }
    fn line_to(&mut self, x: f32, y: f32) {
        let (a, b) = self.p(x, y);
        self.ops.push(Op::Line(a, b));
    }
    fn quad_to(&mut self, x1: f32, y1: f32, x: f32, y: f32) {
        let (a, b) = self.p(x1, y1);
        let (c, d) = self.p(x, y);
        self.ops.push(Op::Quad(a, b, c, d));
    }
    fn curve_to(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, x: f32, y: f32) {
        let (a, b) = self.p(x1, y1);
        let (c, d) = self.p(x2, y2);
        let (e, f) = self.p(x, y);
        self.ops.push(Op::Cubic(a, b, c, d, e, f));
    }
    fn close(&mut self) {
        self.ops.push(Op::Close);
    }
}

/// How wide `text` is at `size` px in the shipped font (the advance of every glyph drawn,
/// a missing one drawn as `?`): what a layout reserves for it.
pub fn text_width(text: &str, size: f32) -> f32 {
    let f = face();
    let scale = size / f.units_per_em() as f32;
    text.chars()
        .filter_map(|c| f.glyph_index(c).or_else(|| f.glyph_index('?')))
        .map(|g| f.glyph_hor_advance(g).unwrap_or(0) as f32 * scale)
        .sum()
}

/// Outline of `text` at (x, y) baseline, `size` px, anchored and optionally vertical.
fn text_ops(x: f32, y: f32, size: f32, text: &str, anchor: Anchor, vertical: bool) -> Vec<Op> {
    let f = face();
    let scale = size / f.units_per_em() as f32;
    let width = text_width(text, size);
    let start = match anchor {
        Anchor::Start => x,
        Anchor::Middle => x - width / 2.0,
        Anchor::End => x - width,
    };
    let mut pen = Pen {
        ops: Vec::new(),
        ox: start,
        oy: y,
        scale,
        pivot: vertical.then_some((x, y)),
    };
    for c in text.chars() {
        let Some(g) = f.glyph_index(c).or_else(|| f.glyph_index('?')) else {
            continue;
        };
        f.outline_glyph(g, &mut pen);
        pen.ox += f.glyph_hor_advance(g).unwrap_or(0) as f32 * scale;
    }
    pen.ops
}

fn rgb(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn svg(prims: &[Prim], width: f32, height: f32, title: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img"><title>{}</title><desc>{}</desc>"#,
        esc(title),
        esc(&super::chart::texts(prims))
    );
    for p in prims {
        match p {
            Prim::Rect {
                x,
                y,
                w,
                h,
                fill,
                stroke,
            } => {
                let _ = write!(
                    s,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{}""#,
                    rgb(*fill)
                );
                if let Some(c) = stroke {
                    let _ = write!(s, r#" stroke="{}""#, rgb(*c));
                }
                s.push_str("/>");
            }
            Prim::Line {
                pts,
                color,
                width,
                dash,
            } => {
                let d: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                let _ = write!(
                    s,
                    r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="{width}"{}/>"#,
                    d.join(" "),
                    rgb(*color),
                    if *dash {
                        r#" stroke-dasharray="6 4""#
                    } else {
                        ""
                    }
                );
            }
            Prim::Dot { x, y, r, color } => {
                let _ = write!(
                    s,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="{r}" fill="{}"/>"#,
                    rgb(*color)
                );
            }
            Prim::Poly {
                pts,
                fill,
                stroke,
                width,
            } => {
                let d: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                let _ = write!(
                    s,
                    r#"<polygon points="{}" fill="{}""#,
                    d.join(" "),
                    fill.map_or("white".to_string(), rgb)
                );
                if let Some(c) = stroke {
                    let _ = write!(s, r#" stroke="{}" stroke-width="{width}""#, rgb(*c));
                }
                s.push_str("/>");
            }
            Prim::Text {
                x,
                y,
                size,
                text,
                anchor,
                color,
                vertical,
            } => {
                let mut d = String::new();
                for op in text_ops(*x, *y, *size, text, *anchor, *vertical) {
                    let _ = match op {
                        Op::Move(a, b) => write!(d, "M{a:.2} {b:.2}"),
                        Op::Line(a, b) => write!(d, "L{a:.2} {b:.2}"),
                        Op::Quad(a, b, c, e) => write!(d, "Q{a:.2} {b:.2} {c:.2} {e:.2}"),
                        Op::Cubic(a, b, c, e, f, g) => {
                            write!(d, "C{a:.2} {b:.2} {c:.2} {e:.2} {f:.2} {g:.2}")
                        }
                        Op::Close => write!(d, "Z"),
                    };
                }
                let _ = write!(
                    s,
                    r#"<g aria-label="{}"><path d="{d}" fill="{}"/></g>"#,
                    esc(text),
                    rgb(*color)
                );
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

/// Rasterise to PNG bytes.
pub fn png(prims: &[Prim], width: f32, height: f32) -> Vec<u8> {
    use tiny_skia::{FillRule, Paint, PathBuilder, Pixmap, Rect, Stroke, StrokeDash, Transform};
    let mut pm = Pixmap::new(width as u32, height as u32).expect("non-zero size");
    let paint = |c: [u8; 3]| {
        let mut p = Paint::default();
        p.set_color_rgba8(c[0], c[1], c[2], 255);
        p.anti_alias = true;
        p
    };
    let t = Transform::identity();
    for p in prims {
        match p {
            Prim::Rect {
                x,
                y,
                w,
                h,
                fill,
                stroke,
            } => {
                if let Some(r) = Rect::from_xywh(*x, *y, *w, *h) {
                    pm.fill_rect(r, &paint(*fill), t, None);
                    if let Some(c) = stroke {
                        let path = PathBuilder::from_rect(r);
                        pm.stroke_path(&path, &paint(*c), &Stroke::default(), t, None);
                    }
                }
            }
            Prim::Line {
                pts,
                color,
                width,
                dash,
            } => {
                let mut pb = PathBuilder::new();
                for (i, (x, y)) in pts.iter().enumerate() {
                    if i == 0 {
                        pb.move_to(*x, *y);
                    } else {
                        pb.line_to(*x, *y);
                    }
                }
                if let Some(path) = pb.finish() {
                    let stroke = Stroke {
                        width: *width,
                        dash: if *dash {
                            StrokeDash::new(vec![6.0, 4.0], 0.0)
                        } else {
                            None
                        },
                        ..Stroke::default()
                    };
                    pm.stroke_path(&path, &paint(*color), &stroke, t, None);
                }
            }
            Prim::Dot { x, y, r, color } => {
                if let Some(path) = PathBuilder::from_circle(*x, *y, *r) {
                    pm.fill_path(&path, &paint(*color), FillRule::Winding, t, None);
                }
            }
            Prim::Poly {
                pts,
                fill,
                stroke,
                width,
            } => {
                let mut pb = PathBuilder::new();
                for (i, (x, y)) in pts.iter().enumerate() {
                    if i == 0 {
                        pb.move_to(*x, *y);
                    } else {
                        pb.line_to(*x, *y);
                    }
                }
                pb.close();
                if let Some(path) = pb.finish() {
                    // a hollow marker is white inside, so a line under it does not show through
                    pm.fill_path(
                        &path,
                        &paint(fill.unwrap_or([255, 255, 255])),
                        FillRule::Winding,
                        t,
                        None,
                    );
                    if let Some(c) = stroke {
                        let stroke = Stroke {
                            width: *width,
                            ..Stroke::default()
                        };
                        pm.stroke_path(&path, &paint(*c), &stroke, t, None);
                    }
                }
            }
            Prim::Text {
                x,
                y,
                size,
                text,
                anchor,
                color,
                vertical,
            } => {
                let mut pb = PathBuilder::new();
                for op in text_ops(*x, *y, *size, text, *anchor, *vertical) {
                    match op {
                        Op::Move(a, b) => pb.move_to(a, b),
                        Op::Line(a, b) => pb.line_to(a, b),
                        Op::Quad(a, b, c, d) => pb.quad_to(a, b, c, d),
                        Op::Cubic(a, b, c, d, e, f) => pb.cubic_to(a, b, c, d, e, f),
                        Op::Close => pb.close(),
                    }
                }
                if let Some(path) = pb.finish() {
                    pm.fill_path(&path, &paint(*color), FillRule::Winding, t, None);
                }
            }
        }
    }
    pm.encode_png()
        .expect("PNG encoding of an in-memory pixmap")
}

#[cfg(test)]
mod tests {
    use super::super::chart::{Anchor, Prim};

    #[test]
    fn text_becomes_ink_in_the_png_and_a_label_in_the_svg() {
        let prims = vec![
            Prim::Rect {
                x: 0.0,
                y: 0.0,
                w: 200.0,
                h: 60.0,
                fill: [255, 255, 255],
                stroke: None,
            },
            Prim::Text {
                x: 10.0,
                y: 40.0,
                size: 24.0,
                text: "TTFT (ms)".into(),
                anchor: Anchor::Start,
                color: [0, 0, 0],
                vertical: false,
            },
        ];
        let svg = super::svg(&prims, 200.0, 60.0, "t");
        assert!(svg.contains(r#"aria-label="TTFT (ms)""#) && svg.contains("<path d=\"M"));
        let png = super::png(&prims, 200.0, 60.0);
        assert_eq!(&png[1..4], b"PNG");
        // IHDR: width and height, big-endian, at bytes 16..24
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 200);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 60);
        let blank = super::png(&prims[..1], 200.0, 60.0);
        assert!(png.len() > blank.len() + 200, "text adds ink");
    }
}
