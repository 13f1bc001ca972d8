//! `report.md`: the report model as Markdown.

use super::model::{Report, Section, Table};
use std::io::{self, Write};

fn table(w: &mut impl Write, t: &Table) -> io::Result<()> {
    let esc = |s: &str| s.replace('|', "\\|");
    writeln!(
        w,
        "| {} |",
        t.header
            .iter()
            .map(|h| esc(h))
            .collect::<Vec<_>>()
            .join(" | ")
    )?;
    writeln!(
        w,
        "|{}",
        t.header.iter().map(|_| "---|").collect::<String>()
    )?;
    for r in &t.rows {
        writeln!(
            w,
            "| {} |",
            r.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
        )?;
    }
    writeln!(w)
}

pub fn render(w: &mut impl Write, r: &Report) -> io::Result<()> {
    writeln!(w, "# {}\n", r.title)?;
    if let Some(d) = &r.description {
        writeln!(w, "{}\n", d.trim())?;
    }
    writeln!(w, "## Executive summary\n")?;
    for s in &r.executive_summary {
        writeln!(w, "- {s}")?;
    }
    writeln!(w)?;
    for s in &r.sections {
        section(w, s)?;
    }
    writeln!(w, "---\n{}", r.generated_at)
}

/// One section: its title (`##`), paragraphs, figures and tables.
pub fn section(w: &mut impl Write, s: &Section) -> io::Result<()> {
    writeln!(w, "## {}\n", s.title)?;
    for p in &s.paragraphs {
        writeln!(w, "{p}\n")?;
    }
    for (stem, caption) in &s.figures {
        writeln!(w, "![{caption}](figs/{stem}.png)\n")?;
    }
    for t in &s.tables {
        table(w, t)?;
    }
    Ok(())
}
