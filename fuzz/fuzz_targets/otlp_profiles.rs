//! Any byte string as an OTLP profiles request, protobuf and JSON: refuse, never panic; what
//! survives validation has every index inside its dictionary.
#![no_main]

use hotspan_proto::{Encoding, ProfilesBatch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for encoding in [Encoding::Protobuf, Encoding::Json] {
        if let Ok(mut batch) = ProfilesBatch::decode(data, encoding) {
            let _ = batch.remove_invalid_profiles();
            let _ = batch.encode(Encoding::Json);
            let _ = hotspan_proto::pprof::from_otlp(batch.request());
        }
    }
});
