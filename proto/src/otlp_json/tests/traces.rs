use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValueList};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use serde_json::{json, Value as Json};

use super::{assert_otlp_keys, every_value, kv, resource, same_protobuf, scope, span_id, trace_id};
use crate::{Encoding, TracesBatch};

fn encode(request: &ExportTraceServiceRequest) -> Vec<u8> {
    crate::otlp_json::encode(request)
}

fn decode(bytes: &[u8]) -> Result<ExportTraceServiceRequest, serde_json::Error> {
    crate::otlp_json::decode(bytes)
}

/// Every field of every message set, each to a distinct non-default value.
fn full_request() -> ExportTraceServiceRequest {
    let span = Span {
        trace_id: trace_id(1),
        span_id: span_id(2),
        trace_state: "rojo=00f067aa0ba902b7".into(),
        parent_span_id: span_id(3),
        flags: 0x301,
        name: "charge".into(),
        kind: 3,
        start_time_unix_nano: 1_700_000_000_123_456_789,
        end_time_unix_nano: u64::MAX,
        attributes: every_value(),
        dropped_attributes_count: u32::MAX,
        events: vec![
            Event {
                time_unix_nano: 1_700_000_000_200_000_000,
                name: "retry".into(),
                attributes: every_value()[..4].to_vec(),
                dropped_attributes_count: 4,
            },
            Event::default(),
        ],
        dropped_events_count: 5,
        links: vec![
            Link {
                trace_id: trace_id(6),
                span_id: span_id(7),
                trace_state: "congo=t61rcWkgMzE".into(),
                attributes: every_value()[4..8].to_vec(),
                dropped_attributes_count: 8,
                flags: 0x100,
            },
            Link::default(),
        ],
        dropped_links_count: 9,
        status: Some(Status {
            message: "declined".into(),
            code: 2,
        }),
    };
    // Enum numbers the .proto does not name are kept, as protobuf keeps them.
    let future = Span {
        trace_id: trace_id(10),
        span_id: span_id(11),
        kind: 99,
        status: Some(Status {
            message: String::new(),
            code: -1,
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(resource()),
                scope_spans: vec![
                    ScopeSpans {
                        scope: Some(scope()),
                        spans: vec![span, future],
                        schema_url: "https://scope-schema".into(),
                    },
                    ScopeSpans::default(),
                ],
                schema_url: "https://resource-schema".into(),
            },
            ResourceSpans::default(),
        ],
    }
}

#[test]
fn round_trips_every_field() {
    let req = full_request();
    super::round_trips(&req);

    // And through the batch, as receivers and exporters use it.
    let batch = TracesBatch::from_resource_spans(req.resource_spans.clone());
    let again = TracesBatch::decode(&batch.encode(Encoding::Json), Encoding::Json).expect("decodes");
    assert_eq!(again.span_count(), 2);
    let again = ExportTraceServiceRequest {
        resource_spans: again.resource_spans(),
    };
    let batch = ExportTraceServiceRequest {
        resource_spans: batch.resource_spans(),
    };
    assert!(same_protobuf(&again, &batch));
}

#[test]
fn encode_writes_otlp_json_forms() {
    let out: Json = serde_json::from_slice(&encode(&full_request())).expect("valid JSON");
    assert_otlp_keys(&out);
    let spans = &out["resourceSpans"][0]["scopeSpans"][0]["spans"];
    let span = &spans[0];
    assert_eq!(span["traceId"], hex::encode(trace_id(1)));
    assert_eq!(span["spanId"], hex::encode(span_id(2)));
    assert_eq!(span["parentSpanId"], hex::encode(span_id(3)));
    assert_eq!(span["flags"], 0x301);
    assert_eq!(span["kind"], 3);
    assert_eq!(span["startTimeUnixNano"], "1700000000123456789");
    assert_eq!(span["endTimeUnixNano"], "18446744073709551615");
    assert_eq!(span["droppedAttributesCount"], u32::MAX);
    assert_eq!(span["status"], json!({"message": "declined", "code": 2}));
    assert_eq!(span["events"][1], json!({}));
    assert_eq!(span["links"][0]["flags"], 0x100);
    assert_eq!(spans[1]["kind"], 99);
    assert_eq!(spans[1]["status"], json!({"code": -1}));

    let attrs = &span["attributes"];
    assert_eq!(attrs[4]["value"], json!({"intValue": "-9223372036854775808"}));
    assert_eq!(attrs[7]["value"], json!({"doubleValue": "NaN"}));
    assert_eq!(attrs[8]["value"], json!({"doubleValue": "Infinity"}));
    assert_eq!(attrs[9]["value"], json!({"doubleValue": "-Infinity"}));
    assert_eq!(attrs[12]["value"], json!({"arrayValue": {}}));
    assert_eq!(attrs[14]["value"], json!({"kvlistValue": {}}));
    assert_eq!(attrs[15], json!({"value": {}}));
    assert_eq!(
        out["resourceSpans"][0]["resource"]["entityRefs"][1],
        json!({"type": "service"})
    );
    assert_eq!(out["resourceSpans"][1], json!({}));
}

#[test]
fn decodes_snake_case_everywhere() {
    super::decodes_in_snake_case(&full_request(), &["resource_spans", "parent_span_id"]);
}

// ---- The review's cases, through `TracesBatch::decode` as the receivers call it. Each one
// failed with the serde derives of opentelemetry-proto. ----

fn one_span(json: &str) -> Span {
    let batch = TracesBatch::decode(json.as_bytes(), Encoding::Json).expect("decodes");
    assert_eq!(batch.span_count(), 1, "{json}");
    batch.resource_spans()[0].scope_spans[0].spans[0].clone()
}

/// Case 1: snake_case keys were ignored and the request decoded empty.
#[test]
fn review_snake_case_keys() {
    let span = one_span(
        r#"{"resource_spans": [{"resource": {"attributes": [{"key": "service.name", "value": {"string_value": "shop"}}]},
        "scope_spans": [{"spans": [{"trace_id": "5b8efff798038103d269b633813fc60c", "span_id": "eee19b7ec3c1b174",
        "parent_span_id": "eee19b7ec3c1b173", "name": "charge", "start_time_unix_nano": "1544712660000000000",
        "attributes": [{"key": "n", "value": {"int_value": "7"}}],
        "dropped_attributes_count": 1, "status": {"code": 2}}]}]}]}"#,
    );
    assert_eq!(hex::encode(&span.trace_id), "5b8efff798038103d269b633813fc60c");
    assert_eq!(hex::encode(&span.span_id), "eee19b7ec3c1b174");
    assert_eq!(hex::encode(&span.parent_span_id), "eee19b7ec3c1b173");
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(span.attributes, vec![kv("n", Value::IntValue(7))]);
    assert_eq!(span.dropped_attributes_count, 1);
}

/// Case 3: what otelcol writes for empty arrays and maps, a KeyValue without its key and an
/// EntityRef without a schemaUrl were refused.
#[test]
fn review_empty_values_and_missing_fields() {
    let doc = r#"{"resourceSpans": [{"resource": {"entityRefs": [{"type": "service", "idKeys": ["service.name"]}]},
        "scopeSpans": [{"spans": [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
        "attributes": [{"key": "a", "value": {"arrayValue": {}}}, {"key": "m", "value": {"kvlistValue": {}}},
        {"value": {"stringValue": "no key"}}]}]}]}]}"#;
    let batch = TracesBatch::decode(doc.as_bytes(), Encoding::Json).expect("decodes");
    let rs = batch.resource_spans();
    let entity = &rs[0].resource.as_ref().expect("resource").entity_refs[0];
    assert_eq!(
        (entity.schema_url.as_str(), entity.r#type.as_str()),
        ("", "service")
    );
    let attrs = &rs[0].scope_spans[0].spans[0].attributes;
    assert_eq!(attrs[0], kv("a", Value::ArrayValue(ArrayValue::default())));
    assert_eq!(attrs[1], kv("m", Value::KvlistValue(KeyValueList::default())));
    assert_eq!(attrs[2], kv("", Value::StringValue("no key".into())));
}

/// Case 4: enum values by name were refused.
#[test]
fn review_enum_names() {
    let span = one_span(
        r#"{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174", "kind": "SPAN_KIND_SERVER", "status": {"code": "STATUS_CODE_ERROR"}}]}]}]}"#,
    );
    assert_eq!(span.kind, 2);
    assert_eq!(span.status.map(|s| s.code), Some(2));
}

/// Case 5: `null` fields and 32-bit integers as strings were refused.
#[test]
fn review_nulls_and_quoted_32_bit_integers() {
    let span = one_span(
        r#"{"resourceSpans": [{"resource": null, "schemaUrl": null, "scopeSpans": [{"scope": null, "spans": [{
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "parentSpanId": null,
        "name": null, "traceState": null, "attributes": null, "events": [{"name": "e", "attributes": null,
        "droppedAttributesCount": "3"}], "links": null, "status": null, "kind": null,
        "droppedAttributesCount": "2", "droppedEventsCount": "4", "flags": "257"}]}]}]}"#,
    );
    assert_eq!(span.dropped_attributes_count, 2);
    assert_eq!(span.dropped_events_count, 4);
    assert_eq!(span.flags, 257);
    assert_eq!(span.events[0].dropped_attributes_count, 3);
    assert_eq!((span.name.as_str(), span.status, span.kind), ("", None, 0));
}

/// Encoding: NaN and the infinities came out as `null`, and read back as errors.
#[test]
fn review_encodes_nan_and_infinities_as_strings() {
    let batch = TracesBatch::from_resource_spans(full_request().resource_spans);
    let bytes = batch.encode(Encoding::Json);
    let text = String::from_utf8_lossy(&bytes);
    for want in [
        r#"{"doubleValue":"NaN"}"#,
        r#"{"doubleValue":"Infinity"}"#,
        r#"{"doubleValue":"-Infinity"}"#,
    ] {
        assert!(text.contains(want), "no {want} in {text}");
    }
    let back = TracesBatch::decode(&bytes, Encoding::Json).expect("decodes");
    let attrs = &back.resource_spans()[0].scope_spans[0].spans[0].attributes;
    assert!(matches!(attrs[7].value, Some(AnyValue { value: Some(Value::DoubleValue(v)) }) if v.is_nan()));
}

/// Ids of the wrong length decode (as before); the batch then drops those spans and says so
/// in its partial success.
#[test]
fn ids_of_the_wrong_length_are_dropped_by_the_batch() {
    let doc = r#"{"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "good"},
        {"traceId": "5b8efff798038103", "spanId": "eee19b7ec3c1b174", "name": "short trace id"},
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174aa", "name": "long span id"},
        {"spanId": "eee19b7ec3c1b174", "name": "no trace id"}]}]}]}"#;
    let mut batch = TracesBatch::decode(doc.as_bytes(), Encoding::Json).expect("decodes");
    assert_eq!(batch.span_count(), 4);
    let split = batch.remove_invalid_spans();
    assert_eq!(split.rejected, 3);
    assert!(split.reason.is_some());
    assert_eq!(batch.span_count(), 1);
    assert_eq!(batch.resource_spans()[0].scope_spans[0].spans[0].name, "good");
}

#[test]
fn malformed_input_is_an_error() {
    let span =
        |body: &str| format!(r#"{{"resourceSpans": [{{"scopeSpans": [{{"spans": [{{{body}}}]}}]}}]}}"#);
    let cases = [
        String::new(),
        "[]".into(),
        r#"{"resourceSpans": {}}"#.into(),
        r#"{"resourceSpans": [{"scopeSpans": "x"}]}"#.into(),
        r#"{"resourceSpans": [{"resource": []}]}"#.into(),
        span(r#""kind": "SPAN_KIND_SOMETIMES""#),
        span(r#""kind": "server""#),
        span(r#""kind": "2""#),
        span(r#""kind": 2147483648"#),
        span(r#""kind": 1.5"#),
        span(r#""kind": true"#),
        span(r#""status": {"code": "STATUS_CODE_MAYBE"}"#),
        span(r#""status": {"code": "SPAN_KIND_SERVER"}"#),
        span(r#""status": "ok""#),
        span(r#""traceId": "zz""#),
        span(r#""traceId": "abc""#),
        span(r#""traceId": 5"#),
        span(r#""spanId": [1, 2]"#),
        span(r#""startTimeUnixNano": "18446744073709551616""#),
        span(r#""startTimeUnixNano": -1"#),
        span(r#""startTimeUnixNano": "soon""#),
        span(r#""droppedAttributesCount": 4294967296"#),
        span(r#""droppedAttributesCount": "-1""#),
        span(r#""flags": 4294967296"#),
        span(r#""name": 5"#),
        span(r#""attributes": [{"key": "k", "value": {"stringValue": "a", "boolValue": true}}]"#),
        span(r#""attributes": [{"key": "k", "value": {"intValue": "9223372036854775808"}}]"#),
        span(r#""attributes": [{"key": "k", "value": {"doubleValue": "lots"}}]"#),
        span(r#""events": [{"timeUnixNano": {}}]"#),
        span(r#""links": [{"traceId": "xyz"}]"#),
        span(r#""links": [{"flags": -1}]"#),
    ];
    for case in &cases {
        assert!(decode(case.as_bytes()).is_err(), "accepted: {case}");
        assert!(
            TracesBatch::decode(case.as_bytes(), Encoding::Json).is_err(),
            "accepted: {case}"
        );
    }
}

#[test]
fn damage_is_an_error_never_a_panic() {
    super::damage_is_an_error_never_a_panic(&full_request());
}
