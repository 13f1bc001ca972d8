//! The report model: every sentence and table of the report, computed once from the analysis
//! and the run's metadata. The renderers (Markdown, HTML, terminal) only lay it out. Pure.

use super::figures;
use crate::analysis::saturation::{GroupFinding, Reason, Saturation};
use crate::analysis::scaling::{ScalingFinding, ScalingRow, fmt_rate};
use crate::analysis::{Analysis, CellInput, Point};
use crate::latency_breakdown::{self, Phases, TtftSplit};
use crate::stats::survival::Figure;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Section {
    pub title: String,
    pub paragraphs: Vec<String>,
    /// Charts shown in this section: (file stem under `figs/`, caption).
    pub figures: Vec<(String, String)>,
    pub tables: Vec<Table>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub title: String,
    pub description: Option<String>,
    pub executive_summary: Vec<String>,
    pub sections: Vec<Section>,
    /// `generated at …` line; the only part that changes between two renders of the same data.
    pub generated_at: String,
}

/// What the report says about the run itself.
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    pub experiment: String,
    pub description: Option<String>,
    pub tool: String,
    pub host: String,
    pub cpu: String,
    pub started_at: String,
    pub finished_at: String,
    pub status: String,
    pub server_versions: Vec<(String, String)>,
    pub launcher: String,
    pub workload: String,
    pub load: String,
    pub slo: Option<String>,
    /// The cells ran in the simulator's virtual time: every figure is a prediction.
    pub predicted: bool,
    /// For a predicted run: per server configuration, what it was predicted with and how
    /// far that is known to miss (sentences).
    pub prediction_basis: Vec<String>,
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(x) if x >= 1000.0 => format!("{:.0} ms", x),
        Some(x) => format!("{x:.1} ms"),
        None => "-".into(),
    }
}

fn group_label(g: &GroupFinding) -> String {
    // DP ranks are GPUs on a GPU server, engines on vLLM's CPU build or the simulator
    let gpus = if g.dp == 1 {
        "1 engine".to_string()
    } else {
        format!("{} engines", g.dp)
    };
    if g.family == "all" {
        format!("{gpus} (dp={})", g.dp)
    } else {
        format!("{gpus} (dp={}, {})", g.dp, g.family)
    }
}

/// A TTFT figure: `> x` when only a lower bound is known.
fn fig(v: Option<Figure>) -> String {
    match v {
        Some(f) if f.lower_bound => format!("> {}", ms(Some(f.value))),
        Some(f) => ms(Some(f.value)),
        None => "-".into(),
    }
}

fn saturation_sentence(g: &GroupFinding) -> String {
    match &g.saturation {
        Some(s) => saturated_sentence(g, s),
        None => unsaturated_sentence(g),
    }
}

/// The plateau, where the onset lies, why it is called saturation, and the TTFT blow-up.
fn saturated_sentence(g: &GroupFinding, s: &Saturation) -> String {
    let why: Vec<&str> = s
        .reasons
        .iter()
        .map(|r| match r {
            Reason::Throughput => "throughput stopped following the offered load",
            Reason::Ttft => "TTFT passed 3× its low-load value",
            Reason::Queue => "the waiting queue kept growing",
        })
        .collect();
    format!(
        "{}: {}; {} ({}).{}",
        group_label(g),
        capacity_phrase(s),
        onset_phrase(s),
        why.join(", "),
        ttft_blowup(g, s)
    )
}

fn capacity_phrase(s: &Saturation) -> String {
    if s.capacity_is_lower_bound {
        format!(
            "capacity at least {:.1} req/s (the output-token rate was still rising in the window, so the plateau is a lower bound; lengthen the warm-up)",
            s.capacity
        )
    } else {
        format!("capacity {:.1} req/s (the plateau)", s.capacity)
    }
}

fn onset_phrase(s: &Saturation) -> String {
    match (s.kept_up, s.onset_estimate) {
        (Some(k), Some(e)) => format!(
            "it falls behind between {} and {} req/s offered, near {e:.1} req/s where the offered load meets the plateau",
            fmt_rate(k),
            fmt_rate(s.offered)
        ),
        (Some(k), None) => format!(
            "it falls behind between {} and {} req/s offered",
            fmt_rate(k),
            fmt_rate(s.offered)
        ),
        (None, _) => format!(
            "it was already behind at {} req/s, the lowest rate tested (test lower rates to place the onset)",
            fmt_rate(s.offered)
        ),
    }
}

/// TTFT past saturation against its low-load value (the lowest rate's); empty when either is
/// unknown, or when the point past saturation is that lowest rate itself.
fn ttft_blowup(g: &GroupFinding, s: &Saturation) -> String {
    let first = g.points.first().map(|p| p.offered);
    match (g.low_load_ttft_ms, s.after.ttft_p50_ms) {
        (Some(lo), Some(hi)) if lo > 0.0 && first != Some(s.after.offered) => format!(
            " TTFT p50 rises from {} to {} ({}{:.0}×) at {} req/s offered.",
            ms(Some(lo)),
            fig(Some(hi)),
            if hi.lower_bound { "over " } else { "" },
            hi.value / lo,
            fmt_rate(s.after.offered)
        ),
        _ => String::new(),
    }
}

fn unsaturated_sentence(g: &GroupFinding) -> String {
    let top = g.points.last();
    let mut s = format!(
        "{} did not saturate in the tested range: it kept up with {} req/s offered ({:.1} req/s achieved, TTFT p50 {}); its capacity is above that, so there is no plateau to report.",
        group_label(g),
        top.map_or("-".into(), |p| fmt_rate(p.offered)),
        top.map_or(0.0, |p| p.achieved),
        fig(top.and_then(|p| p.ttft_p50_ms))
    );
    if g.short_of_offered_without_engine_queue {
        s.push_str(" Achieved fell short of what arrived in the window while the engines' queues stayed empty: the requests never reached the engines in time (a client or API-server limit), or the window was too short to count their completions (see the cells' warnings); either way not the server's limit.");
    }
    s
}

fn scaling_sentence(f: &ScalingFinding) -> Vec<String> {
    let mut out = Vec::new();
    let base = &f.rows[0];
    for r in f.rows.iter().skip(1) {
        if r.is_result(base) {
            out.push(format!(
                "dp={} vs dp={}{}: {:.2}× the plateau ({:.1} vs {:.1} req/s), {:.0}% scaling efficiency{}.",
                r.dp,
                base.dp,
                if f.family == "all" { String::new() } else { format!(" ({})", f.family) },
                r.speedup,
                r.max_throughput,
                base.max_throughput,
                r.efficiency * 100.0,
                r.matched_load_efficiency
                    .map(|m| format!("; at matched per-replica load {:.0}%", m * 100.0))
                    .unwrap_or_default()
            ));
        }
    }
    out.extend(f.warnings.iter().cloned());
    if let Some(u) = &f.usl {
        out.push(format!(
            "Universal Scalability Law fit: σ = {:.3}, κ = {:.4}{}.",
            u.sigma,
            u.kappa,
            u.peak_n
                .map(|n| format!(", throughput would peak near {n:.0}× dp={}", f.base_dp))
                .unwrap_or_default()
        ));
    }
    out
}

/// A ramp cell's probe, for the report: its id, its ramp in words, what it found.
#[derive(Debug, Clone)]
pub struct RampCell {
    pub cell: String,
    pub ramp: String,
    pub probe: crate::analysis::ramp::RampProbe,
}

/// `server_chart`: the stem and cell of the server-over-time chart, when one was drawn;
/// `ramps`: the ramp cells' probes.
pub fn build(
    facts: &RunFacts,
    analysis: &Analysis,
    cells: &[CellInput],
    server_chart: Option<(String, String)>,
    ramps: &[RampCell],
    generated_at: String,
) -> Report {
    let mut sections = vec![experiment_section(facts, cells.len())];
    sections.extend(ramps.iter().map(ramp_section));
    sections.extend(super::search_text::section(&analysis.searches));
    sections.extend(analysis.groups.iter().map(saturation_section));
    sections.extend(analysis.scaling.iter().map(scaling_section));
    sections.push(by_configuration_section(analysis.groups.len()));
    sections.push(breakdown_section(analysis, cells));
    if let Some((stem, cell)) = server_chart {
        sections.push(server_section(stem, &cell));
    }
    sections.push(verdicts_section(analysis));
    if cells.iter().any(|c| !c.per_turn.is_empty()) {
        sections.push(turns_section(cells));
    }
    sections.push(cells_section(cells));
    let mut executive = executive_summary(facts, analysis);
    executive.splice(0..0, ramps.iter().map(ramp_sentence));
    if facts.predicted {
        executive.insert(0, format!(
            "Predicted, not measured: every figure here comes from the {}, not from a server under load.",
            facts.launcher
        ));
        executive.splice(1..1, facts.prediction_basis.iter().cloned());
    }
    Report {
        title: match facts.predicted {
            true => format!(
                "{}: predicted load test report (virtual time)",
                facts.experiment
            ),
            false => format!("{}: load test report", facts.experiment),
        },
        description: facts.description.clone(),
        executive_summary: executive,
        sections,
        generated_at,
    }
}

fn header(columns: &[&str]) -> Vec<String> {
    columns.iter().map(|c| c.to_string()).collect()
}

/// The findings first (saturation, scaling), then what the analysis left out, goodput,
/// and how many cells to read with care.
fn executive_summary(facts: &RunFacts, analysis: &Analysis) -> Vec<String> {
    let mut exec: Vec<String> = analysis
        .searches
        .iter()
        .map(super::search_text::sentence)
        .collect();
    for g in &analysis.groups {
        exec.push(saturation_sentence(g));
    }
    for f in &analysis.scaling {
        exec.extend(scaling_sentence(f));
    }
    // where TTFT goes at the highest load, from the server's phase histograms
    exec.extend(
        analysis
            .groups
            .iter()
            .filter_map(|g| Some(breakdown_at_top(g, &split_points(g))? + ".")),
    );
    exec.extend(left_out_sentences(analysis));
    if let Some(slo) = &facts.slo {
        for g in &analysis.groups {
            exec.push(goodput_sentence(g, slo, analysis.slo_target));
        }
    }
    let flagged = analysis
        .verdicts
        .iter()
        .filter(|v| !v.verdicts.is_empty())
        .count();
    if flagged > 0 {
        exec.push(format!(
            "{flagged} of {} cells carry validity warnings; read them before quoting their numbers (see Verdicts).",
            analysis.verdicts.len()
        ));
    }
    exec
}

/// Cells in the tables but not in the saturation analysis, and why.
fn left_out_sentences(analysis: &Analysis) -> Vec<String> {
    let mut out = Vec::new();
    if !analysis.without_offered_rate.is_empty() {
        out.push(format!(
            "{} cell(s) ({}) ran without one offered rate (all at once, a closed loop of `max_concurrency`, a ramp or a trace replay): they are in the tables, not in the saturation analysis, which reads throughput and latency along the offered rate.",
            analysis.without_offered_rate.len(),
            analysis.without_offered_rate.join(", ")
        ));
    }
    if !analysis.without_completions.is_empty() {
        out.push(format!(
            "{} cell(s) measured nothing usable (no completion, a lost server, or interrupted), so their throughput and latency are unknown (not zero) and they are left out of the analysis: {}.",
            analysis.without_completions.len(),
            analysis
                .without_completions
                .iter()
                .map(|(c, why)| format!("`{c}` ({why})"))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    out
}

fn goodput_sentence(g: &GroupFinding, slo: &str, target: f64) -> String {
    match g.goodput_rate {
        Some(r) => format!(
            "{}: the highest offered rate where at least {:.0}% of requests met {slo} is {} req/s.",
            group_label(g),
            target * 100.0,
            fmt_rate(r)
        ),
        None => format!(
            "{}: no tested rate had {:.0}% of requests meeting {slo}.",
            group_label(g),
            target * 100.0
        ),
    }
}

fn experiment_section(facts: &RunFacts, cells: usize) -> Section {
    let versions = if facts.server_versions.is_empty() {
        String::new()
    } else {
        format!(
            " Server versions: {}.",
            facts
                .server_versions
                .iter()
                .map(|(g, v)| format!("{g} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Section {
        title: "Experiment".into(),
        figures: vec![],
        paragraphs: vec![
            format!(
                "Experiment `{}`, {} cells, status {}.",
                facts.experiment, cells, facts.status
            ),
            format!(
                "Server: {}. Workload: {}. Load: {}.",
                facts.launcher, facts.workload, facts.load
            ),
            format!(
                "Run from {} to {} by {} on {} ({}).{versions}",
                facts.started_at, facts.finished_at, facts.tool, facts.host, facts.cpu,
            ),
        ],
        tables: vec![],
    }
}

fn saturation_section(g: &GroupFinding) -> Section {
    Section {
        title: format!("Saturation: {}", group_label(g)),
        paragraphs: vec![saturation_sentence(g)],
        figures: vec![(
            super::figures::saturation(g).stem,
            format!("Throughput and TTFT vs offered load, {}", group_label(g)),
        )],
        tables: vec![Table {
            header: header(&[
                "offered req/s",
                "achieved req/s",
                "TTFT p50",
                "TTFT p99",
                "TPOT p50",
                "SLO met",
                "",
            ]),
            rows: g.points.iter().map(|p| saturation_row(g, p)).collect(),
        }],
    }
}

fn saturation_row(g: &GroupFinding, p: &Point) -> Vec<String> {
    vec![
        fmt_rate(p.offered),
        format!("{:.2}", p.achieved),
        fig(p.ttft_p50_ms),
        fig(p.ttft_p99_ms),
        ms(p.tpot_p50_ms),
        p.slo_attainment
            .map_or("-".into(), |a| format!("{:.0}%", a * 100.0)),
        match &g.saturation {
            Some(s) if s.offered == p.offered => "← fell behind".into(),
            Some(s) if s.kept_up == Some(p.offered) => "← last that kept up".into(),
            _ => String::new(),
        },
    ]
}

/// What a ramp found: where achieved throughput stopped following the offered rate, or that
/// it never did; always with the caveat that a ramp is a probe.
fn ramp_sentence(r: &RampCell) -> String {
    let p = &r.probe;
    let found = match &p.knee {
        Some(k) => format!(
            "achieved throughput stopped following the offered rate near {:.1} req/s offered ({:.0} s in) and levelled there, while the offered rate rose to {:.1} req/s",
            k.plateau, k.t_s, p.peak_offered
        ),
        None => format!(
            "achieved throughput followed the offered rate to the end of the ramp ({:.1} req/s offered at most, {:.1} achieved): no knee, the capacity is above the ramp's end",
            p.peak_offered, p.peak_achieved
        ),
    };
    format!(
        "Ramp `{}` ({}): {found}. A ramp is a probe, not a steady-state measurement: the server never held one rate long enough for its queue to settle, so confirm with fixed-rate cells around that rate.",
        r.cell, r.ramp
    )
}

fn ramp_section(r: &RampCell) -> Section {
    Section {
        title: format!("Ramp probe: {}", r.cell),
        paragraphs: vec![
            ramp_sentence(r),
            "Offered is the rate of intended sends; achieved is the output-token rate of successful requests over their mean output length (completions come in waves, tokens do not), both over 5 s. The plateau is the best achieved rate while the ramp sends; below 90% of the highest offered rate the ramp saturated the server, and the knee is where the offered rate passed the plateau. Achieved trails offered by part of a request's latency, so the curves part a little before the knee.".into(),
        ],
        figures: vec![(
            super::figures::ramp(&r.cell, &r.probe).stem,
            format!(
                "Offered vs achieved throughput over the ramp, cell {}",
                r.cell
            ),
        )],
        tables: vec![],
    }
}

fn scaling_section(f: &ScalingFinding) -> Section {
    Section {
        title: format!(
            "Scaling{}",
            if f.family == "all" {
                String::new()
            } else {
                format!(": {}", f.family)
            }
        ),
        paragraphs: scaling_sentence(f),
        figures: vec![],
        tables: vec![Table {
            header: header(&[
                "dp",
                "plateau req/s",
                "saturated",
                "speedup",
                "efficiency",
                "matched-load efficiency",
            ]),
            rows: f.rows.iter().map(|r| scaling_row(f, r)).collect(),
        }],
    }
}

fn scaling_row(f: &ScalingFinding, r: &ScalingRow) -> Vec<String> {
    // a bound or a flagged figure is not printed as a result
    let result = r.dp == f.base_dp || r.is_result(&f.rows[0]);
    vec![
        r.dp.to_string(),
        format!("{:.2}", r.max_throughput),
        match (r.saturated, r.trusted) {
            (true, true) => "yes".into(),
            (true, false) => "yes, flagged".into(),
            (false, _) => "no (lower bound)".into(),
        },
        if result {
            format!("{:.2}×", r.speedup)
        } else {
            format!("({:.2}×, not a result)", r.speedup)
        },
        if result {
            format!("{:.0}%", r.efficiency * 100.0)
        } else {
            "-".into()
        },
        r.matched_load_efficiency
            .map_or("-".into(), |m| format!("{:.0}%", m * 100.0)),
    ]
}

/// The charts across server configurations: throughput and latency per DP size when there
/// are several, latency alone otherwise.
fn by_configuration_section(groups: usize) -> Section {
    if groups >= 2 {
        Section {
            title: "Throughput and latency per server configuration".into(),
            paragraphs: vec!["Achieved throughput against offered load for each DP size (the dashed line is perfect keeping-up), then TTFT and TPOT.".into()],
            figures: vec![
                ("throughput-by-dp".into(), "Throughput vs offered load per DP size".into()),
                ("latency-by-dp".into(), "TTFT and TPOT vs offered load".into()),
            ],
            tables: vec![],
        }
    } else {
        Section {
            title: "Latency".into(),
            paragraphs: vec![],
            figures: vec![(
                "latency-by-dp".into(),
                "TTFT and TPOT vs offered load".into(),
            )],
            tables: vec![],
        }
    }
}

fn server_section(stem: String, cell: &str) -> Section {
    Section {
        title: "Inside the server".into(),
        paragraphs: vec![format!(
            "The server's own gauges (`/metrics`) over cell `{cell}`: requests waiting and running, and KV-cache usage."
        )],
        figures: vec![(stem, format!("Server queue and KV usage, cell {cell}"))],
        tables: vec![],
    }
}

fn verdicts_section(analysis: &Analysis) -> Section {
    let verdict_rows: Vec<Vec<String>> = analysis
        .verdicts
        .iter()
        .filter(|v| !v.verdicts.is_empty())
        .map(|v| vec![v.cell.clone(), v.describe_all()])
        .collect();
    Section {
        title: "Verdicts".into(),
        paragraphs: vec![if verdict_rows.is_empty() {
            "No cell carries a validity warning.".into()
        } else {
            "Cells whose numbers should not be read at face value, and why.".into()
        }],
        figures: vec![],
        tables: if verdict_rows.is_empty() {
            vec![]
        } else {
            vec![Table {
                header: header(&["cell", "verdicts"]),
                rows: verdict_rows,
            }]
        },
    }
}

/// Multi-turn cells, turn by turn: what a longer history costs in TTFT.
fn turns_section(cells: &[CellInput]) -> Section {
    let fig = |f: &Option<Figure>| f.as_ref().map_or("-".into(), |f| f.display(1));
    let rows = cells
        .iter()
        .flat_map(|c| {
            c.per_turn.iter().map(move |t| {
                vec![
                    c.id.clone(),
                    (t.turn + 1).to_string(),
                    t.prompt_tokens_mean
                        .map_or("-".into(), |p| format!("{p:.0}")),
                    fig(&t.ttft_p50_ms),
                    fig(&t.ttft_p99_ms),
                    t.measured.to_string(),
                    t.ok.to_string(),
                ]
            })
        })
        .collect();
    Section {
        title: "Multi-turn conversations: TTFT by turn".into(),
        paragraphs: vec!["Turn k of a conversation sends the k − 1 earlier questions and answers and a new question, so its prompt grows turn by turn; without a prefix-cache hit its prefill (and TTFT) grows with it. TTFT covers every window request of the turn, one cut off before its first token counted as at least its wait (`>`: a lower bound); the prompt is the server's count (`usage.prompt_tokens`) where it gave one.".into()],
        figures: vec![],
        tables: vec![Table {
            header: header(&[
                "cell",
                "turn",
                "prompt tokens",
                "TTFT p50",
                "TTFT p99",
                "requests",
                "ok",
            ]),
            rows,
        }],
    }
}

fn cells_section(cells: &[CellInput]) -> Section {
    Section {
        title: "All cells".into(),
        paragraphs: vec!["Recomputed from each cell's raw records (`cells/*/requests.parquet` and `events.parquet`); the same figures are in `runs.parquet`. Achieved throughput is the mean of completions in the window and the output-token rate over the window divided by the mean output length (see the README); TTFT covers every request sent in the window, a request cut off before its first token counted as at least its wait (`>`: a lower bound); TPOT covers the successful ones. Every request sent is ok, failed or cancelled. Prefix cache hits, when the server exports vLLM's counters, are the prompt tokens found in its prefix cache over those looked up (`vllm:prefix_cache_hits_total` / `vllm:prefix_cache_queries_total`, their growth over the cell).".into()],
        figures: vec![],
        tables: vec![cells_table(cells)],
    }
}

/// One row per cell; a prefix-cache column only when some server exported its counters
/// (a column of dashes says nothing).
fn cells_table(cells: &[CellInput]) -> Table {
    let mut columns = vec![
        "cell",
        "offered",
        "achieved",
        "out tok/s",
        "TTFT p50",
        "TTFT p99",
        "TPOT p50",
        "sent",
        "ok",
        "failed",
        "cancelled",
    ];
    let hit_rate = |c: &CellInput| c.server.as_ref().and_then(|s| s.prefix_cache_hit_rate());
    let with_hits = cells.iter().any(|c| hit_rate(c).is_some());
    // before the accounting columns, which end every row
    const AT: usize = 7;
    if with_hits {
        columns.insert(AT, "prefix cache hits");
    }
    Table {
        header: header(&columns),
        rows: cells
            .iter()
            .map(|c| {
                let mut row = cell_row(c);
                if with_hits {
                    let cell = hit_rate(c).map_or("-".into(), |r| format!("{:.1}%", r * 100.0));
                    row.insert(AT, cell);
                }
                row
            })
            .collect(),
    }
}

fn cell_row(c: &CellInput) -> Vec<String> {
    let known = c.no_completions.is_none();
    vec![
        c.id.clone(),
        c.schedule
            .clone()
            .unwrap_or_else(|| fmt_rate(c.offered_rate)),
        if known {
            format!("{:.2}", c.achieved_rate)
        } else {
            "-".into()
        },
        if known {
            format!("{:.0}", c.output_throughput)
        } else {
            "-".into()
        },
        // first tokens can be known where no request finished
        fig(c.ttft_p50_ms),
        fig(c.ttft_p99_ms),
        ms(c.tpot_p50_ms),
        c.sent.to_string(),
        c.sent
            .saturating_sub(c.failed)
            .saturating_sub(c.cancelled)
            .to_string(),
        c.failed.to_string(),
        c.cancelled.to_string(),
    ]
}

/// A share as a whole percentage; `<1%` for a small share that is not nothing.
fn pct(x: f64) -> String {
    if x > 0.0 && x < 0.005 {
        "<1%".into()
    } else {
        format!("{:.0}%", x * 100.0)
    }
}

/// A configuration's points whose TTFT the server's phases split, by offered rate.
fn split_points(g: &GroupFinding) -> Vec<(&Point, TtftSplit)> {
    g.points
        .iter()
        .filter(|p| p.offered.is_finite())
        .filter_map(|p| Some((p, figures::split(p)?)))
        .collect()
}

/// Whose TTFT mean a split divides: the server's, the client's seen beside it.
fn of_whom(s: &TtftSplit) -> String {
    match (s.of_server, s.client_ms) {
        (true, Some(c)) => format!(
            "of the server's {} mean; the client saw {}",
            ms(Some(s.total_ms)),
            ms(Some(c))
        ),
        (true, None) => format!("of the server's {} mean", ms(Some(s.total_ms))),
        (false, _) => format!("of the client's {} mean", ms(Some(s.total_ms))),
    }
}

/// Where TTFT goes at the highest split load: the share that is queueing, and the rest.
fn breakdown_at_top(g: &GroupFinding, pts: &[(&Point, TtftSplit)]) -> Option<String> {
    let (hi, hs) = pts.last()?;
    Some(format!(
        "{}: at {} req/s offered, {} of TTFT is queueing ({} {}; prefill {}, {} {})",
        group_label(g),
        fmt_rate(hi.offered),
        pct(hs.queue_share()),
        ms(Some(hs.queue_ms)),
        of_whom(hs),
        pct(hs.prefill_share()),
        hs.other_name(),
        pct(hs.other_share()),
    ))
}

/// Where one configuration's TTFT goes, from its split points: at the highest load, the
/// share that is queueing; at the lowest, the whole split; and from which rate queueing is
/// most of it. `None` without a split point.
fn breakdown_sentence(g: &GroupFinding) -> Option<String> {
    let pts = split_points(g);
    let mut out = breakdown_at_top(g, &pts)?;
    let (lo, ls) = pts.first()?;
    if pts.len() > 1 {
        out.push_str(&format!(
            "; at {} req/s it is {} (TTFT mean {}: prefill {}, the rest {})",
            fmt_rate(lo.offered),
            pct(ls.queue_share()),
            ms(Some(ls.total_ms)),
            pct(ls.prefill_share()),
            pct(ls.other_share()),
        ));
    }
    out.push('.');
    match pts.iter().position(|(_, s)| s.queue_share() > 0.5) {
        Some(i) if pts.len() > 1 && pts[i..].iter().all(|(_, s)| s.queue_share() > 0.5) => out
            .push_str(&format!(
                " Queueing is over half of TTFT from {} req/s on.",
                fmt_rate(pts[i].0.offered)
            )),
        None if pts.len() > 1 => {
            out.push_str(" Queueing stays under half of TTFT at every tested rate.")
        }
        _ => {}
    }
    Some(out)
}

/// The latency breakdown: the chart and a sentence per configuration, the table of every
/// load point and of every cell run without an offered rate, or why there is none.
fn breakdown_section(a: &Analysis, cells: &[CellInput]) -> Section {
    let title = "Where the time goes: queue, prefill, decode".to_string();
    let table = breakdown_table(a, cells);
    let chart = figures::latency_breakdown(a);
    if chart.is_none() && table.rows.is_empty() {
        return Section {
            title,
            paragraphs: vec![format!(
                "The server exported none of vLLM's request-phase histograms (`{}`, `{}`, `{}`) in any cell's measurement window, so TTFT cannot be split into queueing and prefill here: a server other than vLLM, or its `/metrics` was not scraped. The client's TTFT and TPOT above are all there is.",
                latency_breakdown::QUEUE,
                latency_breakdown::PREFILL,
                latency_breakdown::DECODE
            )],
            figures: vec![],
            tables: vec![],
        };
    }
    let mut paragraphs = vec![format!(
        "From the server's own histograms, per engine and summed over engines, over each cell's measurement window (the growth of `_sum` over the growth of `_count` between the scrapes around the window, not since the server started): the mean time a request waited in the queue (`{}`), spent in prefill up to its first token (`{}`) and in decode after it (`{}`), as shares of the server's mean TTFT over the same window (`{}`; the client's where the server has none). What queue and prefill leave of it is spent before the engine (API server, tokenisation, routing); the client's TTFT adds the network and the client. TPOT is shown beside the server's mean time per output token (`{}`). The histograms count the requests the server observed in the window, the client's figures the requests it sent in the window: under a growing queue these differ, so compare shares, not single requests.",
        latency_breakdown::QUEUE,
        latency_breakdown::PREFILL,
        latency_breakdown::DECODE,
        latency_breakdown::TTFT,
        latency_breakdown::TPOT
    )];
    paragraphs.extend(a.groups.iter().filter_map(breakdown_sentence));
    if table.rows.iter().any(|r| r[1] == NO_OFFERED_RATE) {
        paragraphs.push(format!(
            "Cells run without an offered rate (a closed loop, all at once, a ramp or a trace replay) have no place on the chart, which runs along the offered rate: the table lists each of them by its id, its offered rate `{NO_OFFERED_RATE}`."
        ));
    }
    Section {
        title,
        paragraphs,
        figures: chart
            .map(|_| {
                (
                    figures::BREAKDOWN_STEM.into(),
                    "The server's mean TTFT (over each bar) split into queue, prefill and the rest, per configuration and offered load; the client's TPOT p50 beside the server's mean time per output token".into(),
                )
            })
            .into_iter()
            .collect(),
        tables: vec![table],
    }
}

/// The breakdown table's offered rate for a cell that ran without one.
const NO_OFFERED_RATE: &str = "none";

fn breakdown_table(a: &Analysis, cells: &[CellInput]) -> Table {
    let engines = |ids: &[String]| -> String {
        // a point's cells, engine by engine (the first repeat's)
        let b = ids.iter().find_map(|id| {
            cells
                .iter()
                .find(|c| &c.id == id)?
                .server
                .as_ref()?
                .breakdown
                .as_ref()
        });
        match b {
            Some(b) if b.engines.len() > 1 => b
                .engines
                .iter()
                .map(|(e, ph)| format!("{e} {}", ms(ph.queue_ms)))
                .collect::<Vec<_>>()
                .join(", "),
            _ => "-".into(),
        }
    };
    let share = |v: f64, s: &TtftSplit| format!("{} ({})", ms(Some(v)), pct(v / s.total_ms));
    // configuration, offered: the figures of one load point or cell
    let row = |config: String,
               offered: String,
               s: TtftSplit,
               ph: &Phases,
               tpot_p50: Option<f64>,
               by_engine: String| {
        vec![
            config,
            offered,
            if s.of_server {
                ms(Some(s.total_ms))
            } else {
                "-".into()
            },
            ms(s.client_ms),
            share(s.queue_ms, &s),
            share(s.prefill_ms, &s),
            share(s.other_ms, &s),
            ms(ph.decode_ms),
            ms(ph.tpot_ms),
            ms(tpot_p50),
            by_engine,
        ]
    };
    let points = a.groups.iter().flat_map(|g| {
        g.points.iter().filter_map(move |p| {
            let s = figures::split(p)?;
            let ph = p.phases?;
            Some(row(
                group_label(g),
                fmt_rate(p.offered),
                s,
                &ph,
                p.tpot_p50_ms,
                engines(&p.cells),
            ))
        })
    });
    // the analysis reads load points along the offered rate: a cell without one (a closed
    // loop, a ramp, a trace) is listed on its own
    let unrated = cells
        .iter()
        .filter(|c| !c.offered_rate.is_finite())
        .filter_map(|c| {
            let ph = c.server.as_ref()?.breakdown.as_ref()?.all;
            let s = TtftSplit::new(c.ttft_mean_ms, &ph)?;
            Some(row(
                c.id.clone(),
                NO_OFFERED_RATE.into(),
                s,
                &ph,
                c.tpot_p50_ms,
                engines(std::slice::from_ref(&c.id)),
            ))
        });
    let rows = points.chain(unrated).collect();
    Table {
        header: header(&[
            "configuration",
            "offered req/s",
            "TTFT mean (server)",
            "TTFT mean (client)",
            "queue",
            "prefill",
            "the rest",
            "decode per request",
            "server TPOT mean",
            "client TPOT p50",
            "queue by engine",
        ]),
        rows,
    }
}
