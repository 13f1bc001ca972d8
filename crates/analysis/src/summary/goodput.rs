//! Service-level objectives for goodput (`--goodput ttft:MS tpot:MS e2el:MS`, as vLLM).

use crate::record::{ContentEvents, RequestRecord, TokenCounts};
use anyhow::{Result, bail};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slo {
    TtftMs(f64),
    TpotMs(f64),
    E2elMs(f64),
}

impl Slo {
    /// Parse one `name:milliseconds` item.
    pub fn parse(s: &str) -> Result<Slo> {
        let Some((k, v)) = s.split_once(':') else {
            bail!("`--goodput {s}`: expected `NAME:MS`\nhint: e.g. `--goodput ttft:500 tpot:50`");
        };
        let ms: f64 = match v.parse() {
            Ok(x) if x > 0.0 && f64::is_finite(x) => x,
            _ => bail!("`--goodput {s}`: `{v}` is not a positive number of milliseconds"),
        };
        Ok(match k {
            "ttft" => Slo::TtftMs(ms),
            "tpot" => Slo::TpotMs(ms),
            "e2el" => Slo::E2elMs(ms),
            _ => bail!("`--goodput {s}`: unknown metric `{k}`\nhint: use ttft, tpot or e2el"),
        })
    }
}

/// A request meets the SLOs when it succeeded and every stated bound holds. A failed
/// request never does (it counts against goodput).
pub fn meets<E: ContentEvents, K: TokenCounts>(r: &RequestRecord<E, K>, slos: &[Slo]) -> bool {
    if !r.is_ok() {
        return false;
    }
    slos.iter().all(|s| match *s {
        Slo::TtftMs(b) => r.ttft_ns().is_some_and(|t| t as f64 / 1e6 <= b),
        Slo::TpotMs(b) => r.tpot_ns().is_none_or(|t| t / 1e6 <= b),
        Slo::E2elMs(b) => r.e2e_ns().is_some_and(|t| t as f64 / 1e6 <= b),
    })
}
