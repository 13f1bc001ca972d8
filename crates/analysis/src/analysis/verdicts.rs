//! Validity verdicts: reasons a cell's numbers should not be read at face value, from
//! "p99 of too few requests" to the implausible (sending far over plan, a stalled client,
//! more achieved than arrived, super-linear scaling). Some taint a result built on the cell
//! (a plateau, a speedup): [`Verdict::taints_throughput`].

use super::CellInput;
use super::saturation::GroupFinding;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// The client could not keep its schedule or its CPU was full.
    ClientLimited {
        send_lag_p99_ms: Option<f64>,
        cpu_share: Option<f64>,
    },
    /// Requests ended before their requested tokens under ignore_eos.
    TruncatedOutputs {
        count: u64,
    },
    ErrorRate {
        failed: u64,
        sent: u64,
    },
    /// Too few requests in the window for the stated p99 to mean much.
    TooFewForP99 {
        measured: u64,
    },
    /// The window is not much longer than one request.
    WindowShort {
        window_s: f64,
        e2e_p50_s: f64,
    },
    /// The client's mean TTFT is far from the server's own histogram.
    TtftDisagreesWithServer {
        client_ms: f64,
        server_ms: f64,
    },
    /// This configuration never saturated in the tested range.
    NeverSaturated,
    /// No request of the window succeeded: nothing to measure, and why.
    NoCompletions {
        reason: String,
    },
    /// Sending took far longer than the schedule planned: the client or the machine
    /// stalled, so the offered load was not what the cell says.
    SendingOverPlan {
        planned_s: f64,
        sending_s: f64,
    },
    /// The client's event loop stalled (its worst lateness), so timestamps in that span
    /// include the stall.
    ClientStall {
        max_lag_ms: f64,
    },
    /// More completed than arrived, beyond sampling noise: the window or the clock is off.
    AchievedAboveOffered {
        achieved: f64,
        arrival: f64,
    },
    /// A saturated cell whose output-token rate was still rising (the batch still
    /// filling): its throughput is a lower bound on the capacity.
    CapacityNotSteady,
    /// Its configuration scaled super-linearly over the base (efficiency > 110%): a
    /// measurement fault until proven otherwise.
    SuperLinearScaling {
        dp: u32,
        efficiency: f64,
    },
    /// Requests of the window were cut off before they finished (the drain limit, the
    /// request timeout): their latencies are right-censored.
    CutOff {
        cut: u64,
        measured: u64,
    },
    /// A cell merged from shards that did not run as one load point (a late start, a
    /// clock that may be off): its offered load is not what the cell says.
    ShardsApart {
        why: Vec<String>,
    },
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CellVerdicts {
    pub cell: String,
    pub verdicts: Vec<Verdict>,
}

impl CellVerdicts {
    /// Every verdict of the cell in words, `; `-separated (empty when there is none).
    pub fn describe_all(&self) -> String {
        self.verdicts
            .iter()
            .map(Verdict::describe)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

pub const ERROR_RATE: f64 = 0.01;
pub const SEND_LAG_MS: f64 = 10.0;
pub const CPU_SHARE: f64 = 0.9;
/// Sending may overrun its plan by this share (plus a second) before it is implausible.
pub const SENDING_OVERRUN: f64 = 0.5;
/// A loop stall this long (ms) falsifies the timestamps taken around it.
pub const STALL_MS: f64 = 100.0;
/// Scaling efficiency above this is a measurement fault until proven otherwise.
pub const SUPER_LINEAR: f64 = 1.10;
/// Completions may exceed arrivals by this many standard deviations (Poisson) and this
/// share before they are implausible.
pub const ABOVE_OFFERED_SIGMAS: f64 = 4.0;
pub const ABOVE_OFFERED_SHARE: f64 = 0.05;

impl Verdict {
    /// Whether the cell's throughput cannot carry a result built on it (a plateau, a
    /// speedup): the measurement itself is in doubt, not just noisy.
    pub fn taints_throughput(&self) -> bool {
        // (a cell without completions is left out of the curve, and a plateau still
        // rising is the configuration's own flag: neither taints the other cells)
        matches!(
            self,
            Verdict::ClientLimited { .. }
                | Verdict::SendingOverPlan { .. }
                | Verdict::ClientStall { .. }
                | Verdict::AchievedAboveOffered { .. }
                | Verdict::ShardsApart { .. }
        )
    }
}

/// Cells of a configuration whose scaling came out super-linear get the verdict too.
pub fn flag_super_linear(
    verdicts: &mut [CellVerdicts],
    cells: &[CellInput],
    scaling: &[super::scaling::ScalingFinding],
) {
    for f in scaling {
        let base_saturated = f.rows.first().is_some_and(|b| b.saturated);
        // between plateaus only: a speedup over a base that never saturated is a bound
        for r in f
            .rows
            .iter()
            .filter(|r| r.efficiency > SUPER_LINEAR && r.saturated && base_saturated)
        {
            for (v, c) in verdicts.iter_mut().zip(cells) {
                if c.family == f.family && c.dp == r.dp && c.offered_rate.is_finite() {
                    v.verdicts.push(Verdict::SuperLinearScaling {
                        dp: r.dp,
                        efficiency: r.efficiency,
                    });
                }
            }
        }
    }
}

/// The implausibility checks of one cell: sending over plan, loop stalls, more achieved
/// than arrived.
fn implausible(c: &CellInput, v: &mut Vec<Verdict>) {
    if let (Some(sent), Some(plan)) = (c.sending_s, c.planned_sending_s)
        && sent > plan * (1.0 + SENDING_OVERRUN) + 1.0
    {
        v.push(Verdict::SendingOverPlan {
            planned_s: plan,
            sending_s: sent,
        });
    }
    if let Some(l) = c.client_loop_lag_max_ms
        && l > STALL_MS
    {
        v.push(Verdict::ClientStall { max_lag_ms: l });
    }
    if !c.shards_apart.is_empty() {
        v.push(Verdict::ShardsApart {
            why: c.shards_apart.clone(),
        });
    }
    let expected = c.arrival_rate * c.window_s;
    let got = c.achieved_rate * c.window_s;
    if c.no_completions.is_none()
        && expected > 0.0
        && got - expected > ABOVE_OFFERED_SIGMAS * expected.sqrt() + ABOVE_OFFERED_SHARE * expected
    {
        v.push(Verdict::AchievedAboveOffered {
            achieved: c.achieved_rate,
            arrival: c.arrival_rate,
        });
    }
}

pub fn judge(cells: &[CellInput], groups: &[GroupFinding]) -> Vec<CellVerdicts> {
    cells
        .iter()
        .map(|c| {
            let mut v = Vec::new();
            let lagging = c.send_lag_p99_ms.is_some_and(|l| l > SEND_LAG_MS);
            let busy = c.client_cpu_share.is_some_and(|s| s > CPU_SHARE)
                || c.client_loop_lag_p99_ms.is_some_and(|l| l > SEND_LAG_MS);
            if lagging || busy {
                v.push(Verdict::ClientLimited {
                    send_lag_p99_ms: c.send_lag_p99_ms,
                    cpu_share: c.client_cpu_share,
                });
            }
            if c.truncated > 0 {
                v.push(Verdict::TruncatedOutputs { count: c.truncated });
            }
            if c.sent > 0 && c.failed as f64 / c.sent as f64 > ERROR_RATE {
                v.push(Verdict::ErrorRate {
                    failed: c.failed,
                    sent: c.sent,
                });
            }
            if c.measured < 100 {
                v.push(Verdict::TooFewForP99 {
                    measured: c.measured,
                });
            }
            if let Some(reason) = &c.no_completions {
                v.push(Verdict::NoCompletions {
                    reason: reason.clone(),
                });
            }
            implausible(c, &mut v);
            if c.measured_cut > 0 && c.no_completions.is_none() {
                v.push(Verdict::CutOff {
                    cut: c.measured_cut,
                    measured: c.measured,
                });
            }
            // a window too short to count completions in: the figure is the token rate alone
            if let Some(e) = c.e2el_p50_ms
                && c.achieved_from == "output_token_rate"
            {
                v.push(Verdict::WindowShort {
                    window_s: c.window_s,
                    e2e_p50_s: e.value / 1000.0,
                });
            }
            // a saturated point past the knee: the window's requests (the client's figure)
            // and the first tokens the server emitted in the window (its histogram) are
            // different populations once a queue grows, so they are not compared there
            let past_saturation = groups.iter().any(|g| {
                g.group == c.group
                    && g.saturation
                        .as_ref()
                        .is_some_and(|s| c.offered_rate >= s.offered)
            });
            if let (false, Some(client), Some(server)) = (
                past_saturation,
                c.ttft_mean_ms,
                c.server.as_ref().and_then(|s| s.server_ttft_mean_ms),
            ) {
                // The client sees the first token after the server produced it: never much
                // earlier; much later means client or network overhead in the figures.
                if client < server * 0.8 - 2.0 || client > server * 1.5 + 50.0 {
                    v.push(Verdict::TtftDisagreesWithServer {
                        client_ms: client,
                        server_ms: server,
                    });
                }
            }
            if groups
                .iter()
                .any(|g| g.group == c.group && g.saturation.is_none())
            {
                v.push(Verdict::NeverSaturated);
            }
            // a saturated point whose token rate was still climbing is no plateau
            if past_saturation && c.token_rate_rising {
                v.push(Verdict::CapacityNotSteady);
            }
            CellVerdicts {
                cell: c.id.clone(),
                verdicts: v,
            }
        })
        .collect()
}

impl Verdict {
    pub fn describe(&self) -> String {
        match self {
            Verdict::ClientLimited {
                send_lag_p99_ms,
                cpu_share,
            } => format!(
                "client-limited (send lag p99 {}, client CPU {}): latencies include client queueing",
                send_lag_p99_ms.map_or("-".into(), |l| format!("{l:.1} ms")),
                cpu_share.map_or("-".into(), |s| format!("{:.0}%", s * 100.0))
            ),
            Verdict::TruncatedOutputs { count } => {
                format!("{count} outputs truncated (fewer tokens than requested)")
            }
            Verdict::ErrorRate { failed, sent } => {
                format!(
                    "{failed} of {sent} requests failed ({:.1}%)",
                    100.0 * *failed as f64 / *sent as f64
                )
            }
            Verdict::TooFewForP99 { measured } => {
                format!("only {measured} requests measured: p99 is not meaningful")
            }
            Verdict::WindowShort {
                window_s,
                e2e_p50_s,
            } => format!(
                "window {window_s:.1} s vs e2e p50 {e2e_p50_s:.1} s: too short to count completions, throughput taken from the output-token rate alone; lengthen the duration"
            ),
            Verdict::TtftDisagreesWithServer {
                client_ms,
                server_ms,
            } => format!("client TTFT mean {client_ms:.1} ms vs server's own {server_ms:.1} ms"),
            Verdict::NeverSaturated => {
                "its server configuration never saturated in the tested range".into()
            }
            Verdict::NoCompletions { reason } => {
                format!("not measured: {reason}; the cell is unknown, not 0 req/s")
            }
            Verdict::SendingOverPlan {
                planned_s,
                sending_s,
            } => format!(
                "implausible: sending took {sending_s:.1} s where the schedule planned {planned_s:.1} s (the client or the machine stalled); its load is not what the cell says"
            ),
            Verdict::ClientStall { max_lag_ms } => format!(
                "implausible: the client's event loop stalled for up to {max_lag_ms:.0} ms; timestamps around the stall are late"
            ),
            Verdict::AchievedAboveOffered { achieved, arrival } => format!(
                "implausible: {achieved:.2} req/s achieved where {arrival:.2} req/s arrived, beyond sampling noise"
            ),
            Verdict::CapacityNotSteady => "the output-token rate was still rising in the window (the batch still filling): its throughput is a lower bound on the capacity; lengthen the warm-up".into(),
            Verdict::SuperLinearScaling { dp, efficiency } => format!(
                "implausible: dp={dp} scaled at {:.0}% efficiency (super-linear): a measurement fault until proven otherwise",
                efficiency * 100.0
            ),
            Verdict::ShardsApart { why } => format!(
                "its shards did not run as one load point: {}",
                why.join("; ")
            ),
            Verdict::CutOff { cut, measured } => format!(
                "{cut} of the window's {measured} requests were cut off before they finished: latencies right-censored, `>` figures are lower bounds"
            ),
        }
    }
}
