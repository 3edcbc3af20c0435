//! A parser for Go's execution trace (`runtime/trace`, `/debug/pprof/trace`), Go 1.22 and
//! newer, that keeps what hotspan puts on spans: stop-the-world pauses with their reasons, GC
//! cycles, and the clock snapshots that tie trace time to Unix time.
//!
//! Times are exactly those Go's own parser (`golang.org/x/exp/trace`, `Event.Time()`)
//! reports, to the nanosecond: the same tick conversion, the same event order, the same
//! nudging of equal times apart (see `order.rs`).
//!
//! The trace clock: on Linux (and every OS but Windows) the runtime's trace clock is
//! `CLOCK_MONOTONIC` nanoseconds divided by 64, so a trace time is that clock's reading,
//! rounded down to 64 ns, plus at most a few nanoseconds of Go's nudging. On Windows it counts
//! CPU ticks at an estimated frequency. From Go 1.25 every generation (about one a second)
//! carries a [`ClockSnapshot`]: trace, monotonic and wall clock read together, which
//! [`Summary::unix_ns`] uses. Go 1.22 to 1.24 traces carry none: on Linux their times are
//! still `CLOCK_MONOTONIC`, so a reader on the same host (and time namespace) can align them
//! with its own pair of `CLOCK_MONOTONIC` and `CLOCK_REALTIME` readings.
//!
//! ```no_run
//! let file = std::fs::File::open("trace.out")?;
//! let summary = hotspan_gotrace::parse(file, &hotspan_gotrace::Limits::default())?;
//! for p in &summary.stw {
//!     println!("{} ns pause: {}", p.end_ns.unwrap_or(summary.end_ns) - p.start_ns, p.reason);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
// A panic on input would take the collector down: errors are handled, and indexing is `get`
// (the trace comes from outside); tests may unwrap and index.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod clock;
mod generation;
mod input;
mod merge;
mod order;
mod spec;

use std::fmt;
use std::io::Read;

/// Bounds on what one trace may cost; passing one refuses the trace with
/// [`TraceError::TooLarge`].
#[derive(Clone, Debug)]
pub struct Limits {
    /// Bytes read from the input, header included.
    pub max_bytes: u64,
    /// Bytes held for one generation: its event batches and strings, which must be read
    /// whole before its events can be put in order (a generation is about one second).
    pub max_generation_bytes: usize,
    /// Generations (each yields a clock snapshot).
    pub max_generations: usize,
    /// Goroutines, threads, procs and user tasks tracked at once by the ordering model.
    pub max_resources: usize,
    /// Stop-the-world pauses reported.
    pub max_stw: usize,
    /// GC cycles reported.
    pub max_gc: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 1 << 30,
            max_generation_bytes: 256 << 20,
            // A day of one-second generations.
            max_generations: 100_000,
            max_resources: 2_000_000,
            max_stw: 1_000_000,
            max_gc: 1_000_000,
        }
    }
}

/// The trace format version, named after the Go release that introduced it. Go 1.24 writes
/// the 1.23 format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GoVersion {
    Go122,
    Go123,
    Go125,
    Go126,
}

impl GoVersion {
    /// The minor release number in the header (`go 1.N trace`).
    pub fn minor(self) -> u32 {
        match self {
            GoVersion::Go122 => 22,
            GoVersion::Go123 => 23,
            GoVersion::Go125 => 25,
            GoVersion::Go126 => 26,
        }
    }

    fn from_minor(minor: u32) -> Option<Self> {
        Some(match minor {
            22 => GoVersion::Go122,
            23 => GoVersion::Go123,
            25 => GoVersion::Go125,
            26 => GoVersion::Go126,
            _ => return None,
        })
    }
}

impl fmt::Display for GoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "go1.{}", self.minor())
    }
}

/// What a trace says about pauses, GC and its clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub version: GoVersion,
    /// Stop-the-world ranges, in order of their start.
    pub stw: Vec<Stw>,
    /// GC cycles (the concurrent mark phase, GCBegin to GCEnd), in order.
    pub gc: Vec<GcCycle>,
    /// One per generation, from Go 1.25 traces; empty before.
    pub clock_snapshots: Vec<ClockSnapshot>,
    /// Time of the first event Go's parser reports (the first generation's Sync), trace ns.
    pub start_ns: u64,
    /// Time of the last event Go's parser reports (its closing Sync), trace ns.
    pub end_ns: u64,
    /// Time of the last event but goroutine statuses, trace ns: the end of what was traced.
    /// The statuses Go writes as it stops tracing can come milliseconds later, and a GC
    /// that begins in between is not in the trace.
    pub covered_until_ns: u64,
    /// Trace clock ticks per second, from the first generation (15,625,000 on Linux).
    pub ticks_per_sec: u64,
    /// Generations read.
    pub generations: u64,
    /// Events Go's parser reports for this trace, Sync events included: a check that this
    /// parser walked the trace as Go does.
    pub events: u64,
    /// Bytes read, header included.
    pub bytes: u64,
}

impl Summary {
    /// Trace time `trace_ns` on the Unix wall clock, by the nearest clock snapshot: `None`
    /// when the trace has none (before Go 1.25).
    ///
    /// The snapshot's three clocks are read back to back (wall and monotonic together, the
    /// trace clock right after), so the error is the trace clock's 64 ns rounding, the few
    /// nanoseconds Go's parser nudges equal times apart, the gap between the reads (tens of
    /// nanoseconds unless the thread was descheduled right there), and whatever the wall
    /// clock was slewed by between the snapshot and `trace_ns` (NTP slews at most 500 ppm;
    /// snapshots come about once a second). A step of the wall clock shows as a change of
    /// `wall_unix_ns - trace_ns` between snapshots.
    pub fn unix_ns(&self, trace_ns: u64) -> Option<u64> {
        let s = self
            .clock_snapshots
            .iter()
            .min_by_key(|s| s.trace_ns.abs_diff(trace_ns))?;
        let unix = s.wall_unix_ns as i128 + trace_ns as i128 - s.trace_ns as i128;
        u64::try_from(unix).ok()
    }
}

/// A stop-the-world pause: every goroutine stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stw {
    pub start_ns: u64,
    /// `None` when the trace ended before the world restarted.
    pub end_ns: Option<u64>,
    /// As the runtime names it: "GC mark termination", "GC sweep termination", "read mem
    /// stats", "goroutine profile", "GOMAXPROCS", "start trace", ...
    pub reason: String,
    /// Part of a GC cycle (mark or sweep termination).
    pub gc: bool,
}

/// A GC cycle's concurrent mark phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcCycle {
    /// The trace's GC event sequence number at the cycle's first event (it counts every GC
    /// event since the trace started, not the runtime's GC count).
    pub seq: u64,
    /// `None` when the cycle was already running when the trace began.
    pub start_ns: Option<u64>,
    /// `None` when the trace ended during the cycle.
    pub end_ns: Option<u64>,
}

/// Three clocks read together at the start of a generation (Go 1.25+).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockSnapshot {
    /// The trace clock, ns, as Go's parser converts it.
    pub trace_ns: u64,
    /// The wall clock (`CLOCK_REALTIME`), ns since the Unix epoch.
    pub wall_unix_ns: u64,
    /// The runtime's monotonic clock (`nanotime`: `CLOCK_MONOTONIC` on Linux), ns.
    pub mono_ns: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("unsupported Go execution trace version go 1.{minor}: {why}")]
    UnsupportedVersion { minor: u32, why: &'static str },
    #[error("Go execution trace too large: {what} over the limit of {limit}")]
    TooLarge { what: &'static str, limit: u64 },
    #[error("malformed Go execution trace at byte {offset}: {what}")]
    Malformed { offset: u64, what: String },
    #[error("reading the Go execution trace: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads a whole trace from `input`, holding at most one generation in memory.
pub fn parse<R: Read>(input: R, limits: &Limits) -> Result<Summary, TraceError> {
    merge::parse(input, limits)
}

/// Reads the header (`go 1.N trace\0\0\0`) and returns the version it names, refusing
/// versions this crate does not read.
fn read_header<R: Read>(input: &mut input::Input<R>) -> Result<GoVersion, TraceError> {
    let not_a_trace = || TraceError::Malformed {
        offset: 0,
        what: "not a Go execution trace: the header is not `go 1.N trace`".into(),
    };
    for &want in b"go 1." {
        if input.byte()? != Some(want) {
            return Err(not_a_trace());
        }
    }
    let mut minor: u32 = 0;
    let mut digits = 0;
    let after = loop {
        match input.byte()? {
            Some(b @ b'0'..=b'9') if digits < 3 => {
                minor = minor * 10 + (b - b'0') as u32;
                digits += 1;
            }
            other => break other,
        }
    };
    if digits == 0 || after != Some(b' ') {
        return Err(not_a_trace());
    }
    for &want in b"trace" {
        if input.byte()? != Some(want) {
            return Err(not_a_trace());
        }
    }
    let Some(version) = GoVersion::from_minor(minor) else {
        let why = match minor {
            5..=21 => {
                "Go 1.21 and older write the old trace format; this parser reads traces from Go 1.22 and newer"
            }
            27.. => "newer than this parser, which reads trace formats go 1.22 to go 1.26",
            _ => "no Go release writes this trace version",
        };
        return Err(TraceError::UnsupportedVersion { minor, why });
    };
    for _ in 0..3 {
        if input.byte()? != Some(0) {
            return Err(not_a_trace());
        }
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(bytes: &[u8]) -> Result<GoVersion, TraceError> {
        read_header(&mut input::Input::new(bytes, u64::MAX))
    }

    #[test]
    fn headers_name_their_version() {
        assert_eq!(header(b"go 1.22 trace\0\0\0").unwrap(), GoVersion::Go122);
        assert_eq!(header(b"go 1.23 trace\0\0\0").unwrap(), GoVersion::Go123);
        assert_eq!(header(b"go 1.25 trace\0\0\0").unwrap(), GoVersion::Go125);
        assert_eq!(header(b"go 1.26 trace\0\0\0").unwrap(), GoVersion::Go126);
    }

    #[test]
    fn old_and_unknown_versions_are_refused_by_name() {
        for (h, minor) in [
            (&b"go 1.21 trace\0\0\0"[..], 21),
            (b"go 1.19 trace\0\0\0", 19),
            (b"go 1.5 trace\0\0\0\0", 5),
            (b"go 1.24 trace\0\0\0", 24),
            (b"go 1.27 trace\0\0\0", 27),
        ] {
            match header(h) {
                Err(e @ TraceError::UnsupportedVersion { minor: m, .. }) => {
                    assert_eq!(m, minor);
                    assert!(e.to_string().contains(&format!("go 1.{minor}")), "{e}");
                }
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(h)),
            }
        }
        let e = header(b"go 1.21 trace\0\0\0").unwrap_err().to_string();
        assert!(e.contains("Go 1.22 and newer"), "{e}");
    }

    #[test]
    fn other_bytes_are_not_a_trace() {
        for h in [
            &b""[..],
            b"go 1.",
            b"go 1.22",
            b"go 1.22 trace",
            b"go 1.22 trace\0\0x",
            b"\x1f\x8b\x08",
            b"go 1.x trace",
        ] {
            assert!(
                matches!(header(h), Err(TraceError::Malformed { offset: 0, .. })),
                "{:?}",
                String::from_utf8_lossy(h)
            );
        }
    }
}
