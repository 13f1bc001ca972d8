//! `http::chunked::ChunkedDecoder`: `Transfer-Encoding: chunked` decoding of response bodies
//! (client streams, `/metrics` and control-plane GETs).
//!
//! Input: byte 0 picks a split pattern, the rest is the wire bytes. Asserts:
//! - no panic;
//! - split invariance ("a chunk header may be split across reads"): whole, byte-at-a-time
//!   and varied pieces give the same payload bytes, the same consumed count, the same
//!   done state and the same error;
//! - consumed never exceeds the input, the payload never exceeds what was consumed, and
//!   once done the decoder consumes nothing more.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loadtest_base::http::chunked::{ChunkedDecoder, ChunkedError};

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    payload: Vec<u8>,
    consumed: usize,
    done: bool,
    error: Option<ChunkedError>,
}

fn run<'a>(pieces: impl Iterator<Item = &'a [u8]>) -> Outcome {
    let mut d = ChunkedDecoder::new();
    let mut payload = Vec::new();
    let mut consumed = 0;
    let mut error = None;
    for p in pieces {
        let before = payload.len();
        match d.decode(p, |b| payload.extend_from_slice(b)) {
            Ok(n) => {
                assert!(n <= p.len(), "consumed {n} of a {}-byte read", p.len());
                assert!(payload.len() - before <= n, "more payload than consumed");
                consumed += n;
                if n < p.len() {
                    assert!(d.is_done(), "stopped early but not done");
                }
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
        if d.is_done() {
            // a done decoder takes nothing more (the rest is the next message)
            assert_eq!(d.decode(b"5\r\nhello\r\n", |_| panic!("payload after done")), Ok(0));
            break;
        }
    }
    Outcome {
        payload,
        consumed,
        done: d.is_done(),
        error,
    }
}

fn pieces(body: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut x = seed as u32 | 0x100;
    let mut rest = body;
    while !rest.is_empty() {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = (((x >> 16) % 23) as usize).min(rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let whole = run(std::iter::once(body));
    assert!(whole.consumed <= body.len());
    let bytewise = run(body.chunks(1));
    // an error stops the run at the bad byte; `consumed` counts only reads that returned Ok,
    // so on error only the error and the payload handed out before it are compared
    if whole.error.is_none() {
        assert_eq!(whole, bytewise, "whole vs byte-at-a-time");
    } else {
        assert_eq!(whole.error, bytewise.error, "whole vs byte-at-a-time error");
        assert_eq!(whole.payload, bytewise.payload, "payload before the error");
    }
    let split = pieces(body, seed);
    let varied = run(split.iter().copied());
    if whole.error.is_none() {
        assert_eq!(whole, varied, "whole vs pieces {:?}", split.iter().map(|p| p.len()).collect::<Vec<_>>());
    } else {
        assert_eq!(whole.error, varied.error, "whole vs pieces error");
        assert_eq!(whole.payload, varied.payload, "payload before the error");
    }
});
