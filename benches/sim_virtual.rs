//! `cargo bench --bench sim_virtual`: wall time of simulated traffic in virtual time.
//!
//! The target (issue 3): one hour of 4-GPU traffic at 60 req/s (default profile, 512 in /
//! 256 out, Poisson) in at most 10 s. Prints the wall time, the steps simulated and the
//! simulated throughput, so a regression in the engine's step path shows as a number.

use loadtest_base::arrivals::{Arrival, Stop, schedule};
use std::time::Instant;
use vllm_sim::Profile;
use vllm_sim::virtual_time::{VirtualConfig, VirtualRequest, simulate};

fn main() {
    for (name, rate, dp, secs) in [
        ("1 h, dp 4, 60 req/s", 60.0, 4, 3600.0),
        ("1 h, dp 1, 10 req/s", 10.0, 1, 3600.0),
    ] {
        let reqs: Vec<VirtualRequest> =
            schedule(Arrival::Poisson { rate }, Stop::Duration(secs), 1)
                .into_iter()
                .map(|t| VirtualRequest {
                    arrival_ns: t,
                    prompt_tokens: 512,
                    max_tokens: 256,
                    min_tokens: 0,
                    ignore_eos: true,
                    pinned_rank: None,
                    block_hashes: Default::default(),
                })
                .collect();
        let cfg = VirtualConfig {
            profile: Profile::default_profile(),
            dp,
            seed: 1,
            api_servers: None,
            slots: None,
            sample_every_ns: Some(1_000_000_000),
            sample_metrics: vllm_sim::virtual_time::KeepMetrics::Never,
            max_span_ns: None,
            check_invariants: false,
            record_token_times: false,
        };
        let t0 = Instant::now();
        let run = simulate(&cfg, &reqs).expect("simulate");
        let wall = t0.elapsed();
        let done = run
            .outcomes
            .iter()
            .filter(|o| o.finish_ns.is_some())
            .count();
        println!(
            "{name}: {} requests, {} engine steps, simulated {:.0} s in {:.2} s wall ({:.0}x real time); {done} finished",
            reqs.len(),
            run.steps,
            run.end_ns as f64 / 1e9,
            wall.as_secs_f64(),
            run.end_ns as f64 / 1e9 / wall.as_secs_f64()
        );
    }
}
