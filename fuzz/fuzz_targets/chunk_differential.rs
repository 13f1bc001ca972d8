//! `client::chunk::classify` against `client::chunk::full_parse` on vLLM-shaped JSON.
//!
//! The classifier's one-pass scanner (private `scan`) answers from the raw bytes and only
//! defers to the exact parser for payloads it cannot read. On the payloads an
//! OpenAI-compatible server sends, both must agree. The fuzzer's bytes drive a generator
//! of such payloads: completions and chat chunks, usage objects (counts up to and past
//! `u32`), in-stream errors, logprobs (whose `top_logprobs` maps use arbitrary tokens as
//! keys), arbitrary strings everywhere (quotes, backslashes, key look-alikes, non-ASCII,
//! optionally `\uXXXX`-escaped like Python's `json.dumps`), keys in any order and JSON
//! whitespace anywhere it is allowed.
//!
//! Asserts: `classify(payload) == full_parse(payload)` for every generated payload (except
//! known finding 1, see below; `FUZZ_CHUNK_STRICT=1` asserts that case too).
//! Set `FUZZ_CHUNK_MAX_CHOICES` (default 2) to bound the choices per chunk.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vllm_loadtest::client::chunk::{Payload, classify, full_parse};

const WORDS: &[&str] = &[
    "", " ", "text", "content", "reasoning_content", "reasoning", "finish_reason", "usage",
    "prompt_tokens", "completion_tokens", "error", "object", "\"text\":\"x", "\\", "\"", ":",
    "{", "}", "[DONE]", "stop", "length", "\\\"", "\"usage\":{", "null", "é", "🙂", "\n",
];

struct Gen<'a, 'b> {
    u: &'b mut Unstructured<'a>,
    ascii_escapes: bool,
    out: String,
}

impl Gen<'_, '_> {
    fn ws(&mut self) -> Result<()> {
        if self.u.ratio(1, 4)? {
            let w = *self.u.choose(&[" ", "\n", "\t", "\r\n", "  "])?;
            self.out.push_str(w);
        }
        Ok(())
    }

    fn raw_str(&mut self) -> Result<String> {
        Ok(if self.u.ratio(1, 2)? {
            (*self.u.choose(WORDS)?).to_string()
        } else {
            self.u.arbitrary::<String>()?
        })
    }

    fn string(&mut self, s: &str) {
        let json = serde_json::to_string(s).expect("a string serialises");
        if self.ascii_escapes {
            for c in json.chars() {
                if c.is_ascii() {
                    self.out.push(c);
                } else {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        self.out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
            }
        } else {
            self.out.push_str(&json);
        }
    }

    fn any_str(&mut self) -> Result<()> {
        let s = self.raw_str()?;
        self.string(&s);
        Ok(())
    }

    fn str_or_null(&mut self) -> Result<()> {
        if self.u.ratio(1, 4)? {
            self.out.push_str("null");
            Ok(())
        } else {
            self.any_str()
        }
    }

    fn int(&mut self) -> Result<()> {
        let n: u64 = match self.u.int_in_range(0..=3)? {
            0 => self.u.int_in_range(0..=100)?,
            1 => self.u.int_in_range(0..=u32::MAX as u64)?,
            2 => self.u.int_in_range(999_999_990..=5_000_000_000)?,
            _ => self.u.arbitrary()?,
        };
        self.out.push_str(&n.to_string());
        Ok(())
    }

    fn float(&mut self) -> Result<()> {
        let x: f64 = -(self.u.int_in_range(0..=100_000u32)? as f64) / 997.0;
        self.out.push_str(&serde_json::to_string(&x).expect("finite"));
        Ok(())
    }

    /// An object of a random subset of `keys`, in random order, each value written by `val`.
    fn object(&mut self, keys: &[&'static str], val: fn(&mut Self, &str) -> Result<()>) -> Result<()> {
        let mut ks: Vec<&str> = Vec::new();
        for k in keys {
            if self.u.ratio(3, 4)? {
                ks.push(k);
            }
        }
        // shuffle
        for i in (1..ks.len()).rev() {
            let j = self.u.int_in_range(0..=i)?;
            ks.swap(i, j);
        }
        self.out.push('{');
        for (i, k) in ks.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.ws()?;
            self.string(k);
            self.ws()?;
            self.out.push(':');
            self.ws()?;
            val(self, k)?;
            self.ws()?;
        }
        self.out.push('}');
        Ok(())
    }

    fn array(&mut self, max: usize, item: fn(&mut Self) -> Result<()>) -> Result<()> {
        let n = self.u.int_in_range(0..=max)?;
        self.out.push('[');
        for i in 0..n {
            if i > 0 {
                self.out.push(',');
                self.ws()?;
            }
            item(self)?;
        }
        self.out.push(']');
        Ok(())
    }

    fn top(&mut self) -> Result<()> {
        match self.u.int_in_range(0..=9)? {
            // `{"object":"error","message":…}` (vLLM's older error shape)
            0 => self.object(&["object", "message", "type", "param", "code"], |g, k| match k {
                "object" => g.object_value(),
                "code" => g.int(),
                _ => g.str_or_null(),
            }),
            // `{"error":{"message":…}}`
            1 => self.object(&["error"], |g, _| {
                if g.u.ratio(1, 5)? {
                    g.any_str()
                } else {
                    g.object(&["message", "type", "param", "code"], |g, k| match k {
                        "code" => g.int(),
                        _ => g.str_or_null(),
                    })
                }
            }),
            _ => self.object(
                &["id", "object", "created", "model", "choices", "usage", "system_fingerprint", "prompt_token_ids"],
                |g, k| match k {
                    "object" => g.object_value(),
                    "created" => g.int(),
                    "choices" => g.array(max_choices(), Self::choice),
                    "usage" => {
                        if g.u.ratio(1, 4)? {
                            g.out.push_str("null");
                            Ok(())
                        } else {
                            g.usage()
                        }
                    }
                    "prompt_token_ids" => {
                        g.out.push_str("null");
                        Ok(())
                    }
                    _ => g.str_or_null(),
                },
            ),
        }
    }

    fn object_value(&mut self) -> Result<()> {
        match self.u.int_in_range(0..=3)? {
            0 => self.string("chat.completion.chunk"),
            1 => self.string("text_completion"),
            2 => self.string("error"),
            _ => self.any_str()?,
        }
        Ok(())
    }

    fn choice(&mut self) -> Result<()> {
        if self.u.ratio(1, 2)? {
            // completions
            self.object(&["index", "text", "logprobs", "finish_reason", "stop_reason", "token_ids"], |g, k| match k {
                "index" => g.int(),
                "text" | "finish_reason" | "stop_reason" => g.str_or_null(),
                "logprobs" => g.completion_logprobs(),
                _ => {
                    g.out.push_str("null");
                    Ok(())
                }
            })
        } else {
            self.object(&["index", "delta", "logprobs", "finish_reason", "stop_reason", "token_ids"], |g, k| match k {
                "index" => g.int(),
                "finish_reason" | "stop_reason" => g.str_or_null(),
                "delta" => g.object(&["role", "content", "reasoning_content", "reasoning", "tool_calls"], |g, k| match k {
                    "tool_calls" => g.array(1, |g| g.object(&["index", "id", "type"], |g, k| match k {
                        "index" => g.int(),
                        _ => g.any_str(),
                    })),
                    _ => g.str_or_null(),
                }),
                "logprobs" => g.chat_logprobs(),
                _ => {
                    g.out.push_str("null");
                    Ok(())
                }
            })
        }
    }

    fn completion_logprobs(&mut self) -> Result<()> {
        if self.u.ratio(1, 2)? {
            self.out.push_str("null");
            return Ok(());
        }
        self.object(&["text_offset", "token_logprobs", "tokens", "top_logprobs"], |g, k| match k {
            "text_offset" => g.array(3, Self::int),
            "token_logprobs" => g.array(3, Self::float),
            "tokens" => g.array(3, Self::any_str),
            _ => g.array(2, |g| {
                // a map from token text to logprob: arbitrary keys
                let n = g.u.int_in_range(0..=3)?;
                g.out.push('{');
                let mut seen = Vec::new();
                for _ in 0..n {
                    let k = g.raw_str()?;
                    if seen.contains(&k) {
                        continue;
                    }
                    if !seen.is_empty() {
                        g.out.push(',');
                    }
                    g.string(&k);
                    g.out.push(':');
                    g.float()?;
                    seen.push(k);
                }
                g.out.push('}');
                Ok(())
            }),
        })
    }

    fn chat_logprobs(&mut self) -> Result<()> {
        if self.u.ratio(1, 2)? {
            self.out.push_str("null");
            return Ok(());
        }
        self.object(&["content"], |g, _| {
            g.array(2, |g| {
                g.object(&["token", "logprob", "bytes", "top_logprobs"], |g, k| match k {
                    "token" => g.any_str(),
                    "logprob" => g.float(),
                    "bytes" => g.array(3, |g| {
                        let b: u8 = g.u.arbitrary()?;
                        g.out.push_str(&b.to_string());
                        Ok(())
                    }),
                    _ => g.array(2, |g| g.object(&["token", "logprob"], |g, k| match k {
                        "token" => g.any_str(),
                        _ => g.float(),
                    })),
                })
            })
        })
    }

    fn usage(&mut self) -> Result<()> {
        self.object(
            &["prompt_tokens", "total_tokens", "completion_tokens", "completion_tokens_details", "prompt_tokens_details"],
            |g, k| match k {
                "completion_tokens_details" => {
                    g.out.push_str("null");
                    Ok(())
                }
                "prompt_tokens_details" => {
                    if g.u.ratio(1, 2)? {
                        g.out.push_str("null");
                        Ok(())
                    } else {
                        g.object(&["cached_tokens"], |g, _| g.int())
                    }
                }
                _ => g.int(),
            },
        )
    }
}

fn string_finish_reasons(v: &serde_json::Value) -> usize {
    v.get("choices")
        .and_then(|c| c.as_array())
        .map_or(0, |cs| cs.iter().filter(|c| c.get("finish_reason").is_some_and(|f| f.is_string())).count())
}

fn max_choices() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        std::env::var("FUZZ_CHUNK_MAX_CHOICES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2)
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(ascii_escapes) = u.arbitrary::<bool>() else {
        return;
    };
    let mut g = Gen {
        u: &mut u,
        ascii_escapes,
        out: String::new(),
    };
    if g.top().is_err() {
        return;
    }
    let payload = g.out;
    // the generator's output is valid JSON by construction
    let parsed: serde_json::Value = serde_json::from_str(&payload).expect("generator writes JSON");
    assert!(parsed.is_object());
    let fast = classify(payload.as_bytes());
    let exact = full_parse(payload.as_bytes());
    if let (Ok(Payload::Chunk(f)), Ok(Payload::Chunk(e))) = (&fast, &exact)
        && f.finish_reason != e.finish_reason
        && (f.content, &f.usage) == (e.content, &e.usage)
        && string_finish_reasons(&parsed) > 1
        && std::env::var_os("FUZZ_CHUNK_STRICT").is_none()
    {
        // Known finding 1 (docs/reliability.md): with several choices carrying a string
        // `finish_reason`, the scan keeps the last, `full_parse` the first. Skipped so the
        // run goes on; FUZZ_CHUNK_STRICT=1 asserts it too.
        return;
    }
    assert_eq!(fast, exact, "classify and full_parse disagree on\n{payload}");
});
