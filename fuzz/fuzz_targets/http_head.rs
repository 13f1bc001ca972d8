//! `client::head::parse_response_head`: the HTTP/1.1 response head every streamed request,
//! `/metrics` scrape and health probe starts with, read from a server we do not trust.
//!
//! Input: the bytes a server sent. Asserts:
//! - no panic, and memory bounded: a head that never ends is `TooLarge` once
//!   `MAX_HEAD_BYTES` were read, never more;
//! - a complete head's length is within the input, and the same head (same status, framing,
//!   keep-alive, length) is found in every longer input with that prefix and in the exact
//!   prefix itself (the driver calls it after every read with all it has so far);
//! - a prefix shorter than the head is never a complete head of its own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vllm_loadtest::client::head::{HeadError, parse_response_head};

fuzz_target!(|data: &[u8]| {
    let whole = parse_response_head(data);
    match whole {
        Ok(Some(h)) => {
            assert!(h.len <= data.len(), "head {} past the input {}", h.len, data.len());
            assert_eq!(parse_response_head(&data[..h.len]), Ok(Some(h)), "exact prefix");
            let mut longer = data.to_vec();
            longer.extend_from_slice(b"trailing body bytes\r\n\r\n");
            assert_eq!(parse_response_head(&longer), Ok(Some(h)), "more bytes after it");
            for cut in [h.len.saturating_sub(1), h.len / 2, 1] {
                if cut < h.len {
                    assert!(
                        !matches!(parse_response_head(&data[..cut]), Ok(Some(_))),
                        "a complete head in a {cut}-byte prefix of a {}-byte head",
                        h.len
                    );
                }
            }
        }
        Ok(None) => assert!(data.len() < loadtest_base::http::MAX_HEAD_BYTES),
        Err(HeadError::TooLarge) => {
            assert!(data.len() >= loadtest_base::http::MAX_HEAD_BYTES)
        }
        Err(HeadError::Invalid(_)) => {}
    }
});
