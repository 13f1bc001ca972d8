//! The engine's prefix caching, step by step: a hit skips prefill time, shared blocks count
//! once, eviction is least recently used, and a block in use is never evicted.

use super::*;
use crate::prefix_cache::block_hashes;

fn profile(blocks: u32, caching: bool) -> Profile {
    Profile {
        num_gpu_blocks: blocks,
        enable_prefix_caching: caching,
        ..Profile::default_profile()
    }
}

/// A request whose prompt is `ids` (hashed in blocks of 16, as the profile's).
fn req(id: u64, ids: &[u32], output: u32) -> EngineRequest {
    EngineRequest {
        id,
        prompt_tokens: ids.len() as u32,
        output_tokens: output,
        max_tokens: output,
        arrival_ns: 0,
        block_hashes: block_hashes(ids, 16).into(),
    }
}

/// `len` token ids that no other call with another `tag` shares.
fn ids(tag: u32, len: u32) -> Vec<u32> {
    (0..len).map(|i| tag * 100_000 + i).collect()
}

fn cat(a: &[u32], b: &[u32]) -> Vec<u32> {
    [a, b].concat()
}

/// Run steps until the engine is idle, checking its bookkeeping after each; the time spent.
fn drain(e: &mut Engine, mut now: u64) -> u64 {
    let mut out = Vec::new();
    while let Some(d) = e.begin_step(now) {
        now += d;
        e.finish_step(now, &mut out);
        e.check_invariants().unwrap();
    }
    now
}

fn step_ns(p: &Profile, prefill: u32) -> u64 {
    ((p.c0_s + p.c_pf_s * prefill as f64) * 1e9).round() as u64
}

#[test]
fn a_cache_hit_skips_the_prefill_of_its_blocks() {
    let prefix = ids(1, 256);
    for caching in [true, false] {
        let p = profile(16_384, caching);
        let mut e = Engine::new(p.clone(), 1);
        e.add(req(0, &cat(&prefix, &ids(2, 256)), 1));
        assert_eq!(e.begin_step(0), Some(step_ns(&p, 512)));
        let now = step_ns(&p, 512);
        e.finish_step(now, &mut Vec::new());
        e.add(req(1, &cat(&prefix, &ids(3, 256)), 1));
        // the second prompt computes only what follows the 16 cached blocks of the prefix
        let want = if caching { 256 } else { 512 };
        assert_eq!(
            e.begin_step(now),
            Some(step_ns(&p, want)),
            "caching {caching}"
        );
        assert_eq!(e.current_step().unwrap().prefill_tokens, want);
        drain_after_step(&mut e, now);
        let m = &e.metrics;
        if caching {
            assert_eq!((m.prefix_cache_queries, m.prefix_cache_hits), (1024, 256));
        } else {
            assert_eq!((m.prefix_cache_queries, m.prefix_cache_hits), (0, 0));
        }
    }
}

fn drain_after_step(e: &mut Engine, now: u64) {
    let end = now + e.current_step().unwrap().duration_ns;
    e.finish_step(end, &mut Vec::new());
    drain(e, end);
}

#[test]
fn a_prompt_seen_whole_still_computes_its_last_token() {
    // 64 tokens = 4 full blocks, all cached: the hit stops at 3 blocks, so the last block
    // is recomputed (vLLM's `max_cache_hit_length = num_tokens - 1`, block-aligned)
    let p = profile(16_384, true);
    let mut e = Engine::new(p.clone(), 1);
    let prompt = ids(1, 64);
    e.add(req(0, &prompt, 1));
    drain(&mut e, 0);
    e.add(req(1, &prompt, 1));
    e.begin_step(1_000_000_000).unwrap();
    assert_eq!(e.current_step().unwrap().prefill_tokens, 16);
    assert_eq!(e.metrics.prefix_cache_hits, 48);
}

#[test]
fn shared_blocks_are_counted_once_in_kv_usage() {
    let p = profile(1000, true);
    let mut e = Engine::new(p, 1);
    let prefix = ids(1, 256);
    // admitted in the same step: the second finds the blocks the first was just given
    e.add(req(0, &cat(&prefix, &ids(2, 256)), 50));
    e.add(req(1, &cat(&prefix, &ids(3, 256)), 50));
    e.begin_step(0).unwrap();
    e.check_invariants().unwrap();
    // 32 blocks each, 16 of them shared: 48 blocks in use, not 64
    assert_eq!(e.pool().free(), 1000 - 48);
    assert!((e.kv_usage() - 48.0 / 1000.0).abs() < 1e-12);
    assert_eq!(e.current_step().unwrap().prefill_tokens, 512 + 256);
    drain_after_step(&mut e, 0);
    // every block is back (the cached ones free but kept)
    assert_eq!(e.pool().free(), 1000);
    assert_eq!(e.kv_usage(), 0.0);
}

#[test]
fn eviction_takes_the_least_recently_used_block_and_a_prompts_tail_first() {
    // 10 blocks; prompts of 2 full blocks and 1 output token (no block beyond the prompt)
    let p = profile(10, true);
    let mut e = Engine::new(p, 1);
    let (a, b) = (ids(1, 32), ids(2, 32));
    let (ha, hb) = (block_hashes(&a, 16), block_hashes(&b, 16));
    e.add(req(0, &a, 1));
    let t = drain(&mut e, 0);
    e.add(req(1, &b, 1));
    let t = drain(&mut e, t);
    // free queue: 6 never used, a1, a0, b1, b0 (a request's tail is queued first)
    e.add(req(2, &ids(3, 112), 1)); // 7 blocks: the 6 unused and a1
    let t = drain(&mut e, t);
    assert!(!e.pool().contains(ha[1]));
    assert!(e.pool().contains(ha[0]) && e.pool().contains(hb[0]) && e.pool().contains(hb[1]));
    // request 2's own blocks were freed after b's: 2 more blocks take a0 and b1
    e.add(req(3, &ids(4, 32), 1));
    let t = drain(&mut e, t);
    assert!(!e.pool().contains(ha[0]) && !e.pool().contains(hb[1]));
    assert!(e.pool().contains(hb[0]));
    // what is left of b still hits
    e.add(req(4, &cat(&b[..16], &ids(5, 16)), 1));
    drain(&mut e, t);
    assert_eq!(e.metrics.prefix_cache_hits, 16);
    // a1, a0, b1, then one of request 2's blocks for request 4's second block
    assert_eq!(e.pool().evictions(), 4);
}

#[test]
fn a_cached_block_in_use_is_never_evicted() {
    // 8 blocks: a request decoding a long output holds its 2 cached prompt blocks while
    // others churn through every other block, preemptions included
    let p = profile(8, true);
    let mut e = Engine::new(p, 1);
    let a = ids(1, 32);
    let ha = block_hashes(&a, 16);
    e.add(req(0, &a, 40));
    for i in 1..30 {
        e.add(req(i, &ids(10 + i as u32, 40 + i as u32), 1 + i as u32 % 7));
    }
    let mut now = 0;
    let mut out = Vec::new();
    while let Some(d) = e.begin_step(now) {
        now += d;
        e.finish_step(now, &mut out);
        e.check_invariants().unwrap();
        let a_running = e.running.iter().any(|s| s.req.id == 0);
        if a_running {
            assert!(ha.iter().all(|h| e.pool().contains(*h)), "at {now} ns");
        }
    }
    assert_eq!(e.counts().finished, 30);
    assert!(e.pool().evictions() > 0, "the test must evict something");
    assert!(e.counts().preemptions > 0, "and preempt");
}

#[test]
fn a_reset_forgets_the_cached_blocks_nobody_uses() {
    let mut e = Engine::new(profile(100, true), 1);
    let a = ids(1, 64);
    e.add(req(0, &a, 1));
    let t = drain(&mut e, 0);
    assert_eq!(e.reset_prefix_cache(), 4);
    e.check_invariants().unwrap();
    e.add(req(1, &a, 1));
    drain(&mut e, t);
    assert_eq!(e.metrics.prefix_cache_hits, 0);
    assert_eq!(e.pool().free(), 100);
}

#[test]
fn a_step_is_counted_as_vllm_counts_it_when_it_emits_a_token() {
    // a 5,000-token prompt alone, in chunks of the 2,048-token budget: the two chunks that
    // finish no prompt emit nothing and vLLM's `iteration_tokens_total` skips them; the
    // third emits the first token (counted with the whole prompt, as vLLM counts it), the
    // decode step after it the second
    let p = Profile {
        max_num_batched_tokens: 2048,
        ..profile(16_384, false)
    };
    let mut e = Engine::new(p, 1);
    e.add(req(0, &ids(1, 5_000), 2));
    drain(&mut e, 0);
    let steps = &e.metrics.iteration_tokens;
    assert_eq!(steps.count(), 2);
    assert_eq!(steps.sum(), 5_000.0 + 1.0);
}
