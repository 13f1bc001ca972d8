//! Validity verdicts: reasons a cell's numbers should not be read at face value.

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
            if let Some(e) = c.e2el_p50_ms
                && e / 1000.0 > c.window_s / 3.0
            {
                v.push(Verdict::WindowShort {
                    window_s: c.window_s,
                    e2e_p50_s: e / 1000.0,
                });
            }
            if let (Some(client), Some(server)) = (
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
                "window {window_s:.1} s vs e2e p50 {e2e_p50_s:.1} s: throughput under-counted near saturation"
            ),
            Verdict::TtftDisagreesWithServer {
                client_ms,
                server_ms,
            } => format!("client TTFT mean {client_ms:.1} ms vs server's own {server_ms:.1} ms"),
            Verdict::NeverSaturated => {
                "its server configuration never saturated in the tested range".into()
            }
        }
    }
}
