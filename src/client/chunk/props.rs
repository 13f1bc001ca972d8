//! Property: the one-pass scan says what the exact parser says, on any JSON object of the
//! streaming schema (the keys that matter where the schema puts them, with values of any
//! type; other keys anywhere, nested, with strings full of escapes, quotes and colons; odd
//! numbers; whitespace), compact or pretty. The scan reads keys, not positions, so the
//! schema's keys appear only where the schema has them: that is its contract.

use super::{classify, full_parse};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z ]{0,6}",
        // quotes, colons, braces and escapes inside strings are where a scanner slips
        "[\"\\\\:{}\\[\\],a-z\u{e9}\u{1f600}]{0,8}",
        Just("\\u0000".to_string()),
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (0u64..5_000_000_000).prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|x| json!(x)),
        text().prop_map(Value::String),
    ]
}

/// Any JSON whose keys are not the schema's.
fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((other_key(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// The keys the scan looks at.
const SCHEMA_KEYS: [&str; 12] = [
    "text",
    "content",
    "reasoning_content",
    "reasoning",
    "finish_reason",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "error",
    "object",
    "choices",
    "delta",
];

/// A key the scan must skip (some look like the schema's: `text_offset`, `contents`).
fn other_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{1,8}",
        Just("text_offset".to_string()),
        Just("contents".to_string()),
        Just("role".to_string()),
    ]
    .prop_filter("not a schema key", |k| !SCHEMA_KEYS.contains(&k.as_str()))
}

/// A chunk-like object: `choices` of deltas or texts, maybe usage, maybe an error, plus
/// arbitrary extra fields anywhere.
fn chunk() -> impl Strategy<Value = Value> {
    let choice = (
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(prop_oneof![
            Just(json!(null)),
            text().prop_map(Value::String),
            scalar()
        ]),
        prop::collection::vec((other_key(), value()), 0..3),
        prop::option::of(scalar()),
    )
        .prop_map(|(content, txt, finish, extra, odd)| {
            let mut c = Map::new();
            if let Some(t) = txt {
                c.insert("text".into(), json!(t));
            }
            if let Some(t) = content {
                c.insert("delta".into(), json!({"role": "assistant", "content": t}));
            }
            // a schema key with a value of another type
            if let Some(v) = odd {
                c.insert("text".into(), v);
            }
            if let Some(f) = finish {
                c.insert("finish_reason".into(), f);
            }
            for (k, v) in extra {
                c.insert(k, v);
            }
            Value::Object(c)
        });
    let usage = prop_oneof![
        Just(Value::Null),
        (0u32..100_000, 0u32..100_000).prop_map(
            |(p, c)| json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
        ),
        (scalar(), scalar()).prop_map(|(p, c)| json!({"prompt_tokens": p, "completion_tokens": c})),
        value(),
    ];
    (
        prop::collection::vec(choice, 0..3),
        prop::option::of(usage),
        prop::option::of(value()),
        prop::collection::vec((other_key(), value()), 0..3),
    )
        .prop_map(|(choices, usage, error, extra)| {
            let mut m = Map::new();
            m.insert("id".into(), json!("cmpl-1"));
            for (k, v) in extra {
                m.insert(k, v);
            }
            m.insert("choices".into(), Value::Array(choices));
            if let Some(u) = usage {
                m.insert("usage".into(), u);
            }
            if let Some(e) = error {
                m.insert("error".into(), e);
            }
            Value::Object(m)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn the_scan_says_what_the_exact_parser_says(v in chunk(), pretty in any::<bool>()) {
        let bytes = if pretty {
            serde_json::to_vec_pretty(&v).unwrap()
        } else {
            serde_json::to_vec(&v).unwrap()
        };
        prop_assert_eq!(classify(&bytes), full_parse(&bytes), "{}", String::from_utf8_lossy(&bytes));
    }

    /// Any bytes at all: an answer, never a panic.
    #[test]
    fn any_bytes_get_an_answer(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = classify(&bytes);
    }
}
