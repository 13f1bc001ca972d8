//! The simulator in virtual time: the same engines and router, driven by a discrete-event
//! loop that jumps from one event to the next, so an hour of traffic takes seconds and a
//! seed fixes the whole timeline.

use super::engine::{Engine, EngineRequest, TokenOut};
use super::profile::Profile;
use super::router::{FrontEnd, Router};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VirtualRequest {
    pub arrival_ns: u64,
    pub prompt_tokens: u32,
    pub max_tokens: u32,
    pub min_tokens: u32,
    pub ignore_eos: bool,
    pub pinned_rank: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct VirtualOutcome {
    pub arrival_ns: u64,
    /// When it entered its engine (after the front end).
    pub engine_arrival_ns: u64,
    pub rank: usize,
    pub first_token_ns: Option<u64>,
    pub finish_ns: Option<u64>,
    pub output_tokens: u32,
}

/// Engine gauges sampled at a fixed virtual interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub t_ns: u64,
    /// (running, waiting, kv usage) per engine.
    pub engines: Vec<(u64, u64, f64)>,
}

#[derive(Debug, Clone)]
pub struct VirtualConfig {
    pub profile: Profile,
    pub dp: usize,
    pub seed: u64,
    /// API-server processes for the front-end CPU model; `None` = off.
    pub api_servers: Option<usize>,
    /// Sample gauges every this many ns (`None`: no samples).
    pub sample_every_ns: Option<u64>,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    // at equal times: finish steps, then admit arrivals, then start steps, then sample
    StepEnd(usize),
    Arrival(usize),
    Begin(usize),
    Sample,
}

/// Run `requests` (any order) through the simulated deployment until every one finished.
pub fn simulate(cfg: &VirtualConfig, requests: &[VirtualRequest]) -> Result<VirtualRun, String> {
    cfg.profile.validate().map_err(|e| e.to_string())?;
    let dp = cfg.dp.max(1);
    let mut engines: Vec<Engine> = (0..dp)
        .map(|r| {
            Engine::new(
                cfg.profile.clone(),
                loadtest_base::rng::Rng::derive(cfg.seed, r as u64 + 1).next_u64(),
            )
        })
        .collect();
    let mut router = Router::new(dp);
    let mut front = cfg.api_servers.map(FrontEnd::new);
    let mut busy = vec![false; dp];
    let mut heap: BinaryHeap<Reverse<(u64, Kind, u64)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |heap: &mut BinaryHeap<_>, t: u64, k: Kind| {
        seq += 1;
        heap.push(Reverse((t, k, seq)));
    };
    let fe_ns = (cfg.profile.front_end_latency_s * 1e9).round() as u64;
    let mut outcomes = vec![VirtualOutcome::default(); requests.len()];
    let mut order: Vec<usize> = (0..requests.len()).collect();
    order.sort_by_key(|&i| (requests[i].arrival_ns, i));
    // The front end is FIFO in arrival order, so admit times are computed in that order.
    for &i in &order {
        let r = &requests[i];
        let mut ready = r.arrival_ns + fe_ns;
        if let Some(f) = front.as_mut() {
            ready = f.admit(ready, r.prompt_tokens, r.max_tokens);
        }
        outcomes[i].arrival_ns = r.arrival_ns;
        outcomes[i].engine_arrival_ns = ready;
        push(&mut heap, ready, Kind::Arrival(i));
    }
    if cfg.sample_every_ns.is_some() {
        push(&mut heap, 0, Kind::Sample);
    }
    let mut samples = Vec::new();
    let mut token_times: Vec<Vec<u64>> = if cfg.record_token_times {
        vec![Vec::new(); requests.len()]
    } else {
        Vec::new()
    };
    let mut outs: Vec<TokenOut> = Vec::new();
    let mut steps = 0u64;
    let mut remaining = requests.len();
    let mut now = 0;
    while let Some(Reverse((t, kind, _))) = heap.pop() {
        now = t;
        match kind {
            Kind::Arrival(i) => {
                let r = &requests[i];
                let e = router.route(t, r.pinned_rank, |e| {
                    (engines[e].waiting() as u64, engines[e].running() as u64)
                });
                let output = engines[e].draw_output_len(r.max_tokens, r.min_tokens, r.ignore_eos);
                engines[e].add(EngineRequest {
                    id: i as u64,
                    prompt_tokens: r.prompt_tokens,
                    output_tokens: output,
                    max_tokens: r.max_tokens,
                    arrival_ns: r.arrival_ns,
                });
                outcomes[i].rank = e;
                if !busy[e] {
                    busy[e] = true;
                    push(&mut heap, t, Kind::Begin(e));
                }
            }
            Kind::Begin(e) => match engines[e].begin_step(t) {
                Some(d) => {
                    steps += 1;
                    push(&mut heap, t + d, Kind::StepEnd(e));
                }
                None => busy[e] = false,
            },
            Kind::StepEnd(e) => {
                outs.clear();
                engines[e].finish_step(t, &mut outs);
                for o in &outs {
                    let oc = &mut outcomes[o.id as usize];
                    if o.index == 0 {
                        oc.first_token_ns = Some(t);
                    }
                    oc.output_tokens = o.index + 1;
                    if let Some(ts) = token_times.get_mut(o.id as usize) {
                        ts.push(t);
                    }
                    if o.finish.is_some() {
                        oc.finish_ns = Some(t);
                        remaining -= 1;
                    }
                }
                if cfg.check_invariants {
                    engines[e]
                        .check_invariants()
                        .map_err(|m| format!("engine {e} at {t} ns: {m}"))?;
                }
                push(&mut heap, t, Kind::Begin(e));
            }
            Kind::Sample => {
                samples.push(Sample {
                    t_ns: t,
                    engines: engines
                        .iter()
                        .map(|en| (en.running() as u64, en.waiting() as u64, en.kv_usage()))
                        .collect(),
                });
                if remaining > 0 {
                    push(
                        &mut heap,
                        t + cfg.sample_every_ns.unwrap_or(u64::MAX / 2),
                        Kind::Sample,
                    );
                }
            }
        }
        if remaining == 0
            && heap
                .iter()
                .all(|Reverse((_, k, _))| matches!(k, Kind::Sample))
        {
            break;
        }
    }
    if remaining > 0 {
        return Err(format!(
            "{remaining} requests can never run (a prompt larger than the KV cache of {} blocks?)",
            cfg.profile.num_gpu_blocks
        ));
    }
    Ok(VirtualRun {
        outcomes,
        samples,
        token_times,
        engines,
        steps,
        end_ns: now,
    })
}

#[cfg(test)]
mod tests;
