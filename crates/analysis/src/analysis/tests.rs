use super::*;
use crate::server_metrics::ServerStats;
use crate::stats::survival::Figure;

pub(crate) fn cell(group: &str, dp: u32, offered: f64, achieved: f64, ttft: f64) -> CellInput {
    CellInput {
        id: format!("{group}-{offered}"),
        group: group.into(),
        family: "mns256".into(),
        dp,
        offered_rate: offered,
        schedule: None,
        arrival_rate: offered,
        achieved_rate: achieved,
        output_throughput: achieved * 256.0,
        ttft_p50_ms: Some(Figure::known(ttft)),
        ttft_p99_ms: Some(Figure::known(ttft * 2.0)),
        ttft_mean_ms: Some(ttft),
        tpot_p50_ms: Some(20.0),
        tpot_p99_ms: Some(40.0),
        e2el_p50_ms: Some(Figure::known(5000.0)),
        slo_attainment: Some(if ttft < 500.0 { 1.0 } else { 0.2 }),
        sent: 1000,
        measured: 1000,
        failed: 0,
        truncated: 0,
        send_lag_p99_ms: Some(0.5),
        client_cpu_share: Some(0.2),
        client_loop_lag_p99_ms: Some(1.0),
        achieved_from: "output_token_rate",
        token_rate_rising: false,
        cancelled: 0,
        measured_cut: 0,
        no_completions: None,
        client_loop_lag_max_ms: None,
        sending_s: None,
        planned_sending_s: None,
        window_s: 60.0,
        backlog_slope_per_s: Some(0.0),
        backlog_mean: Some(1.0),
        server: Some(ServerStats {
            waiting_slope_per_s: Some(if achieved < 0.95 * offered { 5.0 } else { 0.0 }),
            waiting_max: Some(if achieved < 0.95 * offered {
                500.0
            } else {
                0.0
            }),
            server_ttft_mean_ms: Some(ttft * 0.95),
            ..ServerStats::default()
        }),
        matrix: Default::default(),
        per_turn: Vec::new(),
        shards_apart: Vec::new(),
    }
}

/// The seed's 1-GPU curve: plateau at 13.7, TTFT 87 ms → 6.9 s.
fn one_gpu() -> Vec<CellInput> {
    vec![
        cell("dp1", 1, 10.0, 9.9, 87.0),
        cell("dp1", 1, 20.0, 13.7, 2400.0),
        cell("dp1", 1, 30.0, 13.7, 4100.0),
        cell("dp1", 1, 60.0, 13.6, 6900.0),
    ]
}

#[test]
fn finds_the_plateau_and_the_ttft_blowup() {
    let a = analyze(&one_gpu(), 0.9);
    let g = &a.groups[0];
    let s = g.saturation.as_ref().expect("saturated");
    assert_eq!(s.offered, 20.0);
    assert!(s.reasons.contains(&saturation::Reason::Throughput));
    assert!(s.reasons.contains(&saturation::Reason::Ttft));
    assert!(s.reasons.contains(&saturation::Reason::Queue));
    assert_eq!(s.before.as_ref().unwrap().offered, 10.0);
    assert_eq!(g.max_throughput, 13.7);
    assert_eq!(g.low_load_ttft_ms, Some(87.0));
    assert_eq!(g.goodput_rate, Some(10.0));
}

#[test]
fn the_seeds_four_gpu_result_is_flagged_not_called_scaling() {
    // 4 GPUs: 34 req/s at 60 offered with a flat ~120 ms TTFT, engines' queues empty
    let mut cells = one_gpu();
    for (o, a) in [(10.0, 9.9), (20.0, 19.8), (30.0, 29.7), (60.0, 34.0)] {
        let mut c = cell("dp4", 4, o, a, 120.0);
        c.server.as_mut().unwrap().waiting_slope_per_s = Some(0.0);
        c.server.as_mut().unwrap().waiting_max = Some(0.0);
        cells.push(c);
    }
    let a = analyze(&cells, 0.9);
    let g4 = a.groups.iter().find(|g| g.dp == 4).unwrap();
    assert!(g4.saturation.is_none(), "{:?}", g4.saturation);
    assert!(g4.short_of_offered_without_engine_queue);
    let sc = &a.scaling[0];
    assert!((sc.rows[1].speedup - 34.0 / 13.7).abs() < 1e-9);
    assert!(!sc.rows[1].saturated);
    assert!(sc.usl.is_none());
    let w = sc.warnings.join("\n");
    assert!(
        w.contains("dp=4 never saturated")
            && w.contains("lower bound")
            && w.contains("never reached the engines"),
        "{w}"
    );
    let v = a.verdicts.iter().find(|v| v.cell == "dp4-60").unwrap();
    assert!(v.verdicts.contains(&verdicts::Verdict::NeverSaturated));
}

#[test]
fn a_curve_that_never_saturates_gets_the_verdict() {
    let cells = vec![cell("g", 1, 5.0, 5.0, 80.0), cell("g", 1, 10.0, 9.9, 85.0)];
    let a = analyze(&cells, 0.9);
    assert!(a.groups[0].saturation.is_none());
    assert!(
        a.verdicts
            .iter()
            .all(|v| v.verdicts.contains(&verdicts::Verdict::NeverSaturated))
    );
}

#[test]
fn client_limited_and_error_heavy_cells_are_flagged() {
    let mut lag = cell("g", 1, 5.0, 5.0, 80.0);
    lag.send_lag_p99_ms = Some(40.0);
    let mut busy = cell("g", 1, 6.0, 6.0, 80.0);
    busy.client_cpu_share = Some(0.97);
    let mut errs = cell("g", 1, 7.0, 7.0, 80.0);
    errs.failed = 50;
    let mut few = cell("g", 1, 8.0, 8.0, 80.0);
    few.measured = 40;
    few.truncated = 3;
    let mut stalled = cell("g", 1, 9.0, 9.0, 80.0);
    stalled.client_loop_lag_p99_ms = Some(35.0);
    let a = analyze(&[lag, busy, errs, few, stalled], 0.9);
    let kinds = |id: &str| {
        a.verdicts
            .iter()
            .find(|v| v.cell == id)
            .unwrap()
            .verdicts
            .clone()
    };
    assert!(matches!(
        kinds("g-5")[0],
        verdicts::Verdict::ClientLimited { .. }
    ));
    assert!(matches!(
        kinds("g-6")[0],
        verdicts::Verdict::ClientLimited { .. }
    ));
    assert!(
        kinds("g-7")
            .iter()
            .any(|v| matches!(v, verdicts::Verdict::ErrorRate { failed: 50, .. }))
    );
    assert!(kinds("g-8").contains(&verdicts::Verdict::TooFewForP99 { measured: 40 }));
    assert!(kinds("g-8").contains(&verdicts::Verdict::TruncatedOutputs { count: 3 }));
    assert!(matches!(
        kinds("g-9")[0],
        verdicts::Verdict::ClientLimited { .. }
    ));
}

#[test]
fn usl_fit_recovers_known_sigma_and_kappa() {
    let truth = usl::UslFit {
        lambda: 13.7,
        sigma: 0.05,
        kappa: 0.002,
        peak_n: None,
    };
    let pts: Vec<(f64, f64)> = [1.0, 2.0, 4.0, 8.0, 16.0]
        .iter()
        .map(|&n| (n, truth.predict(n)))
        .collect();
    let f = usl::fit(&pts).unwrap();
    assert!(
        (f.sigma - 0.05).abs() < 1e-9 && (f.kappa - 0.002).abs() < 1e-9,
        "{f:?}"
    );
    assert!((f.peak_n.unwrap() - (0.95f64 / 0.002).sqrt()).abs() < 1e-6);
    // linear scaling: σ = κ = 0, no peak
    let lin: Vec<(f64, f64)> = [1.0, 2.0, 4.0].iter().map(|&n| (n, 10.0 * n)).collect();
    let f = usl::fit(&lin).unwrap();
    assert!(f.sigma.abs() < 1e-9 && f.kappa.abs() < 1e-9 && f.peak_n.is_none());
    assert!(usl::fit(&[(2.0, 5.0)]).is_none(), "needs N = 1");
}

#[test]
fn scaling_of_saturated_configurations_reports_efficiency() {
    let mut cells = one_gpu();
    for (o, a, t) in [
        (10.0, 9.9, 80.0),
        (40.0, 39.6, 90.0),
        (60.0, 54.0, 2000.0),
        (80.0, 54.2, 5000.0),
    ] {
        cells.push(cell("dp4", 4, o, a, t));
    }
    let a = analyze(&cells, 0.9);
    let sc = &a.scaling[0];
    let r4 = &sc.rows[1];
    assert!(r4.saturated);
    assert!((r4.efficiency - 54.2 / 13.7 / 4.0).abs() < 1e-9);
    // matched per-replica load: dp1 at 10 vs dp4 at 40
    assert!((r4.matched_load_efficiency.unwrap() - 39.6 / (9.9 * 4.0)).abs() < 1e-9);
    assert!(sc.usl.is_some());
}

#[test]
fn cells_without_an_offered_rate_stay_out_of_the_saturation_analysis() {
    // closed-loop cells beside the curve: they must not merge into one "inf" point
    let mut cells = one_gpu();
    for (k, achieved) in [(2, 2.0), (64, 13.0)] {
        let mut c = cell("dp1", 1, f64::INFINITY, achieved, 300.0);
        c.id = format!("closed-{k}");
        cells.push(c);
    }
    let a = analyze(&cells, 0.9);
    assert_eq!(a.groups[0].points.len(), 4);
    assert!(a.groups[0].points.iter().all(|p| p.offered.is_finite()));
    assert_eq!(a.without_offered_rate, vec!["closed-2", "closed-64"]);
    // the cells are still judged
    assert_eq!(a.verdicts.len(), cells.len());
}

#[test]
fn the_knee_is_an_interval_and_the_plateau_its_estimate() {
    let a = analyze(&one_gpu(), 0.9);
    let s = a.groups[0].saturation.as_ref().unwrap();
    // kept up at 10, fell behind at 20: the onset is in (10, 20], near the 13.7 plateau
    assert_eq!((s.kept_up, s.offered), (Some(10.0), 20.0));
    assert_eq!(s.capacity, 13.7);
    assert_eq!(s.onset_estimate, Some(13.7));
    assert!(!s.capacity_is_lower_bound);
    // behind already at the lowest rate: no lower end, and no plateau inside a known interval
    let a = analyze(&one_gpu()[1..], 0.9);
    let s = a.groups[0].saturation.as_ref().unwrap();
    assert_eq!((s.kept_up, s.offered), (None, 20.0));
}

#[test]
fn a_cell_without_completions_is_unknown_not_zero() {
    let mut cells = one_gpu();
    let mut dead = cell("dp1", 1, 40.0, 0.0, 0.0);
    dead.no_completions = Some("every request failed to connect".into());
    cells.push(dead);
    let a = analyze(&cells, 0.9);
    let g = &a.groups[0];
    assert!(
        g.points.iter().all(|p| p.offered != 40.0),
        "left out of the curve"
    );
    assert_eq!(g.saturation.as_ref().unwrap().capacity, 13.7);
    assert_eq!(a.without_completions.len(), 1);
    let v = a.verdicts.iter().find(|v| v.cell == "dp1-40").unwrap();
    assert!(matches!(
        v.verdicts[0],
        verdicts::Verdict::NoCompletions { .. }
    ));
}

#[test]
fn implausible_cells_are_flagged_and_scaling_is_not_built_on_them() {
    // dp=2 "doubles and a half" the plateau: super-linear, a fault until proven otherwise
    let mut cells = one_gpu();
    for (o, a, t) in [
        (10.0, 9.9, 87.0),
        (40.0, 34.0, 3000.0),
        (80.0, 34.2, 6000.0),
    ] {
        cells.push(cell("dp2", 2, o, a, t));
    }
    let a = analyze(&cells, 0.9);
    let row = &a.scaling[0].rows[1];
    assert!(row.efficiency > 1.10 && !row.is_result(&a.scaling[0].rows[0]));
    assert!(a.scaling[0].usl.is_none());
    assert!(a.scaling[0].warnings.join(" ").contains("super-linear"));
    let v = a.verdicts.iter().find(|v| v.cell == "dp2-40").unwrap();
    assert!(
        v.verdicts
            .iter()
            .any(|x| matches!(x, verdicts::Verdict::SuperLinearScaling { .. }))
    );
    // a cell that took 3× its planned sending time taints its configuration's plateau
    let mut cells = one_gpu();
    for (o, a, t) in [
        (10.0, 9.9, 87.0),
        (40.0, 26.0, 3000.0),
        (80.0, 26.5, 6000.0),
    ] {
        cells.push(cell("dp2", 2, o, a, t));
    }
    cells.last_mut().unwrap().sending_s = Some(36.0);
    cells.last_mut().unwrap().planned_sending_s = Some(12.0);
    let a = analyze(&cells, 0.9);
    let v = a.verdicts.iter().find(|v| v.cell == "dp2-80").unwrap();
    assert!(v.verdicts[0].taints_throughput(), "{:?}", v.verdicts);
    let row = &a.scaling[0].rows[1];
    assert!(!row.trusted && !row.is_result(&a.scaling[0].rows[0]));
    // more completed than arrived, beyond noise; a stalled client loop
    let mut c = cell("g", 1, 10.0, 13.0, 80.0);
    c.client_loop_lag_max_ms = Some(400.0);
    let a = analyze(&[c], 0.9);
    let v = &a.verdicts[0].verdicts;
    assert!(
        v.iter()
            .any(|x| matches!(x, verdicts::Verdict::AchievedAboveOffered { .. }))
            && v.iter()
                .any(|x| matches!(x, verdicts::Verdict::ClientStall { .. })),
        "{v:?}"
    );
}

/// The client's backlog alone (no server queue in view) is a saturation sign only when the
/// completions confirm it: a Poisson load's in-flight count can climb by its own mean over
/// a window while every arrival completes (the quickstart's 20 req/s cell read "falls
/// behind" at 18.2 arrived and 18.2 completed a second).
#[test]
fn a_growing_backlog_counts_only_when_completions_fall_behind() {
    let with_backlog = |achieved: f64| {
        let mut c = cell("g", 1, 20.0, achieved, 65.0);
        c.server = None;
        // +30 requests in flight over the 60 s window, above the mean of 16
        c.backlog_slope_per_s = Some(0.5);
        c.backlog_mean = Some(16.0);
        c
    };
    let kept_up = with_backlog(20.0);
    let behind = with_backlog(19.5); // 30 of the window's arrivals unfinished
    assert!(!saturation::points(&[&kept_up])[0].queue_growing);
    assert!(saturation::points(&[&behind])[0].queue_growing);
}
