//! The simulator in virtual time: the same engines and router, driven by a discrete-event
//! loop that jumps from one event to the next, so an hour of traffic takes seconds and a
//! seed fixes the whole timeline.

use super::engine::{Engine, EngineRequest, TokenOut};
use super::metrics::EngineMetrics;
use super::prefix_cache::BlockHash;
use super::profile::Profile;
use super::router::{FrontEnd, Router};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Debug, Clone, PartialEq)]
pub struct VirtualRequest {
    pub arrival_ns: u64,
    pub prompt_tokens: u32,
    pub max_tokens: u32,
    pub min_tokens: u32,
    pub ignore_eos: bool,
    pub pinned_rank: Option<usize>,
    /// Its prompt's full-block hashes (`prefix_cache::block_hashes`); empty: never a hit.
    pub block_hashes: std::sync::Arc<[BlockHash]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct VirtualOutcome {
    /// When the client sent it: its `arrival_ns`, or later when it waited for a slot
    /// (`VirtualConfig::slots`).
    pub arrival_ns: u64,
    /// The client sent it (with slots, a request still waiting for one when sending
    /// stopped is never sent).
    pub sent: bool,
    /// Answered at once without reaching an engine: its prompt and output budget exceed
    /// the profile's `max_model_len` (`server::context_refusal`). Only with slots: without
    /// them the caller leaves such requests out.
    pub refused: bool,
    /// When it entered its engine (after the front end).
    pub engine_arrival_ns: u64,
    pub rank: usize,
    pub first_token_ns: Option<u64>,
    pub finish_ns: Option<u64>,
    pub output_tokens: u32,
}

/// The engines sampled at a fixed virtual interval: their gauges, and their counters where
/// asked for.
#[derive(Debug, Clone)]
pub struct Sample {
    pub t_ns: u64,
    /// (running, waiting, kv usage) per engine.
    pub engines: Vec<(u64, u64, f64)>,
    /// Each engine's counters and histograms then, at the samples `VirtualConfig::
    /// sample_metrics` keeps them (else empty): what a scrape of `/metrics` would read at
    /// that instant (`metrics::render`).
    pub metrics: Vec<EngineMetrics>,
}

/// Which samples keep the engines' counters and histograms (`Sample::metrics`, a few KB an
/// engine each).
#[derive(Debug, Clone, PartialEq)]
pub enum KeepMetrics {
    /// None: the gauges only.
    Never,
    /// Every sample.
    Always,
    /// The first and the last sample, and the two on either side of each of these instants
    /// (ns): where a counter's growth over a window starting or ending there is read.
    Around(Vec<u64>),
}

/// A client that keeps at most `limit` requests in flight (`load.max_concurrency`; a closed
/// loop when every request's `arrival_ns` is 0): a request goes at its `arrival_ns` when a
/// slot is free then, else when one frees (its last token, its timeout, or at once for a
/// request the server refuses), in arrival order; none goes at or after `send_until_ns`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slots {
    pub limit: usize,
    pub send_until_ns: Option<u64>,
    /// A request holds its slot at most this long (the client's request timeout; the
    /// engine keeps running it, as the virtual cell keeps what the client cuts).
    pub timeout_ns: Option<u64>,
    /// The requests are conversations' turns; `None`: each stands alone.
    pub conversations: Option<Conversations>,
}

/// Multi-turn conversations, as the load point sends them: request `c · turns + k` is turn
/// `k` of conversation `c`. Turn 0 takes a slot (at its arrival, in arrival order); each
/// later turn is sent `think_ns` after the one before ended at the client (its last token,
/// its timeout, or at once when refused), unless that falls at or after sending's end; a
/// conversation holds its slot until its last turn ends or its next one is not sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conversations {
    pub turns: u32,
    pub think_ns: u64,
}

impl Conversations {
    fn turns(self) -> usize {
        self.turns.max(1) as usize
    }
}

#[derive(Debug, Clone)]
pub struct VirtualConfig {
    pub profile: Profile,
    pub dp: usize,
    pub seed: u64,
    /// API-server processes for the front-end CPU model; `None` = off.
    pub api_servers: Option<usize>,
    /// The client's concurrency cap; `None`: every request goes at its `arrival_ns`.
    pub slots: Option<Slots>,
    /// Sample the engines every this many ns from 0, and once more when the last request
    /// has ended (`None`: no samples).
    pub sample_every_ns: Option<u64>,
    /// Which samples also keep the engines' counters and histograms: a virtual cell's
    /// stand-in for scraping `/metrics`.
    pub sample_metrics: KeepMetrics,
    /// Give up (`SimError::TooLong`) once the timeline passes this many ns: a profile
    /// whose steps take hours would otherwise run, and sample, for a simulated eternity.
    pub max_span_ns: Option<u64>,
    /// Check request and KV-block conservation after every step (slower).
    pub check_invariants: bool,
    /// Keep every token's time per request (`VirtualRun::token_times`): what a client's
    /// records would hold, for checks that need the stream, not just its ends.
    pub record_token_times: bool,
}

pub struct VirtualRun {
    pub outcomes: Vec<VirtualOutcome>,
    pub samples: Vec<Sample>,
    pub engines: Vec<Engine>,
    /// Every token's time (ns) per request, when asked for (else empty).
    pub token_times: Vec<Vec<u64>>,
    /// Steps executed, over all engines.
    pub steps: u64,
    pub end_ns: u64,
    /// With slots: one came free before `send_until_ns` with no request left to send (a
    /// closed loop given too few requests: give it more).
    pub wanted_more: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    // at equal times: finish steps, then free the slots of timed-out requests, then send,
    // then admit arrivals, then start steps, then sample
    StepEnd(usize),
    /// A request's timeout: its client slot frees (when its last token has not).
    Timeout(usize),
    /// The client sends a request (with slots).
    Send(usize),
    Arrival(usize),
    Begin(usize),
    Sample,
}

/// Pending events, earliest first; at equal times by [`Kind`], then in the order pushed,
/// so a seed fixes the whole timeline.
#[derive(Default)]
struct Events {
    heap: BinaryHeap<Reverse<(u64, Kind, u64)>>,
    pushed: u64,
}

impl Events {
    fn push(&mut self, t: u64, k: Kind) {
        self.pushed += 1;
        self.heap.push(Reverse((t, k, self.pushed)));
    }

    fn pop(&mut self) -> Option<(u64, Kind)> {
        self.heap.pop().map(|Reverse((t, k, _))| (t, k))
    }

    /// Only the sampler is left: nothing more can happen to a request.
    fn only_samples(&self) -> bool {
        self.heap
            .iter()
            .all(|Reverse((_, k, _))| matches!(k, Kind::Sample))
    }
}

/// Why a virtual-time simulation has no result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// The profile's coefficients or limits are not a deployment (`Profile::validate`).
    #[error("{0}")]
    Profile(String),
    /// Requests still waiting when nothing else can happen: each needs more KV blocks than
    /// an engine has.
    #[error(
        "{requests} requests can never run (a prompt larger than the KV cache of {kv_blocks} blocks?)"
    )]
    NeverRun { requests: usize, kv_blocks: u32 },
    /// An engine's bookkeeping broke (`check_invariants`): a bug in the scheduler.
    #[error("engine {engine} at {t_ns} ns: {why}")]
    Invariant {
        engine: usize,
        t_ns: u64,
        why: String,
    },
    /// The timeline ran past `VirtualConfig::max_span_ns` (a profile whose steps take
    /// hours, a load that never drains).
    #[error("the simulation passed {} s of virtual time, its limit", limit_ns / 1_000_000_000)]
    TooLong { limit_ns: u64 },
    /// `simulate_until`'s `stopped` said so (Ctrl-C, SIGTERM).
    #[error("stopped before the simulation ended")]
    Stopped,
}

/// Run `requests` (any order) through the simulated deployment until every one finished.
pub fn simulate(cfg: &VirtualConfig, requests: &[VirtualRequest]) -> Result<VirtualRun, SimError> {
    simulate_until(cfg, requests, &|| false)
}

/// [`simulate`], asking `stopped` every few thousand events whether to give up
/// (`SimError::Stopped`): a long prediction answers Ctrl-C within milliseconds.
pub fn simulate_until(
    cfg: &VirtualConfig,
    requests: &[VirtualRequest],
    stopped: &dyn Fn() -> bool,
) -> Result<VirtualRun, SimError> {
    cfg.profile
        .validate()
        .map_err(|e| SimError::Profile(format!("{e:#}")))?;
    let mut sim = Sim::new(cfg, requests);
    match cfg.slots {
        None => sim.pass_front_end(),
        Some(slots) => sim.start_client(slots),
    }
    if cfg.sample_every_ns.is_some() {
        sim.events.push(0, Kind::Sample);
    }
    let end_ns = sim.run(stopped)?;
    sim.into_run(end_ns)
}

/// The deployment while it runs, and what it has recorded so far.
struct Sim<'a> {
    cfg: &'a VirtualConfig,
    requests: &'a [VirtualRequest],
    engines: Vec<Engine>,
    router: Router,
    /// Per engine: a step is running or about to begin (a `Begin` or `StepEnd` is queued).
    busy: Vec<bool>,
    events: Events,
    outcomes: Vec<VirtualOutcome>,
    samples: Vec<Sample>,
    token_times: Vec<Vec<u64>>,
    /// Tokens of the step just finished (kept to reuse its allocation).
    outs: Vec<TokenOut>,
    steps: u64,
    /// Requests sent to an engine and not finished yet.
    remaining: usize,
    /// With slots: the client's state.
    client: Client,
}

/// The client's side of a concurrency cap (`Slots`).
#[derive(Default)]
struct Client {
    /// Request indices in arrival order, and how many of them have had a slot.
    order: Vec<usize>,
    next: usize,
    /// `Send` events queued and not yet played.
    pending: usize,
    /// Per request: it holds a slot (sent, neither ended nor timed out).
    holds: Vec<bool>,
    /// The API-server queue (`api_servers`), fed as requests are sent.
    front: Option<FrontEnd>,
    wanted_more: bool,
}

impl<'a> Sim<'a> {
    fn new(cfg: &'a VirtualConfig, requests: &'a [VirtualRequest]) -> Self {
        let dp = cfg.dp.max(1);
        let engines: Vec<Engine> = (0..dp)
            .map(|r| {
                Engine::new(
                    cfg.profile.clone(),
                    loadtest_base::rng::Rng::derive(cfg.seed, r as u64 + 1).next_u64(),
                )
            })
            .collect();
        Sim {
            cfg,
            requests,
            engines,
            router: Router::new(dp),
            busy: vec![false; dp],
            events: Events::default(),
            outcomes: vec![VirtualOutcome::default(); requests.len()],
            samples: Vec::new(),
            token_times: if cfg.record_token_times {
                vec![Vec::new(); requests.len()]
            } else {
                Vec::new()
            },
            outs: Vec::new(),
            steps: 0,
            remaining: if cfg.slots.is_some() {
                0
            } else {
                requests.len()
            },
            client: Client::default(),
        }
    }

    /// Something is left to happen to a request: one is running or about to be sent.
    fn unfinished(&self) -> bool {
        self.remaining > 0 || self.client.pending > 0
    }

    /// The first `limit` requests (in arrival order; of conversations, their first turns)
    /// take a slot each at their arrival.
    fn start_client(&mut self, slots: Slots) {
        let requests = self.requests;
        let turns = slots.conversations.map_or(1, Conversations::turns);
        let mut order: Vec<usize> = (0..requests.len()).step_by(turns).collect();
        order.sort_by_key(|&i| (requests[i].arrival_ns, i));
        self.client = Client {
            order,
            holds: vec![false; requests.len()],
            front: self.cfg.api_servers.map(FrontEnd::new),
            ..Client::default()
        };
        for _ in 0..slots.limit.min(self.client.order.len()) {
            self.give_slot(0);
        }
    }

    /// A slot is free from `t`: the next request in arrival order takes it, sent at its
    /// arrival or at `t`, whichever is later, unless that is past sending's end.
    fn give_slot(&mut self, t: u64) {
        let Some(slots) = self.cfg.slots else { return };
        let until = slots.send_until_ns.unwrap_or(u64::MAX);
        let Some(&i) = self.client.order.get(self.client.next) else {
            self.client.wanted_more |= t < until;
            return;
        };
        let at = self.requests[i].arrival_ns.max(t);
        if at >= until {
            // arrivals are in order: no later one goes either
            self.client.next = self.client.order.len();
            return;
        }
        self.client.next += 1;
        self.client.pending += 1;
        self.events.push(at, Kind::Send(i));
    }

    /// The client sends request `i` at `t`: it reaches its engine after the front end, or
    /// is refused at once and frees its slot.
    fn send(&mut self, i: usize, t: u64) {
        self.client.pending -= 1;
        let r = &self.requests[i];
        let oc = &mut self.outcomes[i];
        oc.arrival_ns = t;
        oc.sent = true;
        let limit = self.cfg.profile.max_model_len;
        if super::server::context_refusal(limit, r.prompt_tokens, Some(r.max_tokens)).is_some() {
            oc.refused = true;
            // answered at once: its slot (or its conversation's next turn) goes on now
            self.client.holds[i] = true;
            self.release(i, t);
            return;
        }
        let fe_ns = (self.cfg.profile.front_end_latency_s * 1e9).round() as u64;
        let mut ready = t.saturating_add(fe_ns);
        if let Some(f) = self.client.front.as_mut() {
            ready = f.admit(ready, r.prompt_tokens, r.max_tokens);
        }
        self.outcomes[i].engine_arrival_ns = ready;
        self.remaining += 1;
        self.client.holds[i] = true;
        self.events.push(ready, Kind::Arrival(i));
        if let Some(d) = self.cfg.slots.and_then(|s| s.timeout_ns) {
            self.events.push(t.saturating_add(d), Kind::Timeout(i));
        }
    }

    /// Request `i` ended, timed out or was refused at `t`: once, its conversation's next
    /// turn is sent after the think time, or else its slot frees.
    fn release(&mut self, i: usize, t: u64) {
        if !self.client.holds.get(i).copied().unwrap_or(false) {
            return;
        }
        self.client.holds[i] = false;
        if let Some((next, think_ns)) = self.next_turn(i) {
            let due = t.saturating_add(think_ns);
            let until = self.cfg.slots.and_then(|s| s.send_until_ns);
            if until.is_none_or(|u| due < u) {
                // the conversation keeps its slot over the think time
                self.client.pending += 1;
                self.events.push(due, Kind::Send(next));
                return;
            }
        }
        self.give_slot(t);
    }

    /// The turn after request `i` in its conversation, and the think time before it.
    fn next_turn(&self, i: usize) -> Option<(usize, u64)> {
        let c = self.cfg.slots?.conversations?;
        let next = i + 1;
        (!next.is_multiple_of(c.turns()) && next < self.requests.len())
            .then_some((next, c.think_ns))
    }

    /// Queue every request's arrival at its engine: after the front end's fixed latency and
    /// (optionally) its API-server CPU queue.
    fn pass_front_end(&mut self) {
        let fe_ns = (self.cfg.profile.front_end_latency_s * 1e9).round() as u64;
        let mut front = self.cfg.api_servers.map(FrontEnd::new);
        let requests = self.requests;
        let mut order: Vec<usize> = (0..requests.len()).collect();
        order.sort_by_key(|&i| (requests[i].arrival_ns, i));
        // The front end is FIFO in arrival order, so admit times are computed in that order.
        for &i in &order {
            let r = &requests[i];
            // saturating: absurd inputs (a front end of 1e12 s) end far away, not in a panic
            let mut ready = r.arrival_ns.saturating_add(fe_ns);
            if let Some(f) = front.as_mut() {
                ready = f.admit(ready, r.prompt_tokens, r.max_tokens);
            }
            self.outcomes[i].arrival_ns = r.arrival_ns;
            self.outcomes[i].sent = true;
            self.outcomes[i].engine_arrival_ns = ready;
            self.events.push(ready, Kind::Arrival(i));
        }
    }

    /// Play events until every request finished; returns the time of the last event.
    fn run(&mut self, stopped: &dyn Fn() -> bool) -> Result<u64, SimError> {
        let mut now = 0;
        let mut n: u32 = 0;
        while let Some((t, kind)) = self.events.pop() {
            n = n.wrapping_add(1);
            if n.is_multiple_of(4096) && stopped() {
                return Err(SimError::Stopped);
            }
            now = t;
            match kind {
                Kind::Timeout(i) => self.release(i, t),
                Kind::Send(i) => self.send(i, t),
                Kind::Arrival(i) => self.arrive(i, t),
                Kind::Begin(e) => self.begin_step(e, t),
                Kind::StepEnd(e) => self.finish_step(e, t)?,
                Kind::Sample => self.sample(t),
            }
            if self.events.only_samples() {
                // the monitor's last scrape, at the stop
                if !self.unfinished()
                    && self.cfg.sample_every_ns.is_some()
                    && self.samples.last().is_some_and(|s| s.t_ns < now)
                {
                    self.sample(now);
                }
                // (requests left with nothing to run them: `into_run` says which)
                break;
            }
            if let Some(limit) = self.cfg.max_span_ns.filter(|&l| now > l) {
                return Err(SimError::TooLong { limit_ns: limit });
            }
        }
        Ok(now)
    }

    fn arrive(&mut self, i: usize, t: u64) {
        let r = &self.requests[i];
        let engines = &mut self.engines;
        let e = self.router.route(t, r.pinned_rank, |e| {
            (engines[e].waiting() as u64, engines[e].running() as u64)
        });
        let output = engines[e].draw_output_len(r.max_tokens, r.min_tokens, r.ignore_eos);
        engines[e].add(EngineRequest {
            id: i as u64,
            prompt_tokens: r.prompt_tokens,
            output_tokens: output,
            max_tokens: r.max_tokens,
            // when the client sent it (a request that waited for a slot was not yet at
            // the server): the server's queue and TTFT histograms time it from here
            arrival_ns: self.outcomes[i].arrival_ns,
            block_hashes: r.block_hashes.clone(),
        });
        self.outcomes[i].rank = e;
        if !self.busy[e] {
            self.busy[e] = true;
            self.events.push(t, Kind::Begin(e));
        }
    }

    fn begin_step(&mut self, e: usize, t: u64) {
        match self.engines[e].begin_step(t) {
            Some(d) => {
                self.steps += 1;
                self.events.push(t.saturating_add(d), Kind::StepEnd(e));
            }
            None => self.busy[e] = false,
        }
    }

    fn finish_step(&mut self, e: usize, t: u64) -> Result<(), SimError> {
        self.outs.clear();
        self.engines[e].finish_step(t, &mut self.outs);
        for o in &self.outs {
            let oc = &mut self.outcomes[o.id as usize];
            if o.index == 0 {
                oc.first_token_ns = Some(t);
            }
            oc.output_tokens = o.index + 1;
            if let Some(ts) = self.token_times.get_mut(o.id as usize) {
                ts.push(t);
            }
            if o.finish.is_some() {
                oc.finish_ns = Some(t);
                self.remaining -= 1;
            }
        }
        if self.cfg.slots.is_some() {
            for k in 0..self.outs.len() {
                let o = &self.outs[k];
                if o.finish.is_some() {
                    self.release(o.id as usize, t);
                }
            }
        }
        if self.cfg.check_invariants {
            self.engines[e]
                .check_invariants()
                .map_err(|why| SimError::Invariant {
                    engine: e,
                    t_ns: t,
                    why,
                })?;
        }
        self.events.push(t, Kind::Begin(e));
        Ok(())
    }

    fn sample(&mut self, t: u64) {
        self.samples.push(Sample {
            t_ns: t,
            engines: self
                .engines
                .iter()
                .map(|en| (en.running() as u64, en.waiting() as u64, en.kv_usage()))
                .collect(),
            metrics: if self.keeps_metrics(t) {
                self.engines.iter().map(|en| en.metrics.clone()).collect()
            } else {
                Vec::new()
            },
        });
        if self.unfinished() {
            self.events.push(
                t + self.cfg.sample_every_ns.unwrap_or(u64::MAX / 2),
                Kind::Sample,
            );
        }
    }

    /// Whether the sample at `t` keeps the counters. Samples fall on multiples of the
    /// interval, so the one just before an instant `a` is the `t` with t ≤ a < t + every,
    /// the one just after it the `t` with a ≤ t < a + every; the last (taken when the last
    /// request ended, off the grid) is the only one with nothing left to run.
    fn keeps_metrics(&self, t: u64) -> bool {
        let every = self.cfg.sample_every_ns.unwrap_or(u64::MAX / 2);
        match &self.cfg.sample_metrics {
            KeepMetrics::Never => false,
            KeepMetrics::Always => true,
            KeepMetrics::Around(at) => {
                t == 0
                    || !self.unfinished()
                    || at
                        .iter()
                        .any(|&a| (t <= a && a < t + every) || (a <= t && t < a + every))
            }
        }
    }

    fn into_run(self, end_ns: u64) -> Result<VirtualRun, SimError> {
        if self.remaining > 0 {
            return Err(SimError::NeverRun {
                requests: self.remaining,
                kv_blocks: self.cfg.profile.num_gpu_blocks,
            });
        }
        Ok(VirtualRun {
            outcomes: self.outcomes,
            samples: self.samples,
            token_times: self.token_times,
            engines: self.engines,
            steps: self.steps,
            end_ns,
            wanted_more: self.client.wanted_more,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
