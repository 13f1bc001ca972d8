//! `prefix_repetition`: prompts in `num_prefixes` groups, each prompt its group's prefix of
//! `prefix_len` tokens then `suffix_len` tokens of its own, as `vllm bench serve
//! --dataset-name prefix_repetition` defines them, to drive a server's prefix cache.
//!
//! The prefix is shared at the token level, not only as text: a prompt's token ids begin
//! with exactly its prefix's ids under the tokenizer in use, so the server's block hashes
//! match. Text that merges across the boundary (the prefix's last token and the suffix's
//! first forming another) is redrawn. Lengths are exact as for `random`: `prefix_len +
//! suffix_len` text tokens, plus the special tokens the server adds (a BOS), as vLLM counts
//! them. Every prompt asked for is made (vLLM drops `num_prompts mod num_prefixes`; we give
//! the first groups one more), and the order is shuffled with the seed, as vLLM does.

use super::random::{INTERRUPTED, MAX_PROMPT_TOKENS, MAX_ROUNDS, exact_text};
use super::{Prompt, Workload};
use anyhow::{Result, bail};
use loadtest_base::Tokenizer;
use loadtest_base::rng::Rng;

#[derive(Debug, Clone)]
pub struct PrefixRepetitionSpec {
    pub num_prompts: usize,
    pub num_prefixes: u32,
    pub prefix_len: u32,
    pub suffix_len: u32,
    pub output_len: u32,
    pub seed: u64,
}

/// The group of every prompt, in the order sent: group sizes differ by at most one.
pub fn groups(num_prompts: usize, num_prefixes: u32, rng: &mut Rng) -> Vec<u32> {
    let k = num_prefixes.max(1) as usize;
    let mut g: Vec<u32> = (0..num_prompts).map(|i| (i % k) as u32).collect();
    // Fisher–Yates with the seeded generator: reproducible, groups interleaved
    for i in (1..g.len()).rev() {
        let j = rng.range_inclusive(0, i as u64) as usize;
        g.swap(i, j);
    }
    g
}

pub fn generate_until(
    spec: &PrefixRepetitionSpec,
    tok: &Tokenizer,
    stop: &dyn Fn() -> bool,
) -> Result<Workload> {
    check(spec)?;
    let vocab = tok.plain_token_ids();
    if vocab.is_empty() {
        bail!(
            "tokenizer `{}` has no plain text tokens to build prompts from",
            tok.describe()
        );
    }
    let mut rng = Rng::new(spec.seed);
    let special = tok.special_tokens_added();
    let mut prefixes = Vec::with_capacity(spec.num_prefixes as usize);
    let mut off = 0usize;
    for _ in 0..spec.num_prefixes {
        let (text, got) = exact_text(&mut rng, tok, &vocab, "", spec.prefix_len);
        off += usize::from(got != spec.prefix_len);
        let ids = tok.encode(&text);
        prefixes.push((text, ids));
    }
    let order = groups(spec.num_prompts, spec.num_prefixes, &mut rng);
    let mut prompts = Vec::with_capacity(spec.num_prompts);
    let mut unshared = 0usize;
    for g in order {
        if stop() {
            bail!("{INTERRUPTED}");
        }
        let (prefix, prefix_ids) = &prefixes[g as usize];
        let (text, got, shares) = with_suffix(&mut rng, tok, &vocab, prefix, prefix_ids, spec);
        off += usize::from(got != spec.prefix_len + spec.suffix_len);
        unshared += usize::from(!shares);
        prompts.push(Prompt {
            text,
            history: Vec::new(),
            input_tokens: got + special,
            output_tokens: spec.output_len,
        });
    }
    let mut notes = Vec::new();
    if off > 0 {
        notes.push(format!(
            "{off} prefixes or prompts missed their target length after {MAX_ROUNDS} corrections; their true lengths are recorded"
        ));
    }
    if unshared > 0 {
        notes.push(format!(
            "{unshared} of {} prompts do not begin with their group's prefix tokens (the text merged across the boundary): they will not hit the prefix cache",
            spec.num_prompts
        ));
    }
    Ok(Workload { prompts, notes })
}

fn check(spec: &PrefixRepetitionSpec) -> Result<()> {
    if spec.num_prefixes == 0 {
        bail!(
            "`--prefix-repetition-num-prefixes 0`: need at least one prefix group\nhint: 1 gives every prompt the same prefix"
        );
    }
    if (spec.num_prompts as u64) < spec.num_prefixes as u64 {
        bail!(
            "{} prompts cannot fill {} prefix groups\nhint: send at least as many prompts as prefixes (`--num-prompts`), or fewer prefixes",
            spec.num_prompts,
            spec.num_prefixes
        );
    }
    if spec.prefix_len == 0 || spec.suffix_len == 0 {
        bail!(
            "`--prefix-repetition-prefix-len` and `--prefix-repetition-suffix-len` must be at least 1\nhint: a prompt is its group's prefix then a suffix of its own"
        );
    }
    if spec.output_len == 0 {
        bail!("`--prefix-repetition-output-len 0`: ask for at least one output token");
    }
    let per_prompt = spec.prefix_len as u64 + spec.suffix_len as u64;
    let total = per_prompt.saturating_mul(spec.num_prompts as u64);
    if total > MAX_PROMPT_TOKENS {
        bail!(
            "{} prompts of {per_prompt} tokens are {total} tokens to build, more than the {MAX_PROMPT_TOKENS} a workload holds\nhint: fewer prompts (they are cycled when more requests are sent) or shorter ones",
            spec.num_prompts
        );
    }
    Ok(())
}

/// `prefix` followed by random text, `prefix_len + suffix_len` tokens in all whose first
/// tokens are exactly `prefix_ids`; the text, its token count, and whether the prefix held.
fn with_suffix(
    rng: &mut Rng,
    tok: &Tokenizer,
    vocab: &[u32],
    prefix: &str,
    prefix_ids: &[u32],
    spec: &PrefixRepetitionSpec,
) -> (String, u32, bool) {
    let target = (prefix_ids.len() as u32 + spec.suffix_len) as usize;
    let draw = |rng: &mut Rng| vocab[rng.range_inclusive(0, vocab.len() as u64 - 1) as usize];
    let mut body: Vec<u32> = (0..spec.suffix_len).map(|_| draw(rng)).collect();
    // best so far: sharing the prefix first, then the closest length
    let mut best: Option<(String, u32, bool)> = None;
    for _ in 0..MAX_ROUNDS * 2 {
        let text = format!("{prefix}{}", tok.decode(&body));
        let ids = tok.encode(&text);
        let shares = ids.starts_with(prefix_ids);
        let n = ids.len();
        let better = best.as_ref().is_none_or(|(_, b, s)| {
            (shares, std::cmp::Reverse(n.abs_diff(target)))
                > (*s, std::cmp::Reverse((*b as usize).abs_diff(target)))
        });
        if better {
            best = Some((text, n as u32, shares));
        }
        if shares && n == target {
            break;
        }
        if !shares {
            // the boundary merged: another first suffix token
            if let Some(first) = body.first_mut() {
                *first = draw(rng);
            }
        } else if n > target {
            body.truncate(body.len().saturating_sub(n - target).max(1));
        } else {
            body.extend((0..target - n).map(|_| draw(rng)));
        }
    }
    best.expect("at least one round")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(num_prompts: usize, num_prefixes: u32) -> PrefixRepetitionSpec {
        PrefixRepetitionSpec {
            num_prompts,
            num_prefixes,
            prefix_len: 100,
            suffix_len: 60,
            output_len: 8,
            seed: 5,
        }
    }

    #[test]
    fn prompts_of_a_group_share_exactly_their_prefix_tokens() {
        let tok = Tokenizer::built_in().unwrap();
        let s = spec(40, 3);
        let w = generate_until(&s, &tok, &|| false).unwrap();
        assert!(w.notes.is_empty(), "{:?}", w.notes);
        assert_eq!(w.prompts.len(), 40);
        let mut by_prefix: std::collections::BTreeMap<Vec<u32>, usize> = Default::default();
        for p in &w.prompts {
            let ids = tok.encode(&p.text);
            assert_eq!(ids.len(), 160);
            assert_eq!(p.input_tokens, 160);
            assert_eq!(p.output_tokens, 8);
            *by_prefix.entry(ids[..100].to_vec()).or_default() += 1;
        }
        // three groups of 14, 13, 13, and the suffixes differ from their first token
        let mut sizes: Vec<usize> = by_prefix.values().copied().collect();
        sizes.sort_unstable();
        assert_eq!(sizes, [13, 13, 14]);
        let firsts: std::collections::BTreeSet<Vec<u32>> = w
            .prompts
            .iter()
            .map(|p| tok.encode(&p.text)[..101].to_vec())
            .collect();
        assert_eq!(firsts.len(), 40);
        let again = generate_until(&s, &tok, &|| false).unwrap();
        assert_eq!(again.prompts, w.prompts);
    }

    #[test]
    fn fewer_prompts_than_prefixes_is_an_error_with_a_hint() {
        let tok = Tokenizer::built_in().unwrap();
        let e = generate_until(&spec(2, 3), &tok, &|| false).unwrap_err();
        assert!(format!("{e:#}").contains("hint: send at least as many prompts"));
    }
}
