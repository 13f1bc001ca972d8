//! `vllm-loadtest fit`: a simulator profile identified from a real server. The probes run
//! as ordinary cells into a fit folder (`probe`), their records become samples (`samples`),
//! the least squares are `vllm_sim::fit`'s (pure), and the server's own statement of its
//! limits comes from `facts`. This module joins them: the fitted profile with its
//! provenance, and its prediction of a held-out load beside the measurement.

pub mod facts;
pub mod probe;
pub mod samples;

use crate::runner::cell::{CellResult, CellSpec};
use crate::runner::progress::Spec;
use crate::runner::virtual_cell::{self, VirtualServer};
use crate::store::layout::{CellDir, FitDir};
use crate::store::records;
use crate::workload::Prompt;
use crate::workload::body::{BodyOptions, Endpoint};
use anyhow::{Context, Result};
use facts::ServerFacts;
use loadtest_analysis::summary::RunSummary;
use std::collections::BTreeMap;
use std::time::Duration;
use vllm_sim::Profile;
use vllm_sim::calibrate::{ObservedLoad, central_mean};
use vllm_sim::fit::Fit;
use vllm_sim::profile::{HeldOut, HeldOutMetric, OpenLoop, Provenance};
use vllm_sim::virtual_time::VirtualRequest;

/// Limits given on the command line (vLLM does not expose them).
#[derive(Debug, Clone, Copy, Default)]
pub struct LimitFlags {
    pub max_num_seqs: Option<u32>,
    pub max_num_batched_tokens: Option<u32>,
}

/// The fitted profile of the probes in `dir`, its provenance filled in (no held-out load
/// yet; `tool`: the fitting tool and its version); the fit's statistics for the terminal.
pub fn fit_folder(
    dir: &FitDir,
    flags: LimitFlags,
    source: &str,
    tool: &str,
) -> Result<(Profile, Fit)> {
    let facts = read_facts(dir)?;
    one_engine(&facts)?;
    let s = samples::read(dir)?;
    let (base, limits) = limits(&facts, flags, &s);
    let f = vllm_sim::fit::fit(&s.prefill, &s.decode, &base)
        .with_context(|| format!("fitting the probes of `{}`", dir.root().display()))?;
    // jitter stays 0: from outside, an engine's step noise and the API server's uneven
    // delivery look alike, and a jitter fitted to both would widen every predicted tail
    let mut profile = f.profile.clone();
    let std_errors = BTreeMap::from([
        ("c0_s".to_string(), f.c0.std_error),
        ("c_pf_s".to_string(), f.c_pf.std_error),
        ("c_pf_attn_s".to_string(), f.c_pf_attn.std_error),
        ("c_dec_s".to_string(), f.c_dec.std_error),
        ("c_kv_s".to_string(), f.c_kv.std_error),
        ("front_end_latency_s".to_string(), f.front_end.std_error),
    ]);
    let mut notes = s.notes;
    for name in &f.fixed_at_zero {
        notes.push(format!(
            "{name} fitted negative: held at 0 and the other terms refitted"
        ));
    }
    for (name, e) in [("c0_s", f.c0), ("front_end_latency_s", f.front_end)] {
        if e.value < 0.0 {
            notes.push(format!(
                "{name} fitted negative ({:.3e} ± {:.1e} s): set to 0",
                e.value, e.std_error
            ));
        }
    }
    profile.provenance = Some(Box::new(Provenance {
        source: source.to_string(),
        server_version: facts.version.clone(),
        model: Some(facts.model.clone()),
        fitted_at: loadtest_base::time::rfc3339(loadtest_base::time::unix_now()),
        tool: tool.to_string(),
        prefill_samples: f.samples.0,
        decode_samples: f.samples.1,
        std_errors,
        prefill_rel_rms: f.prefill_rel_rms,
        decode_rel_rms: f.decode_rel_rms,
        limits,
        notes,
        open_loop: None,
        held_out: None,
        steadiness: s.steadiness,
        open_loop_speed: None,
    }));
    profile.validate()?;
    Ok((profile, f))
}

/// A fit measures one engine's steps: behind a port with several data-parallel engines the
/// router splits each probe batch among them, and a batch of B would be fitted as B.
pub fn one_engine(facts: &ServerFacts) -> Result<()> {
    if facts.engines > 1 {
        anyhow::bail!(
            "`{}` has {} engines behind it (`/metrics`): the probes' batches would be split among them\nhint: fit a server started with one engine (`--data-parallel-size 1`); the profile is one engine's, and `server.dp` scales it",
            facts.url,
            facts.engines
        );
    }
    Ok(())
}

pub fn read_facts(dir: &FitDir) -> Result<ServerFacts> {
    let p = dir.server_json();
    let text = std::fs::read(&p).with_context(|| {
        format!(
            "cannot read `{}`\nhint: give a folder written by `vllm-loadtest fit --base-url …`",
            p.display()
        )
    })?;
    serde_json::from_slice(&text)
        .with_context(|| format!("`{}` is not a fit's server.json", p.display()))
}

pub fn write_facts(dir: &FitDir, facts: &ServerFacts) -> Result<()> {
    std::fs::create_dir_all(dir.root())
        .with_context(|| format!("cannot create `{}`", dir.root().display()))?;
    std::fs::write(dir.server_json(), serde_json::to_vec_pretty(facts)?)
        .with_context(|| format!("cannot write `{}`", dir.server_json().display()))
}

/// The profile the fit starts from (its limits), and where each limit came from: the
/// server's word first, a flag next, what the probes showed, else vLLM's default (said so).
fn limits(
    facts: &ServerFacts,
    flags: LimitFlags,
    s: &samples::Samples,
) -> (Profile, BTreeMap<String, String>) {
    let mut p = Profile::default_profile();
    let mut from = BTreeMap::new();
    let mut set = |name: &str, value: Option<u32>, field: &mut u32, source: &str| {
        if let Some(v) = value {
            *field = v;
            from.insert(name.to_string(), source.to_string());
        } else {
            from.insert(
                name.to_string(),
                format!("assumed {} (not exposed by the server)", *field),
            );
        }
    };
    set(
        "num_gpu_blocks",
        facts.num_gpu_blocks,
        &mut p.num_gpu_blocks,
        "/metrics vllm:cache_config_info",
    );
    set(
        "block_size",
        facts.block_size,
        &mut p.block_size,
        "/metrics vllm:cache_config_info",
    );
    set(
        "max_model_len",
        facts.max_model_len,
        &mut p.max_model_len,
        "/v1/models",
    );
    set(
        "max_num_batched_tokens",
        flags.max_num_batched_tokens,
        &mut p.max_num_batched_tokens,
        "--max-num-batched-tokens",
    );
    match (flags.max_num_seqs, s.smallest_apart) {
        (Some(n), _) => {
            p.max_num_seqs = n;
            from.insert("max_num_seqs".into(), "--max-num-seqs".into());
        }
        (None, Some(apart)) if apart > s.largest_together => {
            p.max_num_seqs = s.largest_together.max(1);
            from.insert(
                "max_num_seqs".into(),
                format!(
                    "probed: {} decoded together, {apart} did not (between them; pass --max-num-seqs for the exact value)",
                    s.largest_together
                ),
            );
        }
        // no batch apart, or only a smaller one than some batch that did decode together:
        // a slow admission, not the limit
        _ => {
            from.insert(
                "max_num_seqs".into(),
                format!(
                    "assumed {} (not exposed by the server; {} decoded together)",
                    p.max_num_seqs.max(s.largest_together),
                    s.largest_together
                ),
            );
            p.max_num_seqs = p.max_num_seqs.max(s.largest_together);
        }
    }
    if let Some(c) = facts.enable_prefix_caching {
        p.enable_prefix_caching = c;
        from.insert(
            "enable_prefix_caching".into(),
            "/metrics vllm:cache_config_info".into(),
        );
    }
    (p, from)
}

/// Calibrate `profile`'s `c0_s` and `c_dec_s` to the open-loop loads measured in `dir`
/// (`vllm_sim::calibrate`), recording it in the provenance; `None` when the folder has no
/// such load (a fit with `--load-seconds 0`, or one made before them).
pub fn calibrate_folder(
    dir: &FitDir,
    profile: &mut Profile,
    engines: usize,
) -> Result<Option<OpenLoop>> {
    let cells = dir.load_probes();
    if cells.is_empty() {
        return Ok(None);
    }
    calibrate_cells(&cells, profile, engines).map(Some)
}

/// Calibrate `profile` (on `engines` engines) to measured open-loop `cells`, recording it
/// in the provenance when the profile has one.
pub fn calibrate_cells(
    cells: &[CellDir],
    profile: &mut Profile,
    engines: usize,
) -> Result<OpenLoop> {
    let mut loads = Vec::with_capacity(cells.len());
    let mut names = Vec::with_capacity(cells.len());
    for cell in cells {
        let recs = records::read_full(cell)?;
        let (ttft, tpot) = observed_times(&recs);
        if ttft.is_nan() || tpot.is_nan() {
            anyhow::bail!(
                "`{}` has no completed request to calibrate on\nhint: measure it again, or leave it out (`fit DIR --load-seconds 0` keeps a fit folder's burst fit)",
                cell.root().display()
            );
        }
        if recs.iter().any(|r| r.turn.is_some()) {
            anyhow::bail!(
                "`{}` holds a multi-turn cell: a turn is sent when the one before ends, which a replay of fixed arrivals cannot follow\nhint: calibrate on single-turn open-loop cells",
                cell.root().display()
            );
        }
        loads.push(ObservedLoad {
            requests: recs.iter().map(virtual_request).collect(),
            measured: recs.iter().map(|r| r.is_ok()).collect(),
            ttft_s: ttft,
            tpot_s: tpot,
        });
        names.push(format!(
            "`{}`: {} requests",
            cell.root().display(),
            recs.len()
        ));
    }
    let c = vllm_sim::calibrate::calibrate(profile, engines, &loads)
        .map_err(|e| anyhow::anyhow!("calibrating to the open-loop loads: {e}"))?;
    let metric = |name: &str, measured: f64, predicted: f64| HeldOutMetric {
        metric: name.to_string(),
        measured: measured * 1e3,
        predicted: predicted * 1e3,
        error_pct: (predicted - measured) / measured * 100.0,
    };
    let open = OpenLoop {
        before_c0_s: profile.c0_s,
        before_c_dec_s: profile.c_dec_s,
        loads: names
            .into_iter()
            .zip(&loads)
            .zip(c.before.iter().zip(&c.after))
            .map(|((load, l), (b, a))| HeldOut {
                load,
                metrics: vec![
                    metric("TTFT (ms), before", l.ttft_s, b.0),
                    metric("TTFT (ms), calibrated", l.ttft_s, a.0),
                    metric("TPOT (ms), before", l.tpot_s, b.1),
                    metric("TPOT (ms), calibrated", l.tpot_s, a.1),
                ],
            })
            .collect(),
    };
    let provenance = profile.provenance.take();
    *profile = c.profile;
    profile.provenance = provenance;
    if let Some(p) = profile.provenance.as_mut() {
        p.open_loop = Some(open.clone());
        p.notes.push(format!(
            "c0_s and c_dec_s calibrated to {} open-loop loads (before: {:.3} ms and {:.1} µs); their standard errors are the fit's before",
            loads.len(),
            open.before_c0_s * 1e3,
            open.before_c_dec_s * 1e6
        ));
    }
    Ok(open)
}

/// A load's TTFT and TPOT as the calibration reads them: the mean of the middle 80% of
/// the successful requests' (TTFT from when each was sent).
fn observed_times(recs: &[loadtest_analysis::record::RequestRecord]) -> (f64, f64) {
    let mut ttft = Vec::new();
    let mut tpot = Vec::new();
    for r in recs.iter().filter(|r| r.is_ok()) {
        if let Some(t) = r.ttft_ns() {
            ttft.push(t as f64 / 1e9);
        }
        if let Some(t) = r.tpot_ns() {
            tpot.push(t / 1e9);
        }
    }
    (central_mean(&mut ttft), central_mean(&mut tpot))
}

/// A measured request as the simulator receives it: arriving when the client sent it (what
/// the server saw; a client that fell behind its schedule sent late, and the measured TTFT
/// counts from the send too), its prompt as the server counted it, as many tokens out as
/// it produced when it finished (an end-of-sequence before `max_tokens` included),
/// `max_tokens` when it did not.
fn virtual_request(r: &loadtest_analysis::record::RequestRecord) -> VirtualRequest {
    VirtualRequest {
        arrival_ns: r.t_send_ns,
        prompt_tokens: r.server_prompt_tokens.unwrap_or(r.input_tokens),
        max_tokens: if r.is_ok() {
            r.output_tokens.max(1)
        } else {
            r.max_tokens
        },
        min_tokens: 0,
        ignore_eos: true,
        pinned_rank: None,
        block_hashes: Default::default(),
    }
}

/// Predict a measured cell in virtual time: its own arrival instants and lengths (prompt
/// as the server counted it, `max_tokens` as sent, every request run to `max_tokens`: the
/// fit's held-out load ignores EOS). The records
/// say everything the simulator needs, so any measured cell can be predicted.
pub fn predict_measured(
    measured: &CellDir,
    profile: &Profile,
    engines: usize,
    load: &crate::experiment::cell_plan::LoadPlan,
    out: &CellDir,
    metrics_interval: Option<Duration>,
) -> Result<CellResult> {
    let recs = records::read_full(measured)?;
    let prompts: Vec<Prompt> = recs
        .iter()
        .map(|r| Prompt {
            text: String::new(),
            history: Vec::new(),
            input_tokens: r.server_prompt_tokens.unwrap_or(r.input_tokens),
            output_tokens: r.max_tokens,
        })
        .collect();
    let schedule: std::sync::Arc<[u64]> = recs.iter().map(|r| r.t_intended_ns).collect();
    let body = BodyOptions {
        endpoint: Endpoint::Completions,
        model: String::new(),
        ignore_eos: true,
        temperature: None,
        continuous_usage: false,
        extra: None,
    };
    std::fs::create_dir_all(out.root())?;
    let spec = CellSpec {
        endpoints: &[],
        prompts: &prompts,
        body: &body,
        load,
        schedule,
        connect_timeout: Duration::from_secs(10),
        slos: &[],
        percentiles: &[],
        progress: Spec::quiet(),
        client_threads: 1,
        health_probe: None,
        turns: 1,
        metrics_interval,
        gpu: false,
        exact_tokenizer: false,
        start_at_unix_ns: None,
    };
    let server = VirtualServer {
        profile: profile.clone(),
        dp: engines,
        seed: 0,
        api_servers: None,
    };
    // short: a held-out load of seconds, not worth an interrupt check
    virtual_cell::run(&spec, &server, None, out, &|| false)
}

/// How often the speed load's server is scraped, on the server and in its prediction: the
/// span its steps are counted over lies between the first and the last scrape (one engine:
/// its idle time comes from the records), and a scrape is work on the server measured.
pub const SPEED_SCRAPE: Duration = Duration::from_secs(1);

/// The server's speed on an open-loop cell against `profile` (`engine_work::speed`): the
/// measured cell's engines' busy time over what the profile's costs give for its work,
/// over the same reading of its prediction (`predicted`, made with `profile` and scraped
/// alike); `None` where either side's counters do not say.
pub fn open_loop_speed(
    measured: &CellDir,
    predicted: &CellDir,
    profile: &Profile,
    engines: usize,
) -> Result<Option<f64>> {
    let costs = virtual_cell::step_costs(profile);
    let ratio = |d: &CellDir| -> Result<Option<f64>> {
        let records = records::read_compact(d)?;
        let work = loadtest_analysis::engine_work::engine_work(&d.read_metrics(), 0, u64::MAX);
        Ok(work
            .map(|w| w.with_idle(&records, engines as u32))
            .and_then(|w| costs.time_ratio(&w)))
    };
    Ok(match (ratio(measured)?, ratio(predicted)?) {
        (Some(m), Some(p)) => loadtest_analysis::engine_work::speed(m, p),
        _ => None,
    })
}

/// Throughput and the p50s of TTFT, TPOT and E2E, measured beside predicted.
pub fn compare(load: String, measured: &RunSummary, predicted: &RunSummary) -> HeldOut {
    let p50 = |d: &Option<loadtest_analysis::stats::Distribution>| d.as_ref().map(|d| d.p50);
    let pairs = [
        (
            "request throughput (req/s)",
            measured.request_throughput,
            predicted.request_throughput,
        ),
        (
            "output throughput (tok/s)",
            measured.output_throughput,
            predicted.output_throughput,
        ),
        (
            "TTFT p50 (ms)",
            p50(&measured.latencies.ttft_ms),
            p50(&predicted.latencies.ttft_ms),
        ),
        (
            "TPOT p50 (ms)",
            p50(&measured.latencies.tpot_ms),
            p50(&predicted.latencies.tpot_ms),
        ),
        (
            "E2E p50 (ms)",
            p50(&measured.latencies.e2el_ms),
            p50(&predicted.latencies.e2el_ms),
        ),
    ];
    HeldOut {
        load,
        metrics: pairs
            .into_iter()
            .filter_map(|(metric, m, p)| {
                let (m, p) = (m?, p?);
                (m > 0.0).then(|| HeldOutMetric {
                    metric: metric.to_string(),
                    measured: m,
                    predicted: p,
                    error_pct: (p - m) / m * 100.0,
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probed(together: u32, apart: Option<u32>) -> (u32, String) {
        let s = samples::Samples {
            largest_together: together,
            smallest_apart: apart,
            ..samples::Samples::default()
        };
        let (p, from) = limits(&ServerFacts::default(), LimitFlags::default(), &s);
        (p.max_num_seqs, from["max_num_seqs"].clone())
    }

    #[test]
    fn a_server_with_several_engines_is_refused() {
        let f = |engines| ServerFacts {
            engines,
            ..ServerFacts::default()
        };
        assert!(one_engine(&f(0)).is_ok() && one_engine(&f(1)).is_ok());
        let e = one_engine(&f(2)).unwrap_err().to_string();
        assert!(e.contains("2 engines") && e.contains("hint:"), "{e}");
    }

    #[test]
    fn max_num_seqs_is_probed_only_from_consistent_batches() {
        // 16 together, 32 apart: the limit lies between
        let (n, from) = probed(16, Some(32));
        assert_eq!(n, 16);
        assert!(from.starts_with("probed"), "{from}");
        // a small batch apart beside a large one together: a slow admission, not a limit
        let (n, from) = probed(128, Some(4));
        assert_eq!(n, 256);
        assert!(from.starts_with("assumed 256"), "{from}");
        // never apart, all together up to 512: at least that many
        assert_eq!(probed(512, None).0, 512);
        // a flag wins
        let (p, from) = limits(
            &ServerFacts::default(),
            LimitFlags {
                max_num_seqs: Some(64),
                max_num_batched_tokens: Some(4096),
            },
            &samples::Samples::default(),
        );
        assert_eq!((p.max_num_seqs, p.max_num_batched_tokens), (64, 4096));
        assert_eq!(from["max_num_batched_tokens"], "--max-num-batched-tokens");
    }
}
