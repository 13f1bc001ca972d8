//! `report.html`: the report model as one self-contained page (inline style, no scripts, no
//! network).

use super::model::Report;
use std::io::{self, Write};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Inline `code` spans of the model's text as <code>.
fn inline(s: &str) -> String {
    let e = esc(s);
    let mut out = String::new();
    for (i, part) in e.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<code>{part}</code>"));
        } else {
            out.push_str(part);
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1a1a1a;line-height:1.45}\
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}\
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}code{background:#f3f3f3;padding:0 .2em}\
.summary li{margin:.3em 0}figure{margin:1em 0}figure svg{max-width:100%;height:auto}figcaption{color:#555;font-size:.9em}.foot{color:#777;font-size:.85em;margin-top:2em}";

/// `svgs`: the charts' SVG text by file stem, inlined so the page needs nothing else.
pub fn render(
    w: &mut impl Write,
    r: &Report,
    svgs: &std::collections::BTreeMap<String, String>,
) -> io::Result<()> {
    writeln!(
        w,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>",
        esc(&r.title)
    )?;
    writeln!(w, "<h1>{}</h1>", esc(&r.title))?;
    if let Some(d) = &r.description {
        writeln!(w, "<p>{}</p>", inline(d.trim()))?;
    }
    writeln!(w, "<h2>Executive summary</h2><ul class=\"summary\">")?;
    for s in &r.executive_summary {
        writeln!(w, "<li>{}</li>", inline(s))?;
    }
    writeln!(w, "</ul>")?;
    for s in &r.sections {
        writeln!(w, "<h2>{}</h2>", esc(&s.title))?;
        for p in &s.paragraphs {
            writeln!(w, "<p>{}</p>", inline(p))?;
        }
        for (stem, caption) in &s.figures {
            if let Some(svg) = svgs.get(stem) {
                writeln!(
                    w,
                    "<figure>{svg}<figcaption>{}</figcaption></figure>",
                    esc(caption)
                )?;
            }
        }
        for t in &s.tables {
            write!(w, "<table><tr>")?;
            for h in &t.header {
                write!(w, "<th>{}</th>", esc(h))?;
            }
            writeln!(w, "</tr>")?;
            for row in &t.rows {
                write!(w, "<tr>")?;
                for c in row {
                    write!(w, "<td>{}</td>", esc(c))?;
                }
                writeln!(w, "</tr>")?;
            }
            writeln!(w, "</table>")?;
        }
    }
    writeln!(
        w,
        "<p class=\"foot\">{}</p></body></html>",
        esc(&r.generated_at)
    )
}
