//! How long a cell is planned to take, read from its typed plan: the sending time (the
//! duration, or the arrival schedule's span; warm-up and cool-down are inside it) and the
//! bound on the drain after it. `run --dry-run` prints them; the run's ETA starts from them.

use super::Cell;
use anyhow::Result;
use loadtest_base::arrivals::Stop;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlannedTime {
    /// Seconds from the cell's start to its last planned send. A conversation's later turns
    /// add their think time; the answers' own latency is not known before the run.
    pub sending_s: f64,
    /// At most this long after sending ends the cell waits for its requests: the drain
    /// limit, or the request timeout where no limit is set.
    pub drain_max_s: f64,
}

impl PlannedTime {
    pub fn of(cell: &Cell) -> Result<Self> {
        let load = &cell.plan.load;
        let turns = cell.plan.workload.prompts.turns();
        let sending_s = match load.stop {
            Stop::Duration(d) => d,
            Stop::Count(_) => {
                let last = load.schedule(cell.repeat)?.last().copied().unwrap_or(0);
                last as f64 / 1e9 + f64::from(turns.saturating_sub(1)) * load.think_time_s
            }
        };
        let drain_max_s = load.drain.unwrap_or(load.request_timeout).as_secs_f64();
        Ok(Self {
            sending_s,
            drain_max_s,
        })
    }

    /// The longest the cell can take by its plan: sending, then the whole drain bound.
    pub fn max_s(&self) -> f64 {
        self.sending_s + self.drain_max_s
    }
}

/// The planned time of many cells: their sending added up, and the most they can take with
/// every drain bound used in full.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Total {
    pub cells: usize,
    pub sending_s: f64,
    pub max_s: f64,
}

impl Total {
    pub fn add(&mut self, t: PlannedTime) {
        self.cells += 1;
        self.sending_s += t.sending_s;
        self.max_s += t.max_s();
    }
}
