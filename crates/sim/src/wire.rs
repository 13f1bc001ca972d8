//! The bytes the simulator sends, shaped like vLLM 0.32's (see `tests/fixtures/vllm/`):
//! SSE chunks of both endpoints, the usage chunk, `[DONE]`, non-streaming bodies, errors.

use serde_json::json;
use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Completions,
    Chat,
}

/// A few hundred common words: the generated "text", chosen deterministically per token.
const WORDS: &[&str] = &[
    " the",
    " of",
    " and",
    " to",
    " in",
    " is",
    " that",
    " for",
    " it",
    " as",
    " with",
    " was",
    " on",
    " be",
    " by",
    " this",
    " are",
    " or",
    " from",
    " at",
    " which",
    " an",
    " have",
    " not",
    " can",
    " but",
    " model",
    " token",
    " server",
    " load",
    " time",
    " request",
    " queue",
    " batch",
    " cache",
    " engine",
    " latency",
    " throughput",
    " data",
    " value",
    " system",
    " first",
    " each",
    " more",
    " when",
    " will",
    " one",
    " all",
];

pub fn token_text(request_id: u64, index: u32) -> &'static str {
    let h = request_id.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (index as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    WORDS[(h >> 33) as usize % WORDS.len()]
}

/// Per-request constants of every chunk.
pub struct Stream<'a> {
    pub api: Api,
    pub id: &'a str,
    pub created: u64,
    pub model: &'a str,
}

impl Stream<'_> {
    /// Append one `data: …\n\n` event, framed as one HTTP chunk, writing the event straight
    /// into `out`: the chunk size goes in a fixed-width placeholder patched afterwards
    /// (leading zeros are valid chunk-size digits), so no per-token string is built.
    fn frame(out: &mut Vec<u8>, event: impl FnOnce(&mut Vec<u8>)) {
        let size_at = out.len();
        out.extend_from_slice(b"000000\r\ndata: ");
        let start = out.len() - 6;
        event(out);
        out.extend_from_slice(b"\n\n");
        let len = out.len() - start;
        debug_assert!(len < 1 << 24);
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for i in 0..6 {
            out[size_at + 5 - i] = HEX[(len >> (4 * i)) & 0xf];
        }
        out.extend_from_slice(b"\r\n");
    }

    fn head(&self, out: &mut Vec<u8>, object: &str) {
        let _ = write!(
            Adapter(out),
            r#"{{"id":"{}","object":"{object}","created":{},"model":"{}","choices":"#,
            self.id,
            self.created,
            self.model
        );
    }

    pub fn role_chunk(&self, out: &mut Vec<u8>) {
        self.role_chunk_counted(out, None);
    }

    /// The role chunk, with `continuous_usage_stats`' running usage when `prompt` is given
    /// (no completion tokens yet), as vLLM sends it.
    pub fn role_chunk_counted(&self, out: &mut Vec<u8>, prompt: Option<u32>) {
        Self::frame(out, |o| {
            self.head(o, "chat.completion.chunk");
            o.extend_from_slice(
                br#"[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]"#,
            );
            if let Some(p) = prompt {
                usage_field(o, self.api, p, 0);
            }
            o.extend_from_slice(br#","prompt_token_ids":null,"prompt_text":null}"#);
        });
    }

    pub fn token_chunk(&self, out: &mut Vec<u8>, text: &str, finish: Option<&str>) {
        self.token_chunk_counted(out, text, finish, None);
    }

    /// A token chunk; `usage` = (prompt, completion tokens so far) adds the running usage
    /// that vLLM puts in every chunk under `stream_options.continuous_usage_stats`.
    pub fn token_chunk_counted(
        &self,
        out: &mut Vec<u8>,
        text: &str,
        finish: Option<&str>,
        usage: Option<(u32, u32)>,
    ) {
        Self::frame(out, |o| {
            match self.api {
                Api::Completions => {
                    self.head(o, "text_completion");
                    o.extend_from_slice(br#"[{"index":0,"text":"#);
                }
                Api::Chat => {
                    self.head(o, "chat.completion.chunk");
                    o.extend_from_slice(br#"[{"index":0,"delta":{"content":"#);
                }
            }
            json_string(o, text);
            if self.api == Api::Chat {
                o.push(b'}');
            }
            o.extend_from_slice(br#","logprobs":null,"finish_reason":"#);
            match finish {
                Some(f) => {
                    o.push(b'"');
                    o.extend_from_slice(f.as_bytes());
                    o.push(b'"');
                }
                None => o.extend_from_slice(b"null"),
            }
            match (self.api, finish.is_some()) {
                (Api::Completions, _) => o.extend_from_slice(
                    br#","stop_reason":null,"prompt_token_ids":null,"token_ids":null}]"#,
                ),
                (Api::Chat, true) => {
                    o.extend_from_slice(br#","stop_reason":null,"token_ids":null}]"#)
                }
                (Api::Chat, false) => o.extend_from_slice(br#","token_ids":null}]"#),
            }
            if let Some((p, c)) = usage {
                usage_field(o, self.api, p, c);
            }
            o.push(b'}');
        });
    }

    pub fn usage_chunk(&self, out: &mut Vec<u8>, prompt: u32, completion: u32) {
        let object = match self.api {
            Api::Completions => "text_completion",
            Api::Chat => "chat.completion.chunk",
        };
        Self::frame(out, |o| {
            self.head(o, object);
            let _ = write!(
                Adapter(o),
                r#"[],"usage":{{"prompt_tokens":{prompt},"total_tokens":{},"completion_tokens":{completion}}},"system_fingerprint":"vllm-0.32.0-sim"}}"#,
                prompt + completion
            );
        });
    }

    pub fn malformed_chunk(&self, out: &mut Vec<u8>) {
        Self::frame(out, |o| o.extend_from_slice(br#"{"id": "broken"#));
    }

    pub fn done(out: &mut Vec<u8>) {
        Self::frame(out, |o| o.extend_from_slice(b"[DONE]"));
        out.extend_from_slice(b"0\r\n\r\n");
    }

    /// The whole answer of a non-streaming request.
    pub fn full_body(&self, text: &str, finish: &str, prompt: u32, completion: u32) -> Vec<u8> {
        let usage = json!({"prompt_tokens": prompt, "total_tokens": prompt + completion, "completion_tokens": completion});
        let v = match self.api {
            Api::Completions => json!({
                "id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish, "stop_reason": null}],
                "usage": usage,
            }),
            Api::Chat => json!({
                "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": finish, "stop_reason": null}],
                "usage": usage,
            }),
        };
        serde_json::to_vec(&v).expect("serialisable")
    }
}

/// `,"usage":{…}` as vLLM writes it in a streamed chunk (the chat API adds an empty
/// `completion_tokens_details`).
fn usage_field(o: &mut Vec<u8>, api: Api, prompt: u32, completion: u32) {
    let details = match api {
        Api::Completions => "",
        Api::Chat => r#","completion_tokens_details":null"#,
    };
    let _ = write!(
        Adapter(o),
        r#","usage":{{"prompt_tokens":{prompt},"total_tokens":{},"completion_tokens":{completion}{details}}}"#,
        prompt + completion
    );
}

/// A JSON string literal of `s`, escaped.
fn json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(Adapter(out), "\\u{:04x}", c as u32);
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

struct Adapter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Adapter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// vLLM's error body: `{"error": {"message", "type", "param", "code"}}`.
pub fn error_body(status: u16, kind: &str, message: &str, param: Option<&str>) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"error": {"message": message, "type": kind, "param": param, "code": status}}),
    )
    .expect("serialisable")
}

pub fn response_head(status: u16, content_type: &str, length: Option<usize>) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    };
    let mut h = format!(
        "HTTP/1.1 {status} {reason}\r\nserver: uvicorn\r\ncontent-type: {content_type}\r\n"
    );
    match length {
        Some(n) => {
            let _ = write!(h, "content-length: {n}\r\n\r\n");
        }
        None => h.push_str("transfer-encoding: chunked\r\n\r\n"),
    }
    h.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadtest_base::http::chunked::ChunkedDecoder;

    #[test]
    fn chunks_decode_to_the_events_and_match_vllms_shape() {
        let s = Stream {
            api: Api::Completions,
            id: "cmpl-1",
            created: 7,
            model: "m",
        };
        let mut out = Vec::new();
        s.token_chunk(&mut out, " a\"b", None);
        s.token_chunk(&mut out, "c", Some("length"));
        s.usage_chunk(&mut out, 3, 2);
        Stream::done(&mut out);
        let mut body = Vec::new();
        let mut d = ChunkedDecoder::new();
        d.decode(&out, |p| body.extend_from_slice(p)).unwrap();
        assert!(d.is_done());
        let text = String::from_utf8(body).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 4);
        let first: serde_json::Value =
            serde_json::from_str(events[0].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(first["choices"][0]["text"], " a\"b");
        assert_eq!(
            first["choices"][0]["finish_reason"],
            serde_json::Value::Null
        );
        let usage: serde_json::Value =
            serde_json::from_str(events[2].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(usage["usage"]["completion_tokens"], 2);
        assert_eq!(usage["choices"], serde_json::json!([]));
        assert_eq!(events[3], "data: [DONE]");
        let mut chat = Vec::new();
        let c = Stream {
            api: Api::Chat,
            ..s
        };
        c.role_chunk(&mut chat);
        c.token_chunk(&mut chat, "x", Some("stop"));
        let mut body = Vec::new();
        ChunkedDecoder::new()
            .decode(&chat, |p| body.extend_from_slice(p))
            .unwrap();
        for e in String::from_utf8(body)
            .unwrap()
            .split("\n\n")
            .filter(|e| !e.is_empty())
        {
            let v: serde_json::Value =
                serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(v["object"], "chat.completion.chunk");
        }
    }

    /// The keys of a JSON value, recursively (array elements merged), as a sorted list of
    /// paths: the shape of a chunk without its values.
    fn shape(v: &serde_json::Value, at: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    let p = format!("{at}.{k}");
                    out.push(p.clone());
                    shape(x, &p, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| shape(x, &format!("{at}[]"), out)),
            _ => {}
        }
        out.sort();
        out.dedup();
    }

    /// Under `continuous_usage_stats` the simulator's chunks have the keys real vLLM's have
    /// (the captured streams in `tests/fixtures/vllm/*-continuous-usage.sse`), usage included.
    #[test]
    fn continuous_usage_chunks_have_vllms_shape() {
        for (api, file) in [
            (Api::Completions, "completions-stream-continuous-usage.sse"),
            (Api::Chat, "chat-stream-continuous-usage.sse"),
        ] {
            let real = std::fs::read_to_string(format!(
                "{}/../../tests/fixtures/vllm/{file}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            let events: Vec<serde_json::Value> = real
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter(|d| *d != "[DONE]")
                .map(|d| serde_json::from_str(d).unwrap())
                .collect();
            let s = Stream {
                api,
                id: "x",
                created: 1,
                model: "m",
            };
            let mut ours = Vec::new();
            if api == Api::Chat {
                s.role_chunk_counted(&mut ours, Some(5));
            }
            s.token_chunk_counted(&mut ours, "a", None, Some((5, 1)));
            s.token_chunk_counted(&mut ours, "b", Some("length"), Some((5, 2)));
            let mut body = Vec::new();
            ChunkedDecoder::new()
                .decode(&ours, |p| body.extend_from_slice(p))
                .unwrap();
            let ours: Vec<serde_json::Value> = String::from_utf8(body)
                .unwrap()
                .split("\n\n")
                .filter(|e| !e.is_empty())
                .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
                .collect();
            let of = |v: &serde_json::Value| {
                let mut o = Vec::new();
                shape(v, "", &mut o);
                o
            };
            // first content chunk, and the last one (with its finish reason)
            let offset = usize::from(api == Api::Chat);
            let real_last = &events[events.len() - 2];
            assert_eq!(
                of(&ours[offset]),
                of(&events[offset]),
                "{file}: token chunk"
            );
            assert_eq!(of(&ours[offset + 1]), of(real_last), "{file}: last chunk");
            if api == Api::Chat {
                assert_eq!(of(&ours[0]), of(&events[0]), "{file}: role chunk");
            }
            assert_eq!(ours[offset + 1]["usage"]["completion_tokens"], 2);
        }
    }
}
