//! What one SSE `data:` payload of an OpenAI-compatible stream says: does it carry generated
//! content (the TTFT/ITL clock ticks only on those), a finish reason, the usage totals, or
//! an error?
//!
//! The hot path does not build a JSON tree. In valid JSON an unescaped `"` only delimits
//! strings, so a string followed by `:` is a key; one pass over the bytes reads every key
//! and looks at the values of the few that matter. A `usage` object's token counts are read
//! in the same pass when they are plain integers (with `continuous_usage_stats` every chunk
//! carries one); anything else about it, and any `error`, goes through `serde_json`, exactly.

use serde::Deserialize;

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
    match scan(trimmed) {
        Some(chunk) => Ok(Payload::Chunk(chunk)),
        None => full_parse(trimmed),
    }
}

/// One pass over the payload: every string is read to its closing quote (escapes skipped),
/// and a string followed by `:` is a key whose value is looked at. `None` when the payload
/// needs the exact parser (usage, an error, or a string that never closes).
fn scan(d: &[u8]) -> Option<Chunk> {
    let mut chunk = Chunk::default();
    // inside a `usage` object: its counts are ours to read
    let mut in_usage = false;
    let mut i = 0;
    while let Some(q) = d[i..].iter().position(|&b| b == b'"') {
        let start = i + q + 1;
        let mut j = start;
        while j < d.len() {
            match d[j] {
                b'\\' => j += 2,
                b'"' => break,
                _ => j += 1,
            }
        }
        if j >= d.len() {
            return None;
        }
        let s = &d[start..j];
        let rest = d[j + 1..].trim_ascii_start();
        let Some(value) = rest.strip_prefix(b":") else {
            i = j + 1; // a string value, not a key
            continue;
        };
        let value = value.trim_ascii_start();
        i = d.len() - value.len();
        match s {
            b"text" | b"content" | b"reasoning_content" | b"reasoning"
                if value.len() >= 2 && value[0] == b'"' && value[1] != b'"' =>
            {
                chunk.content = true;
            }
            // the first choice's, as the exact parser reads it (`n` > 1 sends several)
            b"finish_reason" if value.first() == Some(&b'"') && chunk.finish_reason.is_none() => {
                chunk.finish_reason = Some(string_value(value)?);
            }
            b"usage" if value.starts_with(b"null") => {}
            b"usage" if value.starts_with(b"{") && chunk.usage.is_none() => {
                chunk.usage = Some(Usage::default());
                in_usage = true;
            }
            b"usage" => return None,
            b"prompt_tokens" | b"completion_tokens" if in_usage => {
                let n = integer_value(value)?;
                let u = chunk.usage.as_mut().expect("in a usage object");
                if s == b"prompt_tokens" {
                    u.prompt_tokens = Some(n);
                } else {
                    u.completion_tokens = Some(n);
                }
            }
            b"error" => return None,
            b"object" if value.starts_with(b"\"error\"") => return None,
            _ => {}
        }
    }
    Some(chunk)
}

/// A non-negative integer value that fits a `u32`, ending at `,` or `}`; `None` for any
/// other value (then the exact parser decides).
fn integer_value(v: &[u8]) -> Option<u32> {
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    let after = v[digits..].trim_ascii_start().first();
    if digits == 0 || digits > 9 || !matches!(after, Some(b',') | Some(b'}')) {
        return None;
    }
    std::str::from_utf8(&v[..digits]).ok()?.parse().ok()
}

/// The content of a simple JSON string value (finish reasons are plain ASCII); `None` if it
/// has escapes (then the exact parser decides).
fn string_value(v: &[u8]) -> Option<String> {
    let rest = v.strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    if rest[end] == b'\\' {
        return None;
    }
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
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
    // any JSON: only a non-empty string is text, only a string a finish reason (as the
    // scan reads them; a server's odd type is not a broken stream)
    text: Option<serde_json::Value>,
    delta: Option<FullDelta>,
    finish_reason: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct FullDelta {
    content: Option<serde_json::Value>,
    reasoning_content: Option<serde_json::Value>,
    reasoning: Option<serde_json::Value>,
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
    let nonempty = |s: &Option<serde_json::Value>| {
        s.as_ref()
            .and_then(|v| v.as_str())
            .is_some_and(|s| !s.is_empty())
    };
    let content = c.choices.iter().any(|ch| {
        nonempty(&ch.text)
            || ch.delta.as_ref().is_some_and(|d| {
                nonempty(&d.content) || nonempty(&d.reasoning_content) || nonempty(&d.reasoning)
            })
    });
    let finish_reason = c
        .choices
        .iter()
        .find_map(|ch| ch.finish_reason.as_ref()?.as_str().map(str::to_owned));
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
mod props;

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

    /// With `continuous_usage_stats` every chunk names `usage`: the one-pass scan must read
    /// it itself (not hand every token to `serde_json`), and leave odd values to the parser.
    #[test]
    fn running_usage_is_read_by_the_scan() {
        let d = br#"{"choices":[{"index":0,"delta":{"content":"SC"},"finish_reason":null}],"usage":{"prompt_tokens":32,"total_tokens":33,"completion_tokens":1,"completion_tokens_details":null}}"#;
        let c = scan(d).expect("fast path");
        assert!(c.content);
        assert_eq!(
            c.usage,
            Some(Usage {
                prompt_tokens: Some(32),
                completion_tokens: Some(1)
            })
        );
        assert!(scan(br#"{"choices":[],"usage":{"completion_tokens":1.5}}"#).is_none());
        assert!(scan(br#"{"choices":[],"usage":{"completion_tokens":-1}}"#).is_none());
        assert!(scan(br#"{"choices":[],"usage":[1]}"#).is_none());
        assert_eq!(integer_value(b"4294967296}"), None);
        assert_eq!(integer_value(b"12 ,"), Some(12));
    }

    #[test]
    fn fast_scan_agrees_with_full_parse_on_the_fixture_streams() {
        for name in [
            "completions-stream.sse",
            "chat-stream.sse",
            "completions-stream-continuous-usage.sse",
            "chat-stream-continuous-usage.sse",
        ] {
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
