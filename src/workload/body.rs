//! Request bodies and the bytes on the wire, built once per distinct prompt before a run.

use super::Prompt;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Completions,
    ChatCompletions,
}

impl Endpoint {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim_end_matches('/') {
            "/v1/completions" => Some(Endpoint::Completions),
            "/v1/chat/completions" => Some(Endpoint::ChatCompletions),
            _ => None,
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Completions => "/v1/completions",
            Endpoint::ChatCompletions => "/v1/chat/completions",
        }
    }
}

/// What every request of a run shares.
#[derive(Debug, Clone)]
pub struct BodyOptions {
    pub endpoint: Endpoint,
    pub model: String,
    pub ignore_eos: bool,
    pub temperature: Option<f64>,
    /// Ask for `stream_options.continuous_usage_stats` (vLLM, SGLang): every chunk then says
    /// how many tokens were generated so far, so each content event's token count is known.
    /// Off by default: it adds work per token on the server being measured.
    pub continuous_usage: bool,
    /// Extra top-level JSON fields merged into every body (`--extra-body`).
    pub extra: Option<serde_json::Map<String, Value>>,
}

/// A prefix-cache salt (vLLM's `cache_salt`) of its own for whatever `scope` names (a run's
/// cell, a fit), and for this moment: two scopes, or two attempts at one, never share a
/// cached block. Up to 128 characters without `@`, `/` or `\`, as vLLM 0.32 requires.
pub fn cache_salt(scope: impl std::hash::Hash) -> String {
    use std::hash::BuildHasher;
    let h = std::collections::hash_map::RandomState::new()
        .hash_one((scope, loadtest_base::time::unix_now()));
    format!("vllm-loadtest-{h:016x}")
}

/// A body's extra fields carrying `salt` as `cache_salt`.
pub fn salted(salt: String) -> serde_json::Map<String, Value> {
    serde_json::Map::from_iter([("cache_salt".to_string(), Value::String(salt))])
}

/// A chat request's messages: the conversation so far (user and assistant in turn), then
/// the new user message.
fn messages(p: &Prompt) -> Vec<Value> {
    let roles = ["user", "assistant"].into_iter().cycle();
    p.history
        .iter()
        .zip(roles)
        .map(|(text, role)| json!({"role": role, "content": text}))
        .chain([json!({"role": "user", "content": p.text})])
        .collect()
}

/// The JSON body for one prompt. `stream_options.include_usage` is always asked for: the
/// server's own token count is the best source for TPOT and throughput.
pub fn json_body(p: &Prompt, o: &BodyOptions) -> Vec<u8> {
    let mut v = match o.endpoint {
        Endpoint::Completions => json!({
            "model": o.model,
            "prompt": p.text,
            "max_tokens": p.output_tokens,
            "stream": true,
            "stream_options": {"include_usage": true},
        }),
        Endpoint::ChatCompletions => json!({
            "model": o.model,
            "messages": messages(p),
            "max_completion_tokens": p.output_tokens,
            "stream": true,
            "stream_options": {"include_usage": true},
        }),
    };
    let obj = v.as_object_mut().expect("object");
    if o.continuous_usage {
        obj["stream_options"]["continuous_usage_stats"] = Value::Bool(true);
    }
    if o.ignore_eos {
        obj.insert("ignore_eos".into(), Value::Bool(true));
    }
    if let Some(t) = o.temperature {
        obj.insert("temperature".into(), json!(t));
    }
    if let Some(extra) = &o.extra {
        for (k, val) in extra {
            obj.insert(k.clone(), val.clone());
        }
    }
    serde_json::to_vec(&v).expect("serialisable")
}

/// A complete HTTP/1.1 request: head and body in one buffer, written with one syscall.
/// `headers` are the rendered extra lines (`client::headers`: the API key, the user's
/// headers); they go only here, in memory, and are never logged or stored.
pub fn http_request(host: &str, path: &str, headers: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 256);
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(
        b"\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\nUser-Agent: vllm-loadtest/",
    );
    out.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(headers);
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_ask_for_usage_and_carry_max_tokens() {
        let p = Prompt {
            text: "hi".into(),
            history: Vec::new(),
            input_tokens: 1,
            output_tokens: 5,
        };
        let mut o = BodyOptions {
            endpoint: Endpoint::Completions,
            model: "m".into(),
            ignore_eos: true,
            temperature: None,
            continuous_usage: false,
            extra: None,
        };
        let v: Value = serde_json::from_slice(&json_body(&p, &o)).unwrap();
        assert_eq!(v["max_tokens"], 5);
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["ignore_eos"], true);
        o.endpoint = Endpoint::ChatCompletions;
        let v: Value = serde_json::from_slice(&json_body(&p, &o)).unwrap();
        assert_eq!(v["messages"][0]["content"], "hi");
        assert_eq!(v["max_completion_tokens"], 5);
        let req = http_request("h:1", "/v1/x", b"X-A: b\r\n", b"{}");
        let s = String::from_utf8(req).unwrap();
        assert!(s.starts_with("POST /v1/x HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(s.contains("\r\nX-A: b\r\nContent-Length"), "{s}");
        assert!(s.ends_with("Content-Length: 2\r\n\r\n{}"));
    }
}
