//! The fit recovers known coefficients from the simulator's own timelines (virtual time),
//! and refuses samples that cannot separate the terms.

use super::probes::{
    self, DECODE_BATCHES, DECODE_OUTPUT, DECODE_PROMPT, PREFILL_OUTPUT, PREFILL_PROMPTS,
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
        sample_every_ns: None,
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
    let decode = DECODE_BATCHES
        .iter()
        .flat_map(|&b| {
            let reqs = (0..b)
                .map(|_| request(DECODE_PROMPT, DECODE_OUTPUT))
                .collect();
            probes::decode(DECODE_PROMPT, &timeline(profile, seed, reqs))
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
        seed in 0u64..1000,
    ) {
        let truth = profile(c0_ms * 1e-3, c_pf_us * 1e-6, c_dec_us * 1e-6, c_kv_ns * 1e-9, fe_ms * 1e-3, 0.0);
        let (p, d) = observe(&truth, seed);
        let f = fit(&p, &d, &Profile::default_profile()).unwrap();
        close("c0", f.profile.c0_s, truth.c0_s, 0.05);
        close("c_pf", f.profile.c_pf_s, truth.c_pf_s, 0.05);
        close("c_dec", f.profile.c_dec_s, truth.c_dec_s, 0.05);
        close("c_kv", f.profile.c_kv_s, truth.c_kv_s, 0.05);
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
fn jittered_steps_are_fitted_with_their_error_stated() {
    // 3% step-time noise: the coefficients stay close, the residual says there is noise
    let truth = profile(20e-3, 60e-6, 300e-6, 80e-9, 8e-3, 0.03);
    let (p, d) = observe(&truth, 3);
    let f = fit(&p, &d, &truth).unwrap();
    close("c0", f.profile.c0_s, truth.c0_s, 0.10);
    close("c_dec", f.profile.c_dec_s, truth.c_dec_s, 0.15);
    assert!(f.decode_rel_rms > 0.005, "{}", f.decode_rel_rms);
    assert!(f.c_dec.std_error > 0.0);
}

#[test]
fn samples_that_cannot_separate_the_terms_are_refused() {
    let base = Profile::default_profile();
    let one_len: Vec<PrefillSample> = (0..5)
        .map(|_| PrefillSample {
            prompt_tokens: 512,
            ttft_s: 0.1,
        })
        .collect();
    let (p, d) = observe(&base, 1);
    let e = fit(&one_len, &d, &base).unwrap_err().to_string();
    assert!(e.contains("two prompt lengths"), "{e}");
    let one_batch: Vec<DecodeSample> = d.iter().filter(|s| s.batch == 4).copied().collect();
    let e = fit(&p, &one_batch, &base).unwrap_err().to_string();
    assert!(e.contains("two batch sizes"), "{e}");
}
