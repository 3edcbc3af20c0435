//! Tests of the OTLP/JSON codec, one file per signal. Each signal's file also has the cases
//! the derive-based decoding got wrong, run through the batch types that receivers call.

mod logs;
mod metrics;
mod profiles;
mod traces;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::Value as Json;

/// Calls `f` with every object key and its value, depth first.
fn walk(v: &Json, f: &mut dyn FnMut(&str, &Json)) {
    match v {
        Json::Object(map) => {
            for (k, v) in map {
                f(k, v);
                walk(v, f);
            }
        }
        Json::Array(items) => items.iter().for_each(|v| walk(v, f)),
        _ => {}
    }
}

/// The same document with every key in snake_case, as the .proto spells the fields.
fn snake_case(v: Json) -> Json {
    match v {
        Json::Object(map) => Json::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let mut out = String::new();
                    for c in k.chars() {
                        if c.is_ascii_uppercase() {
                            out.push('_');
                        }
                        out.push(c.to_ascii_lowercase());
                    }
                    (out, snake_case(v))
                })
                .collect(),
        ),
        Json::Array(items) => Json::Array(items.into_iter().map(snake_case).collect()),
        other => other,
    }
}

/// Asserts every key is lowerCamelCase and every id a hex string.
fn assert_otlp_keys(out: &Json) {
    walk(out, &mut |key, value| {
        assert!(!key.contains('_'), "snake_case key {key}");
        if ["traceId", "spanId", "parentSpanId"].contains(&key) {
            assert!(value.is_string(), "{key} is {value}");
        }
    });
}

/// Equality through the protobuf encoding: exact to the bit, and NaN equals itself there.
fn same_protobuf<T: prost::Message>(a: &T, b: &T) -> bool {
    a.encode_to_vec() == b.encode_to_vec()
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

/// Attributes with every kind of value, the doubles JSON numbers cannot hold included.
fn every_value() -> Vec<KeyValue> {
    vec![
        kv("str", Value::StringValue("v".into())),
        kv("empty-str", Value::StringValue(String::new())),
        kv("bool", Value::BoolValue(true)),
        kv("false", Value::BoolValue(false)),
        kv("int", Value::IntValue(i64::MIN)),
        kv("zero", Value::IntValue(0)),
        kv("double", Value::DoubleValue(-2.5e-300)),
        kv("nan", Value::DoubleValue(f64::NAN)),
        kv("inf", Value::DoubleValue(f64::INFINITY)),
        kv("-inf", Value::DoubleValue(f64::NEG_INFINITY)),
        kv("bytes", Value::BytesValue(vec![0xff, 0, 0xfe, 1])),
        kv(
            "array",
            Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(Value::IntValue(i64::MAX)),
                    },
                    AnyValue { value: None },
                ],
            }),
        ),
        kv("empty-array", Value::ArrayValue(ArrayValue::default())),
        kv(
            "kvlist",
            Value::KvlistValue(KeyValueList {
                values: vec![kv("inner", Value::DoubleValue(1.0))],
            }),
        ),
        kv("empty-kvlist", Value::KvlistValue(KeyValueList::default())),
        KeyValue {
            key: String::new(),
            value: Some(AnyValue { value: None }),
            key_strindex: 0,
        },
        KeyValue {
            key: "absent".into(),
            value: None,
            key_strindex: 0,
        },
    ]
}

fn resource() -> Resource {
    Resource {
        attributes: every_value(),
        dropped_attributes_count: 14,
        entity_refs: vec![
            EntityRef {
                schema_url: "https://entity".into(),
                r#type: "host".into(),
                id_keys: vec!["host.id".into()],
                description_keys: vec!["os.type".into()],
            },
            EntityRef {
                r#type: "service".into(),
                ..Default::default()
            },
        ],
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "scope".into(),
        version: "9.9".into(),
        attributes: every_value()[..3].to_vec(),
        dropped_attributes_count: 15,
    }
}

/// A 16-byte trace id and an 8-byte span id, distinct per `n`.
fn trace_id(n: u8) -> Vec<u8> {
    (0..16).map(|i| n ^ (i * 17)).collect()
}

fn span_id(n: u8) -> Vec<u8> {
    (0..8).map(|i| n.wrapping_add(i * 31) | 1).collect()
}

/// `req` encoded reads back the same, and encodes again to the same bytes (stable output).
fn round_trips<R: crate::otlp_json::Request + prost::Message + std::fmt::Debug>(req: &R) {
    let bytes = crate::otlp_json::encode(req);
    let back: R = crate::otlp_json::decode(&bytes).expect("decodes");
    assert!(same_protobuf(&back, req), "{back:?}");
    assert_eq!(crate::otlp_json::encode(&back), bytes);
}

/// `req` encoded, then every key turned to snake_case, reads back the same; `keys` are some
/// of its snake_case keys, to show the turn happened.
fn decodes_in_snake_case<R: crate::otlp_json::Request + prost::Message>(req: &R, keys: &[&str]) {
    let camel: Json = serde_json::from_slice(&crate::otlp_json::encode(req)).expect("valid JSON");
    let snake = serde_json::to_vec(&snake_case(camel)).expect("serializes");
    let text = String::from_utf8_lossy(&snake);
    assert!(keys.iter().all(|k| text.contains(&format!("\"{k}\""))), "{text}");
    let back: R = crate::otlp_json::decode(&snake).expect("decodes");
    assert!(same_protobuf(&back, req));
}

/// Every prefix of `req`'s encoding is an error, and random edits of it never panic.
fn damage_is_an_error_never_a_panic<R: crate::otlp_json::Request>(req: &R) {
    let bytes = crate::otlp_json::encode(req);
    for len in 0..bytes.len() {
        assert!(
            crate::otlp_json::decode::<R>(&bytes[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
    mutations_never_panic(&bytes, |b| {
        let _ = crate::otlp_json::decode::<R>(b);
    });
}

/// Random edits of a valid document, decoded by `decode`: an error or not, never a panic.
fn mutations_never_panic(bytes: &[u8], decode: impl Fn(&[u8])) {
    let snippets: [&[u8]; 10] = [
        b"\"",
        b"{",
        b"]",
        b"null",
        b"-",
        b"\"zz\"",
        b"1e999",
        b"\\u0000",
        b"\"NaN\"",
        b"\"SPAN_KIND_SERVER\"",
    ];
    // A fixed xorshift sequence keeps the test deterministic.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let mut input = bytes.to_vec();
        for _ in 0..1 + next() % 4 {
            let at = (next() % input.len() as u64) as usize;
            match next() % 3 {
                0 => input[at] = next() as u8,
                1 => {
                    input.remove(at);
                }
                _ => {
                    let snippet = snippets[(next() % snippets.len() as u64) as usize];
                    input.splice(at..at, snippet.iter().copied());
                }
            }
        }
        decode(&input);
    }
}
