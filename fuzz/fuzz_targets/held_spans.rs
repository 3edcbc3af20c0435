//! Any accepted OTLP traces request through what the join does to held spans: pack
//! (compressed and plain), unpack, append an attribute to some spans, drop others. What it
//! sends on must be what prost reads when the same is done to the decoded request: a span
//! lost or garbled here would be lost for good, long after its sender was told "ok".
#![no_main]

use hotspan_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use hotspan_proto::otlp::common::v1::{any_value::Value, AnyValue, KeyValue};
use hotspan_proto::otlp::trace::v1::{ResourceSpans, Span};
use hotspan_proto::raw::{PackedSpans, SpanIndex};
use hotspan_proto::{Encoding, TracesBatch};
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// Span `i` gets the attribute when bit 0 of this is set, and leaves when bit 1 is.
fn fate(data: &[u8], i: usize) -> u8 {
    data.get(i % data.len().max(1))
        .copied()
        .unwrap_or(0)
        .wrapping_add(i as u8)
}

fn annotation(i: usize) -> KeyValue {
    KeyValue {
        key: "profile.cpu_ns".into(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(i as i64)),
        }),
        ..Default::default()
    }
}

/// What prost says the join's edits make of `resources`. Containers go only when spans
/// leave: scopes left empty in a resource that lost spans, then resources without spans.
fn edited(mut resources: Vec<ResourceSpans>, data: &[u8]) -> Vec<ResourceSpans> {
    let mut i = 0;
    for rs in &mut resources {
        let before = i;
        let mut left = 0;
        for ss in &mut rs.scope_spans {
            let mut kept = Vec::new();
            for mut span in std::mem::take(&mut ss.spans) {
                let f = fate(data, i);
                if f & 1 != 0 {
                    span.attributes.push(annotation(i));
                }
                if f & 2 == 0 {
                    kept.push(span);
                    left += 1;
                }
                i += 1;
            }
            ss.spans = kept;
        }
        if left < i - before {
            rs.scope_spans.retain(|s| !s.spans.is_empty());
        }
    }
    resources.retain(|r| r.scope_spans.iter().any(|s| !s.spans.is_empty()));
    resources
}

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = TracesBatch::decode(data, Encoding::Protobuf) else {
        return;
    };
    let expected = edited(batch.resource_spans(), data);
    let resources = batch.into_raw();
    let index: Vec<SpanIndex> = resources
        .iter()
        .flat_map(|r| r.scopes())
        .flat_map(|s| s.spans())
        .map(|s| s.index)
        .collect();
    for compress in [true, false] {
        let packed = PackedSpans::pack(&resources, compress);
        let mut back = packed.unpack(&index).expect("packed spans unpack");
        let mut i = 0;
        for rs in &mut back {
            for ss in rs.scopes_mut() {
                for span in ss.spans_mut() {
                    if fate(data, i) & 1 != 0 {
                        let extra = Span {
                            attributes: vec![annotation(i)],
                            ..Default::default()
                        };
                        span.append(extra.encode_to_vec().into_boxed_slice());
                    }
                    i += 1;
                }
            }
        }
        let mut i = 0;
        for rs in &mut back {
            rs.retain_spans(|_| {
                i += 1;
                fate(data, i - 1) & 2 == 0
            });
        }
        back.retain(|r| r.span_count() > 0);
        let out = TracesBatch::from_raw(back);
        let bytes = out.encode(Encoding::Protobuf);
        assert_eq!(bytes.len(), out.encoded_len(), "compress: {compress}");
        let decoded = ExportTraceServiceRequest::decode(&bytes[..]).expect("what leaves decodes");
        // Compared as prost's encoding, not with `==`: a NaN double never equals itself.
        let expected_request = ExportTraceServiceRequest {
            resource_spans: expected.clone(),
        };
        assert!(
            decoded.encode_to_vec() == expected_request.encode_to_vec(),
            "compress: {compress}: spans changed\n{:?}\n{:?}",
            decoded.resource_spans,
            expected
        );
    }
});
