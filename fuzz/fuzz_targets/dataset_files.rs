//! `workload::files::sharegpt` and `workload::files::jsonl`, the dataset readers behind
//! `--dataset-name sharegpt|jsonl --dataset-path FILE`.
//!
//! Both take a path (there is no from-bytes entry point), so each run writes the input to
//! one temporary file and reads it back. Tokenizer: the built-in cl100k BPE, loaded once.
//!
//! Input: byte 0 picks the reader (bit 0) and the request count (bits 1-4: 1..=16), byte 1
//! the output length (0 = none/the default), byte 2 the seed; the rest is the file.
//!
//! Asserts: no panic; `Ok` has exactly the number of prompts asked for (cycling the
//! distinct ones), every prompt has `output_tokens >= 1` (for JSON lines: the file's
//! `output_len` or the default), and for ShareGPT vLLM's length filters hold (4..=1024
//! input tokens, input + output <= 2048); `Err` messages name the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;
use loadtest_base::Tokenizer;
use vllm_loadtest::workload::files;

struct Env {
    tok: Tokenizer,
    path: PathBuf,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| Env {
        tok: Tokenizer::built_in().expect("built-in tokenizer"),
        path: std::env::temp_dir().join(format!("vlt-fuzz-dataset-{}", std::process::id())),
    })
}

fuzz_target!(|data: &[u8]| {
    let [ctl, out_len, seed, file @ ..] = data else {
        return;
    };
    let env = env();
    std::fs::write(&env.path, file).expect("temp file");
    let n = ((ctl >> 1) & 0x0f) as usize + 1;
    let sharegpt = ctl & 1 == 1;
    let result = if sharegpt {
        let out = (*out_len != 0).then_some(*out_len as u32);
        files::sharegpt(&env.path, n, out, *seed as u64, &env.tok)
    } else {
        files::jsonl(&env.path, n, (*out_len).max(1) as u32, &env.tok)
    };
    match result {
        Ok(w) => {
            assert_eq!(w.prompts.len(), n, "asked for {n} prompts");
            for p in &w.prompts {
                assert!(p.output_tokens >= 1);
                if sharegpt {
                    assert!((4..=1024).contains(&p.input_tokens), "input {}", p.input_tokens);
                    assert!(p.input_tokens + p.output_tokens <= 2048);
                }
            }
        }
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(msg.contains(&env.path.display().to_string()), "error does not name the file: {msg}");
        }
    }
});
