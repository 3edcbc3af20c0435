//! Any byte string as an OTLP traces request, protobuf and JSON: refuse, never panic.
#![no_main]

use hotspan_proto::{Batch, Encoding, TracesBatch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
