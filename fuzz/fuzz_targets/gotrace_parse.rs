//! Any byte string into the Go execution trace parser: it may refuse, never panic or hang.
#![no_main]

use hotspan_gotrace::{parse, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = parse(data, &Limits::default()) {
        // What it reports is consistent with itself.
        assert!(s.start_ns <= s.end_ns);
        for p in &s.stw {
            assert!(p.start_ns >= s.start_ns && p.end_ns.is_none_or(|e| p.start_ns < e && e <= s.end_ns));
        }
    }
});
