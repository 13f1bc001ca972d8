//! The report's charts and sentences on synthetic analyses: legends that never overlap (at
//! the scaling example's configurations, doubled to 8), lines that stay visible where they
//! coincide, p99 and the SLOs drawn, and the latency breakdown's sentence computed from the
//! server's phases (or why there is none).

use super::chart::{self, Figure, PanelBoxes, Prim};
use super::{figures, model};
use crate::analysis::{CellInput, analyze};
use crate::latency_breakdown::{Breakdown, Phases};
use crate::server_metrics::ServerStats;
use crate::stats::survival::Figure as Fig;
use crate::summary::goodput::Slo;

/// A cell of configuration (dp, max_num_seqs) at `offered`: TTFT and the server's phases
/// as given (ms).
fn cell(dp: u32, mns: u32, offered: f64, ttft: f64, phases: Option<(f64, f64)>) -> CellInput {
    let breakdown = phases.map(|(queue, prefill)| Breakdown {
        all: Phases {
            queue_ms: Some(queue),
            prefill_ms: Some(prefill),
            decode_ms: Some(5000.0),
            tpot_ms: Some(19.5),
            // the server's TTFT: 5% less than the client's
            ttft_ms: Some(ttft * 0.95),
            requests: 100.0,
        },
        engines: (0..dp)
            .map(|e| {
                (
                    format!("e{e}"),
                    Phases {
                        queue_ms: Some(queue + e as f64),
                        ..Phases::default()
                    },
                )
            })
            .collect(),
    });
    CellInput {
        id: format!("dp{dp}-mns{mns}-{offered}"),
        group: format!("dp{dp}-mns{mns}"),
        family: format!("max_num_seqs={mns}"),
        dp,
        offered_rate: offered,
        schedule: None,
        arrival_rate: offered,
        achieved_rate: offered.min(14.0 * dp as f64),
        achieved_from: "output_token_rate",
        token_rate_rising: false,
        output_throughput: offered * 256.0,
        ttft_p50_ms: Some(Fig::known(ttft)),
        ttft_p99_ms: Some(Fig::known(ttft * 2.5)),
        e2el_p50_ms: Some(Fig::known(5000.0)),
        ttft_mean_ms: Some(ttft),
        tpot_p50_ms: Some(20.0),
        tpot_p99_ms: Some(31.0),
        slo_attainment: Some(1.0),
        sent: 600,
        measured: 600,
        failed: 0,
        cancelled: 0,
        measured_cut: 0,
        truncated: 0,
        no_completions: None,
        send_lag_p99_ms: Some(0.5),
        client_cpu_share: Some(0.1),
        client_loop_lag_p99_ms: None,
        client_loop_lag_max_ms: None,
        sending_s: None,
        planned_sending_s: None,
        window_s: 45.0,
        backlog_slope_per_s: Some(0.0),
        backlog_mean: Some(1.0),
        server: Some(ServerStats {
            waiting_max: Some(0.0),
            breakdown,
            ..ServerStats::default()
        }),
        matrix: Default::default(),
        per_turn: Vec::new(),
        shards_apart: Vec::new(),
    }
}

/// The scaling example's matrix (10 to 60 req/s, max_num_seqs 128 and 256) over `dps`.
fn scaling_cells(dps: &[u32]) -> Vec<CellInput> {
    let mut out = Vec::new();
    for &dp in dps {
        for mns in [128, 256] {
            for r in [10.0, 20.0, 30.0, 40.0, 50.0, 60.0] {
                let ttft = 85.0 + 100.0 * (r / dp as f64);
                out.push(cell(dp, mns, r, ttft, Some((ttft * 0.5, 40.0))));
            }
        }
    }
    out
}

fn overlaps(a: &[f32; 4], b: &[f32; 4]) -> bool {
    a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3]
}

/// Every legend entry's box inside the figure and its own panel, under the plot, and no
/// two overlapping (across panels too).
fn assert_legends_apart(f: &Figure) -> usize {
    let boxes: Vec<PanelBoxes> = chart::legend_boxes(f);
    let all: Vec<&[f32; 4]> = boxes.iter().flat_map(|p| &p.legend).collect();
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert!(
                !overlaps(a, b),
                "`{}`: legend entries {a:?} and {b:?} overlap",
                f.title
            );
        }
        assert!(
            a[0] >= 0.0 && a[0] + a[2] <= f.width,
            "{a:?} leaves the figure"
        );
        assert!(a[1] + a[3] <= f.height, "{a:?} below the figure");
    }
    for p in &boxes {
        let (plot_bottom, panel_right) = (p.plot[1] + p.plot[3], p.panel[0] + p.panel[2]);
        for e in &p.legend {
            assert!(e[1] > plot_bottom, "{e:?} inside the plot {:?}", p.plot);
            assert!(
                e[0] >= p.panel[0] && e[0] + e[2] <= panel_right,
                "{e:?} leaves its panel"
            );
        }
    }
    all.len()
}

#[test]
fn legend_entries_never_overlap_at_8_configurations() {
    let slos = [Slo::TtftMs(500.0), Slo::TpotMs(100.0)];
    // the scaling example's 4 configurations, and 8 (dp 1, 2, 4, 8)
    for dps in [&[1, 4][..], &[1, 2, 4, 8][..]] {
        let a = analyze(&scaling_cells(dps), 0.9);
        assert_eq!(a.groups.len(), 2 * dps.len());
        let lat = figures::latency_by_dp(&a, &slos).figure;
        // per panel: a configuration each, p50, p99, SLO
        assert_eq!(assert_legends_apart(&lat), 2 * (a.groups.len() + 3));
        let bd = figures::latency_breakdown(&a).unwrap().figure;
        // per panel: two TPOT lines and three parts of TTFT
        assert_eq!(assert_legends_apart(&bd), a.groups.len() * 5);
        // every configuration is named in the latency chart's legend
        let texts = chart::texts(&chart::layout(&lat));
        let last = format!("dp={} max_num_seqs=256", dps[dps.len() - 1]);
        assert!(texts.contains(&last), "{texts}");
    }
}

#[test]
fn coincident_configurations_stay_visible() {
    // dp 4 with 128 and 256 sequences: the same curve (the hidden line)
    let cells: Vec<CellInput> = [128, 256]
        .into_iter()
        .flat_map(|mns| [10.0, 60.0].map(|r| cell(4, mns, r, 120.0, None)))
        .collect();
    let a = analyze(&cells, 0.9);
    let prims = chart::layout(&figures::latency_by_dp(&a, &[]).figure);
    let solid = |color: [u8; 3]| {
        prims.iter().find_map(|p| match p {
            Prim::Line {
                color: c,
                width,
                dash: false,
                pts,
            } if *c == color && pts.len() == 2 && *width > 1.3 => Some((pts.clone(), *width)),
            _ => None,
        })
    };
    let (first, w0) = solid(chart::PALETTE[0]).expect("first configuration's p50 line");
    let (second, w1) = solid(chart::PALETTE[1]).expect("second configuration's p50 line");
    assert_eq!(first, second, "the two lines coincide");
    // the later line is drawn thinner, so the earlier shows around it
    assert!(w1 < w0 - 0.2, "widths {w0} and {w1}");
    // and their markers differ in shape
    let corners = |color: [u8; 3]| {
        prims.iter().find_map(|p| match p {
            Prim::Poly { pts, fill, .. } if *fill == Some(color) => Some(pts.len()),
            _ => None,
        })
    };
    assert_ne!(corners(chart::PALETTE[0]), corners(chart::PALETTE[1]));
}

#[test]
fn the_latency_chart_draws_p99_and_the_slo_lines() {
    let a = analyze(&scaling_cells(&[1]), 0.9);
    let f = figures::latency_by_dp(&a, &[Slo::TtftMs(500.0), Slo::TpotMs(100.0)]).figure;
    let texts = chart::texts(&chart::layout(&f));
    for t in [
        "SLO: TTFT ≤ 500 ms",
        "SLO: TPOT ≤ 100 ms",
        "p99 (dashed, hollow)",
    ] {
        assert!(texts.contains(t), "lacks `{t}`: {texts}");
    }
    // a p99 line per configuration and panel, dashed, beside the solid p50
    let ttft = &f.panels[0].series;
    assert!(
        ttft.iter()
            .any(|s| s.dashed && !s.in_legend && s.points[0].1 == (85.0 + 100.0 * 10.0) * 2.5)
    );
    // the TPOT axis reaches the SLO (100 ms) though every TPOT is 20-31 ms
    assert!(!f.panels[1].hlines.is_empty());
}

/// The report's "Where the time goes" section.
fn breakdown_of(r: &model::Report) -> &model::Section {
    r.sections
        .iter()
        .find(|s| s.title.starts_with("Where the time goes"))
        .expect("a breakdown section")
}

#[test]
fn the_breakdown_sentence_is_computed_from_the_servers_phases() {
    // dp 1 saturates: at 40 req/s 930 of the server's 1000 ms TTFT is queueing (the client
    // saw 1100 ms); at 10 req/s 2 of 90 ms
    let mut cells = vec![
        cell(1, 256, 10.0, 95.0, Some((2.0, 60.0))),
        cell(1, 256, 20.0, 420.0, Some((300.0, 62.0))),
        cell(1, 256, 40.0, 1100.0, Some((930.0, 40.0))),
        // a server without a TTFT histogram: the client's TTFT is the whole
        cell(4, 256, 40.0, 100.0, Some((1.0, 60.0))),
    ];
    for (c, server_ttft) in cells
        .iter_mut()
        .zip([Some(90.0), Some(400.0), Some(1000.0), None])
    {
        let b = c.server.as_mut().unwrap().breakdown.as_mut().unwrap();
        b.all.ttft_ms = server_ttft;
    }
    let a = analyze(&cells, 0.9);
    let r = model::build(&Default::default(), &a, &cells, None, &[], String::new());
    let s = breakdown_of(&r);
    let text = s.paragraphs.join("\n");
    assert!(
        text.contains("1 engine (dp=1, max_num_seqs=256): at 40 req/s offered, 93% of TTFT is queueing (930.0 ms of the server's 1000 ms mean; the client saw 1100 ms; prefill 4%, before the engine (API server, tokenisation, routing) 3%); at 10 req/s it is 2% (TTFT mean 90.0 ms: prefill 67%, the rest 31%). Queueing is over half of TTFT from 20 req/s on."),
        "{text}"
    );
    assert!(
        text.contains("4 engines (dp=4, max_num_seqs=256): at 40 req/s offered, 1% of TTFT is queueing (1.0 ms of the client's 100.0 ms mean; prefill 60%, front end and network 39%)."),
        "{text}"
    );
    assert_eq!(s.figures[0].0, figures::BREAKDOWN_STEM);
    // the executive summary says it too, and the table lists each engine's queue
    assert!(
        r.executive_summary
            .iter()
            .any(|e| e.contains("93% of TTFT is queueing"))
    );
    let rows = &s.tables[0].rows;
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[2][2..4], ["1000 ms", "1100 ms"]);
    assert_eq!(rows[3][2..4], ["-", "100.0 ms"]);
    assert_eq!(rows[3][10], "e0 1.0 ms, e1 2.0 ms, e2 3.0 ms, e3 4.0 ms");
}

#[test]
fn without_phase_histograms_the_report_says_so_instead_of_an_empty_chart() {
    let cells = vec![
        cell(1, 256, 10.0, 90.0, None),
        cell(1, 256, 20.0, 95.0, None),
    ];
    let a = analyze(&cells, 0.9);
    assert!(figures::latency_breakdown(&a).is_none());
    let r = model::build(&Default::default(), &a, &cells, None, &[], String::new());
    let s = breakdown_of(&r);
    assert!(s.figures.is_empty() && s.tables.is_empty());
    assert!(
        s.paragraphs[0].contains("exported none of vLLM's request-phase histograms"),
        "{:?}",
        s.paragraphs
    );
}

#[test]
fn cells_without_an_offered_rate_get_their_breakdown_in_the_table() {
    // closed loops: the server's histograms were scraped, but the analysis has no load
    // point to chart them on (found on a real vLLM: the report said it exported none)
    let mut looped = cell(1, 256, f64::INFINITY, 200.0, Some((1.0, 70.0)));
    looped.id = "c004-max_concurrency90".into();
    let cells = vec![
        looped,
        cell(2, 256, f64::INFINITY, 380.0, None),
        cell(1, 256, 10.0, 90.0, Some((2.0, 60.0))),
    ];
    let a = analyze(&cells, 0.9);
    let r = model::build(&Default::default(), &a, &cells, None, &[], String::new());
    let s = breakdown_of(&r);
    let text = s.paragraphs.join("\n");
    assert!(!text.contains("exported none"), "{text}");
    assert!(text.contains("its offered rate `none`"), "{text}");
    let rows = &s.tables[0].rows;
    // the rated point first, then the one closed loop with phases (not the one without)
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0][1], "10");
    assert_eq!(
        rows[1][..4],
        ["c004-max_concurrency90", "none", "190.0 ms", "200.0 ms"]
    );
    assert_eq!(rows[1][4], "1.0 ms (1%)");

    // closed loops only: the table without a chart
    let a = analyze(&cells[..2], 0.9);
    let r = model::build(
        &Default::default(),
        &a,
        &cells[..2],
        None,
        &[],
        String::new(),
    );
    let s = breakdown_of(&r);
    assert!(s.figures.is_empty());
    assert_eq!(s.tables[0].rows.len(), 1);
}
