//! Data-parallel routing as vLLM's API server does it: send to the engine with the lowest
//! `4·waiting + running`, read from a snapshot refreshed every 100 ms, plus the requests this
//! router sent to each engine since that snapshot (counted as waiting). Ties go to the
//! lowest rank. A request may pin its rank (`X-data-parallel-rank`).

pub const REFRESH_NS: u64 = 100_000_000;

#[derive(Debug, Clone)]
pub struct Router {
    /// (waiting, running) per engine at the last refresh.
    snapshot: Vec<(u64, u64)>,
    sent_since: Vec<u64>,
    refreshed_at: Option<u64>,
}

impl Router {
    pub fn new(engines: usize) -> Self {
        Self {
            snapshot: vec![(0, 0); engines],
            sent_since: vec![0; engines],
            refreshed_at: None,
        }
    }

    pub fn engines(&self) -> usize {
        self.snapshot.len()
    }

    /// Choose an engine at `now_ns`. `gauges(e)` reads engine `e`'s (waiting, running); it is
    /// called only when the snapshot is due for refresh.
    pub fn route(
        &mut self,
        now_ns: u64,
        pinned: Option<usize>,
        gauges: impl Fn(usize) -> (u64, u64),
    ) -> usize {
        let due = self.refreshed_at.is_none_or(|t| now_ns >= t + REFRESH_NS);
        if due {
            for (e, snap) in self.snapshot.iter_mut().enumerate() {
                *snap = gauges(e);
            }
            self.sent_since.iter_mut().for_each(|c| *c = 0);
            self.refreshed_at = Some(now_ns);
        }
        let chosen = match pinned {
            Some(r) if r < self.snapshot.len() => r,
            _ => (0..self.snapshot.len())
                .min_by_key(|&e| {
                    let (w, r) = self.snapshot[e];
                    (4 * (w + self.sent_since[e]) + r, e)
                })
                .expect("at least one engine"),
        };
        self.sent_since[chosen] += 1;
        chosen
    }
}

/// vLLM's API-server processes as a CPU cost before the engine: `servers` FIFO servers, each
/// request costing 1 ms + 1 µs per prompt token + 50 µs per output token. Off by default.
#[derive(Debug, Clone)]
pub struct FrontEnd {
    free_at: Vec<u64>,
}

impl FrontEnd {
    pub fn new(servers: usize) -> Self {
        Self {
            free_at: vec![0; servers.max(1)],
        }
    }

    pub fn cost_ns(prompt_tokens: u32, output_tokens: u32) -> u64 {
        1_000_000 + 1_000 * prompt_tokens as u64 + 50_000 * output_tokens as u64
    }

    /// When a request arriving at `arrival_ns` is through the front end (FIFO: it takes the
    /// server that frees first).
    pub fn admit(&mut self, arrival_ns: u64, prompt_tokens: u32, output_tokens: u32) -> u64 {
        let (i, &free) = self
            .free_at
            .iter()
            .enumerate()
            .min_by_key(|&(i, t)| (*t, i))
            .expect("at least one server");
        let done = free.max(arrival_ns) + Self::cost_ns(prompt_tokens, output_tokens);
        self.free_at[i] = done;
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_to_least_loaded_counting_own_sends() {
        let mut r = Router::new(2);
        // engine 0 busy (2 running), engine 1 idle
        let g = |e: usize| if e == 0 { (0, 2) } else { (0, 0) };
        assert_eq!(r.route(0, None, g), 1);
        // engine 1 now has 1 sent since the snapshot: score 4 vs engine 0's 2
        assert_eq!(r.route(1, None, g), 0);
        assert_eq!(r.route(2, Some(1), g), 1);
        // after 100 ms the snapshot refreshes and local counts reset
        assert_eq!(r.route(REFRESH_NS + 2, None, |_| (0, 0)), 0);
    }

    #[test]
    fn front_end_is_fifo_over_k_servers() {
        let mut f = FrontEnd::new(2);
        let c = FrontEnd::cost_ns(0, 0);
        assert_eq!(f.admit(0, 0, 0), c);
        assert_eq!(f.admit(0, 0, 0), c);
        assert_eq!(f.admit(0, 0, 0), 2 * c);
    }
}
