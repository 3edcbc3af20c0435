//! hotspan-gotrace against Go's own parser (golang.org/x/exp/trace, run by `goref`): the same
//! pauses, reasons, GC cycles, clock snapshots, first and last times and number of events, to
//! the nanosecond, on a fresh trace of a program under allocation pressure, on every trace
//! format test Go ships, and on the committed fixture. Needs `go` on PATH.

mod common;

use std::path::Path;

use common::*;
use hotspan_gotrace::{GoVersion, Limits, TraceError};

#[test]
fn matches_go_on_a_fresh_trace_under_gc_pressure() {
    let dir = scratch_dir("pressure");
    let path = dir.join("pressure.trace");
    produce(&path, &["-duration", "2s", "-workers", "4"]).unwrap();

    let ours = parse_file(&path).unwrap();
    let go = go_read(&path).unwrap().expect("Go's parser reads the trace");
    assert_same(&ours, &go, "fresh trace");

    assert_eq!(ours.version, GoVersion::Go126);
    let gc_pauses = ours.stw.iter().filter(|p| p.gc).count();
    let other = ours.stw.len() - gc_pauses;
    eprintln!(
        "compared {} pauses ({gc_pauses} GC, {other} other), {} GC cycles, {} clock snapshots, {} events over {} bytes",
        ours.stw.len(),
        ours.gc.len(),
        ours.clock_snapshots.len(),
        ours.events,
        ours.bytes
    );
    assert!(
        gc_pauses > 200,
        "only {gc_pauses} GC pauses under allocation pressure"
    );
    assert!(
        other >= 3,
        "only {other} non-GC pauses (read mem stats, goroutine profile)"
    );
    assert!(ours.gc.len() > 100, "only {} GC cycles", ours.gc.len());
    assert!(ours.generations >= 2, "a 2 s trace spans generations");
    // Times Go nudged apart show the ordering model matters; not every run has one, so this
    // only reports it.
    let nudged = ours.stw.iter().filter(|p| p.start_ns % 64 != 0).count();
    eprintln!("{nudged} pause starts off the 64 ns clock grid (equal ticks nudged apart by Go)");
    // On Linux the trace clock is CLOCK_MONOTONIC / 64: the snapshot reads the monotonic
    // clock, then the trace clock, so the trace time is never below the monotonic reading
    // rounded down to 64 ns (how far above depends on what ran between the two reads).
    assert_eq!(ours.ticks_per_sec, 15_625_000);
    for c in &ours.clock_snapshots {
        assert_eq!(c.trace_ns % 64, 0, "{c:?}");
        assert!(c.trace_ns >= c.mono_ns / 64 * 64, "{c:?}");
        eprintln!(
            "clock snapshot: trace - mono = {} ns",
            c.trace_ns as i64 - c.mono_ns as i64
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Converts every `.test` in `dir` (Go's text trace format), reads it with both parsers and
/// compares. Returns how many were compared per format version and how many both refused.
fn compare_text_tests(dir: &Path, scratch: &Path) -> (std::collections::BTreeMap<u32, usize>, usize) {
    let mut compared = std::collections::BTreeMap::<u32, usize>::new();
    let mut refused_by_both = 0;
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    entries.sort();
    for test in entries {
        let name = test.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&test).unwrap();
        let t = text_to_binary(&text).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let bin = scratch.join(name.replace(".test", ".trace"));
        std::fs::write(&bin, &t.binary).unwrap();
        let ours = hotspan_gotrace::parse(&t.binary[..], &Limits::default());
        match go_read(&bin).unwrap() {
            Ok(go) => {
                assert!(
                    t.expect_success,
                    "{name}: the test expects a failure, Go's parser read it"
                );
                let ours = ours.unwrap_or_else(|e| panic!("{name}: Go reads it, we fail: {e}"));
                assert_eq!(ours.version.minor(), t.version, "{name}");
                assert_same(&ours, &go, &name);
                *compared.entry(t.version).or_default() += 1;
            }
            Err(go_err) => {
                assert!(
                    !t.expect_success,
                    "{name}: the test expects success, Go's parser failed: {go_err}"
                );
                assert!(ours.is_err(), "{name}: Go refuses it ({go_err}), we read it");
                refused_by_both += 1;
            }
        }
    }
    (compared, refused_by_both)
}

#[test]
fn matches_go_on_go_s_own_format_tests() {
    // Go 1.22, 1.23 and 1.25 format traces: the machine's Go only writes 1.26, so these are
    // how the older formats are checked against Go's parser.
    let dir = scratch_dir("gotests");
    let (compared, refused_by_both) =
        compare_text_tests(&goroot().join("src/internal/trace/testdata/tests"), &dir);
    eprintln!("compared with Go per format version: {compared:?}; refused by both: {refused_by_both}");
    assert!(compared.get(&22).copied().unwrap_or(0) >= 15, "{compared:?}");
    assert!(
        compared.contains_key(&23) && compared.contains_key(&25),
        "{compared:?}"
    );
    assert!(refused_by_both >= 2);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn matches_go_on_our_synthetic_traces() {
    // Ties on one tick, an event that must wait for another M, CPU samples among events.
    let dir = scratch_dir("synthetic");
    let (compared, _) = compare_text_tests(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/synthetic"),
        &dir,
    );
    assert_eq!(compared.values().sum::<usize>(), 2, "{compared:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_gc_stress_test_trace_of_go_1_22_has_its_pauses() {
    // Go's go122-gc-stress test is a real Go 1.22 trace: check what it holds, beyond equality.
    let text =
        std::fs::read_to_string(goroot().join("src/internal/trace/testdata/tests/go122-gc-stress.test"))
            .expect("Go's gc-stress test trace");
    let t = text_to_binary(&text).unwrap();
    let s = hotspan_gotrace::parse(&t.binary[..], &Limits::default()).unwrap();
    assert_eq!(s.version, GoVersion::Go122);
    assert_eq!(s.ticks_per_sec, 15_625_000);
    assert!(
        s.clock_snapshots.is_empty(),
        "Go 1.22 traces have no clock snapshots"
    );
    assert!(!s.gc.is_empty() || !s.stw.is_empty(), "{s:?}");
}

#[test]
fn matches_go_on_the_committed_fixture() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pressure.trace");
    let ours = parse_file(&path).unwrap();
    let go = go_read(&path).unwrap().expect("Go's parser reads the fixture");
    assert_same(&ours, &go, "fixture");
    // The committed copy of Go's answer (which the fixture test reads without Go) is Go's.
    let committed: GoSummary = serde_json::from_slice(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/pressure.go.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        committed, go,
        "testdata/pressure.go.json is stale: regenerate it with goref read"
    );
}

#[test]
fn go_1_21_traces_are_refused_with_their_version() {
    // Real traces of the old format, shipped with Go.
    let dir = goroot().join("src/internal/trace/internal/tracev1/testdata");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(minor) = ["1_11", "1_19", "1_21"].iter().find(|v| name.contains(*v)) else {
            continue;
        };
        let minor: u32 = minor[2..].parse().unwrap();
        match parse_file(&path) {
            Err(e @ TraceError::UnsupportedVersion { .. }) => {
                let TraceError::UnsupportedVersion { minor: m, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(*m, minor, "{name}");
                let msg = e.to_string();
                assert!(
                    msg.contains(&format!("go 1.{minor}")) && msg.contains("Go 1.22"),
                    "{msg}"
                );
                seen += 1;
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(seen >= 6, "only {seen} old traces found in {}", dir.display());
}
