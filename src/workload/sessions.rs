//! `multi_turn`: conversations of `turns` requests each, as a chat product sends them.
//! Turn k carries the whole conversation so far (k user messages and the k answers before
//! them) and a new user message of `input_len` tokens; it asks for `output_len` tokens.
//!
//! The answers in the history are text of `output_len` tokens made here, not the server's
//! own answers: every request's bytes are built before the run, so the hot path stays
//! allocation-free and a run is reproducible. A server's prefix cache therefore reuses a
//! conversation's history up to its previous user message (its own answer differs from the
//! one sent back), which is also what a client that trims or rewrites history sends.
//!
//! Prompts are laid out conversation-major: prompt `s * turns + k` is turn `k` of
//! conversation `s`.

use super::random::{self, RandomSpec};
use super::{Prompt, Workload};
use anyhow::{Result, bail};
use loadtest_base::Tokenizer;

#[derive(Debug, Clone, PartialEq)]
pub struct SessionSpec {
    /// Distinct conversations (a run with more cycles them).
    pub conversations: usize,
    pub turns: u32,
    /// Tokens of each new user message.
    pub input_len: u32,
    /// Tokens of each answer (asked for, and the length of the answers in the history).
    pub output_len: u32,
    pub seed: u64,
}

/// The most turns a conversation has: its history grows with every one.
pub const MAX_TURNS: u32 = 1000;

pub fn build(spec: &SessionSpec, tok: &Tokenizer, stop: &dyn Fn() -> bool) -> Result<Workload> {
    if spec.turns == 0 || spec.turns > MAX_TURNS {
        bail!(
            "`turns: {}` (`--multi-turn-turns`) is out of range\nhint: 1 to {MAX_TURNS} turns per conversation",
            spec.turns
        );
    }
    let (n, k) = (spec.conversations, spec.turns as usize);
    // every turn carries the history: the prompts hold n·(k·in + (in+out)·k(k−1)/2) tokens,
    // quadratic in the turns, so the size is checked before anything is built
    let (kk, input, output) = (k as u128, spec.input_len as u128, spec.output_len as u128);
    let total = n as u128 * (kk * input + (input + output) * kk * (kk - 1) / 2);
    if total > random::MAX_PROMPT_TOKENS as u128 {
        bail!(
            "{n} conversation(s) of {k} turns ({} tokens in, {} out per turn) are {total} prompt tokens to build (each turn carries the history), more than the {} a workload holds\nhint: fewer turns (the size grows with their square), shorter turns, or fewer conversations (they are cycled when more are sent)",
            spec.input_len,
            spec.output_len,
            random::MAX_PROMPT_TOKENS
        );
    }
    let texts = |count: usize, len: u32, seed: u64| -> Result<Vec<String>> {
        let w = random::generate_until(
            &RandomSpec {
                num_prompts: count,
                input_len: len,
                output_len: 1,
                range_ratio: 0.0,
                prefix_len: 0,
                seed,
            },
            tok,
            stop,
        )?;
        Ok(w.prompts.into_iter().map(|p| p.text).collect())
    };
    let users = texts(n * k, spec.input_len, spec.seed)?;
    // distinct seeds: an answer is never a copy of a question
    let answers = texts(n * (k - 1).max(1), spec.output_len, spec.seed ^ 0x5eed_a115)?;
    let specials = tok.special_tokens_added() as u64;
    let mut prompts = Vec::with_capacity(n * k);
    for s in 0..n {
        let mut history: Vec<String> = Vec::with_capacity(2 * k);
        for t in 0..k {
            let turns_so_far = t as u64;
            // what the conversation holds: earlier questions and answers, and this question
            let tokens = turns_so_far * (spec.input_len as u64 + spec.output_len as u64)
                + spec.input_len as u64
                + specials;
            prompts.push(Prompt {
                text: users[s * k + t].clone(),
                history: history.clone(),
                input_tokens: u32::try_from(tokens).unwrap_or(u32::MAX),
                output_tokens: spec.output_len,
            });
            history.push(users[s * k + t].clone());
            if t + 1 < k {
                history.push(answers[s * (k - 1) + t].clone());
            }
        }
    }
    Ok(Workload {
        prompts,
        notes: vec![format!(
            "{n} conversation(s) of {k} turns: each turn sends the conversation so far (prompt tokens counted without the chat template's own; the server's count is in `server_prompt_tokens`)"
        )],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_turn_carries_the_conversation_so_far() {
        let tok = Tokenizer::built_in().unwrap();
        let spec = SessionSpec {
            conversations: 2,
            turns: 3,
            input_len: 8,
            output_len: 5,
            seed: 1,
        };
        let w = build(&spec, &tok, &|| false).unwrap();
        assert_eq!(w.prompts.len(), 6);
        for s in 0..2 {
            let turn = |t: usize| &w.prompts[s * 3 + t];
            assert!(turn(0).history.is_empty());
            // turn k: k questions and k answers before it, the questions being the
            // earlier turns' own
            for t in 1..3 {
                assert_eq!(turn(t).history.len(), 2 * t);
                for j in 0..t {
                    assert_eq!(turn(t).history[2 * j], turn(j).text);
                }
                assert_eq!(turn(t).history[..2 * t - 2], turn(t - 1).history[..]);
                assert!(turn(t).input_tokens > turn(t - 1).input_tokens);
            }
            for t in 0..3 {
                assert_eq!(tok.encode(&turn(t).text).len(), 8);
            }
            assert_eq!(
                tok.encode(&turn(2).history[1]).len(),
                5,
                "an answer of output_len tokens"
            );
        }
        // conversations differ
        assert_ne!(w.prompts[0].text, w.prompts[3].text);
        assert!(
            build(
                &SessionSpec {
                    turns: 0,
                    ..spec.clone()
                },
                &tok,
                &|| false
            )
            .is_err()
        );
        // the history makes the size quadratic in the turns: refused before building
        let huge = SessionSpec {
            turns: 1000,
            input_len: 2000,
            output_len: 100,
            ..spec
        };
        let e = build(&huge, &tok, &|| false).unwrap_err().to_string();
        assert!(
            e.contains("each turn carries the history") && e.contains("hint:"),
            "{e}"
        );
    }
}
