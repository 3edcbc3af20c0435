//! The parser never panics or hangs, whatever the bytes: random ones, random ones after a
//! valid header, the fixture mutated, and the fixture cut short anywhere.

mod common;

use std::path::Path;
use std::sync::OnceLock;

use hotspan_gotrace::{parse, Limits, Summary};
use proptest::prelude::*;

fn fixture() -> &'static [u8] {
    static F: OnceLock<Vec<u8>> = OnceLock::new();
    F.get_or_init(|| {
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pressure.trace"))
            .expect("the fixture")
    })
}

fn full() -> &'static Summary {
    static S: OnceLock<Summary> = OnceLock::new();
    S.get_or_init(|| parse(fixture(), &Limits::default()).unwrap())
}

/// Small limits so a hostile input cannot make a test slow by asking for much.
fn tight() -> Limits {
    Limits {
        max_bytes: 4 << 20,
        max_generation_bytes: 4 << 20,
        ..Limits::default()
    }
}

/// A synthetic trace of each version: header bytes plus a plausible first batch, so random
/// tails get past the header check and into the batch and event decoders.
fn header(minor: u32) -> Vec<u8> {
    format!("go 1.{minor} trace\0\0\0").into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&bytes[..], &tight());
    }

    #[test]
    fn random_bytes_after_a_valid_header(
        minor in prop::sample::select(vec![22u32, 23, 25, 26]),
        tail in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = header(minor);
        bytes.extend_from_slice(&tail);
        let _ = parse(&bytes[..], &tight());
    }

    #[test]
    fn random_batches_after_a_valid_header(
        minor in prop::sample::select(vec![22u32, 23, 25, 26]),
        batches in proptest::collection::vec(
            (0u8..8, 1u64..3, 0u64..4, 0u64..1000, proptest::collection::vec(any::<u8>(), 0..64)),
            1..24,
        ),
    ) {
        // Well-framed batches (right sizes) with random contents, mostly valid event types:
        // this reaches the ordering model far more often than random bytes do.
        let mut bytes = header(minor);
        for (kind, gen, m, time, mut data) in batches {
            match kind {
                0 => data.insert(0, 8),  // Frequency (Go 1.22-1.24 sync batch)
                1 => data.insert(0, 50), // Sync
                2 => data.insert(0, 4),  // Strings
                3 => data.insert(0, 6),  // CPU samples
                _ => {
                    // Event types with a timestamp are 9..=48.
                    for b in data.iter_mut().step_by(3) {
                        *b = 9 + *b % 40;
                    }
                }
            }
            if kind == 7 {
                bytes.push(52); // EndOfGeneration
            }
            bytes.push(1);
            for v in [gen, m, time, data.len() as u64] {
                let mut v = v;
                while v >= 0x80 {
                    bytes.push(v as u8 | 0x80);
                    v >>= 7;
                }
                bytes.push(v as u8);
            }
            bytes.extend_from_slice(&data);
        }
        let _ = parse(&bytes[..], &tight());
    }
}

proptest! {
    // Each case parses the 1.8 MB fixture.
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn mutated_fixture(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut bytes = fixture().to_vec();
        for (at, value, how) in edits {
            let i = at.index(bytes.len());
            match how {
                0 => bytes[i] = value,
                1 => bytes[i] ^= 1 << (value % 8),
                _ => {
                    bytes.insert(i, value);
                }
            }
        }
        let _ = parse(&bytes[..], &Limits::default());
    }

    #[test]
    fn truncated_fixture(cut in any::<prop::sample::Index>()) {
        let bytes = fixture();
        let cut = cut.index(bytes.len());
        check_truncated(&bytes[..cut]);
    }
}

fn check_truncated(bytes: &[u8]) {
    // A cut between generations is a shorter valid trace; anywhere else it is an error.
    if let Ok(s) = parse(bytes, &Limits::default()) {
        assert!(
            s.generations < full().generations,
            "a trace cut at {} read whole",
            bytes.len()
        );
    }
}

#[test]
fn the_fixture_cut_at_every_batch_boundary_region() {
    // Deterministic cuts too: the first bytes one by one (header and first batch header),
    // then every 4 KiB.
    let bytes = fixture();
    for cut in (0..64).chain((64..bytes.len()).step_by(4096)) {
        check_truncated(&bytes[..cut]);
    }
}
