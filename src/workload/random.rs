//! `random`: prompts of an exact number of tokens (optionally after a shared prefix), with
//! input and output lengths fixed or drawn uniformly within `±range_ratio`, as
//! `vllm bench serve --dataset-name random` defines them.
//!
//! Random token ids decoded to text do not always re-encode to the same count (merges form
//! across boundaries). Each prompt is checked by encoding it and corrected by trimming or
//! extending; prompts that still miss are counted and reported, never silently off.

use super::{Prompt, Workload};
use anyhow::{Result, bail};
use loadtest_base::Tokenizer;
use loadtest_base::rng::Rng;

#[derive(Debug, Clone)]
pub struct RandomSpec {
    pub num_prompts: usize,
    pub input_len: u32,
    pub output_len: u32,
    pub range_ratio: f64,
    pub prefix_len: u32,
    pub seed: u64,
}

/// Correction rounds per prompt before accepting the closest length.
pub(super) const MAX_ROUNDS: usize = 16;

/// The error of a build that `stop()` ended.
pub const INTERRUPTED: &str = "interrupted while building prompts";

/// The most prompt tokens a workload builds (about a gigabyte of text), unless the user
/// asks for a smaller one: `input_len: 100000000` grew memory by 350 MB/s until killed.
pub const MAX_PROMPT_TOKENS: u64 = 200_000_000;

pub fn generate(spec: &RandomSpec, tok: &Tokenizer) -> Result<Workload> {
    generate_until(spec, tok, &|| false)
}

/// As [`generate`], giving up (with an error saying so) as soon as `stop()` is true: a long
/// build (1,000 prompts of 32,000 tokens take over a minute) must not outlast Ctrl-C.
pub fn generate_until(
    spec: &RandomSpec,
    tok: &Tokenizer,
    stop: &dyn Fn() -> bool,
) -> Result<Workload> {
    let per_prompt = (spec.prefix_len as u64 + spec.input_len as u64)
        * (1.0 + spec.range_ratio.clamp(0.0, 1.0)).ceil() as u64;
    let total = per_prompt.saturating_mul(spec.num_prompts as u64);
    if total > MAX_PROMPT_TOKENS {
        bail!(
            "{} prompts of up to {per_prompt} tokens are {total} tokens to build, more than the {MAX_PROMPT_TOKENS} a workload holds\nhint: fewer prompts (they are cycled when more requests are sent) or shorter ones",
            spec.num_prompts
        );
    }
    if !(0.0..1.0).contains(&spec.range_ratio) {
        bail!(
            "`--random-range-ratio {}` is out of range\nhint: use a value in [0, 1), e.g. 0.1 for ±10%",
            spec.range_ratio
        );
    }
    if spec.input_len == 0 {
        bail!("`--random-input-len 0`: a prompt needs at least one token");
    }
    if spec.output_len == 0 {
        bail!("`--random-output-len 0`: ask for at least one output token");
    }
    let vocab = tok.plain_token_ids();
    if vocab.is_empty() {
        bail!(
            "tokenizer `{}` has no plain text tokens to build prompts from",
            tok.describe()
        );
    }
    let mut rng = Rng::new(spec.seed);
    let special = tok.special_tokens_added();
    let prefix = if spec.prefix_len > 0 {
        exact_text(&mut rng, tok, &vocab, "", spec.prefix_len).0
    } else {
        String::new()
    };
    let bounds = |len: u32| {
        let lo = ((len as f64) * (1.0 - spec.range_ratio)).floor().max(1.0) as u64;
        let hi = ((len as f64) * (1.0 + spec.range_ratio)).ceil() as u64;
        (lo, hi.max(lo))
    };
    let (in_lo, in_hi) = bounds(spec.input_len);
    let (out_lo, out_hi) = bounds(spec.output_len);
    let mut prompts = Vec::with_capacity(spec.num_prompts);
    let mut off = 0usize;
    let mut drift = 0i64;
    for _ in 0..spec.num_prompts {
        if stop() {
            bail!("{INTERRUPTED}");
        }
        let input = rng.range_inclusive(in_lo, in_hi) as u32;
        let output = rng.range_inclusive(out_lo, out_hi) as u32;
        // The server adds its special tokens (a BOS): the text carries the rest, as vLLM does.
        let body_target = input.saturating_sub(special).max(1);
        let (text, got) = exact_text(
            &mut rng,
            tok,
            &vocab,
            &prefix,
            spec.prefix_len + body_target,
        );
        if got != spec.prefix_len + body_target {
            off += 1;
            drift += got as i64 - (spec.prefix_len + body_target) as i64;
        }
        prompts.push(Prompt {
            text,
            history: Vec::new(),
            input_tokens: got + special,
            output_tokens: output,
        });
    }
    let mut notes = Vec::new();
    if off > 0 {
        notes.push(format!(
            "{off} of {} prompts missed their target length after {MAX_ROUNDS} corrections ({drift:+} tokens in all); their true lengths are recorded",
            spec.num_prompts
        ));
    }
    Ok(Workload { prompts, notes })
}

/// Text that starts with `prefix` and encodes to exactly `target` tokens (or as close as
/// `MAX_ROUNDS` corrections get), and its token count.
pub(super) fn exact_text(
    rng: &mut Rng,
    tok: &Tokenizer,
    vocab: &[u32],
    prefix: &str,
    target: u32,
) -> (String, u32) {
    let prefix_ids = tok.encode(prefix);
    let mut body: Vec<u32> = Vec::new();
    let want_body = (target as usize).saturating_sub(prefix_ids.len());
    let draw = |rng: &mut Rng| vocab[rng.range_inclusive(0, vocab.len() as u64 - 1) as usize];
    body.extend((0..want_body).map(|_| draw(rng)));
    let mut best: Option<(String, u32)> = None;
    for _ in 0..MAX_ROUNDS {
        let text = format!("{prefix}{}", tok.decode(&body));
        let n = tok.encode(&text).len() as u32;
        let closer = best
            .as_ref()
            .is_none_or(|(_, b)| n.abs_diff(target) < b.abs_diff(target));
        if closer {
            best = Some((text, n));
        }
        if n == target {
            break;
        }
        if n > target {
            let excess = (n - target) as usize;
            body.truncate(body.len().saturating_sub(excess));
        } else {
            let missing = (target - n) as usize;
            body.extend((0..missing).map(|_| draw(rng)));
        }
    }
    best.expect("at least one round")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_tokenizer_prompts_have_exact_lengths_and_are_reproducible() {
        let tok = Tokenizer::built_in().unwrap();
        let spec = RandomSpec {
            num_prompts: 20,
            input_len: 128,
            output_len: 64,
            range_ratio: 0.0,
            prefix_len: 16,
            seed: 3,
        };
        let w = generate(&spec, &tok).unwrap();
        assert!(w.notes.is_empty(), "{:?}", w.notes);
        for p in &w.prompts {
            assert_eq!(tok.count_prompt(&p.text), p.input_tokens);
            assert_eq!(p.input_tokens, 16 + 128);
            assert_eq!(p.output_tokens, 64);
        }
        let prefix: String = w.prompts[0].text.chars().take(20).collect();
        assert!(w.prompts.iter().all(|p| p.text.starts_with(&prefix)));
        let again = generate(&spec, &tok).unwrap();
        assert_eq!(again.prompts, w.prompts);
    }

    #[test]
    fn range_ratio_spreads_lengths_within_bounds() {
        let tok = Tokenizer::built_in().unwrap();
        let spec = RandomSpec {
            num_prompts: 40,
            input_len: 100,
            output_len: 50,
            range_ratio: 0.5,
            prefix_len: 0,
            seed: 1,
        };
        let w = generate(&spec, &tok).unwrap();
        let ins: Vec<u32> = w.prompts.iter().map(|p| p.input_tokens).collect();
        assert!(ins.iter().all(|&n| (50..=150).contains(&n)));
        assert!(ins.iter().min() != ins.iter().max());
        assert!(
            w.prompts
                .iter()
                .all(|p| (25..=75).contains(&p.output_tokens))
        );
    }
}
