//! `trace`: a timestamped JSON-lines trace (Mooncake's fields; `docs/trace-format.md`) read
//! into the requests of a window of it: when each is meant to be sent, and its prompt.
//!
//! The reader is pure (`parse` takes bytes, so tests feed literals); `read_window` adds the
//! bounded file read. A request gives its prompt text, or a length: then its prompt is built
//! like the `random` dataset's, exactly `input_length` tokens, and when it lists `hash_ids`
//! each block of `block_size` tokens at position k is the one named by its k-th id, the same
//! tokens wherever that id appears, so a real server's prefix cache sees the trace's sharing.

use super::{Prompt, Workload, random};
use anyhow::{Result, bail};
use loadtest_base::Tokenizer;
use loadtest_base::rng::Rng;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

/// Mooncake's block: one hash id stands for 512 tokens.
pub const DEFAULT_BLOCK_SIZE: u32 = 512;

/// One line of a trace, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    /// Arrival offset in milliseconds (Mooncake's `timestamp`).
    timestamp: f64,
    #[serde(default)]
    input_length: Option<u64>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    output_length: Option<u64>,
    #[serde(default)]
    hash_ids: Vec<u64>,
    #[serde(default)]
    session_id: Option<serde_json::Value>,
}

/// What a request asks for: its own text, or a length to build a prompt of.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Text(String),
    Tokens(u32),
}

/// One request of a trace, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRequest {
    /// Arrival offset from the trace's own zero, in nanoseconds.
    pub offset_ns: u64,
    pub input: Input,
    /// `None`: the workload's default output length.
    pub output_len: Option<u32>,
    pub hash_ids: Vec<u64>,
    /// As written (text, or a number as text); kept for the reader, not sent.
    pub session_id: Option<String>,
    /// The 1-based line it came from.
    pub line: usize,
}

/// A trace's requests in arrival order, and what the user should know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub requests: Vec<TraceRequest>,
    pub notes: Vec<String>,
}

/// The fields a line may hold, for the hint of an error.
const SCHEMA_HINT: &str = "hint: each line is a JSON object like {\"timestamp\": 1250, \"input_length\": 812, \"output_length\": 64, \"hash_ids\": [0, 1]}; fields: timestamp (ms), input_length or prompt, output_length, hash_ids, session_id (see docs/trace-format.md)";

/// Parse a trace. Every bad line is an error naming `file` and the line; a trace out of
/// order is sorted (stably) with a note, never replayed out of order.
pub fn parse(bytes: &[u8], file: &str) -> Result<Trace> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "trace `{file}`: not UTF-8 text (byte {})\n{SCHEMA_HINT}",
            e.valid_up_to()
        )
    })?;
    let mut requests = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(raw)
            .map_err(|e| anyhow::anyhow!("trace `{file}` line {n}: {e}\n{SCHEMA_HINT}"))?;
        requests.push(check(l, file, n)?);
    }
    if requests.is_empty() {
        bail!("trace `{file}` has no requests\n{SCHEMA_HINT}");
    }
    let mut notes = Vec::new();
    let out_of_order = requests
        .windows(2)
        .filter(|w| w[1].offset_ns < w[0].offset_ns)
        .count();
    if out_of_order > 0 {
        requests.sort_by_key(|r| r.offset_ns);
        notes.push(format!(
            "trace `{file}` was not in arrival order ({out_of_order} lines earlier than the line before them): replayed sorted by `timestamp`"
        ));
    }
    Ok(Trace { requests, notes })
}

fn check(l: Line, file: &str, n: usize) -> Result<TraceRequest> {
    let at = || format!("trace `{file}` line {n}");
    if !l.timestamp.is_finite() || l.timestamp < 0.0 {
        bail!(
            "{}: `timestamp` {} is not a non-negative number of milliseconds\nhint: offsets count from the trace's start, in ms",
            at(),
            l.timestamp
        );
    }
    // a ms offset past u64 nanoseconds (584 years) is no trace
    if l.timestamp > 1e13 {
        bail!(
            "{}: `timestamp` {} ms is over 300 years\nhint: `timestamp` is an offset in milliseconds from the trace's start, not a date",
            at(),
            l.timestamp
        );
    }
    let len = |field: &str, v: u64| -> Result<u32> {
        match u32::try_from(v) {
            Ok(x) if x >= 1 => Ok(x),
            _ => bail!(
                "{}: `{field}` is {v}\nhint: a length is a whole number of tokens from 1 to {}",
                at(),
                u32::MAX
            ),
        }
    };
    let input = match (l.input_length, l.prompt) {
        (Some(_), Some(_)) => bail!(
            "{}: both `input_length` and `prompt`\nhint: give the prompt's text, or its length in tokens to build one, not both",
            at()
        ),
        (None, None) => bail!(
            "{}: neither `input_length` nor `prompt`\nhint: every request needs its prompt text or its length in tokens",
            at()
        ),
        (Some(v), None) => Input::Tokens(len("input_length", v)?),
        (None, Some(t)) if t.is_empty() => bail!("{}: `prompt` is empty", at()),
        (None, Some(t)) => {
            if !l.hash_ids.is_empty() {
                bail!(
                    "{}: `hash_ids` with a `prompt`\nhint: hash ids describe the blocks of a built prompt; a prompt's text already shares what it shares",
                    at()
                );
            }
            Input::Text(t)
        }
    };
    let session_id = match l.session_id {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(x)) => Some(x.to_string()),
        Some(other) => bail!("{}: `session_id` is {other}, not text or a number", at()),
    };
    Ok(TraceRequest {
        offset_ns: (l.timestamp * 1e6).round() as u64,
        input,
        output_len: l
            .output_length
            .map(|v| len("output_length", v))
            .transpose()?,
        hash_ids: l.hash_ids,
        session_id,
        line: n,
    })
}

/// The requests of the window `[start_s, end_s)` of the trace (trace seconds).
pub fn window(trace: &Trace, start_s: f64, end_s: Option<f64>) -> Vec<&TraceRequest> {
    let start = (start_s * 1e9).round() as u64;
    let end = end_s.map(|e| (e * 1e9).round() as u64);
    trace
        .requests
        .iter()
        .filter(|r| r.offset_ns >= start && end.is_none_or(|e| r.offset_ns < e))
        .collect()
}

/// Intended offsets (ns) of a window's requests at `speed`: the window's start is the run's
/// 0, each request at its distance from it divided by `speed`.
pub fn offsets(requests: &[&TraceRequest], start_s: f64, speed: f64) -> Vec<u64> {
    let start = (start_s * 1e9).round() as u64;
    requests
        .iter()
        .map(|r| (r.offset_ns.saturating_sub(start) as f64 / speed).round() as u64)
        .collect()
}

/// The window of the trace at `path`, read within the dataset size limit; an empty window
/// is an error saying what the trace spans.
pub fn read_window(path: &Path, start_s: f64, end_s: Option<f64>) -> Result<Trace> {
    let text = super::files::read(path)?;
    let trace = parse(text.as_bytes(), &path.display().to_string())?;
    if window(&trace, start_s, end_s).is_empty() {
        let (first, last) = (
            trace.requests[0].offset_ns as f64 / 1e9,
            trace.requests[trace.requests.len() - 1].offset_ns as f64 / 1e9,
        );
        bail!(
            "trace `{}`: no request in the window [{start_s}, {}) s\nhint: its requests arrive from {first:.3} s to {last:.3} s; choose `--trace-start`/`--trace-end` (`trace_start_s`/`trace_end_s`) inside that",
            path.display(),
            end_s.map_or("end".to_string(), |e| e.to_string())
        );
    }
    let mut trace = trace;
    if let Some(first) = window(&trace, start_s, end_s).first() {
        let lead = first.offset_ns as f64 / 1e9 - start_s;
        if lead > 10.0 {
            trace.notes.push(format!(
                "trace `{}`: the window's first request comes {lead:.1} s after its start, and the replay waits for it (`--trace-start`/`trace_start_s` skips the wait)",
                path.display()
            ));
        }
    }
    Ok(trace)
}

/// The prompts of a window: the given text, or exactly `input_length` tokens built from the
/// request's blocks. `seed` fixes every built token; `default_output` is the output length
/// of a request without one.
pub fn prompts(
    requests: &[&TraceRequest],
    tok: &Tokenizer,
    block_size: u32,
    default_output: u32,
    seed: u64,
    stop: &dyn Fn() -> bool,
) -> Result<Workload> {
    let total: u64 = requests
        .iter()
        .map(|r| match r.input {
            Input::Tokens(n) => n as u64,
            Input::Text(_) => 0,
        })
        .sum();
    if total > random::MAX_PROMPT_TOKENS {
        bail!(
            "the trace's window asks for {total} prompt tokens, more than the {} a workload holds\nhint: replay a shorter window (`--trace-end`, `trace_end_s`)",
            random::MAX_PROMPT_TOKENS
        );
    }
    let vocab = tok.plain_token_ids();
    if vocab.is_empty() {
        bail!(
            "tokenizer `{}` has no plain text tokens to build prompts from",
            tok.describe()
        );
    }
    let mut blocks = Blocks {
        tok,
        vocab: &vocab,
        size: block_size,
        seed,
        texts: HashMap::new(),
    };
    let (mut off, mut extra_ids) = (0usize, 0usize);
    let mut out = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        if stop() {
            bail!("{}", random::INTERRUPTED);
        }
        let output_tokens = r.output_len.unwrap_or(default_output);
        let (text, input_tokens) = match &r.input {
            Input::Text(t) => (t.clone(), tok.count_prompt(t)),
            Input::Tokens(n) => {
                let (text, got, ignored) = blocks.prompt(*n, &r.hash_ids, i as u64);
                off += usize::from(got != *n);
                extra_ids += usize::from(ignored);
                (text, got)
            }
        };
        out.push(Prompt {
            text,
            history: Vec::new(),
            input_tokens,
            output_tokens,
        });
    }
    let mut notes = Vec::new();
    if off > 0 {
        notes.push(format!(
            "trace: {off} of {} built prompts missed their `input_length` after the length corrections; their true lengths are recorded",
            requests.len()
        ));
    }
    if extra_ids > 0 {
        notes.push(format!(
            "trace: {extra_ids} requests list more `hash_ids` than their `input_length` fills at {block_size} tokens a block; the extra ids were ignored (is the block size the trace's? `--trace-block-size`)"
        ));
    }
    Ok(Workload {
        prompts: out,
        notes,
    })
}

/// Built blocks by hash id: block k of every prompt that names id h is the same text.
struct Blocks<'a> {
    tok: &'a Tokenizer,
    vocab: &'a [u32],
    size: u32,
    seed: u64,
    /// (hash id, is the first block) → its text; the first block is shorter by the special
    /// tokens the server adds, so the server's blocks line up with the trace's.
    texts: HashMap<(u64, bool), String>,
}

impl Blocks<'_> {
    fn rng_of_hash(&self, h: u64) -> Rng {
        Rng::derive(self.seed ^ 0xB10C, h)
    }

    /// A prompt of `n` tokens (special tokens included) whose full blocks are the named
    /// ones; the last block (partial or not) is drawn from its own id (or the request's
    /// stream) and corrected so the whole encodes to exactly `n`. Returns the text, its
    /// token count, and whether ids past the prompt's end were ignored.
    fn prompt(&mut self, n: u32, hash_ids: &[u64], request: u64) -> (String, u32, bool) {
        let special = self.tok.special_tokens_added();
        let blocks = n.div_ceil(self.size) as usize;
        let full = hash_ids.len().min(blocks - 1);
        let mut prefix = String::new();
        for (k, &h) in hash_ids[..full].iter().enumerate() {
            prefix.push_str(self.block(h, k == 0));
        }
        let mut rng = match hash_ids.get(blocks - 1) {
            Some(&h) => self.rng_of_hash(h),
            None => Rng::derive(self.seed ^ 0x7A11, request),
        };
        let target = n.saturating_sub(special).max(1);
        let (text, got) = random::exact_text(&mut rng, self.tok, self.vocab, &prefix, target);
        (text, got + special, hash_ids.len() > blocks)
    }

    fn block(&mut self, h: u64, first: bool) -> &str {
        let len = if first {
            self.size
                .saturating_sub(self.tok.special_tokens_added())
                .max(1)
        } else {
            self.size
        };
        let mut rng = self.rng_of_hash(h);
        let (tok, vocab) = (self.tok, self.vocab);
        self.texts
            .entry((h, first))
            .or_insert_with(|| random::exact_text(&mut rng, tok, vocab, "", len).0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(line: &str) -> Result<Trace> {
        parse(line.as_bytes(), "t.jsonl")
    }

    #[test]
    fn lines_are_read_checked_and_sorted_with_a_note() {
        let t = req(concat!(
            "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 3, \"hash_ids\": [1]}\n",
            "\n",
            "{\"timestamp\": 250.5, \"prompt\": \"hello\", \"session_id\": 7}\n",
            "{\"timestamp\": 100, \"input_length\": 4, \"session_id\": \"a\"}\n",
        ))
        .unwrap();
        let offs: Vec<u64> = t.requests.iter().map(|r| r.offset_ns).collect();
        assert_eq!(offs, [0, 100_000_000, 250_500_000]);
        assert_eq!(t.requests[1].line, 4);
        assert_eq!(t.requests[1].session_id.as_deref(), Some("a"));
        assert_eq!(t.requests[2].session_id.as_deref(), Some("7"));
        assert_eq!(t.requests[2].input, Input::Text("hello".into()));
        assert_eq!(t.requests[0].output_len, Some(3));
        assert_eq!(t.notes.len(), 1, "{:?}", t.notes);
        assert!(t.notes[0].contains("sorted"));
        // in order: no note
        let t =
            req("{\"timestamp\": 1, \"input_length\": 1}\n{\"timestamp\": 1, \"input_length\": 2}")
                .unwrap();
        assert!(t.notes.is_empty());
    }

    #[test]
    fn a_bad_line_is_named_with_a_hint() {
        for (text, line, what) in [
            (
                "{\"timestamp\": -1, \"input_length\": 3}",
                1,
                "non-negative",
            ),
            (
                "{\"timestamp\": 0, \"input_length\": 0}",
                1,
                "`input_length` is 0",
            ),
            (
                "{\"timestamp\": 0, \"input_length\": 2, \"output_length\": 0}",
                1,
                "`output_length` is 0",
            ),
            ("\n{\"timestamp\": 0}", 2, "neither"),
            (
                "{\"timestamp\": 0, \"input_length\": 2, \"prompt\": \"x\"}",
                1,
                "both",
            ),
            (
                "{\"timestamp\": 0, \"input_len\": 2}",
                1,
                "unknown field `input_len`",
            ),
            ("{\"input_length\": 2}", 1, "missing field `timestamp`"),
            (
                "{\"timestamp\": 0, \"input_length\": 2}\nnot json",
                2,
                "expected",
            ),
            (
                "{\"timestamp\": 1e300, \"input_length\": 2}",
                1,
                "300 years",
            ),
        ] {
            let e = format!("{:#}", req(text).unwrap_err());
            assert!(
                e.contains(&format!("trace `t.jsonl` line {line}:"))
                    && e.contains(what)
                    && e.contains("hint:"),
                "{text}: {e}"
            );
        }
        let e = format!("{:#}", req("\n\n").unwrap_err());
        assert!(e.contains("no requests"), "{e}");
    }

    #[test]
    fn the_window_selects_and_rebases_and_speed_scales() {
        let t = req(concat!(
            "{\"timestamp\": 500, \"input_length\": 1}\n",
            "{\"timestamp\": 1000, \"input_length\": 1}\n",
            "{\"timestamp\": 1999, \"input_length\": 1}\n",
            "{\"timestamp\": 2000, \"input_length\": 1}\n",
        ))
        .unwrap();
        let w = window(&t, 1.0, Some(2.0));
        assert_eq!(w.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(offsets(&w, 1.0, 1.0), [0, 999_000_000]);
        assert_eq!(offsets(&w, 1.0, 2.0), [0, 499_500_000]);
        let all = window(&t, 0.0, None);
        assert_eq!(offsets(&all, 0.0, 4.0)[..2], [125_000_000, 250_000_000]);
        assert_eq!(window(&t, 0.0, None).len(), 4);
        assert!(window(&t, 2.5, None).is_empty());
    }

    #[test]
    fn built_prompts_have_exact_lengths_and_share_blocks_by_hash_id() {
        let tok = Tokenizer::built_in().unwrap();
        let t = req(concat!(
            "{\"timestamp\": 0, \"input_length\": 70, \"hash_ids\": [1, 2, 3]}\n",
            "{\"timestamp\": 1, \"input_length\": 90, \"hash_ids\": [1, 2, 4]}\n",
            "{\"timestamp\": 2, \"input_length\": 50, \"hash_ids\": [1, 5]}\n",
            "{\"timestamp\": 3, \"input_length\": 45}\n",
            "{\"timestamp\": 4, \"prompt\": \"just this\", \"output_length\": 9}\n",
        ))
        .unwrap();
        let w = window(&t, 0.0, None);
        let p = prompts(&w, &tok, 32, 16, 0, &|| false).unwrap();
        assert!(p.notes.is_empty(), "{:?}", p.notes);
        let lens: Vec<u32> = p.prompts.iter().map(|p| p.input_tokens).collect();
        assert_eq!(lens, [70, 90, 50, 45, tok.count_prompt("just this")]);
        for q in &p.prompts {
            assert_eq!(tok.count_prompt(&q.text), q.input_tokens);
        }
        assert_eq!(p.prompts[0].output_tokens, 16);
        assert_eq!(p.prompts[4].output_tokens, 9);
        assert_eq!(p.prompts[4].text, "just this");
        // tokens two texts share from their start
        let shared = |a: &str, b: &str| {
            let n = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
            tok.encode(&a.chars().take(n).collect::<String>()).len()
        };
        let t: Vec<&str> = p.prompts.iter().map(|q| q.text.as_str()).collect();
        // ids 1 and 2 lead the first two prompts: their first two blocks are the same
        assert!(shared(t[0], t[1]) >= 64, "{}", shared(t[0], t[1]));
        // id 1 leads the third, whose second block (id 5) is not id 2's
        assert!(
            (32..64).contains(&shared(t[0], t[2])),
            "{}",
            shared(t[0], t[2])
        );
        // no id in common, nothing shared
        assert!(shared(t[0], t[3]) < 4, "{}", shared(t[0], t[3]));
        // the same trace and seed build the same prompts
        assert_eq!(
            prompts(&w, &tok, 32, 16, 0, &|| false).unwrap().prompts,
            p.prompts
        );
    }

    #[test]
    fn ids_past_the_prompts_end_are_ignored_with_a_note() {
        let tok = Tokenizer::built_in().unwrap();
        let t = req("{\"timestamp\": 0, \"input_length\": 20, \"hash_ids\": [1, 2, 3]}").unwrap();
        let w = window(&t, 0.0, None);
        let p = prompts(&w, &tok, 16, 4, 0, &|| false).unwrap();
        assert_eq!(p.prompts[0].input_tokens, 20);
        assert!(
            p.notes.iter().any(|n| n.contains("more `hash_ids`")),
            "{:?}",
            p.notes
        );
    }
}
