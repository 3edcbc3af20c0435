use super::*;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span};

use crate::Encoding;

/// A request as the OTLP spec's JSON encoding writes it: hex ids, 64-bit integers as strings,
/// integer enums, lowerCamelCase names, plus an unknown field a receiver must ignore.
const SPEC_JSON: &str = r#"{
  "resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
    "scopeSpans": [{
      "scope": {"name": "manual", "version": "1.0"},
      "spans": [{
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "parentSpanId": "eee19b7ec3c1b173",
        "name": "charge",
        "kind": 2,
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": 1544712661000000000,
        "attributes": [
          {"key": "http.status_code", "value": {"intValue": "200"}},
          {"key": "ratio", "value": {"doubleValue": 0.5}},
          {"key": "ok", "value": {"boolValue": true}},
          {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}]}}}
        ],
        "status": {"code": 2, "message": "declined"},
        "someFutureField": {"ignored": true}
      }]
    }]
  }]
}"#;

#[test]
fn decodes_spec_json() {
    let batch = TracesBatch::decode(SPEC_JSON.as_bytes(), Encoding::Json).expect("decodes");
    assert_eq!(batch.span_count(), 1);
    let span = &batch.resource_spans()[0].scope_spans[0].spans[0];
    assert_eq!(hex(&span.trace_id), "5b8efff798038103d269b633813fc60c");
    assert_eq!(hex(&span.span_id), "eee19b7ec3c1b174");
    assert_eq!(hex(&span.parent_span_id), "eee19b7ec3c1b173");
    assert_eq!(span.kind, 2);
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
    assert_eq!(
        span.attributes[0].value.as_ref().and_then(|v| v.value.clone()),
        Some(Value::IntValue(200))
    );
    assert_eq!(span.status.as_ref().map(|s| s.code), Some(2));
}

#[test]
fn encodes_spec_json() {
    let batch = TracesBatch::decode(SPEC_JSON.as_bytes(), Encoding::Json).expect("decodes");
    let json: serde_json::Value = serde_json::from_slice(&batch.encode(Encoding::Json)).expect("json");
    let span = &json["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(span["traceId"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(span["spanId"], "eee19b7ec3c1b174");
    assert_eq!(span["startTimeUnixNano"], "1544712660000000000");
    assert_eq!(span["kind"], 2);
    assert_eq!(span["attributes"][0]["value"]["intValue"], "200");
    // And it reads back to the same batch.
    let again = TracesBatch::decode(&batch.encode(Encoding::Json), Encoding::Json).expect("round trip");
    assert_eq!(again, batch);
}

#[test]
fn protobuf_round_trip() {
    let batch = TracesBatch::decode(SPEC_JSON.as_bytes(), Encoding::Json).expect("decodes");
    let bytes = batch.encode(Encoding::Protobuf);
    assert_eq!(bytes.len(), batch.encoded_len());
    assert_eq!(
        TracesBatch::decode(&bytes, Encoding::Protobuf).expect("decodes"),
        batch
    );
}

#[test]
fn malformed_input_is_an_error() {
    assert!(TracesBatch::decode(b"\x0a\xff\xff", Encoding::Protobuf).is_err());
    assert!(TracesBatch::decode(b"{\"resourceSpans\": [", Encoding::Json).is_err());
    assert!(TracesBatch::decode(
        br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#,
        Encoding::Json
    )
    .is_err());
}

fn span(n: u8) -> Span {
    Span {
        trace_id: vec![n; 16],
        span_id: vec![n; 8],
        name: format!("s{n}"),
        ..Default::default()
    }
}

/// Resources with scopes of uneven sizes, spans numbered 1.. in order.
fn uneven_batch() -> TracesBatch {
    let mut n = 0u8;
    let mut next = |count: usize| -> Vec<Span> {
        (0..count)
            .map(|_| {
                n += 1;
                span(n)
            })
            .collect()
    };
    let rs = |scopes: Vec<Vec<Span>>| ResourceSpans {
        scope_spans: scopes
            .into_iter()
            .map(|spans| ScopeSpans {
                spans,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    TracesBatch::from_resource_spans(vec![
        rs(vec![next(3), next(2)]),
        rs(vec![next(4)]),
        rs(vec![next(1), next(5)]),
    ])
}

fn names(batch: &TracesBatch) -> Vec<String> {
    batch
        .resource_spans()
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| s.name.clone())
        .collect()
}

#[test]
fn split_front_keeps_every_span_once_in_order() {
    let all = names(&uneven_batch());
    for cut in 0..=all.len() + 1 {
        let mut back = uneven_batch();
        let front = back.split_front(cut);
        let expected_front = cut.min(all.len());
        assert_eq!(front.span_count(), expected_front, "cut {cut}");
        assert_eq!(back.span_count(), all.len() - expected_front, "cut {cut}");
        let mut joined = names(&front);
        joined.extend(names(&back));
        assert_eq!(joined, all, "cut {cut}");
        assert_eq!(
            crate::tree::count(front.resource_spans(), |_: &Span| 1),
            front.span_count()
        );
        assert_eq!(
            crate::tree::count(back.resource_spans(), |_: &Span| 1),
            back.span_count()
        );
    }
}

#[test]
fn invalid_ids_are_removed_and_counted() {
    let mut batch = uneven_batch();
    let rs = &mut batch.request.resource_spans;
    rs[0].scope_spans[0].spans[1].trace_id = vec![0; 16];
    rs[1].scope_spans[0].spans[0].span_id = vec![1, 2, 3];
    let split = batch.remove_invalid_spans();
    assert_eq!(split.rejected, 2);
    assert_eq!(split.reason.as_deref(), Some("trace_id must not be all zeros"));
    assert_eq!(batch.span_count(), 13);
    assert_eq!(crate::tree::count(batch.resource_spans(), |_: &Span| 1), 13);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
