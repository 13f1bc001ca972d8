//! The simulator checked as a queueing system (DESIGN §11), in virtual time.

use super::*;
use loadtest_base::arrivals::{Arrival, Stop, schedule};

/// `n` Poisson arrivals at `rate`, each `input` tokens in and `output` out, EOS ignored
/// (also the calibration tests' loads).
pub(crate) fn requests(
    rate: f64,
    n: usize,
    input: u32,
    output: u32,
    seed: u64,
) -> Vec<VirtualRequest> {
    schedule(Arrival::Poisson { rate }, Stop::Count(n), seed)
        .into_iter()
        .map(|t| VirtualRequest {
            arrival_ns: t,
            prompt_tokens: input,
            max_tokens: output,
            min_tokens: 0,
            ignore_eos: true,
            pinned_rank: None,
            block_hashes: Default::default(),
        })
        .collect()
}

fn cfg(profile: Profile, dp: usize) -> VirtualConfig {
    VirtualConfig {
        profile,
        dp,
        seed: 1,
        api_servers: None,
        slots: None,
        sample_every_ns: None,
        sample_metrics: crate::virtual_time::KeepMetrics::Never,
        max_span_ns: None,
        check_invariants: false,
        record_token_times: false,
    }
}

/// Completions per second over the middle 80% of finishes (the saturated steady state).
fn steady_throughput(run: &VirtualRun) -> f64 {
    let mut f: Vec<u64> = run.outcomes.iter().filter_map(|o| o.finish_ns).collect();
    f.sort_unstable();
    let (a, b) = (f.len() / 10, f.len() * 9 / 10);
    (b - a) as f64 / ((f[b] - f[a]) as f64 / 1e9)
}

#[test]
fn saturated_throughput_matches_the_closed_form_capacity() {
    let p = Profile::default_profile();
    let want = p.capacity(512, 256);
    let run = simulate(&cfg(p, 1), &requests(40.0, 3000, 512, 256, 1)).unwrap();
    let got = steady_throughput(&run);
    assert!(
        (got / want - 1.0).abs() < 0.05,
        "throughput {got:.2} vs closed form {want:.2}"
    );
}

#[test]
fn dp4_has_four_times_the_capacity_of_dp1() {
    let p = Profile::default_profile();
    let one = steady_throughput(
        &simulate(&cfg(p.clone(), 1), &requests(40.0, 3000, 512, 256, 2)).unwrap(),
    );
    let four =
        steady_throughput(&simulate(&cfg(p, 4), &requests(160.0, 12_000, 512, 256, 2)).unwrap());
    assert!(
        (four / one / 4.0 - 1.0).abs() < 0.05,
        "dp4 {four:.2} vs dp1 {one:.2}"
    );
}

#[test]
fn littles_law_holds_between_engine_gauges_and_request_times() {
    let mut p = Profile::default_profile();
    p.front_end_latency_s = 0.0;
    let mut c = cfg(p, 1);
    c.sample_every_ns = Some(5_000_000);
    let reqs = requests(8.0, 2500, 512, 256, 3);
    let run = simulate(&c, &reqs).unwrap();
    // over the middle of the run, away from the empty start and the draining end
    let (t0, t1) = (run.end_ns / 5, run.end_ns * 3 / 5);
    let s: Vec<&Sample> = run
        .samples
        .iter()
        .filter(|s| s.t_ns >= t0 && s.t_ns < t1)
        .collect();
    let l = s
        .iter()
        .map(|s| (s.engines[0].0 + s.engines[0].1) as f64)
        .sum::<f64>()
        / s.len() as f64;
    // λ and W of the requests that arrived in the window
    let inw: Vec<&VirtualOutcome> = run
        .outcomes
        .iter()
        .filter(|o| o.engine_arrival_ns >= t0 && o.engine_arrival_ns < t1)
        .collect();
    let lambda = inw.len() as f64 / ((t1 - t0) as f64 / 1e9);
    let w = inw
        .iter()
        .map(|o| (o.finish_ns.unwrap() - o.engine_arrival_ns) as f64 / 1e9)
        .sum::<f64>()
        / inw.len() as f64;
    assert!(
        (l / (lambda * w) - 1.0).abs() < 0.05,
        "L {l:.2} vs λW {:.2}",
        lambda * w
    );
}

#[test]
fn single_slot_engine_waits_like_md1() {
    // max_num_seqs = 1 and a fixed 1 ms step: service is deterministic, S = O steps.
    let p = Profile {
        c0_s: 1e-3,
        c_pf_s: 0.0,
        c_dec_s: 0.0,
        c_kv_s: 0.0,
        max_num_seqs: 1,
        front_end_latency_s: 0.0,
        ..Profile::default_profile()
    };
    let s = 10e-3; // 10 output tokens, one step each
    for (rho, n) in [(0.5, 60_000), (0.8, 150_000)] {
        let rate = rho / s;
        let run = simulate(&cfg(p.clone(), 1), &requests(rate, n, 16, 10, 4)).unwrap();
        let q = &run.engines[0].metrics.queue;
        let got = q.sum() / q.count() as f64;
        let want = rho * s / (2.0 * (1.0 - rho));
        assert!(
            (got / want - 1.0).abs() < 0.10,
            "ρ={rho}: wait {got:.5} s vs M/D/1 {want:.5} s"
        );
    }
}

#[test]
fn requests_and_blocks_are_conserved_at_every_step_even_under_preemption() {
    let p = Profile {
        num_gpu_blocks: 600, // ~12 sequences of 512+256 tokens: forces preemption
        jitter: 0.1,
        ..Profile::default_profile()
    };
    let mut c = cfg(p, 2);
    c.check_invariants = true;
    let run = simulate(&c, &requests(30.0, 400, 512, 256, 5)).unwrap();
    let pre: u64 = run.engines.iter().map(|e| e.counts().preemptions).sum();
    assert!(pre > 0, "the test must exercise preemption");
    for e in &run.engines {
        e.check_invariants().unwrap();
        assert!(e.is_idle());
    }
    assert!(run.outcomes.iter().all(|o| o.output_tokens == 256));
}

#[test]
fn same_seed_same_timeline_other_seed_other_timeline() {
    let p = Profile {
        jitter: 0.2,
        ..Profile::default_profile()
    };
    let reqs = requests(12.0, 300, 256, 64, 6);
    let a = simulate(&cfg(p.clone(), 2), &reqs).unwrap().outcomes;
    let b = simulate(&cfg(p.clone(), 2), &reqs).unwrap().outcomes;
    let mut c2 = cfg(p, 2);
    c2.seed = 99;
    let c = simulate(&c2, &reqs).unwrap().outcomes;
    assert_eq!(a, b);
    assert_ne!(a, c);
}

/// The seed's one-GPU curve at both ends (512 in, 256 out): TTFT 87 ms at 10 req/s, a
/// plateau at 13.7 req/s; between them throughput never falls, and past the knee TTFT
/// blows up.
#[test]
fn the_default_profile_is_the_seeds_curve_at_both_ends() {
    let p = Profile::default_profile();
    let ttft_p50_ms = |run: &VirtualRun| {
        // past the first 300 arrivals: the batch has filled to its steady size
        let mut v: Vec<f64> = run
            .outcomes
            .iter()
            .skip(300)
            .map(|o| (o.first_token_ns.unwrap() - o.arrival_ns) as f64 / 1e6)
            .collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let at_10 = simulate(&cfg(p.clone(), 1), &requests(10.0, 3000, 512, 256, 8)).unwrap();
    let t = ttft_p50_ms(&at_10);
    assert!(
        (t / 87.0 - 1.0).abs() < 0.05,
        "TTFT p50 at 10 req/s: {t:.1} ms"
    );
    let mut prev_tp = 0.0;
    let mut curve = Vec::new();
    for rate in [5.0, 10.0, 20.0, 40.0] {
        let run = simulate(&cfg(p.clone(), 1), &requests(rate, 3000, 512, 256, 8)).unwrap();
        let tp = steady_throughput(&run);
        curve.push((rate, tp, ttft_p50_ms(&run)));
        assert!(tp >= prev_tp * 0.97, "throughput must not fall: {curve:?}");
        prev_tp = tp;
    }
    assert!(
        (curve[3].1 / 13.7 - 1.0).abs() < 0.02,
        "plateau at the seed's 13.7 req/s: {curve:?}"
    );
    assert!(
        curve[3].2 > 20.0 * curve[1].2,
        "TTFT blow-up past the knee: {curve:?}"
    );
}

/// A prompt larger than the KV cache is a typed answer callers can act on, not a hang.
#[test]
fn a_prompt_larger_than_the_kv_cache_never_runs() {
    let mut p = Profile::named("zero").unwrap();
    p.num_gpu_blocks = 4;
    let reqs = requests(10.0, 3, 4096, 8, 9);
    // sampled or not: the sampler alone keeps nothing going (sampled, it once ran on,
    // a sample a second, until the memory ran out)
    for every in [None, Some(1_000_000_000)] {
        let mut c = cfg(p.clone(), 1);
        c.sample_every_ns = every;
        match simulate(&c, &reqs) {
            Err(SimError::NeverRun {
                requests,
                kv_blocks,
            }) => {
                assert_eq!((requests, kv_blocks), (3, 4));
            }
            other => panic!("expected NeverRun, got {:?}", other.map(|r| r.end_ns)),
        }
    }
}

/// A profile whose steps take hours stops at the span limit instead of simulating (and
/// sampling) on.
#[test]
fn a_timeline_past_its_limit_stops() {
    let mut p = Profile::named("zero").unwrap();
    p.c_pf_s = 10_000.0;
    let mut c = cfg(p, 1);
    c.sample_every_ns = Some(1_000_000_000);
    c.max_span_ns = Some(86_400 * 1_000_000_000);
    let reqs = requests(10.0, 50, 512, 8, 3);
    match simulate(&c, &reqs) {
        Err(SimError::TooLong { limit_ns }) => assert_eq!(limit_ns, 86_400_000_000_000),
        other => panic!("expected TooLong, got {:?}", other.map(|r| r.end_ns)),
    }
}

/// `prefix_repetition` in virtual time: `groups` prefixes of `prefix` tokens, `n` prompts
/// (round-robin over groups, Poisson arrivals) of `prefix + suffix` tokens.
fn prefix_groups(n: usize, groups: u32, prefix: u32, suffix: u32) -> Vec<VirtualRequest> {
    schedule(Arrival::Poisson { rate: 20.0 }, Stop::Count(n), 7)
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let g = i as u32 % groups;
            let ids: Vec<u32> = (0..prefix)
                .map(|k| g * 1_000_000 + k)
                .chain((0..suffix).map(|k| 500_000_000 + i as u32 * 10_000 + k))
                .collect();
            VirtualRequest {
                arrival_ns: t,
                prompt_tokens: prefix + suffix,
                max_tokens: 8,
                min_tokens: 0,
                ignore_eos: true,
                pinned_rank: None,
                block_hashes: crate::prefix_cache::block_hashes(&ids, 16).into(),
            }
        })
        .collect()
}

fn mean_ttft_ms(run: &VirtualRun) -> f64 {
    let t: Vec<f64> = run
        .outcomes
        .iter()
        .map(|o| (o.first_token_ns.unwrap() - o.arrival_ns) as f64 / 1e6)
        .collect();
    t.iter().sum::<f64>() / t.len() as f64
}

#[test]
fn prefix_groups_hit_the_closed_form_rate_in_virtual_time() {
    // a prefix that is not a whole number of blocks: 100 tokens share 6 full blocks (96)
    let (n, groups, prefix, suffix) = (200, 4, 100, 60);
    let reqs = prefix_groups(n, groups, prefix, suffix);
    let mut c = cfg(Profile::default_profile(), 1);
    c.check_invariants = true;
    let run = simulate(&c, &reqs).unwrap();
    let m = &run.engines[0].metrics;
    let want = crate::prefix_cache::closed_form_counters(
        groups as u64,
        n as u64,
        prefix as u64,
        suffix as u64,
        16,
    );
    assert_eq!((m.prefix_cache_queries, m.prefix_cache_hits), want);
    assert_eq!(want, (32_000, 196 * 96));
    assert_eq!(run.engines[0].pool().evictions(), 0);
    // the hits are prefill not done: the first token comes sooner than with caching off
    let mut off = c.clone();
    off.profile.enable_prefix_caching = false;
    let cold = simulate(&off, &reqs).unwrap();
    let m = &cold.engines[0].metrics;
    assert_eq!((m.prefix_cache_queries, m.prefix_cache_hits), (0, 0));
    let (warm_ms, cold_ms) = (mean_ttft_ms(&run), mean_ttft_ms(&cold));
    // 96 of 160 prompt tokens skipped at 44 µs each: about 4.2 ms less per request
    assert!(
        cold_ms - warm_ms > 3.0,
        "ttft {warm_ms:.2} ms vs {cold_ms:.2} ms off"
    );
}

/// Requests in flight (sent, not ended) at each send: the most, and whether every send
/// after the first `limit` came when another ended or at its own arrival.
fn in_flight_at_sends(reqs: &[VirtualRequest], run: &VirtualRun, limit: usize) -> (usize, bool) {
    let sent: Vec<(usize, &VirtualOutcome)> = run
        .outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| o.sent)
        .collect();
    let ends: Vec<u64> = sent.iter().filter_map(|(_, o)| o.finish_ns).collect();
    let mut most = 0;
    let mut on_a_free_slot = true;
    for (k, (i, o)) in sent.iter().enumerate() {
        let t = o.arrival_ns;
        let flying = sent[..k]
            .iter()
            .filter(|(_, e)| e.finish_ns.is_none_or(|f| f > t))
            .count()
            + 1;
        most = most.max(flying);
        if k >= limit {
            on_a_free_slot &= t == reqs[*i].arrival_ns || ends.contains(&t);
        }
    }
    (most, on_a_free_slot)
}

#[test]
fn a_closed_loop_keeps_its_slots_full_until_sending_ends() {
    let p = Profile::default_profile();
    // a closed loop: every request could go at 0; 8 slots; sending ends at 20 s
    let reqs: Vec<VirtualRequest> = requests(1.0, 2000, 256, 64, 3)
        .into_iter()
        .map(|r| VirtualRequest { arrival_ns: 0, ..r })
        .collect();
    let until = 20_000_000_000;
    let mut c = cfg(p.clone(), 1);
    c.slots = Some(Slots {
        limit: 8,
        send_until_ns: Some(until),
        timeout_ns: None,
        conversations: None,
    });
    let run = simulate(&c, &reqs).unwrap();
    let sent: Vec<&VirtualOutcome> = run.outcomes.iter().filter(|o| o.sent).collect();
    assert!(!run.wanted_more);
    // in arrival order: the sent are a prefix, and none goes at or after the end
    assert!(run.outcomes.iter().skip(sent.len()).all(|o| !o.sent));
    assert!(
        sent.iter()
            .all(|o| o.arrival_ns < until && o.finish_ns.is_some())
    );
    let (most, on_a_free_slot) = in_flight_at_sends(&reqs, &run, 8);
    assert_eq!(most, 8);
    assert!(on_a_free_slot);
    // Little's law over the whole loop: 8 in flight, so completions ≈ 8 × span / E2E
    let e2e: f64 = sent
        .iter()
        .map(|o| (o.finish_ns.unwrap() - o.arrival_ns) as f64)
        .sum::<f64>()
        / sent.len() as f64;
    let expected = 8.0 * until as f64 / e2e;
    let n = sent.len() as f64;
    assert!(
        (n / expected - 1.0).abs() < 0.05,
        "{n} sent, {expected:.0} expected"
    );

    // too few requests for the duration: it says it wanted more
    let run = simulate(&c, &reqs[..50]).unwrap();
    assert!(run.wanted_more);
    assert!(run.outcomes.iter().all(|o| o.sent));
}

#[test]
fn a_capped_schedule_sends_late_only_for_want_of_a_slot() {
    let p = Profile::default_profile();
    // 40 req/s of long requests against 4 slots: most wait for one
    let reqs = requests(40.0, 300, 512, 128, 4);
    let mut c = cfg(p, 1);
    c.slots = Some(Slots {
        limit: 4,
        send_until_ns: None,
        timeout_ns: None,
        conversations: None,
    });
    let run = simulate(&c, &reqs).unwrap();
    assert!(run.outcomes.iter().all(|o| o.sent && o.finish_ns.is_some()));
    let late = run
        .outcomes
        .iter()
        .zip(&reqs)
        .filter(|(o, r)| o.arrival_ns > r.arrival_ns)
        .count();
    assert!(late > 200, "{late} of 300 waited for a slot");
    assert!(
        run.outcomes
            .iter()
            .zip(&reqs)
            .all(|(o, r)| o.arrival_ns >= r.arrival_ns)
    );
    let (most, on_a_free_slot) = in_flight_at_sends(&reqs, &run, 4);
    assert_eq!(most, 4);
    assert!(on_a_free_slot);
}

#[test]
fn a_refused_or_timed_out_request_frees_its_slot() {
    let mut p = Profile::default_profile();
    p.max_model_len = 1024;
    // one slot: a prompt over the context is answered at once, the next goes then
    let mut reqs = requests(1.0, 3, 256, 32, 5);
    for r in &mut reqs {
        r.arrival_ns = 0;
    }
    reqs[0].prompt_tokens = 2000;
    let mut c = cfg(p, 1);
    c.slots = Some(Slots {
        limit: 1,
        send_until_ns: None,
        timeout_ns: None,
        conversations: None,
    });
    let run = simulate(&c, &reqs).unwrap();
    let o = &run.outcomes;
    assert!(o[0].refused && o[0].first_token_ns.is_none());
    assert_eq!(o[1].arrival_ns, 0);
    assert_eq!(o[2].arrival_ns, o[1].finish_ns.unwrap());
    // a timeout shorter than a request: each next one goes at the last one's timeout
    c.slots = Some(Slots {
        limit: 1,
        send_until_ns: None,
        timeout_ns: Some(1_000_000),
        conversations: None,
    });
    let run = simulate(&c, &reqs).unwrap();
    let o = &run.outcomes;
    assert!(o[1].finish_ns.unwrap() > 1_000_000);
    assert_eq!(o[2].arrival_ns, 1_000_000);
}

#[test]
fn a_conversations_turns_follow_each_other_and_keep_its_slot() {
    let mut p = Profile::default_profile();
    p.max_model_len = 4096;
    // 6 conversations of 3 turns arriving at 2/s; 2 slots; think 0.5 s; sending ends at 6 s
    let turns = 3;
    let mut reqs = requests(2.0, 18, 256, 32, 9);
    let starts: Vec<u64> = requests(2.0, 6, 256, 32, 9)
        .iter()
        .map(|r| r.arrival_ns)
        .collect();
    for (j, r) in reqs.iter_mut().enumerate() {
        r.arrival_ns = starts[j / turns];
    }
    // a turn over the context is answered at once and its conversation goes on
    reqs[4].prompt_tokens = 8000;
    let think_ns = 500_000_000;
    let until = 6_000_000_000;
    let mut c = cfg(p, 1);
    c.slots = Some(Slots {
        limit: 2,
        send_until_ns: Some(until),
        timeout_ns: None,
        conversations: Some(Conversations {
            turns: turns as u32,
            think_ns,
        }),
    });
    let run = simulate(&c, &reqs).unwrap();
    let o = &run.outcomes;
    let end = |j: usize| {
        if o[j].refused {
            o[j].arrival_ns
        } else {
            o[j].finish_ns.unwrap()
        }
    };
    for j in 0..reqs.len() {
        if !o[j].sent {
            continue;
        }
        if j % turns > 0 {
            // sent exactly the think time after the turn before it ended
            assert!(o[j - 1].sent, "turn {j} without its predecessor");
            assert_eq!(o[j].arrival_ns, end(j - 1) + think_ns, "request {j}");
            assert!(o[j].arrival_ns < until);
        } else {
            assert!(o[j].arrival_ns >= reqs[j].arrival_ns);
        }
    }
    assert!(o[4].refused && o[5].sent, "{:?}", &o[3..6]);
    // a turn due at or after sending's end is not sent, nor any after it
    let unsent: Vec<usize> = (0..reqs.len()).filter(|&j| !o[j].sent).collect();
    assert!(!unsent.is_empty(), "all 18 turns fit in 6 s?");
    for &j in &unsent {
        assert!(j % turns == 0 || !o[j - 1].sent || end(j - 1) + think_ns >= until);
    }
    // two conversations at most at any time, holding their slots between turns: the
    // third conversation starts when one of the first two has ended
    let conv_span = |k: usize| {
        let sent: Vec<usize> = (k * turns..(k + 1) * turns)
            .filter(|&j| o[j].sent)
            .collect();
        (o[sent[0]].arrival_ns, end(*sent.last().unwrap()))
    };
    let third = o[2 * turns].arrival_ns;
    let (first, second) = (conv_span(0), conv_span(1));
    assert!(o[2 * turns].sent);
    assert_eq!(third, first.1.min(second.1).max(reqs[2 * turns].arrival_ns));
}
