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
    /// Append one `data: …\n\n` event, framed as one HTTP chunk.
    fn frame(out: &mut Vec<u8>, event: &str) {
        let len = event.len() + 8; // "data: " + "\n\n"
        let _ = write!(Adapter(out), "{len:x}\r\ndata: {event}\n\n\r\n");
    }

    pub fn role_chunk(&self, out: &mut Vec<u8>) {
        let e = format!(
            r#"{{"id":"{}","object":"chat.completion.chunk","created":{},"model":"{}","choices":[{{"index":0,"delta":{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}],"prompt_token_ids":null,"prompt_text":null}}"#,
            self.id, self.created, self.model
        );
        Self::frame(out, &e);
    }

    pub fn token_chunk(&self, out: &mut Vec<u8>, text: &str, finish: Option<&str>) {
        let fr = match finish {
            Some(f) => format!("\"{f}\""),
            None => "null".into(),
        };
        let e = match self.api {
            Api::Completions => format!(
                r#"{{"id":"{}","object":"text_completion","created":{},"model":"{}","choices":[{{"index":0,"text":{},"logprobs":null,"finish_reason":{fr},"stop_reason":null,"prompt_token_ids":null,"token_ids":null}}]}}"#,
                self.id,
                self.created,
                self.model,
                json!(text)
            ),
            Api::Chat => {
                let stop = if finish.is_some() {
                    r#","stop_reason":null"#
                } else {
                    ""
                };
                format!(
                    r#"{{"id":"{}","object":"chat.completion.chunk","created":{},"model":"{}","choices":[{{"index":0,"delta":{{"content":{}}},"logprobs":null,"finish_reason":{fr}{stop},"token_ids":null}}]}}"#,
                    self.id,
                    self.created,
                    self.model,
                    json!(text)
                )
            }
        };
        Self::frame(out, &e);
    }

    pub fn usage_chunk(&self, out: &mut Vec<u8>, prompt: u32, completion: u32) {
        let object = match self.api {
            Api::Completions => "text_completion",
            Api::Chat => "chat.completion.chunk",
        };
        let e = format!(
            r#"{{"id":"{}","object":"{object}","created":{},"model":"{}","choices":[],"usage":{{"prompt_tokens":{prompt},"total_tokens":{},"completion_tokens":{completion}}},"system_fingerprint":"vllm-0.32.0-sim"}}"#,
            self.id,
            self.created,
            self.model,
            prompt + completion
        );
        Self::frame(out, &e);
    }

    pub fn malformed_chunk(&self, out: &mut Vec<u8>) {
        Self::frame(out, r#"{"id": "broken"#);
    }

    pub fn done(out: &mut Vec<u8>) {
        Self::frame(out, "[DONE]");
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
