//! Tokenizers: a Hugging Face `tokenizer.json` given by path (or a folder holding one), or
//! the built-in BPE (OpenAI's cl100k ranks, embedded in the binary) with a warning that
//! lengths are then approximate for the served model. Never a download.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

pub enum Tokenizer {
    HuggingFace {
        inner: Box<tokenizers::Tokenizer>,
        path: PathBuf,
        /// Tokens the post-processor adds (a BOS for Llama), counted in the prompt length.
        special_added: u32,
    },
    BuiltIn(Box<tiktoken_rs::CoreBPE>),
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The warning printed when no tokenizer was given.
pub const BUILT_IN_WARNING: &str = "warning: no `--tokenizer` given: using the built-in cl100k BPE; prompt lengths are approximate for the served model\nhint: pass `--tokenizer PATH` (a `tokenizer.json` or the model folder holding one) for exact lengths";

impl Tokenizer {
    /// Load from `path` (file or folder), or the built-in one when `None`.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Self::built_in();
        };
        let file = if path.is_dir() {
            let f = path.join("tokenizer.json");
            if !f.is_file() {
                bail!(
                    "tokenizer folder `{}` has no `tokenizer.json`\nhint: point `--tokenizer` at a Hugging Face model folder or its `tokenizer.json` (the `tokenizers` format; sentencepiece `.model` files are not supported)",
                    path.display()
                );
            }
            f
        } else if path.is_file() {
            path.to_path_buf()
        } else {
            bail!(
                "tokenizer `{}` does not exist\nhint: pass a `tokenizer.json` or a folder holding one; omit `--tokenizer` to use the built-in approximation",
                path.display()
            );
        };
        let bytes =
            std::fs::read(&file).with_context(|| format!("cannot read `{}`", file.display()))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "`{}` is not a valid Hugging Face tokenizer: {e}\nhint: it must be the `tokenizer.json` saved by `tokenizers`/`transformers`",
                file.display()
            )
        })?;
        let with = inner
            .encode("a", true)
            .map_err(|e| anyhow::anyhow!("tokenizer `{}` cannot encode: {e}", file.display()))?
            .len();
        let without = inner
            .encode("a", false)
            .map_err(|e| anyhow::anyhow!("tokenizer `{}` cannot encode: {e}", file.display()))?
            .len();
        Ok(Tokenizer::HuggingFace {
            inner: Box::new(inner),
            path: file,
            special_added: with.saturating_sub(without) as u32,
        })
    }

    pub fn built_in() -> Result<Self> {
        let bpe =
            tiktoken_rs::cl100k_base().map_err(|e| anyhow::anyhow!("built-in tokenizer: {e}"))?;
        Ok(Tokenizer::BuiltIn(Box::new(bpe)))
    }

    pub fn is_built_in(&self) -> bool {
        matches!(self, Tokenizer::BuiltIn(_))
    }

    pub fn describe(&self) -> String {
        match self {
            Tokenizer::HuggingFace { path, .. } => path.display().to_string(),
            Tokenizer::BuiltIn(_) => "built-in cl100k (approximate)".to_string(),
        }
    }

    /// Token ids of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self {
            Tokenizer::HuggingFace { inner, .. } => inner
                .encode(text, false)
                .map(|e| e.get_ids().to_vec())
                .unwrap_or_default(),
            Tokenizer::BuiltIn(bpe) => bpe.encode_ordinary(text),
        }
    }

    /// Tokens a server adds around a prompt (a BOS, usually 1; 0 for the built-in).
    pub fn special_tokens_added(&self) -> u32 {
        match self {
            Tokenizer::HuggingFace { special_added, .. } => *special_added,
            Tokenizer::BuiltIn(_) => 0,
        }
    }

    /// Prompt tokens as a server would count them (special tokens included).
    pub fn count_prompt(&self, text: &str) -> u32 {
        self.encode(text).len() as u32 + self.special_tokens_added()
    }

    /// Text of `ids`; byte sequences that are not valid UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        match self {
            Tokenizer::HuggingFace { inner, .. } => inner.decode(ids, true).unwrap_or_default(),
            Tokenizer::BuiltIn(bpe) => {
                let bytes = bpe.decode_bytes(ids).unwrap_or_default();
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }

    /// Ids that decode on their own to clean, non-special text: what random prompts are
    /// drawn from, so that decode→encode round trips stay close to the target length.
    pub fn plain_token_ids(&self) -> Vec<u32> {
        let size = match self {
            Tokenizer::HuggingFace { inner, .. } => inner.get_vocab_size(true) as u32,
            Tokenizer::BuiltIn(_) => 100_256,
        };
        let specials: std::collections::HashSet<u32> = match self {
            Tokenizer::HuggingFace { inner, .. } => {
                inner.get_added_tokens_decoder().keys().copied().collect()
            }
            Tokenizer::BuiltIn(_) => Default::default(),
        };
        (0..size)
            .filter(|id| !specials.contains(id))
            .filter(|&id| {
                let s = self.decode(&[id]);
                !s.is_empty()
                    && !s.contains('\u{FFFD}')
                    && s.chars().all(|c| !c.is_control())
                    && self.encode(&s) == [id]
            })
            .collect()
    }
}
