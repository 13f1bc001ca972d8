//! The saturation point of one server configuration, said as the data say it: the first
//! tested rate where the server stopped keeping up (achieved / arrived < 0.95), or TTFT p50
//! passed 3× its low-load value, or a waiting queue kept growing. The onset lies between
//! the last rate that kept up and that one; the capacity is the plateau (the highest
//! throughput achieved at or past saturation), and where the plateau falls inside that
//! interval it is also the estimate of the onset (an open-loop server falls behind where
//! the offered load reaches its capacity). A configuration that never saturated has no
//! plateau, only a lower bound.

use super::{CellInput, Point};
use crate::stats::survival::Figure;
use serde::Serialize;

pub const KEEP_UP: f64 = 0.95;
pub const TTFT_BLOWUP: f64 = 3.0;
/// A server waiting queue growing faster than this (requests/s), by at least
/// `QUEUE_MIN_GROWTH` requests over the window, is not draining.
pub const QUEUE_GROWTH: f64 = 0.5;
pub const QUEUE_MIN_GROWTH: f64 = 5.0;
/// The client's backlog (requests in flight) is growing when it gains more over the window
/// than its own mean (and at least 10 requests): Poisson bursts do not do that.
pub const BACKLOG_MIN_GROWTH: f64 = 10.0;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Achieved fell below 95% of what arrived.
    Throughput,
    /// TTFT p50 above 3× its low-load value.
    Ttft,
    /// The waiting queue or the client's backlog kept growing.
    Queue,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Saturation {
    /// The first tested offered rate that did not keep up.
    pub offered: f64,
    /// The last tested rate below it that kept up (`None`: the lowest rate tested already
    /// did not): the onset lies in `(kept_up, offered]`.
    pub kept_up: Option<f64>,
    /// The plateau: the highest throughput achieved at or past saturation (req/s).
    pub capacity: f64,
    /// The plateau was measured while the output-token rate was still rising (the batch
    /// filling): a lower bound on the capacity, not the capacity.
    pub capacity_is_lower_bound: bool,
    /// Where the onset most likely is: the capacity, when it lies inside the interval.
    pub onset_estimate: Option<f64>,
    pub reasons: Vec<Reason>,
    /// The last point before saturation, if any, and the highest point tested.
    pub before: Option<Point>,
    pub after: Point,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupFinding {
    pub group: String,
    pub family: String,
    pub dp: u32,
    pub points: Vec<Point>,
    pub low_load_ttft_ms: Option<f64>,
    pub saturation: Option<Saturation>,
    pub max_throughput: f64,
    pub max_throughput_offered: f64,
    /// Largest offered rate whose SLO attainment met the target (None: no SLOs, or none met).
    pub goodput_rate: Option<f64>,
    /// Not saturated, and achieved fell short of what arrived while the engines' queues stayed
    /// empty: the requests never reached the engines in time (a client or front-end limit), or
    /// the window was too short to count their completions.
    pub short_of_offered_without_engine_queue: bool,
}

fn mean(xs: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = xs.collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The mean of repeats' figures: a lower bound if any of them is.
fn mean_figure<'a>(xs: impl Iterator<Item = &'a Figure>) -> Option<Figure> {
    let v: Vec<&Figure> = xs.collect();
    Some(Figure {
        value: mean(v.iter().map(|f| f.value))?,
        lower_bound: v.iter().any(|f| f.lower_bound),
    })
}

pub(super) fn points(cells: &[&CellInput]) -> Vec<Point> {
    let mut rates: Vec<f64> = cells.iter().map(|c| c.offered_rate).collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    rates
        .into_iter()
        .map(|r| {
            let cs: Vec<&&CellInput> = cells.iter().filter(|c| c.offered_rate == r).collect();
            let growing = cs.iter().any(|c| {
                let server = c
                    .server
                    .as_ref()
                    .and_then(|s| s.waiting_slope_per_s)
                    .is_some_and(|s| s > QUEUE_GROWTH && s * c.window_s >= QUEUE_MIN_GROWTH);
                // confirmed by the completions: a backlog that really grew left that many
                // arrivals of the window unfinished (a regression through a Poisson load's
                // in-flight count can climb by its mean while completions keep up: the
                // quickstart's 20 req/s cell, 18.2 arrived and 18.2 completed a second)
                let client = c.backlog_slope_per_s.is_some_and(|s| {
                    s * c.window_s > BACKLOG_MIN_GROWTH.max(c.backlog_mean.unwrap_or(0.0))
                }) && (c.arrival_rate - c.achieved_rate) * c.window_s
                    >= BACKLOG_MIN_GROWTH;
                server || client
            });
            let idle_queue = cs.iter().all(|c| {
                c.server
                    .as_ref()
                    .and_then(|s| s.waiting_max)
                    .is_some_and(|w| w < 1.0)
            });
            Point {
                offered: r,
                arrival: mean(cs.iter().map(|c| c.arrival_rate)).unwrap_or(r),
                achieved: mean(cs.iter().map(|c| c.achieved_rate)).unwrap_or(0.0),
                ttft_p50_ms: mean_figure(cs.iter().filter_map(|c| c.ttft_p50_ms.as_ref())),
                ttft_p99_ms: mean_figure(cs.iter().filter_map(|c| c.ttft_p99_ms.as_ref())),
                tpot_p50_ms: mean(cs.iter().filter_map(|c| c.tpot_p50_ms)),
                tpot_p99_ms: mean(cs.iter().filter_map(|c| c.tpot_p99_ms)),
                ttft_mean_ms: mean(cs.iter().filter_map(|c| c.ttft_mean_ms)),
                phases: crate::latency_breakdown::Phases::mean(
                    cs.iter()
                        .filter_map(|c| c.server.as_ref()?.breakdown.as_ref().map(|b| &b.all)),
                ),
                token_rate_rising: cs.iter().any(|c| c.token_rate_rising),
                slo_attainment: mean(cs.iter().filter_map(|c| c.slo_attainment)),
                queue_growing: growing,
                engines_idle_queue: idle_queue,
                cells: cs.iter().map(|c| c.id.clone()).collect(),
            }
        })
        .collect()
}

pub fn analyze_group(
    group: &str,
    family: &str,
    dp: u32,
    cells: &[&CellInput],
    slo_target: f64,
) -> GroupFinding {
    let pts = points(cells);
    // the low-load reference is a measured value, never a bound
    let low = pts
        .first()
        .and_then(|p| p.ttft_p50_ms)
        .filter(|f| !f.lower_bound)
        .map(|f| f.value);
    let reasons_at = |p: &Point| {
        let mut r = Vec::new();
        // completions against what arrived in the window, not the nominal rate: a short
        // window's Poisson sample can be 5% light
        if p.arrival.is_finite() && p.arrival > 0.0 && p.achieved < KEEP_UP * p.arrival {
            r.push(Reason::Throughput);
        }
        // a lower bound above 3× is above 3× all the same
        if let (Some(l), Some(t)) = (low, p.ttft_p50_ms)
            && t.value > TTFT_BLOWUP * l
        {
            r.push(Reason::Ttft);
        }
        if p.queue_growing {
            r.push(Reason::Queue);
        }
        r
    };
    // A point that fell short of what arrived while the engines' queues stayed empty and
    // TTFT did not move is not the server saturating: the load never reached it.
    let frontend_limited =
        |p: &Point, r: &[Reason]| r == [Reason::Throughput] && p.engines_idle_queue;
    let mut saturation = None;
    let mut short_without_queue = false;
    for (i, p) in pts.iter().enumerate() {
        let r = reasons_at(p);
        if r.is_empty() {
            continue;
        }
        if frontend_limited(p, &r) {
            short_without_queue = true;
            continue;
        }
        let past = &pts[i..];
        let top = past
            .iter()
            .max_by(|a, b| a.achieved.total_cmp(&b.achieved))
            .expect("non-empty");
        let kept_up = i.checked_sub(1).map(|j| pts[j].offered);
        let capacity = top.achieved;
        saturation = Some(Saturation {
            offered: p.offered,
            kept_up,
            capacity,
            capacity_is_lower_bound: top.token_rate_rising,
            onset_estimate: (capacity > kept_up.unwrap_or(0.0) && capacity <= p.offered)
                .then_some(capacity),
            reasons: r,
            before: i.checked_sub(1).map(|j| pts[j].clone()),
            after: pts.last().expect("non-empty").clone(),
        });
        break;
    }
    let (max_throughput, max_throughput_offered) = pts
        .iter()
        .map(|p| (p.achieved, p.offered))
        .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a });
    let goodput_rate = pts
        .iter()
        .filter(|p| p.slo_attainment.is_some_and(|a| a >= slo_target))
        .map(|p| p.offered)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
    GroupFinding {
        group: group.to_string(),
        family: family.to_string(),
        dp,
        low_load_ttft_ms: low,
        saturation,
        max_throughput,
        max_throughput_offered,
        goodput_rate,
        short_of_offered_without_engine_queue: short_without_queue,
        points: pts,
    }
}
