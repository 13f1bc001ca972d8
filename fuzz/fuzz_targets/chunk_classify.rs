//! `client::chunk::classify` on raw bytes: the classifier every SSE `data:` payload goes
//! through (its one-pass scanner `scan` is private; `classify` is the public entry point
//! that runs it and falls back to `full_parse`).
//!
//! Asserts: no panic; `[DONE]` (trimmed) is exactly `Done` and nothing else is; anything not
//! shaped like an object is `Err`; and one differential that holds for every input: when
//! `full_parse` reads the payload as an in-stream error, `classify` says the same (an
//! `error` key, or `"object": "error"`, must send the scan to the exact parser). The full
//! scan-versus-parser comparison needs vLLM-shaped JSON: that is `chunk_differential`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vllm_loadtest::client::chunk::{Payload, classify, full_parse};

fuzz_target!(|data: &[u8]| {
    let got = classify(data);
    let trimmed = data.trim_ascii();
    if trimmed == b"[DONE]" {
        assert_eq!(got, Ok(Payload::Done));
        return;
    }
    assert_ne!(got, Ok(Payload::Done));
    if trimmed.first() != Some(&b'{') || trimmed.last() != Some(&b'}') {
        assert!(got.is_err(), "not an object but classified: {got:?}");
        return;
    }
    if let Ok(Payload::Error(m)) = full_parse(trimmed) {
        assert_eq!(got, Ok(Payload::Error(m)), "full_parse sees an error, classify does not");
    }
});
