//! Engines in real time: one OS thread per data-parallel rank steps its engine on the wall
//! clock (precise sleeps, not tokio's millisecond timer) and hands each token to its
//! request's consumer (see `direct`).
//!
//! The engine sits behind a mutex that the thread holds only to plan or commit a step, so
//! HTTP tasks can add requests and `/metrics` can read gauges while a step "runs". A step's
//! tokens are delivered while the next step runs, as vLLM streams a step's outputs from its
//! API server while the GPU computes the next: delivery does not stretch the step.

use super::direct::{Consumer, Delivered};
use super::engine::{Engine, EngineRequest, TokenOut};
use super::metrics::{EngineMetrics, Gauges};
use super::profile::Profile;
use loadtest_base::clock::{self, Clock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Tokens are flushed to clients at most this often: every step when steps are longer (real
/// steps take milliseconds), every few steps when a profile's steps are shorter, so a tiny
/// step does not cost a write per stream. (Steps of zero time are bursts, below.)
const FLUSH_EVERY_NS: u64 = 100_000;

/// Steps that take no time run back to back under the engine lock for up to this long, then
/// their tokens are flushed. Long enough that a burst finishes every running request even
/// with thousands in flight (each then costs one write, not one per token, which kept the
/// `zero` simulator from collapsing when overloaded), short enough that a request arriving
/// meanwhile waits at most this for the lock.
const ZERO_BURST_NS: u64 = 1_000_000;

struct Core {
    engine: Engine,
    /// Consumers of requests added since the thread last looked. Pushed under the same lock
    /// as the request itself, so a request's consumer is known before its first token.
    inbox: Vec<(u64, Consumer)>,
}

struct Shared {
    core: Mutex<Core>,
    wake: Condvar,
    stop: AtomicBool,
}

/// Handle to one engine thread.
pub struct RealtimeEngine {
    shared: Arc<Shared>,
    clock: Clock,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RealtimeEngine {
    pub fn start(profile: Profile, seed: u64, rank: usize, clock: Clock) -> Self {
        let shared = Arc::new(Shared {
            core: Mutex::new(Core {
                engine: Engine::new(profile, seed),
                inbox: Vec::new(),
            }),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("sim-engine-{rank}"))
            .spawn(move || run(s, clock))
            .expect("spawn engine thread");
        Self {
            shared,
            clock,
            thread: Some(thread),
        }
    }

    /// Add a request; its tokens go to `to`. Returns the output length drawn for it.
    pub fn submit(
        &self,
        mut req: EngineRequest,
        min_tokens: u32,
        ignore_eos: bool,
        to: Consumer,
    ) -> u32 {
        let mut core = self.shared.core.lock().expect("engine lock");
        req.output_tokens = core
            .engine
            .draw_output_len(req.max_tokens, min_tokens, ignore_eos);
        let output = req.output_tokens;
        core.inbox.push((req.id, to));
        core.engine.add(req);
        drop(core);
        self.shared.wake.notify_one();
        output
    }

    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// (waiting, running), for the router.
    pub fn load(&self) -> (u64, u64) {
        let core = self.shared.core.lock().expect("engine lock");
        (core.engine.waiting() as u64, core.engine.running() as u64)
    }

    /// Forget the cached prefix blocks no request uses.
    pub fn reset_prefix_cache(&self) -> usize {
        let mut core = self.shared.core.lock().expect("engine lock");
        core.engine.reset_prefix_cache()
    }

    pub fn snapshot(&self) -> (EngineMetrics, Gauges) {
        let core = self.shared.core.lock().expect("engine lock");
        let e = &core.engine;
        (
            e.metrics.clone(),
            Gauges {
                running: e.running() as u64,
                waiting: e.waiting() as u64,
                kv_usage: e.kv_usage(),
            },
        )
    }
}

impl Drop for RealtimeEngine {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: Arc<Shared>, clock: Clock) {
    clock::tighten_timer_slack();
    let mut consumers: HashMap<u64, Consumer> = HashMap::new();
    // tokens of the last finished step, delivered while the next one runs
    let mut outs: Vec<TokenOut> = Vec::with_capacity(1024);
    let mut gone: Vec<u64> = Vec::new();
    let mut touched: Vec<u64> = Vec::new();
    let mut last_flush_ns = 0u64;
    loop {
        let mut core = shared.core.lock().expect("engine lock");
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        for id in gone.drain(..) {
            // vLLM aborts a request whose client went away
            core.engine.abort(id);
        }
        consumers.extend(core.inbox.drain(..));
        let mut start = clock.now_ns();
        let mut step = core.engine.begin_step(start);
        // Steps that take no time (the `zero` profile) run back to back under the lock:
        // spinning through them one lock and one flush at a time took half the core from
        // the HTTP side and the simulator fell over near 1,000 req/s.
        let burst_end = start + ZERO_BURST_NS;
        while step == Some(0) && start < burst_end {
            core.engine.finish_step(start, &mut outs);
            start = clock.now_ns();
            step = core.engine.begin_step(start);
        }
        if step.is_none() && outs.is_empty() {
            // nothing to do: sleep until a request arrives (or check `stop` again)
            drop(
                shared
                    .wake
                    .wait_timeout(core, Duration::from_millis(50))
                    .expect("engine lock"),
            );
            continue;
        }
        drop(core);
        if step.is_none() || start >= last_flush_ns + FLUSH_EVERY_NS {
            deliver(&mut outs, &mut consumers, &mut touched, &mut gone);
            last_flush_ns = start;
        }
        let Some(d) = step else { continue };
        if d > 0 {
            clock::sleep_until(clock.instant_at(start + d));
        }
        shared
            .core
            .lock()
            .expect("engine lock")
            .engine
            .finish_step(start + d, &mut outs);
    }
}

fn deliver(
    outs: &mut Vec<TokenOut>,
    consumers: &mut HashMap<u64, Consumer>,
    touched: &mut Vec<u64>,
    gone: &mut Vec<u64>,
) {
    for o in outs.drain(..) {
        // a request whose client left earlier may still finish a token in flight
        if let Some(c) = consumers.get_mut(&o.id)
            && c.push(o)
        {
            touched.push(o.id);
        }
    }
    for id in touched.drain(..) {
        let Some(c) = consumers.get_mut(&id) else {
            continue;
        };
        match c.flush() {
            Delivered::Open => {}
            Delivered::Finished => {
                consumers.remove(&id);
            }
            Delivered::Gone => {
                consumers.remove(&id);
                gone.push(id);
            }
        }
    }
}
