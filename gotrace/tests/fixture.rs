//! Tests that run without Go: the committed fixture against the committed answer of Go's
//! parser, hand-worked synthetic traces, the limits, and refused versions.

mod common;

use std::path::Path;

use common::*;
use hotspan_gotrace::{parse, GoVersion, Limits, TraceError};

fn fixture() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pressure.trace")).expect("the fixture")
}

fn synthetic(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/synthetic")
        .join(name);
    text_to_binary(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .binary
}

#[test]
fn the_fixture_reads_as_go_read_it() {
    let s = parse(&fixture()[..], &Limits::default()).unwrap();
    let go: GoSummary = serde_json::from_slice(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pressure.go.json")).unwrap(),
    )
    .unwrap();
    assert_same(&s, &go, "fixture");

    assert_eq!(s.version, GoVersion::Go126);
    assert_eq!(s.generations, 2);
    assert_eq!(s.clock_snapshots.len(), 2);
    assert_eq!(s.bytes, fixture().len() as u64);
    assert!(s.stw.len() >= 50, "{} pauses", s.stw.len());
    assert!(
        s.stw.windows(2).all(|w| w[0].start_ns < w[1].start_ns),
        "pauses in time order"
    );
    for p in &s.stw {
        let end = p.end_ns.expect("every pause in the fixture ends");
        assert!(
            s.start_ns < p.start_ns && p.start_ns < end && end < s.end_ns,
            "{p:?}"
        );
        assert_eq!(p.gc, p.reason.starts_with("GC "), "{p:?}");
    }
    // Two pauses (sweep and mark termination) per complete GC cycle.
    let complete =
        s.gc.iter()
            .filter(|c| c.start_ns.is_some() && c.end_ns.is_some())
            .count();
    let gc_pauses = s.stw.iter().filter(|p| p.gc).count();
    assert!(
        gc_pauses >= 2 * complete && complete > 10,
        "{complete} cycles, {gc_pauses} GC pauses"
    );
    // Go writes the statuses of goroutines idle in the last generation, and its closing Sync,
    // after it stopped tracing: what was traced ends before them, and after every pause.
    let last_pause = s.stw.iter().filter_map(|p| p.end_ns).max().unwrap_or(0);
    assert!(
        last_pause < s.covered_until_ns && s.covered_until_ns < s.end_ns,
        "last pause ends {last_pause}, traced until {}, trace ends {}",
        s.covered_until_ns,
        s.end_ns
    );
}

#[test]
fn equal_ticks_are_nudged_apart_as_go_does() {
    // testdata/synthetic/nudge.test, worked by hand: a tick is 64 ns. Generation 1 opens at
    // its earliest batch (tick 1: 64 ns). M 1 and M 2 both start at tick 10 (640 ns); M 1
    // entered the heap first and ties never displace, so its ProcStatus, GoStatus and
    // STWBegin come out at 640, 641, 642. Its STWEnd (tick 15: 960) sinks below M 2, whose
    // three events take 643..645. Then STWEnd at 960 and GCBegin at tick 16 (1024), which
    // ties with the CPU sample: a sample goes first only if strictly earlier, so it follows
    // at 1025. Generation 2 opens at tick 100 (6400): ProcStatus, GoStatus, GCActive at
    // 6401..6403, the GC pause from tick 102 (6528) to 105 (6720), GCEnd at 106 (6784),
    // and the closing Sync at 6785.
    let s = parse(&synthetic("nudge.test")[..], &Limits::default()).unwrap();
    let stw: Vec<_> = s
        .stw
        .iter()
        .map(|p| (p.start_ns, p.end_ns, p.reason.as_str(), p.gc))
        .collect();
    assert_eq!(
        stw,
        [
            (642, Some(960), "read mem stats", false),
            (6528, Some(6720), "GC mark termination", true)
        ]
    );
    assert_eq!(s.gc.len(), 1);
    assert_eq!(
        (s.gc[0].seq, s.gc[0].start_ns, s.gc[0].end_ns),
        (1, Some(1024), Some(6784))
    );
    assert_eq!((s.start_ns, s.end_ns, s.events, s.generations), (64, 6785, 18, 2));
    // Snapshots: the sync batch's time plus the snapshot's delta, in ticks (2 and 103).
    let clocks: Vec<_> = s
        .clock_snapshots
        .iter()
        .map(|c| (c.trace_ns, c.mono_ns, c.wall_unix_ns))
        .collect();
    assert_eq!(
        clocks,
        [
            (128, 130, 1_700_000_000_000_000_005),
            (6592, 6600, 1_700_000_001_000_000_007)
        ]
    );
}

#[test]
fn an_event_waits_for_the_one_that_enables_it() {
    // testdata/synthetic/out-of-order.test: M 2's GoStart (tick 10) needs M 1's GoUnblock
    // (tick 12). Sync 64; M 2's ProcStatus 640; the GoStart cannot happen, so M 1's four
    // events go first at 768..771; the GoStart follows at 772, the closing Sync at 773.
    let s = parse(&synthetic("out-of-order.test")[..], &Limits::default()).unwrap();
    assert_eq!(s.version, GoVersion::Go122);
    assert_eq!((s.start_ns, s.end_ns, s.events), (64, 773, 8));
    assert!(s.clock_snapshots.is_empty());
}

#[test]
fn each_limit_refuses_a_trace_past_it_and_not_at_it() {
    let trace = fixture();
    let full = parse(&trace[..], &Limits::default()).unwrap();
    let cases: Vec<(&str, Limits, Limits)> = vec![
        (
            "bytes",
            Limits {
                max_bytes: trace.len() as u64 - 1,
                ..Limits::default()
            },
            Limits {
                max_bytes: trace.len() as u64,
                ..Limits::default()
            },
        ),
        (
            "pauses",
            Limits {
                max_stw: full.stw.len() - 1,
                ..Limits::default()
            },
            Limits {
                max_stw: full.stw.len(),
                ..Limits::default()
            },
        ),
        (
            "GC cycles",
            Limits {
                max_gc: full.gc.len() - 1,
                ..Limits::default()
            },
            Limits {
                max_gc: full.gc.len(),
                ..Limits::default()
            },
        ),
        (
            "generations",
            Limits {
                max_generations: 1,
                ..Limits::default()
            },
            Limits {
                max_generations: 2,
                ..Limits::default()
            },
        ),
        (
            "generation bytes",
            Limits {
                max_generation_bytes: 256 << 10,
                ..Limits::default()
            },
            Limits {
                max_generation_bytes: 4 << 20,
                ..Limits::default()
            },
        ),
        (
            "resources",
            Limits {
                max_resources: 8,
                ..Limits::default()
            },
            Limits {
                max_resources: 10_000,
                ..Limits::default()
            },
        ),
    ];
    for (what, over, at) in cases {
        match parse(&trace[..], &over) {
            Err(e @ TraceError::TooLarge { .. }) => eprintln!("{what}: {e}"),
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(parse(&trace[..], &at).unwrap(), full, "{what}");
    }
}

#[test]
fn old_format_headers_are_refused_with_their_version() {
    let mut old = b"go 1.21 trace\0\0\0".to_vec();
    old.extend_from_slice(&fixture()[16..4096]);
    match parse(&old[..], &Limits::default()) {
        Err(e @ TraceError::UnsupportedVersion { minor: 21, .. }) => {
            assert!(e.to_string().contains("go 1.21"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}
