//! What one SSE `data:` payload of an OpenAI-compatible stream says: does it carry generated
//! content (the TTFT/ITL clock ticks only on those), a finish reason, the usage totals, or
//! an error?
//!
//! The hot path does not build a JSON tree. In valid JSON an unescaped `"` only delimits
//! strings, so `"text"` followed by `:` can only be a key; a key scan decides the common
//! chunk in one pass over its bytes. Payloads naming `usage` or `error` (one per request)
//! and anything that does not look like a JSON object go through `serde_json`.

use serde::Deserialize;

/// The keys whose non-empty string value is generated output: completions `text`, chat
/// `delta.content`, and the reasoning fields of reasoning models.
const CONTENT_KEYS: [&[u8]; 4] = [
    b"\"text\"",
    b"\"content\"",
    b"\"reasoning_content\"",
    b"\"reasoning\"",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chunk {
    /// Carries at least one byte of generated text.
    pub content: bool,
    /// `finish_reason` when it is a string (the last content chunk has `"length"`/`"stop"`).
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// `data: [DONE]`.
    Done,
    Chunk(Chunk),
    /// The server reported an error inside the stream.
    Error(String),
}

/// Classify one `data:` payload. `Err` carries a description of bytes that are not a
/// JSON object (a malformed stream).
pub fn classify(data: &[u8]) -> Result<Payload, String> {
    let trimmed = data.trim_ascii();
    if trimmed == b"[DONE]" {
        return Ok(Payload::Done);
    }
    if trimmed.first() != Some(&b'{') || trimmed.last() != Some(&b'}') {
        return Err(format!(
            "SSE data is not a JSON object: `{}`",
            String::from_utf8_lossy(&trimmed[..trimmed.len().min(120)])
        ));
    }
    let needs_full_parse = value_after_key(trimmed, b"\"usage\"")
        .is_some_and(|v| !v.starts_with(b"null"))
        || value_after_key(trimmed, b"\"error\"").is_some()
        || contains(trimmed, b"\"object\":\"error\"");
    if needs_full_parse {
        return full_parse(trimmed);
    }
    let content = CONTENT_KEYS.iter().any(|k| has_nonempty_string(trimmed, k));
    let finish_reason = value_after_key(trimmed, b"\"finish_reason\"").and_then(string_value);
    Ok(Payload::Chunk(Chunk {
        content,
        finish_reason,
        usage: None,
    }))
}

/// Every occurrence of `key` followed by optional whitespace and `:`: the bytes of its value.
fn values_after_key<'a>(hay: &'a [u8], key: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut from = 0;
    std::iter::from_fn(move || {
        while let Some(pos) = find(&hay[from..], key) {
            let after = from + pos + key.len();
            from = after;
            let rest = hay[after..].trim_ascii_start();
            if let Some(v) = rest.strip_prefix(b":") {
                return Some(v.trim_ascii_start());
            }
        }
        None
    })
}

fn value_after_key<'a>(hay: &'a [u8], key: &'a [u8]) -> Option<&'a [u8]> {
    values_after_key(hay, key).next()
}

fn has_nonempty_string(hay: &[u8], key: &[u8]) -> bool {
    values_after_key(hay, key).any(|v| v.len() >= 2 && v[0] == b'"' && v[1] != b'"')
}

/// The unescaped content of a simple JSON string value (finish reasons are plain ASCII).
fn string_value(v: &[u8]) -> Option<String> {
    let rest = v.strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    if rest[end] == b'\\' {
        return None;
    }
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        match hay[i..].iter().position(|&b| b == first) {
            Some(p) => {
                i += p;
                if i + needle.len() <= hay.len() && &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
            None => return None,
        }
    }
    None
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

#[derive(Deserialize)]
struct FullChunk {
    #[serde(default)]
    choices: Vec<FullChoice>,
    usage: Option<FullUsage>,
    error: Option<serde_json::Value>,
    object: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct FullChoice {
    text: Option<String>,
    delta: Option<FullDelta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct FullDelta {
    content: Option<String>,
    reasoning_content: Option<String>,
    reasoning: Option<String>,
}

#[derive(Deserialize)]
struct FullUsage {
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
}

/// The slow, exact path: a typed parse of the whole payload.
pub fn full_parse(data: &[u8]) -> Result<Payload, String> {
    let c: FullChunk = serde_json::from_slice(data).map_err(|e| {
        format!(
            "SSE data is not valid JSON ({e}): `{}`",
            String::from_utf8_lossy(&data[..data.len().min(120)])
        )
    })?;
    if let Some(err) = c.error {
        let msg = err
            .get("message")
            .and_then(|m| m.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| err.to_string());
        return Ok(Payload::Error(msg));
    }
    if c.object.as_deref() == Some("error") {
        return Ok(Payload::Error(c.message.unwrap_or_else(|| "error".into())));
    }
    let nonempty = |s: &Option<String>| s.as_ref().is_some_and(|s| !s.is_empty());
    let content = c.choices.iter().any(|ch| {
        nonempty(&ch.text)
            || ch.delta.as_ref().is_some_and(|d| {
                nonempty(&d.content) || nonempty(&d.reasoning_content) || nonempty(&d.reasoning)
            })
    });
    let finish_reason = c.choices.iter().find_map(|ch| ch.finish_reason.clone());
    Ok(Payload::Chunk(Chunk {
        content,
        finish_reason,
        usage: c.usage.map(|u| Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(s: &str) -> Chunk {
        match classify(s.as_bytes()).unwrap() {
            Payload::Chunk(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn completion_text_is_content_and_empty_text_is_not() {
        assert!(
            chunk(r#"{"choices":[{"index":0,"text":" render","finish_reason":null}]}"#).content
        );
        assert!(!chunk(r#"{"choices":[{"index":0,"text":"","finish_reason":null}]}"#).content);
    }

    #[test]
    fn role_only_chat_chunk_is_not_content() {
        let c = chunk(
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#,
        );
        assert!(!c.content);
        let c = chunk(r#"{"choices":[{"delta":{"role":"assistant"}}]}"#);
        assert!(!c.content);
        let c = chunk(r#"{"choices":[{"delta":{"content":null,"reasoning_content":"hm"}}]}"#);
        assert!(c.content);
    }

    #[test]
    fn logprobs_content_array_is_not_text() {
        let c = chunk(
            r#"{"choices":[{"delta":{"content":""},"logprobs":{"content":[{"token":"a"}]}}]}"#,
        );
        assert!(!c.content);
    }

    #[test]
    fn escaped_key_lookalikes_inside_text_do_not_fool_the_scan() {
        let c = chunk(r#"{"choices":[{"text":"","x":"\"text\":\"boo"}]}"#);
        assert!(!c.content);
    }

    #[test]
    fn finish_reason_usage_done_and_errors() {
        assert_eq!(
            chunk(r#"{"choices":[{"text":"a","finish_reason":"length"}]}"#)
                .finish_reason
                .as_deref(),
            Some("length")
        );
        let u = chunk(
            r#"{"choices":[],"usage":{"prompt_tokens":74,"total_tokens":138,"completion_tokens":64}}"#,
        );
        assert_eq!(
            u.usage,
            Some(Usage {
                prompt_tokens: Some(74),
                completion_tokens: Some(64)
            })
        );
        assert!(!u.content);
        assert_eq!(classify(b"[DONE]").unwrap(), Payload::Done);
        assert_eq!(
            classify(br#"{"error":{"message":"boom","code":500}}"#).unwrap(),
            Payload::Error("boom".into())
        );
        assert_eq!(
            classify(br#"{"object":"error","message":"bad","code":400}"#).unwrap(),
            Payload::Error("bad".into())
        );
        assert!(classify(b"garbage").is_err());
    }

    #[test]
    fn fast_scan_agrees_with_full_parse_on_the_fixture_streams() {
        for name in ["completions-stream.sse", "chat-stream.sse"] {
            let path = format!("{}/tests/fixtures/vllm/{name}", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(path).unwrap();
            for line in text.lines() {
                let Some(data) = line.strip_prefix("data: ") else {
                    continue;
                };
                if data == "[DONE]" {
                    continue;
                }
                assert_eq!(
                    classify(data.as_bytes()),
                    full_parse(data.as_bytes()),
                    "{data}"
                );
            }
        }
    }
}
