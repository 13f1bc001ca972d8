//! Simulator profiles: the step-time coefficients and scheduler limits of one simulated GPU
//! (one data-parallel rank), named or loaded from YAML, every knob overridable.
//!
//! Step time = c0 + c_pf·P + c_pf_attn·A + c_dec·D + c_kv·K (P prefill tokens in the step,
//! A their attention pairs, D decoding sequences, K context tokens of those sequences),
//! times an optional seeded jitter.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Fixed cost of one engine step (seconds).
    pub c0_s: f64,
    /// Per prefill (or recomputed) token (seconds).
    pub c_pf_s: f64,
    /// Per decoding sequence (seconds).
    pub c_dec_s: f64,
    /// Per context token of a decoding sequence (seconds): attention over the KV cache.
    pub c_kv_s: f64,
    /// Per (prefill token, token it attends to) pair (seconds): a prompt's attention over
    /// itself and its cached context, which makes long prefills cost more than linearly.
    /// A chunk of `n` tokens after `c` computed ones has `n·c + n(n+1)/2` pairs; a whole
    /// prompt of `I` has `I(I+1)/2` however it is chunked. 0 in the named profiles.
    #[serde(default)]
    pub c_pf_attn_s: f64,
    pub max_num_seqs: u32,
    pub max_num_batched_tokens: u32,
    pub num_gpu_blocks: u32,
    pub block_size: u32,
    /// Delay between a request's arrival and its entry into the engine (API server,
    /// tokenisation), seconds.
    pub front_end_latency_s: f64,
    /// Relative standard deviation of step times (0 = deterministic).
    #[serde(default)]
    pub jitter: f64,
    /// Without `ignore_eos`, output lengths are drawn exponential with this mean (capped at
    /// `max_tokens`).
    #[serde(default = "default_eos_mean")]
    pub eos_mean_tokens: f64,
    /// Longest prompt + output accepted (vLLM's `max_model_len`).
    #[serde(default = "default_max_model_len")]
    pub max_model_len: u32,
    /// Reuse the KV of cached full prompt blocks (vLLM V1's automatic prefix caching, on by
    /// default there too).
    #[serde(default = "default_true")]
    pub enable_prefix_caching: bool,
    /// Where a fitted profile came from (`vllm-loadtest fit`); none for a named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Box<Provenance>>,
}

/// What a fitted profile says about itself: the server it was measured on, how well the
/// step model explained the probes, where each limit came from, and how far its own
/// prediction of a held-out load missed the measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The server's URL, or the probe folder refitted.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// RFC 3339, UTC.
    pub fitted_at: String,
    /// `vllm-loadtest --version` of the fit.
    pub tool: String,
    /// Samples used: prefill (one per request), decode (one per token index and batch).
    pub prefill_samples: usize,
    pub decode_samples: usize,
    /// Standard error of each fitted coefficient (seconds), by field name.
    pub std_errors: std::collections::BTreeMap<String, f64>,
    /// RMS residual of each regression relative to its mean observation.
    pub prefill_rel_rms: f64,
    pub decode_rel_rms: f64,
    /// Where each limit came from (`/metrics`, `/v1/models`, a flag, or assumed).
    pub limits: std::collections::BTreeMap<String, String>,
    /// Batches of the decode probe left out, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// `c0_s` and `c_dec_s` calibrated to measured open-loop loads (`calibrate`; `fit
    /// --load-seconds` or `--calibrate-on`): from what, to what, and how each load was
    /// predicted before and after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_loop: Option<OpenLoop>,
    /// The profile's own prediction of a load it was not fitted on, beside the measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out: Option<HeldOut>,
    /// Whether the server kept its speed while it was probed: the decode probes' last
    /// repeat against their first (with two repeats or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steadiness: Option<Steadiness>,
    /// The server's speed on an open-loop load against the burst fit (`fit
    /// --speed-seconds`), and whether the step costs were scaled by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_loop_speed: Option<OpenLoopSpeed>,
}

/// How fast the server stepped under an open-loop load, against the burst-fitted costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenLoopSpeed {
    /// The load it was measured on.
    pub load: String,
    /// Its engines' busy time over what the burst fit's costs give for its work, over the
    /// same reading of its own prediction: 1.2, the steps took 20% longer.
    pub speed: f64,
    /// Every step cost was multiplied by `speed` (not when it lay outside `APPLIED`, a
    /// measurement more likely broken than a server that different).
    pub applied: bool,
}

impl OpenLoopSpeed {
    /// The speeds a fit scales its step costs by; outside, it keeps the burst fit and says
    /// why.
    pub const APPLIED: std::ops::RangeInclusive<f64> = 0.5..=2.0;
}

/// The decode probes' step time in their last repeat over their first, per batch shape.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Steadiness {
    /// The median of the shapes' ratios (0.77: the server ran 23% faster by the end).
    pub last_over_first: f64,
    /// Shapes compared, and how many of them moved the median's way.
    pub shapes: usize,
    pub agreeing: usize,
}

impl Steadiness {
    /// Beyond what repeats on a steady server differ by: the median ratio 10% or more
    /// away from 1, with three shapes in four or more moving the same way.
    pub fn unsteady(&self) -> bool {
        (self.last_over_first - 1.0).abs() >= 0.10
            && self.shapes >= 4
            && self.agreeing * 4 >= self.shapes * 3
    }

    /// "its decode steps took 23% less time in the probes' last repeat than in their first
    /// (11 of 12 batch shapes)".
    pub fn describe(&self) -> String {
        let change = self.last_over_first - 1.0;
        format!(
            "its decode steps took {:.0}% {} time in the probes' last repeat than in their first ({} of {} batch shapes)",
            change.abs() * 100.0,
            if change < 0.0 { "less" } else { "more" },
            self.agreeing,
            self.shapes
        )
    }
}

/// The open-loop calibration of a fitted profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenLoop {
    /// The values before calibration (the burst fit's, or `--profile`'s), seconds.
    pub before_c0_s: f64,
    pub before_c_dec_s: f64,
    /// Each load, and its TTFT and TPOT (mean of the middle 80%) measured and predicted.
    pub loads: Vec<HeldOut>,
}

impl Provenance {
    /// Every figure a number: a NaN or an infinity (a hand-edited file) would be written
    /// to a run's manifest as `null` and make it unreadable.
    fn check_finite(&self) -> Result<()> {
        let mut figures: Vec<(String, f64)> = vec![
            ("prefill_rel_rms".into(), self.prefill_rel_rms),
            ("decode_rel_rms".into(), self.decode_rel_rms),
        ];
        figures.extend(
            self.std_errors
                .iter()
                .map(|(k, v)| (format!("std_errors.{k}"), *v)),
        );
        let loads = self
            .held_out
            .iter()
            .chain(self.open_loop.iter().flat_map(|o| o.loads.iter()));
        for h in loads {
            for m in &h.metrics {
                for (what, v) in [
                    ("measured", m.measured),
                    ("predicted", m.predicted),
                    ("error_pct", m.error_pct),
                ] {
                    figures.push((format!("`{}` {what}", m.metric), v));
                }
            }
        }
        if let Some(st) = &self.steadiness {
            figures.push(("steadiness.last_over_first".into(), st.last_over_first));
        }
        if let Some(o) = &self.open_loop {
            figures.push(("open_loop.before_c0_s".into(), o.before_c0_s));
            figures.push(("open_loop.before_c_dec_s".into(), o.before_c_dec_s));
        }
        match figures.into_iter().find(|(_, v)| !v.is_finite()) {
            Some((name, v)) => bail!(
                "provenance: {name} is {v}, not a number\nhint: refit, or remove the `provenance` section"
            ),
            None => Ok(()),
        }
    }
}

/// One held-out load, measured and predicted (virtual time, the fitted profile).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldOut {
    /// e.g. "closed loop, 8 in flight, 256-token prompts, 64 tokens out, 60 requests".
    pub load: String,
    pub metrics: Vec<HeldOutMetric>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldOutMetric {
    pub metric: String,
    pub measured: f64,
    pub predicted: f64,
    /// (predicted − measured) / measured, percent.
    pub error_pct: f64,
}

fn default_true() -> bool {
    true
}

fn default_eos_mean() -> f64 {
    256.0
}

fn default_max_model_len() -> u32 {
    32_768
}

pub const NAMES: [&str; 4] = ["default", "llama-3.1-8b-h100", "llama-3.1-8b-a100", "zero"];

impl Profile {
    /// Fitted to both ends of the seed's one-GPU curve (512 tokens in, 256 out, Poisson):
    /// in virtual time it plateaus at 13.76 req/s (the seed: ~13.7) and its TTFT p50 at
    /// 10 req/s is 86.7 ms (the seed: 87 ms). Chosen by a scan: the plateau fixes the sum
    /// of a request's costs, and TTFT at 10 req/s the share in the step it waits for (the
    /// fixed cost and its own prefill) against the decoding batch's (see
    /// `virtual_time::tests::the_default_profile_is_the_seeds_curve_at_both_ends`).
    pub fn default_profile() -> Self {
        Profile {
            c0_s: 15e-3,
            c_pf_s: 44e-6,
            c_dec_s: 72e-6,
            c_kv_s: 112e-9,
            c_pf_attn_s: 0.0,
            max_num_seqs: 256,
            max_num_batched_tokens: 2048,
            num_gpu_blocks: 16_384,
            block_size: 16,
            front_end_latency_s: 10e-3,
            jitter: 0.0,
            eos_mean_tokens: default_eos_mean(),
            max_model_len: default_max_model_len(),
            enable_prefix_caching: true,
            provenance: None,
        }
    }

    pub fn named(name: &str) -> Option<Self> {
        let d = Self::default_profile();
        Some(match name {
            "default" => d,
            "llama-3.1-8b-h100" => Profile {
                c0_s: 5.75e-3,
                c_pf_s: 17.25e-6,
                c_dec_s: 6.0e-6,
                c_kv_s: 0.0,
                max_num_seqs: 1024,
                max_num_batched_tokens: 8192,
                num_gpu_blocks: 29_205,
                front_end_latency_s: 5e-3,
                ..d
            },
            "llama-3.1-8b-a100" => Profile {
                c0_s: 16.44e-3,
                c_pf_s: 47.84e-6,
                c_dec_s: 18.21e-6,
                c_kv_s: 0.0,
                max_num_seqs: 256,
                max_num_batched_tokens: 2048,
                num_gpu_blocks: 29_205,
                ..d
            },
            "zero" => Profile {
                c0_s: 0.0,
                c_pf_s: 0.0,
                c_dec_s: 0.0,
                c_kv_s: 0.0,
                max_num_seqs: 1 << 20,
                max_num_batched_tokens: 1 << 30,
                num_gpu_blocks: 1 << 30,
                front_end_latency_s: 0.0,
                // prefill is free here, so a hit would change nothing but memory: with 2^30
                // blocks nothing is ever evicted and every prompt block would stay cached
                enable_prefix_caching: false,
                ..d
            },
            _ => return None,
        })
    }

    /// A named profile, or a YAML file (a full profile, or `base: NAME` plus overrides).
    pub fn resolve(name_or_path: &str) -> Result<Self> {
        if let Some(p) = Self::named(name_or_path) {
            return Ok(p);
        }
        let path = Path::new(name_or_path);
        let looks_like_file = name_or_path.contains(['/', '.']);
        if !path.exists() && looks_like_file {
            bail!(
                "no profile file `{name_or_path}`\nhint: check the path, or use one of the built-in profiles: {}",
                NAMES.join(", ")
            );
        }
        if !path.exists() {
            bail!(
                "unknown simulator profile `{name_or_path}`\nhint: use one of {} or a YAML file",
                NAMES.join(", ")
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        Self::from_yaml(&text).map_err(|e| anyhow::anyhow!("profile `{}`: {e:#}", path.display()))
    }

    pub fn from_yaml(text: &str) -> Result<Self> {
        let mut v: serde_yaml::Value = serde_yaml::from_str(text)?;
        let base = v
            .as_mapping_mut()
            .and_then(|m| m.remove("base"))
            .map(|b| {
                b.as_str()
                    .map(str::to_owned)
                    .context("`base` must be a profile name")
            })
            .transpose()?;
        let Some(base) = base else {
            return serde_yaml::from_value(v).map_err(|e| {
                anyhow::anyhow!(
                    "{e}\nhint: give every field, or `base: default` and only the ones to change"
                )
            });
        };
        let base = Self::named(&base)
            .with_context(|| format!("unknown `base: {base}`; use one of {}", NAMES.join(", ")))?;
        let mut merged = serde_yaml::to_value(base)?;
        if let (Some(m), Some(over)) = (merged.as_mapping_mut(), v.as_mapping()) {
            for (k, val) in over {
                // a fitted profile's provenance may be kept under a `base:` of its own
                if !m.contains_key(k) && k.as_str() != Some("provenance") {
                    bail!("unknown field `{}`", k.as_str().unwrap_or("?"));
                }
                m.insert(k.clone(), val.clone());
            }
        }
        Ok(serde_yaml::from_value(merged)?)
    }

    pub fn validate(&self) -> Result<()> {
        let costs = [
            self.c0_s,
            self.c_pf_s,
            self.c_dec_s,
            self.c_kv_s,
            self.c_pf_attn_s,
            self.front_end_latency_s,
        ];
        if costs.iter().any(|c| !(c.is_finite() && *c >= 0.0)) {
            bail!("profile costs must be finite and non-negative");
        }
        if self.max_num_seqs == 0
            || self.max_num_batched_tokens == 0
            || self.num_gpu_blocks == 0
            || self.block_size == 0
        {
            bail!(
                "max_num_seqs, max_num_batched_tokens, num_gpu_blocks and block_size must be positive"
            );
        }
        if !(0.0..1.0).contains(&self.jitter) {
            bail!("jitter must be in [0, 1)");
        }
        if !(self.eos_mean_tokens.is_finite() && self.eos_mean_tokens >= 1.0) {
            bail!("eos_mean_tokens must be a number of at least 1");
        }
        if self.max_model_len == 0 {
            bail!("max_model_len must be positive");
        }
        if let Some(p) = &self.provenance {
            p.check_finite()?;
        }
        Ok(())
    }

    /// The closed-form capacity (requests/s) of one engine for fixed lengths, DESIGN §11's
    /// 1/X = S·c0 + I·c_pf + I(I+1)/2·c_pf_attn + O·c_dec + O·(I + (O+1)/2)·c_kv, where S, the steps a request
    /// costs, is DESIGN's O/B when the batch's slots bind, and (I + O − 1)/T when the token
    /// budget T does: a step of chunked prefill holds at most T tokens, so long prompts with
    /// short outputs cannot fill B slots. (512 in / 32 out on the default profile: 22.76
    /// req/s, where O/B alone says 24.6; 600 s in virtual time measure 22.78.)
    /// Every step cost multiplied by `by` (the front end, the limits and jitter kept).
    pub fn scale_step_costs(&mut self, by: f64) {
        for c in [
            &mut self.c0_s,
            &mut self.c_pf_s,
            &mut self.c_pf_attn_s,
            &mut self.c_dec_s,
            &mut self.c_kv_s,
        ] {
            *c *= by;
        }
    }

    pub fn capacity(&self, input: u32, output: u32) -> f64 {
        let (i, o, b) = (input as f64, output as f64, self.max_num_seqs as f64);
        let t = self.max_num_batched_tokens as f64;
        let steps = (o / b).max((i + o - 1.0) / t);
        1.0 / (steps * self.c0_s
            + i * self.c_pf_s
            + i * (i + 1.0) / 2.0 * self.c_pf_attn_s
            + o * self.c_dec_s
            + o * (i + (o + 1.0) / 2.0) * self.c_kv_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_capacity_in_closed_form_is_near_the_seeds_13_7() {
        // the closed form counts a full batch's fixed cost per request; the simulated
        // plateau (13.76, checked in virtual time) overlaps prefill with decoding
        let c = Profile::default_profile().capacity(512, 256);
        assert!((c / 13.7 - 1.0).abs() < 0.03, "{c}");
    }

    #[test]
    fn a_provenance_figure_that_is_not_a_number_is_refused() {
        let p = Profile::resolve(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/profiles/tiny-llama-cpu.yaml"
        ))
        .unwrap();
        p.validate().unwrap();
        let mut bad = p.clone();
        let prov = bad.provenance.as_mut().unwrap();
        prov.held_out.as_mut().unwrap().metrics[0].error_pct = f64::NAN;
        let e = format!("{:#}", bad.validate().unwrap_err());
        assert!(e.contains("error_pct is NaN"), "{e}");
        let mut bad = p;
        bad.provenance.as_mut().unwrap().decode_rel_rms = f64::INFINITY;
        assert!(bad.validate().is_err());
    }

    #[test]
    fn yaml_overrides_a_base_and_rejects_unknown_fields() {
        let p = Profile::from_yaml("base: default\nmax_num_seqs: 64\n").unwrap();
        assert_eq!(p.max_num_seqs, 64);
        assert_eq!(p.c0_s, 15e-3);
        assert!(Profile::from_yaml("base: default\nmax_num_seq: 64\n").is_err());
        assert!(Profile::from_yaml("c0_s: 1\n").is_err());
        for n in NAMES {
            Profile::named(n).unwrap().validate().unwrap();
        }
    }
}
