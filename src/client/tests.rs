//! Golden tests: the client's decoding path on real vLLM bytes.

use super::chunk::{Payload, classify};
use super::sse::SseDecoder;
use loadtest_base::rng::Rng;

#[derive(Debug, Default, PartialEq)]
struct Decoded {
    content_events: usize,
    first_content_index: Option<usize>,
    events: usize,
    usage_completion: Option<u32>,
    done: bool,
    finish: Option<String>,
}

fn decode(parts: &[&[u8]]) -> Decoded {
    let mut d = SseDecoder::new();
    let mut out = Decoded::default();
    let parts = parts.iter().map(|p| Some(*p)).chain([None]);
    for p in parts {
        let mut handle = |ev: super::sse::SseEvent<'_>| {
            let idx = out.events;
            out.events += 1;
            match classify(ev.data).unwrap() {
                Payload::Done => out.done = true,
                Payload::Chunk(c) => {
                    if c.content {
                        out.content_events += 1;
                        out.first_content_index.get_or_insert(idx);
                    }
                    if let Some(u) = c.usage {
                        out.usage_completion = u.completion_tokens;
                    }
                    if c.finish_reason.is_some() {
                        out.finish = c.finish_reason;
                    }
                }
                Payload::Error(e) => panic!("error event {e}"),
            }
        };
        match p {
            Some(p) => d.feed(p, &mut handle),
            None => d.finish(&mut handle),
        }
    }
    out
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/vllm/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn all_splits_agree(bytes: &[u8]) -> Decoded {
    let whole = decode(&[bytes]);
    let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(decode(&bytewise), whole, "byte by byte");
    let mut rng = Rng::new(11);
    for _ in 0..50 {
        let mut parts = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let n = rng.range_inclusive(1, 300) as usize;
            parts.push(&bytes[i..(i + n).min(bytes.len())]);
            i += n;
        }
        assert_eq!(decode(&parts), whole, "random split");
    }
    whole
}

#[test]
fn completions_fixture_has_64_content_events_and_usage_64() {
    let d = all_splits_agree(&fixture("completions-stream.sse"));
    assert_eq!(d.content_events, 64);
    assert_eq!(d.first_content_index, Some(0));
    assert_eq!(d.usage_completion, Some(64));
    assert_eq!(d.finish.as_deref(), Some("length"));
    assert!(d.done);
}

#[test]
fn chat_fixture_role_chunk_is_not_the_first_token_and_chunks_are_fewer_than_tokens() {
    let d = all_splits_agree(&fixture("chat-stream.sse"));
    assert_eq!(
        d.first_content_index,
        Some(1),
        "the role-only chunk is not a token"
    );
    assert_eq!(d.usage_completion, Some(64));
    assert!(d.content_events < 64, "{} content chunks", d.content_events);
    assert!(d.content_events > 0);
    assert!(d.done);
}

#[test]
fn crlf_line_ends_decode_the_same() {
    let lf = fixture("completions-stream.sse");
    let crlf: Vec<u8> = String::from_utf8(lf.clone())
        .unwrap()
        .replace('\n', "\r\n")
        .into_bytes();
    assert_eq!(all_splits_agree(&crlf), decode(&[&lf]));
}
