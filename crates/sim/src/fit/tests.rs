//! The fit recovers known coefficients from the simulator's own timelines (virtual time),
//! and refuses samples that cannot separate the terms.

use super::probes::{
    self, DECODE_BATCHES, DECODE_LONG_BATCHES, DECODE_LONG_PROMPT, DECODE_OUTPUT, DECODE_PROMPT,
    PREFILL_OUTPUT, PREFILL_PROMPTS,
};
use super::*;
use crate::virtual_time::{VirtualConfig, VirtualRequest, simulate};
use proptest::prelude::*;

/// Run `requests` (arriving together at 0) alone on a fresh engine; each one's token times.
fn timeline(profile: &Profile, seed: u64, requests: Vec<VirtualRequest>) -> Vec<Vec<u64>> {
    let cfg = VirtualConfig {
        profile: profile.clone(),
        dp: 1,
        seed,
        api_servers: None,
        slots: None,
        sample_every_ns: None,
        sample_metrics: crate::virtual_time::KeepMetrics::Never,
        max_span_ns: None,
        check_invariants: false,
        record_token_times: true,
    };
    simulate(&cfg, &requests).expect("simulate").token_times
}

fn request(prompt: u32, output: u32) -> VirtualRequest {
    VirtualRequest {
        arrival_ns: 0,
        prompt_tokens: prompt,
        max_tokens: output,
        min_tokens: 0,
        ignore_eos: true,
        pinned_rank: None,
        block_hashes: Default::default(),
    }
}

/// The probes against `profile`, as a client would observe them.
fn observe(profile: &Profile, seed: u64) -> (Vec<PrefillSample>, Vec<DecodeSample>) {
    let prefill = PREFILL_PROMPTS
        .iter()
        .map(|&p| {
            let t = timeline(profile, seed, vec![request(p, PREFILL_OUTPUT)]);
            probes::prefill(p, 0, t[0][0])
        })
        .collect();
    let batches = DECODE_BATCHES
        .iter()
        .map(|&b| (DECODE_PROMPT, b))
        .chain(DECODE_LONG_BATCHES.iter().map(|&b| (DECODE_LONG_PROMPT, b)));
    let decode = batches
        .flat_map(|(p, b)| {
            let reqs = (0..b).map(|_| request(p, DECODE_OUTPUT)).collect();
            let streams = timeline(profile, seed, reqs);
            assert!(probes::decoded_together(&streams), "{p} × {b}");
            probes::decode(p, &streams)
        })
        .collect();
    (prefill, decode)
}

fn close(what: &str, got: f64, want: f64, rel: f64) {
    assert!(
        (got - want).abs() <= rel * want.abs(),
        "{what}: fitted {got:e}, true {want:e}"
    );
}

fn profile(c0: f64, c_pf: f64, c_dec: f64, c_kv: f64, fe: f64, jitter: f64) -> Profile {
    Profile {
        c0_s: c0,
        c_pf_s: c_pf,
        // a CPU's or a long-prompt GPU's quadratic prefill (30 ns: the tiny CPU vLLM's 117
        // quartered)
        c_pf_attn_s: 30e-9,
        c_dec_s: c_dec,
        c_kv_s: c_kv,
        front_end_latency_s: fe,
        jitter,
        ..Profile::default_profile()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any profile in the range real GPUs and CPUs span: every coefficient within 5%.
    #[test]
    fn the_fit_recovers_a_random_profile_within_5_percent(
        c0_ms in 2.0f64..60.0,
        c_pf_us in 5.0f64..200.0,
        c_dec_us in 20.0f64..2000.0,
        c_kv_ns in 10.0f64..500.0,
        fe_ms in 0.5f64..30.0,
        attn_ns in 0.5f64..150.0,
        seed in 0u64..1000,
    ) {
        let truth = Profile {
            c_pf_attn_s: attn_ns * 1e-9,
            ..profile(c0_ms * 1e-3, c_pf_us * 1e-6, c_dec_us * 1e-6, c_kv_ns * 1e-9, fe_ms * 1e-3, 0.0)
        };
        let (p, d) = observe(&truth, seed);
        let f = fit(&p, &d, &Profile::default_profile()).unwrap();
        close("c0", f.profile.c0_s, truth.c0_s, 0.05);
        close("c_pf", f.profile.c_pf_s, truth.c_pf_s, 0.05);
        close("c_dec", f.profile.c_dec_s, truth.c_dec_s, 0.05);
        close("c_kv", f.profile.c_kv_s, truth.c_kv_s, 0.05);
        close("c_pf_attn", f.profile.c_pf_attn_s, truth.c_pf_attn_s, 0.05);
        close("front end", f.profile.front_end_latency_s, truth.front_end_latency_s, 0.05);
        // the step model is exact here: nothing left unexplained
        prop_assert!(f.decode_rel_rms < 1e-3, "{}", f.decode_rel_rms);
        prop_assert!(f.prefill_rel_rms < 1e-3, "{}", f.prefill_rel_rms);
    }
}

#[test]
fn the_default_profile_is_recovered_and_its_capacity_with_it() {
    let truth = Profile::default_profile();
    let (p, d) = observe(&truth, 7);
    let f = fit(&p, &d, &truth).unwrap();
    close(
        "capacity",
        f.profile.capacity(512, 256),
        truth.capacity(512, 256),
        0.01,
    );
    // a standard error is reported, and it is small where the model is exact
    assert!(f.c0.std_error < 0.01 * f.c0.value, "{:?}", f.c0);
}

#[test]
fn jittered_steps_are_fitted_close_with_their_error_stated() {
    // 3% step-time noise: the decode slopes average it over ~22 steps, so the
    // coefficients stay close and the residual stays small but not zero
    let truth = profile(20e-3, 60e-6, 300e-6, 80e-9, 8e-3, 0.03);
    let (p, d) = observe(&truth, 3);
    let f = fit(&p, &d, &truth).unwrap();
    close("c0", f.profile.c0_s, truth.c0_s, 0.05);
    close("c_dec", f.profile.c_dec_s, truth.c_dec_s, 0.10);
    close("c_kv", f.profile.c_kv_s, truth.c_kv_s, 0.25);
    assert!(
        f.decode_rel_rms > 0.0 && f.decode_rel_rms < 0.02,
        "{}",
        f.decode_rel_rms
    );
    assert!(f.c_dec.std_error > 0.0);
}

#[test]
fn samples_that_cannot_separate_the_terms_are_refused() {
    let base = Profile::default_profile();
    let two_lens: Vec<PrefillSample> = (0..6)
        .map(|i| PrefillSample {
            prompt_tokens: 512 * (1 + i % 2),
            ttft_s: 0.1,
        })
        .collect();
    let (p, d) = observe(&base, 1);
    let e = fit(&two_lens, &d, &base).unwrap_err().to_string();
    assert!(e.contains("three prompt lengths"), "{e}");
    let one_batch: Vec<DecodeSample> = d.iter().filter(|s| s.batch == 4).copied().collect();
    let e = fit(&p, &one_batch, &base).unwrap_err().to_string();
    assert!(e.contains("two batch sizes"), "{e}");
}

/// Token times every `step` ns from `start`, then delivered as a lagging API server does:
/// tokens `bunch_from..bunch_to` held back and released together at the last one's time.
fn delivered(start: u64, step: u64, n: usize, bunch: std::ops::Range<usize>) -> Vec<u64> {
    let mut t: Vec<u64> = (0..n as u64).map(|j| start + j * step).collect();
    let release = t[bunch.end - 1];
    for x in &mut t[bunch] {
        *x = release;
    }
    t
}

#[test]
fn bunched_delivery_does_not_move_the_decode_step() {
    // 10 ms steps; one stream's tokens 10..30 held back 200 ms and flushed at once, the
    // other's 40..46: the step is still 10 ms (single gaps would say 0 and 200)
    let streams = vec![
        delivered(5_000_000, 10_000_000, 48, 10..30),
        delivered(5_100_000, 10_000_000, 48, 40..46),
        delivered(5_200_000, 10_000_000, 48, 0..1),
    ];
    assert!(probes::decoded_together(&streams));
    let d = probes::decode(32, &streams);
    assert_eq!(d.len(), 1);
    assert!((d[0].itl_s - 0.010).abs() < 1e-9, "{}", d[0].itl_s);
    assert_eq!(d[0].batch, 3);
    // the window is tokens 4..48: its middle, token 25.5, holds 32 + 24.5 each
    assert_eq!(d[0].context_tokens, (3.0f64 * 56.5).round() as u64);
}

#[test]
fn a_batch_the_server_did_not_take_at_once_is_told_apart() {
    // the second stream starts only when the first is past its middle: it waited for a
    // free slot (max_num_seqs smaller than the batch)
    let first = delivered(0, 10_000_000, 48, 0..1);
    let late = delivered(300_000_000, 10_000_000, 48, 0..1);
    assert!(!probes::decoded_together(&[first.clone(), late]));
    let soon = delivered(20_000_000, 10_000_000, 48, 0..1);
    assert!(probes::decoded_together(&[first, soon]));
    assert!(!probes::decoded_together(&[]));
}

#[test]
fn a_term_fitted_negative_is_held_at_zero_and_the_rest_refitted() {
    // a prefill that grows less than linearly (seen on a CPU vLLM): the quadratic term
    // comes out negative; held at 0, the line through the same points is refitted, not
    // the line that leaned on the negative curvature
    let base = Profile::default_profile();
    let (_, d) = observe(&base, 1);
    let prefill: Vec<PrefillSample> = [64u32, 256, 512, 1024, 1536]
        .iter()
        .map(|&p| {
            let n = f64::from(p);
            PrefillSample {
                prompt_tokens: p,
                ttft_s: 0.02 + 40e-6 * n - 10e-9 * n * (n + 1.0) / 2.0,
            }
        })
        .collect();
    let f = fit(&prefill, &d, &base).unwrap();
    assert_eq!(f.fixed_at_zero, vec!["c_pf_attn_s"]);
    assert_eq!(f.profile.c_pf_attn_s, 0.0);
    // the refitted line: slope between the chord's (~32 µs) and the start's (40 µs)
    assert!(
        (20e-6..40e-6).contains(&f.profile.c_pf_s),
        "{}",
        f.profile.c_pf_s
    );
    let line = |n: f64| f.c0.value + f.front_end.value + f.profile.c_pf_s * n;
    for s in &prefill {
        let n = f64::from(s.prompt_tokens);
        assert!(
            (line(n) - s.ttft_s).abs() < 0.1 * s.ttft_s,
            "{n}: {} vs {}",
            line(n),
            s.ttft_s
        );
    }
}
