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
    // Compared as prost's encoding, not with `==`: a NaN double never equals itself.
    if let (Ok(batch), Ok(request)) = (&scanned, &prost_says) {
        let scanned = ExportTraceServiceRequest {
            resource_spans: batch.resource_spans(),
        };
        assert!(scanned.encode_to_vec() == request.encode_to_vec(), "scan decodes differently");
    }
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        if let Ok(batch) = TracesBatch::decode(data, encoding) {
            let mut batch = Batch::Traces(batch);
            let _ = batch.remove_invalid();
            // What was accepted encodes and reads back the same.
            let again = Batch::decode(batch.signal(), &batch.encode(encoding), encoding);
            let same = again.is_ok_and(|a| a.encode(Encoding::Protobuf) == batch.encode(Encoding::Protobuf));
            assert!(same, "{encoding:?} round trip changed the batch");
        }
    }
});
