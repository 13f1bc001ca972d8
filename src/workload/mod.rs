//! Workloads: the prompts a run sends and how many tokens each should produce.
//!
//! `random` builds prompts of exact token lengths under the tokenizer in use,
//! `prefix_repetition` groups of prompts that share a prefix (for the prefix cache),
//! `sharegpt` and `jsonl` read local files, `trace` a timestamped trace (prompts here, its
//! send times in `LoadPlan::schedule`), `sessions` multi-turn conversations. `body` turns a prompt into the request bytes for an
//! endpoint, once, before the run: the hot path sends prepared bytes.

pub mod body;
pub mod files;
pub mod prefix_repetition;
pub mod random;
pub mod sessions;
pub mod trace;

use loadtest_base::Tokenizer;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

/// One prompt and its expected generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// The request's (last) user message.
    pub text: String,
    /// A later turn of a conversation: the messages before `text`, alternately the user's
    /// and the assistant's (`sessions`); empty for a single-turn prompt.
    pub history: Vec<String>,
    /// Prompt tokens as the server will count them (special tokens included).
    pub input_tokens: u32,
    /// `max_tokens` to request.
    pub output_tokens: u32,
}

/// Which of `prompts` prompts schedule entry `entry` sends as its turn `turn` (of `turns`;
/// 1 for one request per entry): entries cycle through the conversations, laid out
/// conversation-major (`sessions`), turns in their order. The load point and the
/// virtual-time cell both send by it.
pub fn prompt_index(entry: usize, turn: u32, turns: u32, prompts: usize) -> usize {
    let turns = turns.max(1) as usize;
    let conversations = (prompts / turns).max(1);
    ((entry % conversations) * turns + turn as usize) % prompts.max(1)
}

/// The prompts of a run, and what the user should know about how they were made.
#[derive(Debug, Clone)]
pub struct Workload {
    pub prompts: Vec<Prompt>,
    /// e.g. "3 of 200 prompts are 1 token off their target length".
    pub notes: Vec<String>,
}

/// Where a run's prompts come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Dataset {
    /// Prompts of exact token lengths: `input_len` ± `range_ratio`, the first `prefix_len`
    /// tokens shared.
    Random {
        input_len: u32,
        range_ratio: f64,
        prefix_len: u32,
    },
    /// `num_prefixes` groups of prompts: `prefix_len` tokens shared in a group, then
    /// `suffix_len` of each prompt's own (vLLM's `prefix_repetition`).
    PrefixRepetition {
        num_prefixes: u32,
        prefix_len: u32,
        suffix_len: u32,
    },
    /// ShareGPT conversations; `output_len` overrides the lengths of their answers.
    ShareGpt {
        path: std::path::PathBuf,
        output_len: Option<u32>,
    },
    /// `{"prompt": …, "output_len": …}` per line.
    Jsonl { path: std::path::PathBuf },
    /// Conversations of `turns` chat requests, each carrying the history so far
    /// (`workload::sessions`); `num_prompts` counts conversations.
    MultiTurn { turns: u32, input_len: u32 },
    /// A timestamped trace's requests in `[start_s, end_s)` (`workload::trace`).
    Trace {
        path: std::path::PathBuf,
        block_size: u32,
        start_s: f64,
        end_s: Option<f64>,
    },
}

/// The prompts to build: the same for `run` (a cell's plan) and `bench` (its flags).
#[derive(Debug, Clone, PartialEq)]
pub struct PromptSpec {
    pub dataset: Dataset,
    /// Tokens to generate per prompt (random and prefix_repetition prompts; JSON lines
    /// without their own).
    pub output_len: u32,
    pub num_prompts: usize,
    pub seed: u64,
}

impl PromptSpec {
    /// [`build`](Self::build) on a worker thread, so `stop` (Ctrl-C) is honoured within a
    /// tenth of a second even inside one long step (a single prompt of millions of tokens is
    /// one tokenizer call): the build is then abandoned, told to stop at its next check, and
    /// its thread ends with the process.
    pub fn build_abandonable(
        &self,
        tok: Arc<Tokenizer>,
        stop: &dyn Fn() -> bool,
    ) -> anyhow::Result<Workload> {
        let (spec, quit) = (self.clone(), Arc::new(AtomicBool::new(false)));
        let (tx, rx) = std::sync::mpsc::channel();
        let told = quit.clone();
        std::thread::Builder::new()
            .name("prompts".into())
            .spawn(move || {
                let _ = tx.send(spec.build(&tok, &|| told.load(Ordering::Relaxed)));
            })?;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(built) => return built,
                Err(RecvTimeoutError::Timeout) if stop() => {
                    quit.store(true, Ordering::Relaxed);
                    anyhow::bail!(random::INTERRUPTED);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    anyhow::bail!("the prompt builder ended without a result (it panicked)")
                }
            }
        }
    }

    /// Requests per schedule entry: the turns of a conversation, else 1.
    pub fn turns(&self) -> u32 {
        match self.dataset {
            Dataset::MultiTurn { turns, .. } => turns,
            _ => 1,
        }
    }

    /// What makes two cells' prompts the same (a run builds each set once).
    pub fn key(&self) -> String {
        format!("{self:?}")
    }

    /// Build the prompts; `stop` (Ctrl-C) is polled while long random prompts are made.
    pub fn build(&self, tok: &Tokenizer, stop: &dyn Fn() -> bool) -> anyhow::Result<Workload> {
        let n = self.num_prompts;
        match &self.dataset {
            Dataset::Random {
                input_len,
                range_ratio,
                prefix_len,
            } => random::generate_until(
                &random::RandomSpec {
                    num_prompts: n,
                    input_len: *input_len,
                    output_len: self.output_len,
                    range_ratio: *range_ratio,
                    prefix_len: *prefix_len,
                    seed: self.seed,
                },
                tok,
                stop,
            ),
            Dataset::PrefixRepetition {
                num_prefixes,
                prefix_len,
                suffix_len,
            } => prefix_repetition::generate_until(
                &prefix_repetition::PrefixRepetitionSpec {
                    num_prompts: n,
                    num_prefixes: *num_prefixes,
                    prefix_len: *prefix_len,
                    suffix_len: *suffix_len,
                    output_len: self.output_len,
                    seed: self.seed,
                },
                tok,
                stop,
            ),
            Dataset::ShareGpt { path, output_len } => {
                files::sharegpt(path, n, *output_len, self.seed, tok)
            }
            Dataset::Jsonl { path } => files::jsonl(path, n, self.output_len, tok),
            Dataset::MultiTurn { turns, input_len } => sessions::build(
                &sessions::SessionSpec {
                    conversations: n,
                    turns: *turns,
                    input_len: *input_len,
                    output_len: self.output_len,
                    seed: self.seed,
                },
                tok,
                stop,
            ),
            Dataset::Trace {
                path,
                block_size,
                start_s,
                end_s,
            } => {
                let t = trace::read_window(path, *start_s, *end_s)?;
                let w = trace::window(&t, *start_s, *end_s);
                let mut built =
                    trace::prompts(&w, tok, *block_size, self.output_len, self.seed, stop)?;
                built.notes.splice(0..0, t.notes);
                Ok(built)
            }
        }
    }
}
