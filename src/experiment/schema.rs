//! The JSON Schema of experiment files, generated from the field table (`fields`), so an
//! editor completes and checks keys. Checked in as `schema/experiment.schema.json`; a test
//! fails when that file is stale.

use super::fields::{Field, Kind, SECTIONS, TOP};
use serde_json::{Map, Value, json};

fn kind_schema(k: Kind) -> Value {
    match k {
        Kind::Str => json!({"type": "string"}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Int(min) => json!({"type": "integer", "minimum": min}),
        Kind::Num {
            min,
            strict: true,
            max,
        } => json!({"type": "number", "exclusiveMinimum": min, "maximum": max}),
        Kind::Num {
            min,
            strict: false,
            max,
        } => json!({"type": "number", "minimum": min, "maximum": max}),
        Kind::Enum(v) => json!({"enum": v}),
        Kind::Rate => {
            json!({"oneOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": super::fields::MAX_RATE}, {"const": "inf"}]})
        }
        Kind::Bound => {
            json!({"oneOf": [{"type": "number", "exclusiveMinimum": 0}, {"const": "inf"}]})
        }
        Kind::StrList => json!({"type": "array", "items": {"type": "string"}, "minItems": 1}),
        Kind::StrMap => {
            json!({"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}})
        }
    }
}

fn field_schema(f: &Field) -> Value {
    let mut s = kind_schema(f.kind);
    let o = s.as_object_mut().expect("object");
    o.insert("description".into(), json!(f.doc));
    if let Some(d) = f.default {
        let v: serde_yaml::Value = serde_yaml::from_str(d).expect("valid default");
        o.insert("default".into(), serde_json::to_value(v).expect("json"));
    }
    s
}

pub fn generate() -> Value {
    let mut props = Map::new();
    for f in TOP {
        props.insert(f.name.into(), field_schema(f));
    }
    let mut matrix = Map::new();
    for s in SECTIONS {
        let mut sp = Map::new();
        for f in s.fields {
            sp.insert(f.name.into(), field_schema(f));
            if f.matrix {
                matrix.insert(
                    f.name.into(),
                    json!({"description": format!("values of `{}.{}`: {}", s.name, f.name, f.doc), "type": "array", "minItems": 1, "items": kind_schema(f.kind)}),
                );
            }
        }
        props.insert(
            s.name.into(),
            json!({"type": "object", "description": s.doc, "additionalProperties": false, "properties": sp}),
        );
    }
    props.insert(
        "matrix".into(),
        json!({"type": "object", "description": "dimensions of the experiment: each key lists the values to run", "additionalProperties": false, "properties": matrix}),
    );
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "vllm-loadtest experiment",
        "type": "object",
        "required": ["name"],
        "additionalProperties": false,
        "properties": props,
    })
}
