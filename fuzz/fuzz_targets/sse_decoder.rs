//! `client::sse::SseDecoder`: the incremental SSE decoder the client feeds every body read.
//!
//! Input: byte 0 picks a split pattern, the rest is the event stream. Asserts:
//! - no panic;
//! - split invariance (the decoder's contract: "a line or an event may span reads"): feeding
//!   the stream whole, one byte at a time, and in pieces of varying size give the same
//!   events, the same stray-line count and first stray line, and the same pending bytes;
//! - every dispatched `data` is made of bytes of the input (it is never longer than it).
//!
//! Empty reads between pieces (`feed(&[])`) are only mixed in when the environment variable
//! `FUZZ_SSE_EMPTY_READS=1` is set: see docs/reliability.md, the client never feeds an
//! empty slice in the middle of a body, and the known finding would otherwise stop every run.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vllm_loadtest::client::sse::SseDecoder;

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    events: Vec<(Vec<u8>, Vec<u8>)>,
    pending: usize,
    stray: (u64, Vec<u8>),
    after_finish: Vec<(Vec<u8>, Vec<u8>)>,
}

fn run<'a>(pieces: impl Iterator<Item = &'a [u8]>) -> Outcome {
    let mut d = SseDecoder::new();
    let mut events = Vec::new();
    for p in pieces {
        d.feed(p, |e| events.push((e.event.to_vec(), e.data.to_vec())));
    }
    let pending = d.pending();
    let (n, first) = d.stray();
    let stray = (n, first.to_vec());
    let mut after_finish = Vec::new();
    d.finish(|e| after_finish.push((e.event.to_vec(), e.data.to_vec())));
    assert_eq!(d.pending(), 0, "finish leaves nothing pending");
    Outcome {
        events,
        pending,
        stray,
        after_finish,
    }
}

/// Piece sizes from a tiny LCG seeded by the control byte (sizes 0..=16, or 1..=16).
fn pieces(body: &[u8], seed: u8, empty_reads: bool) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut x = seed as u32 | 0x100;
    let mut rest = body;
    while !rest.is_empty() {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let mut n = ((x >> 16) % 17) as usize;
        if n == 0 && !empty_reads {
            n = 1;
        }
        let n = n.min(rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    static EMPTY: OnceLock<bool> = OnceLock::new();
    let empty_reads = *EMPTY.get_or_init(|| std::env::var("FUZZ_SSE_EMPTY_READS").as_deref() == Ok("1"));
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let whole = run(std::iter::once(body));
    for (_, d) in whole.events.iter().chain(&whole.after_finish) {
        assert!(d.len() <= body.len());
    }
    let bytewise = run(body.chunks(1));
    assert_eq!(whole, bytewise, "whole vs byte-at-a-time");
    let split = pieces(body, seed, empty_reads);
    let varied = run(split.iter().copied());
    assert_eq!(whole, varied, "whole vs pieces {:?}", split.iter().map(|p| p.len()).collect::<Vec<_>>());
});
