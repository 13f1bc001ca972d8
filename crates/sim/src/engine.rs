//! One simulated vLLM V1 engine (one data-parallel rank), stepped by a driver that owns the
//! clock: real time for the HTTP server, virtual time for fast experiments. Pure and
//! deterministic for a seed; no IO, no async.
//!
//! Scheduling as vLLM V1 does it: running requests first (decode, or the next chunk of a
//! chunked prefill), then waiting requests in FCFS order while `running < max_num_seqs`,
//! all within a token budget of `max_num_batched_tokens` per step. KV cache in blocks of
//! `block_size`; when a running request cannot get a block, the most recently admitted
//! running request is preempted: it loses its KV blocks, goes back to the front of the
//! queue and recomputes its prompt and the tokens it had generated.
//!
//! Prefix caching as vLLM V1 (see `prefix_cache`): a request admitted from the queue first
//! looks up the longest run of its prompt's full blocks that is cached (never the whole
//! prompt: its last token is computed, for the logits). Those tokens are computed at
//! admission, cost no step time, and their blocks are shared, not copied.

use super::metrics::EngineMetrics;
use super::prefix_cache::{BlockHash, BlockPool, Held};
use super::profile::Profile;
use loadtest_base::rng::Rng;
use std::collections::VecDeque;
use std::sync::Arc;

/// A request as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineRequest {
    pub id: u64,
    pub prompt_tokens: u32,
    /// Tokens it will generate (`max_tokens`, or fewer when it stops at EOS).
    pub output_tokens: u32,
    /// `max_tokens` as requested: reaching it is finish reason `length`, else `stop`.
    pub max_tokens: u32,
    /// When it arrived at the server (for the latency histograms).
    pub arrival_ns: u64,
    /// The chained hashes of its prompt's full blocks (`prefix_cache::block_hashes`); empty
    /// when the prompt's tokens are not known, which makes it never hit.
    pub block_hashes: Arc<[BlockHash]>,
}

#[derive(Debug, Clone)]
struct Seq {
    req: EngineRequest,
    /// Tokens whose KV is computed (prompt, then generated ones).
    computed: u32,
    generated: u32,
    held: Held,
    first_scheduled_ns: Option<u64>,
    first_token_ns: Option<u64>,
    last_token_ns: u64,
    preemptions: u32,
}

impl Seq {
    fn total_len(&self) -> u32 {
        self.req.prompt_tokens + self.generated
    }
}

/// A token leaving the engine at the end of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenOut {
    pub id: u64,
    /// 0-based index of the token in the request's output.
    pub index: u32,
    /// `Some("length" | "stop")` on the last token.
    pub finish: Option<&'static str>,
}

/// A step in progress: what it computes and how long it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPlan {
    pub duration_ns: u64,
    pub prefill_tokens: u32,
    pub decode_seqs: u32,
    pub context_tokens: u64,
    /// (index into `running`, tokens computed for it this step)
    scheduled: Vec<(usize, u32)>,
}

/// Counts for conservation checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub added: u64,
    pub finished: u64,
    pub aborted: u64,
    pub preemptions: u64,
}

pub struct Engine {
    profile: Profile,
    rng: Rng,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    pool: BlockPool,
    step: Option<StepPlan>,
    counts: Counts,
    pub metrics: EngineMetrics,
    /// Tokens of steps that emitted nothing (prefill chunks that finished no prompt), for
    /// the next step that does: vLLM counts a step's tokens when its outputs arrive.
    unreported_tokens: u32,
}

impl Engine {
    pub fn new(profile: Profile, seed: u64) -> Self {
        Self {
            pool: BlockPool::new(profile.num_gpu_blocks, profile.enable_prefix_caching),
            profile,
            rng: Rng::new(seed),
            waiting: VecDeque::new(),
            running: Vec::new(),
            step: None,
            counts: Counts::default(),
            metrics: EngineMetrics::default(),
            unreported_tokens: 0,
        }
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    pub fn add(&mut self, req: EngineRequest) {
        self.counts.added += 1;
        self.metrics.on_arrival(&req);
        self.waiting.push_back(Seq {
            req,
            computed: 0,
            generated: 0,
            held: Held::default(),
            first_scheduled_ns: None,
            first_token_ns: None,
            last_token_ns: 0,
            preemptions: 0,
        });
    }

    /// Drop a request (the client went away). Only between steps.
    pub fn abort(&mut self, id: u64) -> bool {
        debug_assert!(self.step.is_none(), "abort between steps only");
        if let Some(i) = self.waiting.iter().position(|s| s.req.id == id) {
            self.waiting.remove(i);
        } else if let Some(i) = self.running.iter().position(|s| s.req.id == id) {
            let mut s = self.running.remove(i);
            self.pool.release(&mut s.held);
        } else {
            return false;
        }
        self.counts.aborted += 1;
        self.metrics.on_abort();
        true
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty()
    }

    /// Share of blocks not free, as vLLM's `kv_cache_usage_perc`: a cached block nobody
    /// uses is free (reclaimable), a shared one counts once.
    pub fn kv_usage(&self) -> f64 {
        1.0 - self.pool.free() as f64 / self.profile.num_gpu_blocks as f64
    }

    /// Forget the cached blocks no request uses (`POST /reset_prefix_cache`).
    pub fn reset_prefix_cache(&mut self) -> usize {
        self.pool.reset()
    }

    /// The KV block pool (for checks: what is cached, what was evicted).
    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    fn blocks_for(&self, tokens: u32) -> u32 {
        tokens.div_ceil(self.profile.block_size)
    }

    /// Schedule the next step at `now_ns`; `None` when there is nothing to do. The caller
    /// must call `finish_step` after the returned duration.
    pub fn begin_step(&mut self, now_ns: u64) -> Option<u64> {
        assert!(self.step.is_none(), "begin_step twice");
        if self.is_idle() {
            return None;
        }
        let mut budget = self.profile.max_num_batched_tokens;
        let mut scheduled: Vec<(usize, u32)> = Vec::with_capacity(self.running.len() + 4);
        let mut preempted_any = false;
        // 1. running requests, in admission order
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let need = self.running[i].total_len() - self.running[i].computed;
            let n = need.min(budget);
            let want = self
                .blocks_for(self.running[i].computed + n)
                .saturating_sub(self.running[i].held.blocks());
            let mut self_preempted = false;
            while self.pool.free() < want {
                // preempt the lowest-priority (last admitted) running request; its cached
                // blocks stay cached, so its recompute may hit them
                let victim_idx = self.running.len() - 1;
                let mut victim = self.running.pop().expect("non-empty");
                self.pool.release(&mut victim.held);
                victim.computed = 0;
                victim.preemptions += 1;
                self.counts.preemptions += 1;
                self.metrics.on_preemption();
                self.waiting.push_front(victim);
                preempted_any = true;
                if victim_idx == i {
                    self_preempted = true;
                    break;
                }
            }
            if self_preempted {
                break;
            }
            let s = &mut self.running[i];
            self.pool.allocate(want, &mut s.held);
            let full = (s.computed + n).min(s.req.prompt_tokens) / self.profile.block_size;
            self.pool.register(&s.req.block_hashes, full, &mut s.held);
            scheduled.push((i, n));
            budget -= n;
            i += 1;
        }
        // 2. waiting requests, FCFS, unless this step had to preempt
        while !preempted_any
            && budget > 0
            && (self.running.len() as u32) < self.profile.max_num_seqs
            && !self.waiting.is_empty()
        {
            let s = &self.waiting[0];
            let bs = self.profile.block_size;
            let total = s.total_len();
            // never the whole prompt: its last token is computed to get the logits
            let max_blocks = (total.saturating_sub(1) / bs) as usize;
            let (hit_blocks, hit_free) = self.pool.lookup(&s.req.block_hashes, max_blocks);
            let hit = hit_blocks as u32 * bs;
            let n = (total - hit).min(budget);
            let want = self.blocks_for(hit + n) - hit_blocks as u32;
            // a free cached block it reuses leaves the free queue as a new block would
            if want + hit_free > self.pool.free() {
                break;
            }
            let mut s = self.waiting.pop_front().expect("non-empty");
            self.pool
                .touch(&s.req.block_hashes[..hit_blocks], &mut s.held);
            s.held.registered = hit_blocks as u32;
            self.pool.allocate(want, &mut s.held);
            let full = (hit + n).min(s.req.prompt_tokens) / bs;
            self.pool.register(&s.req.block_hashes, full, &mut s.held);
            s.computed = hit;
            // vLLM counts a preempted request's lookups apart (not in these counters)
            if self.pool.enabled() && s.preemptions == 0 {
                self.metrics.on_prefix_lookup(total, hit);
            }
            if s.first_scheduled_ns.is_none() {
                s.first_scheduled_ns = Some(now_ns);
                self.metrics.on_first_scheduled(s.req.arrival_ns, now_ns);
            }
            self.running.push(s);
            scheduled.push((self.running.len() - 1, n));
            budget -= n;
        }
        if scheduled.is_empty() {
            // Nothing fits (e.g. one prompt larger than the whole cache): nothing can run.
            return None;
        }
        let (mut p, mut d, mut k, mut pairs) = (0u32, 0u32, 0u64, 0u64);
        let mut emits = false;
        for &(idx, n) in &scheduled {
            let s = &self.running[idx];
            emits |= s.computed + n >= s.total_len();
            let decoding = s.generated > 0 && s.computed + 1 == s.total_len();
            if decoding {
                d += 1;
                k += s.computed as u64;
            } else {
                p += n;
                // each new token attends to the computed ones and to those before it
                let (n, c) = (u64::from(n), u64::from(s.computed));
                pairs += n * c + n * (n + 1) / 2;
            }
        }
        let pr = &self.profile;
        let mut secs = pr.c0_s
            + pr.c_pf_s * p as f64
            + pr.c_pf_attn_s * pairs as f64
            + pr.c_dec_s * d as f64
            + pr.c_kv_s * k as f64;
        if pr.jitter > 0.0 {
            secs *= (1.0 + pr.jitter * self.rng.normal()).max(0.05);
        }
        let duration_ns = (secs * 1e9).round() as u64;
        // vLLM observes `iteration_tokens_total` only for a step whose outputs reach the
        // API server, counting a prompt's tokens with its first output: a step that only
        // advanced prefill chunks is not a step there, and its tokens come with the next
        self.unreported_tokens += p + d;
        if emits {
            self.metrics
                .on_step(std::mem::take(&mut self.unreported_tokens));
        }
        self.step = Some(StepPlan {
            duration_ns,
            prefill_tokens: p,
            decode_seqs: d,
            context_tokens: k,
            scheduled,
        });
        Some(duration_ns)
    }

    /// The step in progress, if any.
    pub fn current_step(&self) -> Option<&StepPlan> {
        self.step.as_ref()
    }

    /// Complete the step begun last, at `now_ns` (its end): commit computed tokens, emit one
    /// token for every request that caught up, retire finished requests.
    pub fn finish_step(&mut self, now_ns: u64, out: &mut Vec<TokenOut>) {
        let plan = self.step.take().expect("finish_step without begin_step");
        let mut finished_any = false;
        for &(idx, n) in &plan.scheduled {
            let s = &mut self.running[idx];
            s.computed += n;
            if s.computed < s.total_len() {
                continue; // mid-prefill
            }
            let index = s.generated;
            s.generated += 1;
            let done = s.generated >= s.req.output_tokens;
            let reason = if s.generated >= s.req.max_tokens {
                "length"
            } else {
                "stop"
            };
            let finish = done.then_some(reason);
            if s.first_token_ns.is_none() {
                s.first_token_ns = Some(now_ns);
                self.metrics
                    .on_first_token(&s.req, s.first_scheduled_ns.unwrap_or(now_ns), now_ns);
            } else {
                self.metrics.on_token_gap(now_ns - s.last_token_ns);
            }
            s.last_token_ns = now_ns;
            out.push(TokenOut {
                id: s.req.id,
                index,
                finish,
            });
            if let Some(reason) = finish {
                finished_any = true;
                let s = &self.running[idx];
                self.metrics.on_finish(
                    &s.req,
                    reason,
                    s.generated,
                    s.first_scheduled_ns.unwrap_or(now_ns),
                    s.first_token_ns.unwrap_or(now_ns),
                    now_ns,
                    s.preemptions,
                );
            }
        }
        if finished_any {
            let mut finished = 0;
            let pool = &mut self.pool;
            self.running.retain_mut(|s| {
                let done = s.generated >= s.req.output_tokens;
                if done {
                    pool.release(&mut s.held);
                    finished += 1;
                }
                !done
            });
            self.counts.finished += finished;
        }
    }

    /// Output length for a request: `max_tokens` under `ignore_eos` (at least `min_tokens`
    /// otherwise), else a seeded exponential draw capped at `max_tokens`.
    pub fn draw_output_len(&mut self, max_tokens: u32, min_tokens: u32, ignore_eos: bool) -> u32 {
        if ignore_eos {
            return max_tokens.max(1);
        }
        let draw = self.rng.exponential(self.profile.eos_mean_tokens).ceil() as u32;
        draw.clamp(min_tokens.max(1), max_tokens.max(1))
    }

    /// Check conservation of KV blocks and of requests; `Err` names the broken invariant.
    pub fn check_invariants(&self) -> Result<(), String> {
        let plain: u64 = self.running.iter().map(|s| s.held.plain as u64).sum();
        self.pool.check(plain)?;
        // a shared block is one block with several references, never one per request
        let refs: u64 = self
            .running
            .iter()
            .map(|s| s.held.cached.len() as u64)
            .sum();
        if refs != self.pool.refs() {
            return Err(format!(
                "requests reference {refs} cached blocks, the pool counts {}",
                self.pool.refs()
            ));
        }
        if self.waiting.iter().any(|s| s.held.blocks() != 0) {
            return Err("a waiting request holds blocks".into());
        }
        if self.running.len() as u32 > self.profile.max_num_seqs {
            return Err("more running than max_num_seqs".into());
        }
        let c = self.counts;
        let present = (self.running.len() + self.waiting.len()) as u64;
        if c.added != c.finished + c.aborted + present {
            return Err(format!(
                "requests: added {} != finished {} + aborted {} + present {present}",
                c.added, c.finished, c.aborted
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
