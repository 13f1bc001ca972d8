//! Workloads: the prompts a run sends and how many tokens each should produce.
//!
//! `random` builds prompts of exact token lengths under the tokenizer in use, `sharegpt`
//! and `jsonl` read local files. `body` turns a prompt into the request bytes for an
//! endpoint, once, before the run: the hot path sends prepared bytes.

pub mod body;
pub mod files;
pub mod random;

/// One prompt and its expected generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub text: String,
    /// Prompt tokens as the server will count them (special tokens included).
    pub input_tokens: u32,
    /// `max_tokens` to request.
    pub output_tokens: u32,
}

/// The prompts of a run, and what the user should know about how they were made.
#[derive(Debug, Clone)]
pub struct Workload {
    pub prompts: Vec<Prompt>,
    /// e.g. "3 of 200 prompts are 1 token off their target length".
    pub notes: Vec<String>,
}
