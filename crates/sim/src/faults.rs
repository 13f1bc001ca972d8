//! Faults on demand (`--fault-rate P --faults refuse,http500,…`): a seeded draw per request
//! decides whether and how it fails, so a faulty run is reproducible.

use anyhow::{Result, bail};
use loadtest_base::rng::Rng;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Reset the connection without answering.
    Refuse,
    Http500,
    Http429,
    Http503,
    /// Answer nothing, ever (until the client gives up or the server stops).
    Stall,
    /// Close the connection in the middle of the stream.
    DropMidstream,
    /// Send an SSE event that is not JSON.
    Malformed,
}

impl Fault {
    pub const NAMES: [&str; 7] = [
        "refuse",
        "http500",
        "http429",
        "http503",
        "stall",
        "drop-midstream",
        "malformed",
    ];

    pub fn parse(s: &str) -> Result<Fault> {
        Ok(match s.trim() {
            "refuse" => Fault::Refuse,
            "http500" => Fault::Http500,
            "http429" => Fault::Http429,
            "http503" => Fault::Http503,
            "stall" => Fault::Stall,
            "drop-midstream" => Fault::DropMidstream,
            "malformed" => Fault::Malformed,
            other => bail!(
                "unknown fault `{other}`\nhint: choose from {}",
                Fault::NAMES.join(",")
            ),
        })
    }
}

pub struct Faults {
    rate: f64,
    kinds: Vec<Fault>,
    rng: Mutex<Rng>,
}

impl Faults {
    pub fn new(rate: f64, kinds: Vec<Fault>, seed: u64) -> Result<Self> {
        if !(0.0..=1.0).contains(&rate) {
            bail!("`--fault-rate {rate}` must be in [0, 1]");
        }
        if rate > 0.0 && kinds.is_empty() {
            bail!(
                "`--fault-rate` without `--faults`\nhint: e.g. `--faults http500,drop-midstream`"
            );
        }
        Ok(Self {
            rate,
            kinds,
            rng: Mutex::new(Rng::derive(seed, 0xFA17)),
        })
    }

    pub fn none() -> Self {
        Self {
            rate: 0.0,
            kinds: Vec::new(),
            rng: Mutex::new(Rng::new(0)),
        }
    }

    pub fn draw(&self) -> Option<Fault> {
        if self.rate <= 0.0 {
            return None;
        }
        let mut rng = self.rng.lock().expect("fault rng");
        if rng.f64() >= self.rate {
            return None;
        }
        let i = rng.range_inclusive(0, self.kinds.len() as u64 - 1) as usize;
        Some(self.kinds[i])
    }
}
