//! The identification plan sent to a live server, each probe one ordinary cell of the fit's
//! folder (`FitDir`): a warm-up; the prefill probe (single requests one at a time over a
//! range of prompt lengths, interleaved so a drift of the server does not line up with
//! length); the decode probe (batches of requests sent together, each size repeated); and a
//! held-out open-loop load the fitted profile must then predict.

use crate::client::server::Server;
use crate::experiment::cell_plan::LoadPlan;
use crate::runner::cell::{CellResult, CellSpec, run_cell};
use crate::runner::progress::Spec;
use crate::store::layout::{CellDir, FitDir};
use crate::workload::body::BodyOptions;
use crate::workload::{Prompt, random};
use anyhow::{Result, bail};
use loadtest_base::Tokenizer;
use loadtest_base::arrivals::{Arrival, Stop};
use std::time::Duration;
use tokio::sync::watch;
use vllm_sim::fit::probes;

/// The probes stopped for Ctrl-C or SIGTERM (the command exits 130 on it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Interrupted(pub String);

/// What the plan sends; `plan` derives it from the server's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbePlan {
    pub prefill_prompts: Vec<u32>,
    /// Decode batches as (prompt tokens, batch size).
    pub batches: Vec<(u32, u32)>,
    pub repeats: u32,
    /// The open-loop loads' shape (`calibrate`; rates set from the burst fit).
    pub open_loop: HeldOutLoad,
    pub held_out: HeldOutLoad,
}

/// An open-loop Poisson load of random prompts, not shaped like any probe.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldOutLoad {
    pub rate: f64,
    pub requests: usize,
    pub input_len: u32,
    pub output_len: u32,
}

impl HeldOutLoad {
    pub fn describe(&self) -> String {
        format!(
            "Poisson {:.2} req/s, {} requests, random prompts of {} tokens ±25%, {} tokens out",
            self.rate, self.requests, self.input_len, self.output_len
        )
    }
}

/// What the plan must fit in, as far as known.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bounds {
    pub max_model_len: Option<u32>,
    /// Tokens per step (`max_num_batched_tokens`).
    pub budget: Option<u32>,
    pub max_num_seqs: Option<u32>,
    /// KV-cache tokens of one engine (blocks × block size).
    pub kv_tokens: Option<u64>,
}

/// The probes for a server within `bounds`: prompt lengths that fit unchunked (at least
/// three), decode batches that fit its sequences and cache (larger ones, when its limit is
/// unknown, are sent and left out if it does not take them at once).
pub fn plan(bounds: Bounds, repeats: u32) -> Result<ProbePlan> {
    let Bounds {
        max_model_len,
        budget,
        max_num_seqs,
        kv_tokens,
    } = bounds;
    let room = max_model_len
        .unwrap_or(u32::MAX)
        .saturating_sub(probes::PREFILL_OUTPUT + 8)
        .min(budget.unwrap_or(u32::MAX));
    let mut prompts: Vec<u32> = probes::PREFILL_PROMPTS
        .iter()
        .copied()
        .filter(|&p| p <= room)
        .collect();
    if prompts.len() < 3 {
        // a short context: spread the lengths over what fits
        prompts = [8, 4, 2]
            .iter()
            .map(|d| room / d)
            .filter(|&p| p >= 8)
            .collect();
    }
    if prompts.len() < 2 {
        bail!(
            "the server's context ({} tokens) leaves no room for the prefill probe's prompts",
            max_model_len.unwrap_or(0)
        );
    }
    let decode_need = probes::DECODE_PROMPT + probes::DECODE_OUTPUT + 8;
    if max_model_len.is_some_and(|m| m < decode_need) {
        bail!("the server's context is shorter than the decode probe's {decode_need} tokens");
    }
    let fits = |&(p, b): &(u32, u32)| {
        b <= max_num_seqs.unwrap_or(u32::MAX)
            && u64::from(b) * u64::from(p + probes::DECODE_OUTPUT) <= kv_tokens.unwrap_or(u64::MAX)
    };
    let mut batches: Vec<(u32, u32)> = probes::DECODE_BATCHES
        .iter()
        .map(|&b| (probes::DECODE_PROMPT, b))
        .filter(fits)
        .collect();
    // the long context: as long as fits with the output, unchunked per request
    let long = probes::DECODE_LONG_PROMPT
        .min(room.saturating_sub(probes::DECODE_OUTPUT))
        .min(
            max_model_len
                .unwrap_or(u32::MAX)
                .saturating_sub(decode_need),
        );
    if long >= 4 * probes::DECODE_PROMPT {
        batches.extend(
            probes::DECODE_LONG_BATCHES
                .iter()
                .map(|&b| (long, b))
                .filter(fits),
        );
    }
    Ok(ProbePlan {
        prefill_prompts: prompts,
        batches,
        repeats: repeats.max(1),
        // rates and counts filled in once the profile is fitted (they depend on its
        // capacity); shapes unlike every probe's and each other's
        open_loop: HeldOutLoad {
            rate: 0.0,
            requests: 0,
            input_len: 192.min(room / 2).max(16),
            output_len: 160.min(room / 4).max(8),
        },
        held_out: HeldOutLoad {
            rate: 0.0,
            requests: 0,
            input_len: 384.min(room / 2).max(16),
            output_len: 96,
        },
    })
}

/// Runs cells against one server, one after another, each into its own folder.
pub struct Prober<'a> {
    pub server: &'a Server,
    pub body: &'a BodyOptions,
    pub tok: &'a Tokenizer,
    pub connect_timeout: Duration,
    pub interrupt: watch::Receiver<bool>,
    pub quiet: bool,
}

impl Prober<'_> {
    /// The warm-up and both probes of `plan` into `dir`.
    pub async fn identify(&self, plan: &ProbePlan, dir: &FitDir) -> Result<()> {
        let longest = *plan.prefill_prompts.last().expect("plan has prompts");
        let mut warm = self.prompts(4, 64, 8, 1)?;
        warm.extend(self.prompts(1, longest, 8, 2)?);
        self.cell("warm-up", &warm, warm.len(), &dir.warmup())
            .await?;
        // lengths interleaved: 64, 256, …, 64, 256, … Every prompt from its own seed: one
        // seed's prompts of two lengths share their first tokens, and the server's prefix
        // cache would serve the longer one's start from the shorter one's blocks
        let by_len = plan
            .prefill_prompts
            .iter()
            .map(|&len| {
                let seed = 3_000_000 + u64::from(len);
                self.prompts(plan.repeats as usize, len, probes::PREFILL_OUTPUT, seed)
            })
            .collect::<Result<Vec<_>>>()?;
        let prefill: Vec<Prompt> = (0..plan.repeats as usize)
            .flat_map(|r| by_len.iter().map(move |v| v[r].clone()))
            .collect();
        self.cell("prefill probe", &prefill, 1, &dir.prefill())
            .await?;
        for r in 0..plan.repeats {
            for &(p, b) in &plan.batches {
                let seed = 1000 + u64::from(r) * 100_000 + u64::from(p) * 100 + u64::from(b);
                let prompts = self.prompts(b as usize, p, probes::DECODE_OUTPUT, seed)?;
                let label = format!("decode probe: {b} × {p} tokens together (repeat {})", r + 1);
                self.cell(&label, &prompts, prompts.len(), &dir.decode(p, b, r))
                    .await?;
            }
        }
        Ok(())
    }

    /// An open-loop load (`what`: "held-out load", …), measured, the server's `/metrics`
    /// scraped every `metrics` if given; its prompts, schedule and result. `seed` makes its
    /// prompts and arrivals its own.
    pub async fn open_loop(
        &self,
        what: &str,
        load: &HeldOutLoad,
        seed: u64,
        cdir: &CellDir,
        metrics: Option<Duration>,
    ) -> Result<(Vec<Prompt>, LoadPlan, CellResult)> {
        let wl = random::generate(
            &random::RandomSpec {
                num_prompts: load.requests,
                input_len: load.input_len,
                output_len: load.output_len,
                range_ratio: 0.25,
                prefix_len: 0,
                seed,
            },
            self.tok,
        )?;
        let mut plan = load_plan(Arrival::Poisson { rate: load.rate }, load.requests, None);
        plan.seed = seed;
        let r = self
            .run(
                &format!("{what}: {}", load.describe()),
                &wl.prompts,
                &plan,
                cdir,
                metrics,
            )
            .await?;
        Ok((wl.prompts, plan, r))
    }

    /// `count` prompts of `len` tokens, `output` tokens out, distinct by `seed` (one build:
    /// a build sets up the tokenizer's vocabulary, which costs more than the prompts).
    fn prompts(&self, count: usize, len: u32, output: u32, seed: u64) -> Result<Vec<Prompt>> {
        Ok(random::generate(
            &random::RandomSpec {
                num_prompts: count,
                input_len: len,
                output_len: output,
                range_ratio: 0.0,
                prefix_len: 0,
                seed,
            },
            self.tok,
        )?
        .prompts)
    }

    /// Every prompt sent once, all at t = 0, at most `in_flight` at a time.
    async fn cell(
        &self,
        label: &str,
        prompts: &[Prompt],
        in_flight: usize,
        cdir: &CellDir,
    ) -> Result<CellResult> {
        let plan = load_plan(Arrival::AllAtOnce, prompts.len(), Some(in_flight));
        self.run(label, prompts, &plan, cdir, None).await
    }

    async fn run(
        &self,
        label: &str,
        prompts: &[Prompt],
        load: &LoadPlan,
        cdir: &CellDir,
        metrics_interval: Option<Duration>,
    ) -> Result<CellResult> {
        if *self.interrupt.borrow() {
            let dir = cdir.root().parent().unwrap_or(cdir.root());
            return Err(Interrupted(format!(
                "fit interrupted before the {label}; the probes so far are in `{}` (no profile written)",
                dir.display()
            ))
            .into());
        }
        std::fs::create_dir_all(cdir.root())?;
        eprintln!("fit: {label}: {} requests", prompts.len());
        let spec = CellSpec {
            endpoints: std::slice::from_ref(self.server),
            prompts,
            body: self.body,
            load,
            schedule: load.schedule(0)?,
            connect_timeout: self.connect_timeout,
            slos: &[],
            percentiles: &[],
            progress: Spec {
                quiet: self.quiet,
                ..Spec::default()
            },
            client_threads: 1,
            health_probe: None,
            turns: 1,
            metrics_interval,
            gpu: false,
            exact_tokenizer: !self.tok.is_built_in(),
            start_at_unix_ns: None,
        };
        let r = run_cell(spec, cdir, self.interrupt.clone()).await?;
        if r.interrupted {
            return Err(Interrupted(format!(
                "fit interrupted during the {label}; the probes so far are in `{}` (no profile written)",
                cdir.root().parent().unwrap_or(cdir.root()).display()
            ))
            .into());
        }
        if r.summary.failed > 0 {
            bail!(
                "{label}: {} of {} requests failed (see `{}`): a fit needs every probe request served",
                r.summary.failed,
                prompts.len(),
                cdir.root().display()
            );
        }
        Ok(r)
    }
}

/// `count` requests on `arrival`, every one within the run (no window, no drain).
pub fn load_plan(arrival: Arrival, count: usize, max_concurrency: Option<usize>) -> LoadPlan {
    LoadPlan {
        arrival,
        stop: Stop::Count(count),
        arrival_name: "fit".into(),
        burstiness: 1.0,
        max_concurrency,
        seed: 0,
        window_s: None,
        warmup_s: 0.0,
        cooldown_s: 0.0,
        request_timeout: Duration::from_secs(300),
        drain: None,
        trace: None,
        think_time_s: 0.0,
        shard: loadtest_base::shard::Shard::WHOLE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_lengths_stay_unchunked_and_within_the_context() {
        let ctx = |len| Bounds {
            max_model_len: Some(len),
            ..Bounds::default()
        };
        let p = plan(ctx(2048), 3).unwrap();
        assert_eq!(p.prefill_prompts, vec![64, 256, 512, 1024, 1536]);
        let p = plan(
            Bounds {
                budget: Some(512),
                ..ctx(32_768)
            },
            3,
        )
        .unwrap();
        assert_eq!(p.prefill_prompts, vec![64, 256, 512]);
        // a short context: spread over what fits
        let p = plan(ctx(300), 1).unwrap();
        assert!(p.prefill_prompts.len() >= 3, "{:?}", p.prefill_prompts);
        assert!(p.prefill_prompts.iter().all(|&l| l + 4 <= 300));
        assert!(plan(ctx(40), 1).is_err());
    }

    #[test]
    fn decode_batches_stay_within_the_sequences_and_the_cache() {
        let all = plan(Bounds::default(), 1).unwrap().batches;
        assert!(
            all.contains(&(32, 128)) && all.contains(&(1024, 8)),
            "{all:?}"
        );
        let p = plan(
            Bounds {
                max_num_seqs: Some(16),
                kv_tokens: Some(4 * 1100),
                ..Bounds::default()
            },
            1,
        )
        .unwrap();
        assert!(p.batches.iter().all(|&(_, b)| b <= 16), "{:?}", p.batches);
        assert!(p.batches.contains(&(1024, 4)) && !p.batches.contains(&(1024, 8)));
    }
}
