use crate::otlp_json::scalars::{base64_decode, hex_decode, Base64, Hex};
use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::profiles::v1development::{
    Function, KeyValueAndUnit, Line, Link, Location, Mapping, Profile, ProfilesDictionary, ResourceProfiles,
    Sample, ScopeProfiles, Stack, ValueType,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::{json, Value as Json};

use super::{snake_case, walk};

fn encode(request: &ExportProfilesServiceRequest) -> Vec<u8> {
    crate::otlp_json::encode(request)
}

fn decode(bytes: &[u8]) -> Result<ExportProfilesServiceRequest, serde_json::Error> {
    crate::otlp_json::decode(bytes)
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

fn s(v: &str) -> String {
    v.to_owned()
}

/// A request as OTLP/JSON writers produce it (hex ids, 64-bit integers as strings), plus what a
/// receiver must tolerate: 64-bit integers as numbers, an original snake_case name, unknown
/// fields, nulls for absent fields, upper-case hex.
const SPEC_JSON: &str = r#"{
  "resourceProfiles": [{
    "resource": {
      "attributes": [
        {"key": "service.name", "value": {"stringValue": "checkout"}},
        {"key": "pid", "value": {"intValue": "4242"}},
        {"key": "threads", "value": {"intValue": 12}},
        {"key": "load", "value": {"doubleValue": 0.75}},
        {"key": "inf", "value": {"doubleValue": "-Infinity"}},
        {"key": "up", "value": {"boolValue": true}},
        {"key": "blob", "value": {"bytesValue": "AQID"}},
        {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "-1"}]}}},
        {"key": "nested", "value": {"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": false}}]}}},
        {"key": "interned", "value": {"stringValueStrindex": 3}},
        {"key": "empty", "value": {}},
        {"key": "no-value"}
      ],
      "droppedAttributesCount": 2,
      "entityRefs": [{"schemaUrl": "https://e", "type": "service", "idKeys": ["service.name"], "descriptionKeys": ["pid"]}]
    },
    "scopeProfiles": [{
      "scope": {"name": "ebpf-profiler", "version": "0.1", "attributes": [{"key": "x", "value": {"stringValue": "y"}}], "droppedAttributesCount": 1},
      "profiles": [{
        "sampleType": {"typeStrindex": 1, "unitStrindex": 2},
        "samples": [
          {"stackIndex": 1, "attributeIndices": [0, 1], "linkIndex": 1, "values": ["10", 20, "-30"], "timestampsUnixNano": ["1700000000000000001", 1700000000000000002]},
          {"stackIndex": null, "values": null, "someFutureField": {"a": [1, 2, {"b": null}]}}
        ],
        "timeUnixNano": "1700000000000000000",
        "durationNano": 10000000000,
        "periodType": {"typeStrindex": 3, "unitStrindex": 4},
        "period": "10000000",
        "profileId": "0102030405060708090A0B0C0D0E0F10",
        "droppedAttributesCount": 5,
        "originalPayloadFormat": "pprof",
        "originalPayload": "aGVsbG8",
        "attributeIndices": [2]
      }],
      "schemaUrl": null
    }],
    "schemaUrl": "https://opentelemetry.io/schemas/1.30.0"
  }],
  "dictionary": {
    "mappingTable": [{}, {"memoryStart": "4194304", "memory_limit": 8388608, "fileOffset": "4096", "filenameStrindex": 5, "attributeIndices": [1]}],
    "locationTable": [{}, {"mappingIndex": 1, "address": "4198400", "lines": [{"functionIndex": 1, "line": "42", "column": 7}], "attributeIndices": []}],
    "functionTable": [{}, {"nameStrindex": 6, "systemNameStrindex": 7, "filenameStrindex": 8, "startLine": "40"}],
    "linkTable": [{}, {"traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "eee19b7ec3c1b174"}],
    "stringTable": ["", "cpu", "nanoseconds", "cpu", "nanoseconds", "/bin/app", "main", "main.main", "main.go"],
    "attributeTable": [{}, {"keyStrindex": 1, "value": {"intValue": "7"}, "unitStrindex": 2}],
    "stackTable": [{}, {"locationIndices": [1]}],
    "unknownTable": [1, 2, 3]
  },
  "futureTopLevel": "ignored"
}"#;

#[test]
fn decodes_spec_json_field_by_field() {
    let req = decode(SPEC_JSON.as_bytes()).expect("decodes");
    assert_eq!(req.resource_profiles.len(), 1);
    let rp = &req.resource_profiles[0];
    assert_eq!(rp.schema_url, "https://opentelemetry.io/schemas/1.30.0");

    let resource = rp.resource.as_ref().expect("resource");
    assert_eq!(resource.dropped_attributes_count, 2);
    assert_eq!(
        resource.entity_refs,
        vec![EntityRef {
            schema_url: s("https://e"),
            r#type: s("service"),
            id_keys: vec![s("service.name")],
            description_keys: vec![s("pid")],
        }]
    );
    let attrs = &resource.attributes;
    assert_eq!(attrs.len(), 12);
    assert_eq!(attrs[0], kv("service.name", Value::StringValue(s("checkout"))));
    assert_eq!(attrs[1], kv("pid", Value::IntValue(4242)));
    assert_eq!(attrs[2], kv("threads", Value::IntValue(12)));
    assert_eq!(attrs[3], kv("load", Value::DoubleValue(0.75)));
    assert_eq!(attrs[4], kv("inf", Value::DoubleValue(f64::NEG_INFINITY)));
    assert_eq!(attrs[5], kv("up", Value::BoolValue(true)));
    assert_eq!(attrs[6], kv("blob", Value::BytesValue(vec![1, 2, 3])));
    let tags = ArrayValue {
        values: vec![
            AnyValue {
                value: Some(Value::StringValue(s("a"))),
            },
            AnyValue {
                value: Some(Value::IntValue(-1)),
            },
        ],
    };
    assert_eq!(attrs[7], kv("tags", Value::ArrayValue(tags)));
    let nested = KeyValueList {
        values: vec![kv("k", Value::BoolValue(false))],
    };
    assert_eq!(attrs[8], kv("nested", Value::KvlistValue(nested)));
    assert_eq!(attrs[9], kv("interned", Value::StringValueStrindex(3)));
    assert_eq!(attrs[10].value, Some(AnyValue { value: None }));
    assert_eq!(
        attrs[11],
        KeyValue {
            key: s("no-value"),
            value: None,
            key_strindex: 0
        }
    );

    assert_eq!(rp.scope_profiles.len(), 1);
    let sp = &rp.scope_profiles[0];
    assert_eq!(sp.schema_url, "");
    assert_eq!(
        sp.scope,
        Some(InstrumentationScope {
            name: s("ebpf-profiler"),
            version: s("0.1"),
            attributes: vec![kv("x", Value::StringValue(s("y")))],
            dropped_attributes_count: 1,
        })
    );

    let p = &sp.profiles[0];
    assert_eq!(
        p.sample_type,
        Some(ValueType {
            type_strindex: 1,
            unit_strindex: 2
        })
    );
    assert_eq!(
        p.period_type,
        Some(ValueType {
            type_strindex: 3,
            unit_strindex: 4
        })
    );
    assert_eq!(p.time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(p.duration_nano, 10_000_000_000);
    assert_eq!(p.period, 10_000_000);
    assert_eq!(p.profile_id, (1..=16).collect::<Vec<u8>>());
    assert_eq!(p.dropped_attributes_count, 5);
    assert_eq!(p.original_payload_format, "pprof");
    assert_eq!(p.original_payload, b"hello");
    assert_eq!(p.attribute_indices, vec![2]);
    assert_eq!(
        p.samples,
        vec![
            Sample {
                stack_index: 1,
                attribute_indices: vec![0, 1],
                link_index: 1,
                values: vec![10, 20, -30],
                timestamps_unix_nano: vec![1_700_000_000_000_000_001, 1_700_000_000_000_000_002],
            },
            Sample::default(),
        ]
    );

    let d = req.dictionary.as_ref().expect("dictionary");
    assert_eq!(
        d.mapping_table,
        vec![
            Mapping::default(),
            Mapping {
                memory_start: 0x40_0000,
                memory_limit: 0x80_0000,
                file_offset: 4096,
                filename_strindex: 5,
                attribute_indices: vec![1],
            }
        ]
    );
    assert_eq!(
        d.location_table,
        vec![
            Location::default(),
            Location {
                mapping_index: 1,
                address: 0x40_1000,
                lines: vec![Line {
                    function_index: 1,
                    line: 42,
                    column: 7
                }],
                attribute_indices: vec![],
            }
        ]
    );
    assert_eq!(
        d.function_table[1],
        Function {
            name_strindex: 6,
            system_name_strindex: 7,
            filename_strindex: 8,
            start_line: 40
        }
    );
    assert_eq!(d.link_table[0], Link::default());
    assert_eq!(
        hex_of(&d.link_table[1].trace_id),
        "5b8efff798038103d269b633813fc60c"
    );
    assert_eq!(hex_of(&d.link_table[1].span_id), "eee19b7ec3c1b174");
    assert_eq!(d.string_table.len(), 9);
    assert_eq!(d.string_table[7], "main.main");
    assert_eq!(
        d.attribute_table[1],
        KeyValueAndUnit {
            key_strindex: 1,
            value: Some(AnyValue {
                value: Some(Value::IntValue(7))
            }),
            unit_strindex: 2,
        }
    );
    assert_eq!(
        d.stack_table,
        vec![
            Stack::default(),
            Stack {
                location_indices: vec![1]
            }
        ]
    );
}

fn hex_of(b: &[u8]) -> String {
    Hex(b).to_string()
}

/// Every field of every message set, each to a distinct non-default value.
fn full_request() -> ExportProfilesServiceRequest {
    let any = |v: Value| Some(AnyValue { value: Some(v) });
    let all_values = vec![
        KeyValue {
            key: s("str"),
            value: any(Value::StringValue(s("v"))),
            key_strindex: 11,
        },
        kv("empty-str", Value::StringValue(String::new())),
        kv("bool", Value::BoolValue(true)),
        kv("false", Value::BoolValue(false)),
        kv("int", Value::IntValue(i64::MIN)),
        kv("zero", Value::IntValue(0)),
        kv("double", Value::DoubleValue(-2.5e-300)),
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
        kv(
            "kvlist",
            Value::KvlistValue(KeyValueList {
                values: vec![kv("inner", Value::DoubleValue(1.0))],
            }),
        ),
        kv("strindex", Value::StringValueStrindex(12)),
        KeyValue {
            key: s("unset"),
            value: Some(AnyValue { value: None }),
            key_strindex: 0,
        },
        KeyValue {
            key: s("absent"),
            value: None,
            key_strindex: 13,
        },
    ];
    let profile = Profile {
        sample_type: Some(ValueType {
            type_strindex: 1,
            unit_strindex: 2,
        }),
        samples: vec![
            Sample {
                stack_index: 3,
                attribute_indices: vec![4, 5],
                link_index: 6,
                values: vec![i64::MIN, -1, i64::MAX],
                timestamps_unix_nano: vec![u64::MAX, 7],
            },
            Sample::default(),
        ],
        time_unix_nano: 1_700_000_000_123_456_789,
        duration_nano: u64::MAX,
        period_type: Some(ValueType::default()),
        period: -8,
        profile_id: vec![0xab; 16],
        dropped_attributes_count: u32::MAX,
        original_payload_format: s("pprof-gzip"),
        original_payload: vec![0x1f, 0x8b, 8, 0, 0xff],
        attribute_indices: vec![9, i32::MAX],
    };
    ExportProfilesServiceRequest {
        resource_profiles: vec![ResourceProfiles {
            resource: Some(Resource {
                attributes: all_values.clone(),
                dropped_attributes_count: 14,
                entity_refs: vec![EntityRef {
                    schema_url: s("https://entity"),
                    r#type: s("host"),
                    id_keys: vec![s("host.id"), s("host.name")],
                    description_keys: vec![s("os.type")],
                }],
            }),
            scope_profiles: vec![ScopeProfiles {
                scope: Some(InstrumentationScope {
                    name: s("scope"),
                    version: s("9.9"),
                    attributes: all_values[..3].to_vec(),
                    dropped_attributes_count: 15,
                }),
                profiles: vec![profile, Profile::default()],
                schema_url: s("https://scope-schema"),
            }],
            schema_url: s("https://resource-schema"),
        }],
        dictionary: Some(ProfilesDictionary {
            mapping_table: vec![
                Mapping::default(),
                Mapping {
                    memory_start: 0x7f00_0000_0000,
                    memory_limit: u64::MAX,
                    file_offset: 0x1000,
                    filename_strindex: 16,
                    attribute_indices: vec![17],
                },
            ],
            location_table: vec![Location {
                mapping_index: 18,
                address: 0xffff_ffff_ffff_fff0,
                lines: vec![
                    Line {
                        function_index: 19,
                        line: 20,
                        column: -21,
                    },
                    Line {
                        function_index: 0,
                        line: i64::MAX,
                        column: 0,
                    },
                ],
                attribute_indices: vec![22],
            }],
            function_table: vec![Function {
                name_strindex: 23,
                system_name_strindex: 24,
                filename_strindex: 25,
                start_line: 26,
            }],
            link_table: vec![
                Link::default(),
                Link {
                    trace_id: vec![
                        0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80,
                        0x31, 0x9c,
                    ],
                    span_id: vec![0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31],
                },
            ],
            string_table: vec![
                String::new(),
                s("cpu"),
                s("nanoseconds"),
                s("ünïcödé \"quoted\"\n"),
            ],
            attribute_table: vec![KeyValueAndUnit {
                key_strindex: 27,
                value: any(Value::StringValue(s("attr"))),
                unit_strindex: 28,
            }],
            stack_table: vec![
                Stack {
                    location_indices: vec![0, 29, 30],
                },
                Stack::default(),
            ],
        }),
    }
}

#[test]
fn encode_writes_otlp_json_forms() {
    let req = full_request();
    let out: Json = serde_json::from_slice(&encode(&req)).expect("valid JSON");

    let link = &out["dictionary"]["linkTable"][1];
    assert_eq!(link["traceId"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(link["spanId"], "b7ad6b7169203331");
    assert_eq!(out["dictionary"]["linkTable"][0], json!({}));

    let profile = &out["resourceProfiles"][0]["scopeProfiles"][0]["profiles"][0];
    assert_eq!(profile["profileId"], "abababababababababababababababab");
    assert_eq!(profile["timeUnixNano"], "1700000000123456789");
    assert_eq!(profile["durationNano"], "18446744073709551615");
    assert_eq!(profile["period"], "-8");
    assert_eq!(profile["periodType"], json!({}));
    assert_eq!(
        profile["sampleType"],
        json!({"typeStrindex": 1, "unitStrindex": 2})
    );
    assert_eq!(profile["droppedAttributesCount"], 4_294_967_295u32);
    assert_eq!(profile["originalPayload"], "H4sIAP8=");
    assert_eq!(profile["attributeIndices"], json!([9, i32::MAX]));
    assert_eq!(
        profile["samples"][0],
        json!({
            "stackIndex": 3,
            "attributeIndices": [4, 5],
            "linkIndex": 6,
            "values": ["-9223372036854775808", "-1", "9223372036854775807"],
            "timestampsUnixNano": ["18446744073709551615", "7"],
        })
    );
    // Defaults are left out, not written as zeros or empty arrays.
    assert_eq!(profile["samples"][1], json!({}));
    assert_eq!(
        out["resourceProfiles"][0]["scopeProfiles"][0]["profiles"][1],
        json!({})
    );

    let dict = &out["dictionary"];
    assert_eq!(
        dict["mappingTable"][1],
        json!({
            "memoryStart": "139637976727552",
            "memoryLimit": "18446744073709551615",
            "fileOffset": "4096",
            "filenameStrindex": 16,
            "attributeIndices": [17],
        })
    );
    assert_eq!(dict["locationTable"][0]["address"], "18446744073709551600");
    assert_eq!(
        dict["locationTable"][0]["lines"][0],
        json!({"functionIndex": 19, "line": "20", "column": "-21"})
    );
    assert_eq!(dict["functionTable"][0]["startLine"], "26");
    assert_eq!(dict["stringTable"][0], "");

    let attrs = &out["resourceProfiles"][0]["resource"]["attributes"];
    assert_eq!(
        attrs[0],
        json!({"key": "str", "value": {"stringValue": "v"}, "keyStrindex": 11})
    );
    assert_eq!(attrs[1]["value"], json!({"stringValue": ""}));
    assert_eq!(attrs[4]["value"], json!({"intValue": "-9223372036854775808"}));
    assert_eq!(attrs[5]["value"], json!({"intValue": "0"}));
    assert_eq!(attrs[7]["value"], json!({"bytesValue": "/wD+AQ=="}));
    assert_eq!(attrs[10]["value"], json!({"stringValueStrindex": 12}));
    assert_eq!(attrs[11], json!({"key": "unset", "value": {}}));
    assert_eq!(attrs[12], json!({"key": "absent", "keyStrindex": 13}));
    assert_eq!(
        out["resourceProfiles"][0]["resource"]["entityRefs"][0],
        json!({"schemaUrl": "https://entity", "type": "host", "idKeys": ["host.id", "host.name"], "descriptionKeys": ["os.type"]})
    );

    // No snake_case keys and no arrays of numbers standing in for bytes anywhere.
    walk(&out, &mut |key, value| {
        assert!(!key.contains('_'), "snake_case key {key}");
        if ["traceId", "spanId", "profileId", "originalPayload", "bytesValue"].contains(&key) {
            assert!(value.is_string(), "{key} is {value}");
        }
    });
}

#[test]
fn empty_request_is_an_empty_object() {
    assert_eq!(encode(&ExportProfilesServiceRequest::default()), b"{}");
    assert_eq!(
        decode(b"{}").expect("decodes"),
        ExportProfilesServiceRequest::default()
    );
    assert_eq!(
        decode(b" {\"resourceProfiles\": null, \"dictionary\": null} ").expect("decodes"),
        Default::default()
    );
}

#[test]
fn round_trips_every_field() {
    let req = full_request();
    super::round_trips(&req);
}

#[test]
fn decodes_original_snake_case_names() {
    let req = full_request();
    let camel: Json = serde_json::from_slice(&encode(&req)).expect("valid JSON");
    let snake = serde_json::to_vec(&snake_case(camel)).expect("serializes");
    assert!(String::from_utf8_lossy(&snake).contains("\"time_unix_nano\""));
    assert_eq!(decode(&snake).expect("decodes"), req);
}

#[test]
fn doubles_outside_json_numbers() {
    let req = |v: f64| ExportProfilesServiceRequest {
        dictionary: Some(ProfilesDictionary {
            attribute_table: vec![KeyValueAndUnit {
                value: Some(AnyValue {
                    value: Some(Value::DoubleValue(v)),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let double_of =
        |r: &ExportProfilesServiceRequest| match r.dictionary.as_ref().map(|d| &d.attribute_table[0].value) {
            Some(Some(AnyValue {
                value: Some(Value::DoubleValue(v)),
            })) => *v,
            other => panic!("not a double: {other:?}"),
        };
    for (v, text) in [
        (f64::INFINITY, "\"Infinity\""),
        (f64::NEG_INFINITY, "\"-Infinity\""),
        (f64::NAN, "\"NaN\""),
    ] {
        let bytes = encode(&req(v));
        let json = String::from_utf8(bytes.clone()).expect("utf-8");
        assert!(json.contains(&format!("\"doubleValue\":{text}")), "{json}");
        let back = double_of(&decode(&bytes).expect("decodes"));
        assert!(back == v || (v.is_nan() && back.is_nan()));
    }
    let from = |value: &str| {
        let doc =
            format!(r#"{{"dictionary": {{"attributeTable": [{{"value": {{"doubleValue": {value}}}}}]}}}}"#);
        decode(doc.as_bytes()).map(|r| double_of(&r))
    };
    assert_eq!(from("3").expect("integer"), 3.0);
    assert_eq!(from("\"2.5\"").expect("numeric string"), 2.5);
    assert!(from("\"two\"").is_err());
    assert!(from("true").is_err());
}

#[test]
fn integers_accept_numbers_and_strings_within_range() {
    let mapping = |body: &str| {
        let doc = format!(r#"{{"dictionary": {{"mappingTable": [{{{body}}}]}}}}"#);
        decode(doc.as_bytes()).map(|r| r.dictionary.unwrap_or_default().mapping_table[0].clone())
    };
    assert_eq!(
        mapping(r#""memoryStart": "18446744073709551615""#)
            .unwrap()
            .memory_start,
        u64::MAX
    );
    assert_eq!(
        mapping(r#""memoryStart": 18446744073709551615"#)
            .unwrap()
            .memory_start,
        u64::MAX
    );
    assert_eq!(mapping(r#""memoryStart": 1e3"#).unwrap().memory_start, 1000);
    assert_eq!(mapping(r#""memoryStart": "1e3""#).unwrap().memory_start, 1000);
    assert_eq!(mapping(r#""memoryStart": 2.0"#).unwrap().memory_start, 2);
    assert_eq!(
        mapping(r#""filenameStrindex": "7""#).unwrap().filename_strindex,
        7
    );
    assert_eq!(
        mapping(r#""attributeIndices": ["1", 2]"#)
            .unwrap()
            .attribute_indices,
        vec![1, 2]
    );
    for bad in [
        r#""memoryStart": "18446744073709551616""#,
        r#""memoryStart": -1"#,
        r#""memoryStart": "-1""#,
        r#""memoryStart": 1.5"#,
        r#""memoryStart": "0x10""#,
        r#""memoryStart": "inf""#,
        r#""memoryStart": "NaN""#,
        r#""memoryStart": 1e30"#,
        r#""memoryStart": """#,
        r#""memoryStart": true"#,
        r#""memoryStart": {}"#,
        r#""filenameStrindex": 2147483648"#,
        r#""filenameStrindex": "-2147483649""#,
        r#""attributeIndices": [1, null]"#,
        r#""attributeIndices": 1"#,
    ] {
        assert!(mapping(bad).is_err(), "{bad} was accepted");
    }
}

#[test]
fn base64_codec() {
    // RFC 4648 section 10 vectors.
    let vectors = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];
    for (plain, encoded) in vectors {
        assert_eq!(Base64(plain.as_bytes()).to_string(), encoded);
        assert_eq!(base64_decode(encoded).as_deref(), Some(plain.as_bytes()));
        assert_eq!(
            base64_decode(encoded.trim_end_matches('=')).as_deref(),
            Some(plain.as_bytes())
        );
    }
    let all: Vec<u8> = (0..=255).collect();
    assert_eq!(base64_decode(&Base64(&all).to_string()), Some(all));
    // URL-safe alphabet, as protobuf JSON parsers accept.
    assert_eq!(base64_decode("_-8"), Some(vec![0xff, 0xef]));
    for bad in [
        "Z", "Zg=", "Zg===", "Z===", "Zm9v=", "Zm9vYg=", "Zg==Zg==", "Zm 9v", "Zm9v\n", "é",
    ] {
        assert_eq!(base64_decode(bad), None, "{bad:?}");
    }
}

#[test]
fn hex_codec() {
    assert_eq!(hex_decode(""), Some(vec![]));
    assert_eq!(hex_decode("00fFaB"), Some(vec![0, 0xff, 0xab]));
    assert_eq!(Hex(&[0, 0xff, 0xab]).to_string(), "00ffab");
    for bad in ["0", "abc", "zz", "0x12", "+1", "é0", "1 "] {
        assert_eq!(hex_decode(bad), None, "{bad:?}");
    }
}

#[test]
fn garbage_is_an_error() {
    let link = |body: &str| format!(r#"{{"dictionary": {{"linkTable": [{{{body}}}]}}}}"#);
    let profile = |body: &str| {
        format!(r#"{{"resourceProfiles": [{{"scopeProfiles": [{{"profiles": [{{{body}}}]}}]}}]}}"#)
    };
    let cases = [
        String::new(),
        s("   "),
        s("null"),
        s("[]"),
        s("\"resourceProfiles\""),
        s("{"),
        s(r#"{"resourceProfiles": [{"#),
        s(r#"{"resourceProfiles": 5}"#),
        s(r#"{"resourceProfiles": [5]}"#),
        s(r#"{"resourceProfiles": {}}"#),
        s(r#"{"dictionary": []}"#),
        s(r#"{"dictionary": {"stringTable": [1]}}"#),
        s(r#"{"dictionary": {"stringTable": [null]}}"#),
        s(r#"{} trailing"#),
        link(r#""traceId": "zz""#),
        link(r#""traceId": "abc""#),
        link(r#""spanId": [1, 2, 3]"#),
        link(r#""spanId": 12"#),
        link(r#""traceId": "5b8efff798038103d269b633813fc60g""#),
        profile(r#""profileId": "0x01""#),
        profile(r#""originalPayload": "not base64!""#),
        profile(r#""originalPayload": "QQ=""#),
        profile(r#""originalPayload": [104, 105]"#),
        profile(r#""samples": [{"values": ["1", "x"]}]"#),
        profile(r#""samples": [{"stackIndex": "abc"}]"#),
        profile(r#""samples": "x""#),
        profile(r#""sampleType": 3"#),
        profile(r#""originalPayloadFormat": 3"#),
        profile(r#""timeUnixNano": -5"#),
        s(
            r#"{"resourceProfiles": [{"resource": {"attributes": [{"key": "k", "value": {"stringValue": "a", "intValue": "1"}}]}}]}"#,
        ),
        s(
            r#"{"resourceProfiles": [{"resource": {"attributes": [{"key": "k", "value": {"boolValue": "true"}}]}}]}"#,
        ),
        s(
            r#"{"resourceProfiles": [{"resource": {"attributes": [{"key": "k", "value": {"bytesValue": "%%"}}]}}]}"#,
        ),
        s(r#"{"resourceProfiles": [{"resource": {"attributes": [{"key": "k", "value": 1}]}}]}"#),
        s(r#"{"resourceProfiles": [{"resource": {"attributes": [{"key": 1}]}}]}"#),
    ];
    for case in &cases {
        assert!(decode(case.as_bytes()).is_err(), "accepted: {case}");
    }
    assert!(decode(&[0xff, 0xfe, b'{', b'}']).is_err());
    assert!(decode(b"{\"dictionary\": {\"stringTable\": [\"\xff\"]}}").is_err());
}

#[test]
fn damage_is_an_error_never_a_panic() {
    super::damage_is_an_error_never_a_panic(&full_request());
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let depth = 10_000;
    let mut doc = s(r#"{"dictionary": {"attributeTable": [{"value": "#);
    doc.push_str(&r#"{"arrayValue": {"values": ["#.repeat(depth));
    doc.push_str(&"]}}".repeat(depth));
    doc.push_str("}]}}");
    assert!(decode(doc.as_bytes()).is_err());

    // Nesting within the limit still decodes.
    let depth = 20;
    let mut doc = s(r#"{"dictionary": {"attributeTable": [{"value": "#);
    doc.push_str(&r#"{"kvlistValue": {"values": [{"key": "k", "value": "#.repeat(depth));
    doc.push_str(r#"{"intValue": 1}"#);
    doc.push_str(&"}]}}".repeat(depth));
    doc.push_str("}]}}");
    let req = decode(doc.as_bytes()).expect("decodes");
    assert_eq!(decode(&encode(&req)).expect("round trip"), req);
}

#[test]
fn long_bad_strings_are_not_copied_into_the_error() {
    let id = "z".repeat(100_000);
    let doc = format!(r#"{{"dictionary": {{"linkTable": [{{"traceId": "{id}"}}]}}}}"#);
    let err = decode(doc.as_bytes()).expect_err("bad hex");
    assert!(err.to_string().len() < 200, "{err}");
}

/// A profiles request in the shape the OpenTelemetry Collector (v0.165) writes it: resource
/// attributes as string-table references, `"scope":{}`, `"value":{}` on the zero attribute.
/// Both forms decode, resolve to the same attributes, and survive a round trip unchanged.
#[test]
fn resource_attributes_by_reference_as_otelcol_writes_them() {
    let referenced = r#"{"resourceProfiles":[{"resource":{"attributes":[{"value":{"stringValueStrindex":3},"keyStrindex":2}]},
      "scopeProfiles":[{"scope":{},"profiles":[{"sampleType":{"typeStrindex":4,"unitStrindex":5},
      "samples":[{"stackIndex":1,"linkIndex":1,"values":["7"]}],"timeUnixNano":"1700000000000000000"}]}]}],
      "dictionary":{"mappingTable":[{}],"locationTable":[{},{"lines":[{"functionIndex":1}]}],
      "functionTable":[{},{"nameStrindex":1}],
      "linkTable":[{},{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"0000000000000301"}],
      "stringTable":["","main.work","service.name","shop","samples","count"],
      "attributeTable":[{"value":{}}],"stackTable":[{},{"locationIndices":[1]}]}}"#;
    let inline = referenced.replace(
        r#"{"value":{"stringValueStrindex":3},"keyStrindex":2}"#,
        r#"{"key":"service.name","value":{"stringValue":"shop"}}"#,
    );
    let by_reference = decode(referenced.as_bytes()).expect("decodes");
    let by_value = decode(inline.as_bytes()).expect("decodes");
    let attrs = |r: &ExportProfilesServiceRequest| {
        r.resource_profiles[0]
            .resource
            .clone()
            .expect("resource")
            .attributes
    };
    assert_eq!(
        attrs(&by_reference),
        [KeyValue {
            key: String::new(),
            value: Some(AnyValue {
                value: Some(Value::StringValueStrindex(3))
            }),
            key_strindex: 2,
        }]
    );
    assert_eq!(
        attrs(&by_value),
        [kv("service.name", Value::StringValue(s("shop")))]
    );
    let (a, b) = (
        crate::ProfilesBatch::from_request(by_reference.clone()),
        crate::ProfilesBatch::from_request(by_value.clone()),
    );
    assert_eq!(
        a.resolved_attributes(&attrs(&by_reference)),
        b.resolved_attributes(&attrs(&by_value))
    );
    for request in [by_reference, by_value] {
        assert_eq!(decode(&encode(&request)).expect("round trip"), request);
    }
}
