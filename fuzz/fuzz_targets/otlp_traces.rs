//! Any byte string as an OTLP traces request, protobuf and JSON: refuse, never panic. The
//! protobuf scan (which keeps bytes undecoded) must accept exactly what prost accepts.
#![no_main]

use hotspan_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use hotspan_proto::{Batch, Encoding, TracesBatch};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let prost_says = ExportTraceServiceRequest::decode(data);
    let scanned = TracesBatch::decode(data, Encoding::Protobuf);
    assert_eq!(scanned.is_ok(), prost_says.is_ok(), "scan and prost disagree");
    if let (Ok(batch), Ok(request)) = (&scanned, &prost_says) {
        assert!(batch.resource_spans() == request.resource_spans, "scan decodes differently");
    }
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        if let Ok(batch) = TracesBatch::decode(data, encoding) {
            let mut batch = Batch::Traces(batch);
            let _ = batch.remove_invalid();
            // What was accepted encodes and reads back the same.
            let again = Batch::decode(batch.signal(), &batch.encode(encoding), encoding);
            assert!(again.is_ok_and(|a| a == batch), "{encoding:?} round trip changed the batch");
        }
    }
});
