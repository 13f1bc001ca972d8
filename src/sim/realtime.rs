//! Engines in real time: one OS thread per data-parallel rank steps its engine on the wall
//! clock (precise sleeps, not tokio's millisecond timer) and hands each token to the HTTP
//! task streaming that request.
//!
//! The engine sits behind a mutex that the thread holds only to plan or commit a step, so
//! HTTP tasks can add requests and `/metrics` can read gauges while a step "runs".

use super::engine::{Engine, EngineRequest, TokenOut};
use super::metrics::{EngineMetrics, Gauges};
use super::profile::Profile;
use crate::clock::{self, Clock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

struct Core {
    engine: Engine,
    streams: HashMap<u64, UnboundedSender<TokenOut>>,
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
                streams: HashMap::new(),
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

    /// Add a request; its tokens arrive on `tx`. Returns the output length drawn for it.
    pub fn submit(
        &self,
        mut req: EngineRequest,
        min_tokens: u32,
        ignore_eos: bool,
        tx: UnboundedSender<TokenOut>,
    ) -> u32 {
        let mut core = self.shared.core.lock().expect("engine lock");
        req.output_tokens = core
            .engine
            .draw_output_len(req.max_tokens, min_tokens, ignore_eos);
        core.streams.insert(req.id, tx);
        core.engine.add(req);
        drop(core);
        self.shared.wake.notify_one();
        req.output_tokens
    }

    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// (waiting, running), for the router.
    pub fn load(&self) -> (u64, u64) {
        let core = self.shared.core.lock().expect("engine lock");
        (core.engine.waiting() as u64, core.engine.running() as u64)
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
    let mut outs: Vec<TokenOut> = Vec::with_capacity(1024);
    let mut gone: Vec<u64> = Vec::new();
    let mut core = shared.core.lock().expect("engine lock");
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        for id in gone.drain(..) {
            core.engine.abort(id);
            core.streams.remove(&id);
        }
        let start = clock.now_ns();
        let Some(d) = core.engine.begin_step(start) else {
            core = shared
                .wake
                .wait_timeout(core, Duration::from_millis(50))
                .expect("engine lock")
                .0;
            continue;
        };
        if d > 0 {
            drop(core);
            clock::sleep_until(clock.instant_at(start + d));
            core = shared.core.lock().expect("engine lock");
        }
        outs.clear();
        core.engine.finish_step(start + d, &mut outs);
        for o in &outs {
            let delivered = core
                .streams
                .get(&o.id)
                .is_some_and(|tx| tx.send(*o).is_ok());
            if o.finish.is_some() {
                core.streams.remove(&o.id);
            } else if !delivered {
                // the client went away: vLLM aborts the request
                gone.push(o.id);
            }
        }
    }
}
