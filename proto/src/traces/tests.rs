use super::*;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span};

use crate::raw::AttributeKey;
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
    let rs = batch.resource_spans();
    let span = &rs[0].scope_spans[0].spans[0];
    assert_eq!(hex::encode(&span.trace_id), "5b8efff798038103d269b633813fc60c");
    assert_eq!(hex::encode(&span.span_id), "eee19b7ec3c1b174");
    assert_eq!(hex::encode(&span.parent_span_id), "eee19b7ec3c1b173");
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
            crate::tree::count(&front.resource_spans(), |_: &Span| 1),
            front.span_count()
        );
        assert_eq!(
            crate::tree::count(&back.resource_spans(), |_: &Span| 1),
            back.span_count()
        );
    }
}

#[test]
fn invalid_ids_are_removed_and_counted() {
    let mut rs = uneven_batch().resource_spans();
    rs[0].scope_spans[0].spans[1].trace_id = vec![0; 16];
    rs[1].scope_spans[0].spans[0].span_id = vec![1, 2, 3];
    let mut batch = TracesBatch::from_resource_spans(rs);
    let split = batch.remove_invalid_spans();
    assert_eq!(split.rejected, 2);
    assert_eq!(split.reason.as_deref(), Some("trace_id must not be all zeros"));
    assert_eq!(batch.span_count(), 13);
    assert_eq!(crate::tree::count(&batch.resource_spans(), |_: &Span| 1), 13);
}

/// A parent or link id no decoder takes (otelcol's pdata refuses the whole request for one)
/// refuses its span; empty ones are fine, and the last parent id given counts.
#[test]
fn parent_and_link_ids_of_the_wrong_length_refuse_their_span() {
    use opentelemetry_proto::tonic::trace::v1::span::Link;
    let link = |trace: usize, span: usize| Link {
        trace_id: vec![7; trace],
        span_id: vec![7; span],
        ..Default::default()
    };
    let mut rs = uneven_batch().resource_spans();
    let spans = &mut rs[0].scope_spans[0].spans;
    spans[0].parent_span_id = vec![1; 16];
    spans[1].links = vec![link(16, 8), link(16, 9)];
    spans[2].links = vec![link(15, 8)];
    let fine = &mut rs[1].scope_spans[0].spans[0];
    fine.parent_span_id = Vec::new();
    fine.links = vec![link(0, 0), link(16, 8)];
    let mut batch = TracesBatch::from_resource_spans(rs.clone());
    let split = batch.remove_invalid_spans();
    assert_eq!(split.rejected, 3);
    assert_eq!(
        split.reason.as_deref(),
        Some("parent_span_id must be empty or 8 bytes")
    );
    assert_eq!(batch.span_count(), 12);

    // A bad parent id given first, then a good one: the good one counts, as in any decoder.
    let mut span = rs[1].scope_spans[0].spans[0].clone();
    span.parent_span_id = vec![3; 5];
    let mut bytes = span.encode_to_vec();
    prost::encoding::bytes::encode(4, &vec![2u8; 8], &mut bytes);
    assert_eq!(
        Span::decode(&bytes[..]).expect("a span").parent_span_id,
        vec![2; 8]
    );
    // ResourceSpans { ScopeSpans { spans } } written by hand, so the span keeps both ids.
    let mut scope = Vec::new();
    prost::encoding::bytes::encode(2, &bytes, &mut scope);
    let mut resource = Vec::new();
    prost::encoding::bytes::encode(2, &scope, &mut resource);
    let mut request = Vec::new();
    prost::encoding::bytes::encode(1, &resource, &mut request);
    let mut batch = TracesBatch::decode(&request, Encoding::Protobuf).expect("valid");
    assert_eq!(batch.remove_invalid_spans().rejected, 0);
    assert_eq!(batch.span_count(), 1);
}

mod raw {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::span::Event;
    use opentelemetry_proto::tonic::trace::v1::Status;
    use proptest::prelude::*;
    use prost::Message;

    use super::*;
    use crate::raw::{Head, RawSpan, ResourceSpansRaw, ScopeSpansRaw};
    use std::sync::Arc;

    fn attr(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    /// A request using every kind of field the scan checks.
    fn rich_request() -> ExportTraceServiceRequest {
        let span = |n: u8| Span {
            trace_id: vec![n; 16],
            span_id: vec![n; 8],
            parent_span_id: vec![n + 1; 8],
            name: format!("span-{n}"),
            flags: 0x301,
            start_time_unix_nano: 1_000 + n as u64,
            end_time_unix_nano: 2_000 + n as u64,
            attributes: vec![
                attr("thread.id", Value::IntValue(7)),
                attr("ratio", Value::DoubleValue(0.25)),
                attr(
                    "list",
                    Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(Value::BytesValue(vec![1, 2])),
                        }],
                    }),
                ),
            ],
            events: vec![Event {
                name: "e".into(),
                time_unix_nano: 5,
                ..Default::default()
            }],
            status: Some(Default::default()),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![attr("service.name", Value::StringValue("checkout".into()))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span(1), span(2), span(3)],
                    schema_url: "https://example.com/scope".into(),
                    ..Default::default()
                }],
                schema_url: "https://example.com/resource".into(),
            }],
        }
    }

    #[test]
    fn index_reads_the_fields_the_collector_needs() {
        let batch = TracesBatch::from_resource_spans(rich_request().resource_spans);
        let span = &batch.raw()[0].scopes()[0].spans()[1];
        assert_eq!(span.index.trace_id, u128::from_be_bytes([2; 16]));
        assert_eq!(span.index.span_id, u64::from_be_bytes([2; 8]));
        assert_eq!(span.index.parent_span_id, u64::from_be_bytes([3; 8]));
        assert_eq!(
            (span.index.start, span.index.end, span.index.flags),
            (1_002, 2_002, 0x301)
        );
        assert_eq!(span.index.id_problem(), None);
        assert_eq!(span.index.thread_id(), Some(7));
        assert_eq!(
            span.attribute(&AttributeKey::new("thread.id"))
                .and_then(|v| v.value),
            Some(Value::IntValue(7))
        );
        assert_eq!(span.attribute(&AttributeKey::new("missing")), None);
        let resource = batch.raw()[0].head().resource().expect("resource");
        assert_eq!(resource.attributes[0].key, "service.name");
    }

    #[test]
    fn status_code_and_resource_attributes_read_from_bytes() {
        let mut request = rich_request();
        let spans = &mut request.resource_spans[0].scope_spans[0].spans;
        spans[0].status = None;
        spans[1].status = Some(Status {
            code: 2,
            message: "declined".into(),
        });
        let batch = TracesBatch::from_resource_spans(request.resource_spans);
        let spans = batch.raw()[0].scopes()[0].spans();
        assert_eq!(spans[0].status_code(), 0);
        assert_eq!(spans[1].status_code(), 2);
        // A second Status appended later overrides the code, as a decoder merges them.
        let later = spans[1].clone().appended(
            Span {
                status: Some(Status {
                    code: 1,
                    ..Default::default()
                }),
                ..Default::default()
            }
            .encode_to_vec(),
        );
        assert_eq!(later.status_code(), 1);
        let head = batch.raw()[0].head();
        assert_eq!(
            head.resource_attribute("service.name").and_then(|v| v.value),
            Some(Value::StringValue("checkout".into()))
        );
        assert_eq!(head.resource_attribute("host.name"), None);
    }

    #[test]
    fn forwarding_keeps_the_bytes_unknown_fields_included() {
        let mut bytes = rich_request().encode_to_vec();
        bytes.extend_from_slice(&[0xf8, 0x01, 0x05]); // field 31, varint 5
        let batch = TracesBatch::decode(&bytes, Encoding::Protobuf).expect("decodes");
        assert_eq!(batch.span_count(), 3);
        let out = batch.encode(Encoding::Protobuf);
        // An unknown top-level field is dropped, as prost drops it; the resources go on
        // byte for byte.
        assert_eq!(out[..], bytes[..bytes.len() - 3]);
        assert_eq!(out.len(), batch.encoded_len());
    }

    #[test]
    fn appended_fields_merge_into_the_span() {
        let batch = TracesBatch::from_resource_spans(rich_request().resource_spans);
        let parts = batch.into_raw();
        let (head, scopes) = parts.into_iter().next().expect("resource").into_parts();
        let (scope_head, spans) = scopes.into_iter().next().expect("scope").into_parts();
        let extra = Span {
            attributes: vec![attr("hotspan.cpu_ns", Value::IntValue(42))],
            events: vec![Event {
                name: "hot".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
        .encode_to_vec();
        let spans_len = spans[0].len();
        let annotated: Vec<RawSpan> = spans.into_iter().map(|s| s.appended(extra.clone())).collect();
        let out = TracesBatch::from_raw(vec![ResourceSpansRaw::new(
            head,
            vec![ScopeSpansRaw::new(scope_head, annotated)],
        )]);
        let rs = out.resource_spans();
        assert_eq!(rs[0].schema_url, "https://example.com/resource");
        assert_eq!(rs[0].scope_spans[0].schema_url, "https://example.com/scope");
        let span = &rs[0].scope_spans[0].spans[0];
        let keys: Vec<&str> = span.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["thread.id", "ratio", "list", "hotspan.cpu_ns"]);
        let events: Vec<&str> = span.events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(events, ["e", "hot"]);
        assert_eq!(span.name, "span-1");
        // Appending twice keeps both, in order; the index reads the attributes appended.
        let twice = out.raw()[0].scopes()[0].spans()[0].clone().appended(extra);
        assert_eq!(
            twice.len(),
            out.raw()[0].scopes()[0].spans()[0].len() * 2 - spans_len
        );
        assert_eq!(
            twice
                .attribute(&AttributeKey::new("hotspan.cpu_ns"))
                .and_then(|v| v.value),
            Some(Value::IntValue(42))
        );
        let again = TracesBatch::from_raw(vec![ResourceSpansRaw::new(
            Default::default(),
            vec![ScopeSpansRaw::new(Default::default(), vec![twice])],
        )]);
        let span = &again.resource_spans()[0].scope_spans[0].spans[0];
        let keys: Vec<&str> = span.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            ["thread.id", "ratio", "list", "hotspan.cpu_ns", "hotspan.cpu_ns"]
        );
    }

    /// A request of one resource and one scope holding `spans`, the record of span `padded`
    /// with its length written as a two-byte varint: valid, not minimal.
    fn request_padding(spans: &[Span], padded: usize) -> bytes::Bytes {
        let mut scope = Vec::new();
        for (i, s) in spans.iter().enumerate() {
            let body = s.encode_to_vec();
            assert!(body.len() < 128);
            scope.push(0x12);
            if i == padded {
                scope.extend_from_slice(&[body.len() as u8 | 0x80, 0x00]);
            } else {
                scope.push(body.len() as u8);
            }
            scope.extend_from_slice(&body);
        }
        let mut resource = Vec::new();
        prost::encoding::encode_key(2, prost::encoding::WireType::LengthDelimited, &mut resource);
        prost::encoding::encode_varint(scope.len() as u64, &mut resource);
        resource.extend_from_slice(&scope);
        let mut request = Vec::new();
        prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut request);
        prost::encoding::encode_varint(resource.len() as u64, &mut request);
        request.extend_from_slice(&resource);
        bytes::Bytes::from(request)
    }

    fn cpu_attribute() -> Vec<u8> {
        Span {
            attributes: vec![attr("hotspan.cpu_ns", Value::IntValue(7))],
            ..Default::default()
        }
        .encode_to_vec()
    }

    /// A scope changed in place still copies its unchanged spans from the bytes received,
    /// except a record whose length was padded, which is written anew.
    #[test]
    fn a_scope_changed_in_place_encodes_as_prost_would() {
        let spans: Vec<Span> = (1..=6u8).map(span).collect();
        let batch = TracesBatch::decode_bytes(request_padding(&spans, 3), Encoding::Protobuf).expect("valid");
        let mut resources = batch.into_raw();
        let extra = cpu_attribute();
        let scope = &mut resources[0].scopes_mut()[0];
        scope.spans_mut()[1].append(extra.clone().into_boxed_slice());
        scope.spans_mut()[4].append(extra.clone().into_boxed_slice());
        let mut n = 0;
        resources[0].retain_spans(|_| {
            n += 1;
            n != 6
        });
        let out = TracesBatch::from_raw(resources);
        let bytes = out.encode(Encoding::Protobuf);
        assert_eq!(bytes.len(), out.encoded_len());

        let mut expected = spans[..5].to_vec();
        for i in [1, 4] {
            expected[i].merge(&extra[..]).expect("merge");
        }
        let decoded = ExportTraceServiceRequest::decode(&bytes[..]).expect("decodes");
        assert_eq!(decoded.resource_spans[0].scope_spans[0].spans, expected);
    }

    /// Scopes of several requests absorbed into one copy each span from the request it came
    /// in, whichever order they lie in.
    #[test]
    fn absorbed_scopes_encode_as_prost_would() {
        let spans: Vec<Span> = (1..=12u8).map(span).collect();
        let mut requests: Vec<_> = [(0..4, 9), (4..8, 1), (8..12, 2)]
            .into_iter()
            .map(|(range, padded)| {
                let request = request_padding(&spans[range], padded);
                let mut resources = TracesBatch::decode_bytes(request, Encoding::Protobuf)
                    .expect("valid")
                    .into_raw();
                resources.remove(0).into_parts().1.remove(0)
            })
            .collect();
        let extra = cpu_attribute();
        requests[1].spans_mut()[2].append(extra.clone().into_boxed_slice());
        let third = requests.pop().expect("three");
        let second = requests.pop().expect("three");
        let mut scope = requests.pop().expect("three");
        scope.absorb(second);
        // A copy of the same source again: its spans are found in the one kept.
        scope.absorb(third.clone());
        scope.absorb(third);
        let head = Arc::new(Head::default());
        let out = TracesBatch::from_raw(vec![ResourceSpansRaw::new(head, vec![scope])]);
        let bytes = out.encode(Encoding::Protobuf);
        assert_eq!(bytes.len(), out.encoded_len());

        let mut expected = spans.clone();
        expected.extend_from_slice(&spans[8..]);
        expected[6].merge(&extra[..]).expect("merge");
        let decoded = ExportTraceServiceRequest::decode(&bytes[..]).expect("decodes");
        assert_eq!(decoded.resource_spans[0].scope_spans[0].spans, expected);
    }

    /// Scopes of many requests absorbed one after another (as tail_sampling gathers kept
    /// traces), one of them again later: each span is still found in its request's bytes or
    /// written out, and the body is the spans in order.
    #[test]
    fn many_absorbed_sources_encode_as_prost_would() {
        let spans: Vec<Span> = (1..=120u8).map(span).collect();
        let mut scopes: Vec<ScopeSpansRaw> = spans
            .chunks(3)
            .enumerate()
            .map(|(i, chunk)| {
                // Some records padded (written anew), most as an encoder writes them.
                let request = request_padding(chunk, i % 4);
                let mut resources = TracesBatch::decode_bytes(request, Encoding::Protobuf)
                    .expect("valid")
                    .into_raw();
                resources.remove(0).into_parts().1.remove(0)
            })
            .collect();
        let again = scopes[5].clone();
        let mut scope = scopes.remove(0);
        for other in scopes {
            scope.absorb(other);
        }
        scope.absorb(again);
        let out = TracesBatch::from_raw(vec![ResourceSpansRaw::new(
            Arc::new(Head::default()),
            vec![scope],
        )]);
        let bytes = out.encode(Encoding::Protobuf);
        assert_eq!(bytes.len(), out.encoded_len());
        let mut expected = spans.clone();
        expected.extend_from_slice(&spans[15..18]);
        let decoded = ExportTraceServiceRequest::decode(&bytes[..]).expect("decodes");
        assert_eq!(decoded.resource_spans[0].scope_spans[0].spans, expected);
    }

    fn nested(depth: usize) -> Vec<u8> {
        let mut value = AnyValue {
            value: Some(Value::IntValue(1)),
        };
        for _ in 0..depth {
            value = AnyValue {
                value: Some(Value::ArrayValue(ArrayValue { values: vec![value] })),
            };
        }
        let mut request = rich_request();
        request.resource_spans[0].scope_spans[0].spans[0]
            .attributes
            .push(attr("deep", value.value.unwrap_or(Value::IntValue(0))));
        request.encode_to_vec()
    }

    /// The scan and prost agree: both accept or both refuse, and what is accepted decodes
    /// to the same request.
    fn agrees_with_prost(bytes: &[u8]) {
        let scanned = TracesBatch::decode(bytes, Encoding::Protobuf);
        let decoded = ExportTraceServiceRequest::decode(bytes);
        match (&scanned, &decoded) {
            (Ok(batch), Ok(request)) => assert_eq!(batch.resource_spans(), request.resource_spans),
            (Err(_), Err(_)) => {}
            _ => panic!(
                "scan {:?} but prost {:?}",
                scanned.map(|_| ()),
                decoded.map(|_| ())
            ),
        }
    }

    #[test]
    fn depth_limit_matches_prost() {
        for depth in 40..60 {
            agrees_with_prost(&nested(depth));
        }
        assert!(TracesBatch::decode(&nested(60), Encoding::Protobuf).is_err());
        assert!(TracesBatch::decode(&nested(40), Encoding::Protobuf).is_ok());
    }

    #[test]
    fn bad_utf8_and_wire_types_are_refused() {
        let mut bytes = rich_request().encode_to_vec();
        let at = bytes
            .windows(8)
            .position(|w| w == b"checkout")
            .expect("service name");
        bytes[at] = 0xff;
        agrees_with_prost(&bytes);
        assert!(TracesBatch::decode(&bytes, Encoding::Protobuf).is_err());
        // resource_spans as a varint
        agrees_with_prost(&[0x08, 0x01]);
        // a group skipped as an unknown field, and an unmatched end group
        agrees_with_prost(&[0x1b, 0x08, 0x01, 0x1c]);
        agrees_with_prost(&[0x1c]);
    }

    /// Strings that are all ASCII skip the UTF-8 check; any other byte anywhere (within the
    /// first eight, in a later word, in the tail) must still be checked, and lengths past one
    /// varint byte read.
    #[test]
    fn strings_past_ascii_are_checked_as_utf8() {
        let with_value = |value: &str| {
            let mut request = rich_request();
            request.resource_spans[0].scope_spans[0].spans[0]
                .attributes
                .push(attr("text", Value::StringValue(value.into())));
            request.encode_to_vec()
        };
        let long = "x".repeat(300);
        for value in ["café ☕ 東京", "ascii then é", &long, &format!("{long}ü{long}")] {
            let bytes = with_value(value);
            agrees_with_prost(&bytes);
            assert!(TracesBatch::decode(&bytes, Encoding::Protobuf).is_ok(), "{value}");
        }
        let marker = "0123456789abcdefghij";
        for at in [0, 3, 8, 13, 16, 19] {
            for bad in [0xff, 0x80, 0xc3] {
                let mut bytes = with_value(marker);
                let start = bytes
                    .windows(marker.len())
                    .position(|w| w == marker.as_bytes())
                    .expect("the value");
                bytes[start + at] = bad;
                agrees_with_prost(&bytes);
                assert!(
                    TracesBatch::decode(&bytes, Encoding::Protobuf).is_err(),
                    "{bad:#x} at {at}"
                );
            }
        }
    }

    /// Requests from two services (one with two scopes), spans numbered from `first`.
    fn services_request(first: u8) -> TracesBatch {
        let resource = |service: &str| Resource {
            attributes: vec![attr("service.name", Value::StringValue(service.into()))],
            ..Default::default()
        };
        let scope = |name: &str, spans: Vec<Span>| ScopeSpans {
            scope: Some(opentelemetry_proto::tonic::common::v1::InstrumentationScope {
                name: name.into(),
                ..Default::default()
            }),
            spans,
            ..Default::default()
        };
        let spans = |from: u8, n: u8| (from..from + n).map(span).collect::<Vec<_>>();
        TracesBatch::from_resource_spans(vec![
            ResourceSpans {
                resource: Some(resource("shop")),
                scope_spans: vec![scope("http", spans(first, 3)), scope("sql", spans(first + 3, 2))],
                ..Default::default()
            },
            ResourceSpans {
                resource: Some(resource("db")),
                scope_spans: vec![scope("sql", spans(first + 5, 3))],
                ..Default::default()
            },
        ])
    }

    /// Every span with its service and scope, sorted.
    fn placed(resources: &[ResourceSpans]) -> Vec<(String, String, Span)> {
        let mut all: Vec<_> = resources
            .iter()
            .flat_map(|r| {
                let service = format!("{:?}", r.resource.as_ref().map(|r| &r.attributes));
                r.scope_spans.iter().flat_map(move |s| {
                    let scope = format!("{:?}", s.scope.as_ref().map(|s| &s.name));
                    let service = service.clone();
                    s.spans
                        .iter()
                        .map(move |sp| (service.clone(), scope.clone(), sp.clone()))
                })
            })
            .collect();
        all.sort_by(|a, b| a.2.span_id.cmp(&b.2.span_id));
        all
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// Pieces of several requests, cut anywhere and merged in any order: every span once,
        /// under its own service and scope, one container for each.
        #[test]
        fn merged_pieces_keep_every_span_under_its_own_containers(
            cuts in proptest::collection::vec(1usize..6, 1..12),
            order in proptest::collection::vec(any::<u32>(), 40),
        ) {
            let requests: Vec<TracesBatch> = (0..4u8).map(|r| services_request(1 + r * 8)).collect();
            let expected = placed(&requests.iter().flat_map(TracesBatch::resource_spans).collect::<Vec<_>>());
            let mut pieces: Vec<ResourceSpansRaw> = Vec::new();
            for (r, mut request) in requests.into_iter().enumerate() {
                let mut c = r;
                while request.span_count() > 0 {
                    let cut = cuts[c % cuts.len()];
                    pieces.extend(request.split_front(cut).into_raw());
                    c += 1;
                }
            }
            let mut keyed: Vec<_> = pieces.into_iter().enumerate().map(|(i, p)| (order[i % order.len()], i, p)).collect();
            keyed.sort_by_key(|(k, i, _)| (*k, *i));
            let mut out = Vec::new();
            for (_, _, piece) in keyed {
                crate::raw::merge_into(&mut out, piece);
            }
            let merged = TracesBatch::from_raw(out);
            let bytes = merged.encode(Encoding::Protobuf);
            prop_assert_eq!(bytes.len(), merged.encoded_len());
            let decoded = ExportTraceServiceRequest::decode(&bytes[..]).expect("decodes").resource_spans;
            prop_assert_eq!(decoded.len(), 2, "one container a service");
            for r in &decoded {
                let mut scopes: Vec<_> = r.scope_spans.iter().map(|s| s.scope.clone()).collect();
                let n = scopes.len();
                scopes.dedup();
                prop_assert_eq!(scopes.len(), n, "one container a scope");
            }
            prop_assert_eq!(placed(&decoded), expected);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// Keys that are parts of each other and values that spell keys: the substring search
        /// in front of the walk never hides an attribute, and the first one counts, the bytes
        /// received before the fields appended.
        #[test]
        fn attribute_finds_what_a_decoder_finds(
            received in proptest::collection::vec(("[ab.]{0,3}", "[ab.]{0,4}"), 0..6),
            appended in proptest::collection::vec(("[ab.]{0,3}", "[ab.]{0,4}"), 0..3),
            key in "[ab.]{0,3}",
        ) {
            let attrs = |kvs: &[(String, String)]| -> Vec<KeyValue> {
                kvs.iter()
                    .map(|(k, v)| KeyValue {
                        key: k.clone(),
                        value: Some(AnyValue { value: Some(Value::StringValue(v.clone())) }),
                        ..Default::default()
                    })
                    .collect()
            };
            let span = Span {
                trace_id: vec![1; 16],
                span_id: vec![2; 8],
                attributes: attrs(&received),
                ..Default::default()
            };
            let extra = Span { attributes: attrs(&appended), ..Default::default() }.encode_to_vec();
            let batch = TracesBatch::from_resource_spans(vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
                ..Default::default()
            }]);
            let raw = batch.raw()[0].scopes()[0].spans()[0].clone().appended(extra);
            let expected = received
                .iter()
                .chain(&appended)
                .find(|(k, _)| *k == key)
                .map(|(_, v)| AnyValue { value: Some(Value::StringValue(v.clone())) });
            prop_assert_eq!(raw.attribute(&AttributeKey::new(&key)), expected);
        }
    }

    /// A length-delimited field: key, length, bytes.
    fn record(tag: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, &mut out);
        prost::encoding::encode_varint(body.len() as u64, &mut out);
        out.extend_from_slice(body);
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// Any codes (0 written out too, as a sender may), in any number of `Status` fields
        /// received and appended, some without a code: the status the scan noted, with what
        /// was appended, is what a decoder reads.
        #[test]
        fn status_code_is_what_a_decoder_reads(
            received in proptest::collection::vec(proptest::option::of(prop_oneof![3 => 0i32..3, 1 => 250i32..260, 1 => any::<i32>()]), 0..4),
            appended in proptest::collection::vec(proptest::option::of(prop_oneof![0i32..3, any::<i32>()]), 0..2),
        ) {
            let statuses = |codes: &[Option<i32>]| -> Vec<u8> {
                codes
                    .iter()
                    .flat_map(|code| {
                        let mut status = record(2, b"m");
                        if let Some(c) = code {
                            prost::encoding::int32::encode(3, c, &mut status);
                            // prost leaves out a 0; put it in.
                            if *c == 0 {
                                status.extend([0x18, 0]);
                            }
                        }
                        record(15, &status)
                    })
                    .collect()
            };
            let mut span = Span { trace_id: vec![1; 16], span_id: vec![2; 8], ..Default::default() }.encode_to_vec();
            span.extend(statuses(&received));
            let extra = statuses(&appended);
            let request = record(1, &record(2, &record(2, &span)));
            let batch = TracesBatch::decode(&request, Encoding::Protobuf).expect("a valid request");
            let raw = batch.raw()[0].scopes()[0].spans()[0].clone().appended(extra.clone());
            let decoded = Span::decode(&[&span[..], &extra[..]].concat()[..]).expect("decodes");
            prop_assert_eq!(raw.status_code(), decoded.status.map_or(0, |s| s.code));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn mutated_requests_agree_with_prost(
            edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>(), 0u8..3), 1..4)
        ) {
            let mut bytes = rich_request().encode_to_vec();
            for (at, byte, op) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                match op {
                    0 => bytes[i] = byte,
                    1 => bytes.truncate(i),
                    _ => bytes.insert(i, byte),
                }
            }
            agrees_with_prost(&bytes);
        }
    }
}
