//! Any byte string into the pprof receiver's conversion: it may refuse, never panic.
#![no_main]

use std::sync::LazyLock;

use hotspan_proto::pprof::{from_otlp, to_otlp, ConvertOptions};
use libfuzzer_sys::fuzz_target;

static OPTS: LazyLock<ConvertOptions> = LazyLock::new(ConvertOptions::default);

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = to_otlp(data, &OPTS) {
        // Whatever to_otlp builds references only entries it wrote, so the way back works.
        assert!(
            from_otlp(&req).is_ok(),
            "to_otlp produced a request from_otlp refuses"
        );
    }
});
