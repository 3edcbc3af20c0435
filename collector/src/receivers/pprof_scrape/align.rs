//! Putting a Go execution trace's times on the Unix clock, with a bound on the error, so its
//! pauses can be compared with span times.
//!
//! Three ways, best first:
//! - **clock_snapshot**: Go 1.25+ traces carry trace, monotonic and wall clock read together
//!   about once a second; each time goes by the nearest snapshot, on the target's own wall
//!   clock (the one its spans are stamped with).
//! - **monotonic**: older traces on Linux count `CLOCK_MONOTONIC`; for a target on this host
//!   hotspan reads its own `CLOCK_REALTIME` around `CLOCK_MONOTONIC` and adds the difference.
//! - **scrape**: otherwise the trace's end lies between the request time plus the trace's
//!   length and the end of the response; it is put in the middle, half that gap being the
//!   error (plus any skew between the two hosts' clocks, which no scrape can see).

use std::net::{IpAddr, SocketAddr};

use hotspan_gotrace::Summary;

/// The Go runtime's trace clock on Linux: `CLOCK_MONOTONIC` / 64.
const LINUX_TICKS_PER_SEC: u64 = 15_625_000;
/// A trace time is the monotonic clock rounded down to a tick.
const TICK_NS: u64 = 64;
/// Error of a snapshot at its own instant: the tick rounding, Go's nudging of equal times
/// apart (a few ns) and the gap between the three reads (tens of ns, unless the thread was
/// descheduled right there), rounded up.
const SNAPSHOT_ERROR_NS: u64 = 1_000;
/// NTP slews the wall clock by at most 500 ppm: 1 ns per 2,000 ns away from a snapshot.
const SLEW_DIVISOR: u64 = 2_000;
/// How far a monotonic alignment may put the trace outside the request's time before it is
/// taken to be wrong (another time namespace, or a port forwarded off this host).
const PLAUSIBLE_SLACK_NS: u64 = 10_000_000;

/// How a trace's clock was tied to Unix time (`go.trace.clock_alignment`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    ClockSnapshot,
    Monotonic,
    Scrape,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::ClockSnapshot => "clock_snapshot",
            Method::Monotonic => "monotonic",
            Method::Scrape => "scrape",
        }
    }
}

/// A trace time on the Unix clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aligned {
    pub unix_ns: u64,
    /// The true time is within this many ns of `unix_ns`.
    pub error_ns: u64,
}

/// Trace time to Unix time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Alignment {
    /// By the trace's own clock snapshots (Go 1.25+), the nearest one to each time.
    Snapshots,
    /// One offset for the whole trace: Unix = trace + `offset_ns`, within `error_ns`.
    Offset {
        method: Method,
        offset_ns: i128,
        error_ns: u64,
    },
}

impl Alignment {
    pub fn method(&self) -> Method {
        match self {
            Alignment::Snapshots => Method::ClockSnapshot,
            Alignment::Offset { method, .. } => *method,
        }
    }

    /// `trace_ns` on the Unix clock; `None` only for times no clock can hold.
    pub fn unix(&self, summary: &Summary, trace_ns: u64) -> Option<Aligned> {
        match self {
            Alignment::Snapshots => {
                let nearest = summary
                    .clock_snapshots
                    .iter()
                    .map(|s| s.trace_ns.abs_diff(trace_ns))
                    .min()?;
                Some(Aligned {
                    unix_ns: summary.unix_ns(trace_ns)?,
                    error_ns: SNAPSHOT_ERROR_NS + nearest / SLEW_DIVISOR,
                })
            }
            Alignment::Offset {
                offset_ns, error_ns, ..
            } => Some(Aligned {
                unix_ns: u64::try_from(trace_ns as i128 + offset_ns).ok()?,
                error_ns: *error_ns,
            }),
        }
    }
}

/// When the scrape ran, on hotspan's wall clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScrapeTimes {
    /// Unix ns just before the request was sent.
    pub request_unix_ns: u64,
    /// Unix ns just after the last byte of the response arrived.
    pub response_end_unix_ns: u64,
}

/// hotspan's `CLOCK_REALTIME - CLOCK_MONOTONIC`, read here and now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalClocks {
    pub offset_ns: i128,
    /// Half the gap between the two wall clock reads around the monotonic one.
    pub error_ns: u64,
}

impl LocalClocks {
    /// The tightest of a few reads; `None` where the trace clock is not `CLOCK_MONOTONIC`.
    #[cfg(target_os = "linux")]
    pub fn read() -> Option<LocalClocks> {
        use rustix::time::{clock_gettime, ClockId, Timespec};
        let ns = |t: Timespec| t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128;
        let mut best: Option<LocalClocks> = None;
        for _ in 0..3 {
            let before = ns(clock_gettime(ClockId::Realtime));
            let mono = ns(clock_gettime(ClockId::Monotonic));
            let after = ns(clock_gettime(ClockId::Realtime));
            // A wall clock stepped back between the reads says nothing.
            let Ok(gap) = u64::try_from(after - before) else {
                continue;
            };
            let read = LocalClocks {
                offset_ns: (before + after) / 2 - mono,
                error_ns: gap.div_ceil(2),
            };
            if best.is_none_or(|b| read.error_ns < b.error_ns) {
                best = Some(read);
            }
        }
        best
    }

    #[cfg(not(target_os = "linux"))]
    pub fn read() -> Option<LocalClocks> {
        None
    }
}

/// The best alignment for a parsed trace. `local` is hotspan's clock pair when the target is on
/// this host (see [`on_this_host`]), `None` otherwise.
pub fn align(summary: &Summary, times: ScrapeTimes, local: Option<LocalClocks>) -> Alignment {
    if !summary.clock_snapshots.is_empty() {
        return Alignment::Snapshots;
    }
    if let Some(local) = local.filter(|_| summary.ticks_per_sec == LINUX_TICKS_PER_SEC) {
        let monotonic = Alignment::Offset {
            method: Method::Monotonic,
            offset_ns: local.offset_ns,
            // The trace rounds the clock down to a tick, and Go nudges equal times apart by a
            // few ns: one more tick covers both.
            error_ns: local.error_ns + 2 * TICK_NS,
        };
        if plausible(&monotonic, summary, times) {
            return monotonic;
        }
    }
    by_scrape(summary, times)
}

/// Whether the aligned trace lies within the request that fetched it: tracing starts after the
/// request is sent and stops before the response ends.
fn plausible(alignment: &Alignment, summary: &Summary, times: ScrapeTimes) -> bool {
    let (Some(start), Some(end)) = (
        alignment.unix(summary, summary.start_ns),
        alignment.unix(summary, summary.end_ns),
    ) else {
        return false;
    };
    start.unix_ns + PLAUSIBLE_SLACK_NS >= times.request_unix_ns
        && end.unix_ns <= times.response_end_unix_ns.saturating_add(PLAUSIBLE_SLACK_NS)
}

/// The trace's end is in `[request + length, response end]`: the middle, within half of it.
fn by_scrape(summary: &Summary, times: ScrapeTimes) -> Alignment {
    let length = summary.end_ns.saturating_sub(summary.start_ns);
    let hi = times.response_end_unix_ns;
    // A trace longer than the request took would be a clock problem: then only `hi` is known.
    let lo = times.request_unix_ns.saturating_add(length).min(hi);
    let end_unix = lo + (hi - lo) / 2;
    Alignment::Offset {
        method: Method::Scrape,
        offset_ns: end_unix as i128 - summary.end_ns as i128,
        error_ns: (hi - lo).div_ceil(2),
    }
}

/// Whether the endpoint's host is this machine: a loopback address, or one this host can bind
/// (so an interface has it). Names are resolved; every address must be local.
pub async fn on_this_host(endpoint: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(endpoint) else {
        return false;
    };
    let port = url.port_or_known_default().unwrap_or(0);
    let Some(host) = url.host_str() else {
        return false;
    };
    // IPv6 literals come bracketed in URLs.
    let addrs: Vec<IpAddr> = match host.trim_start_matches('[').trim_end_matches(']').parse() {
        Ok(ip) => vec![ip],
        Err(_) => match tokio::net::lookup_host((host, port)).await {
            Ok(found) => found.map(|a| a.ip()).collect(),
            Err(_) => return false,
        },
    };
    !addrs.is_empty() && addrs.into_iter().all(is_local)
}

fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use hotspan_gotrace::{ClockSnapshot, GoVersion};

    use super::*;

    const S: u64 = 1_000_000_000;

    fn summary(start_ns: u64, end_ns: u64, snapshots: Vec<ClockSnapshot>) -> Summary {
        Summary {
            version: GoVersion::Go123,
            stw: Vec::new(),
            gc: Vec::new(),
            clock_snapshots: snapshots,
            start_ns,
            end_ns,
            covered_until_ns: end_ns,
            ticks_per_sec: LINUX_TICKS_PER_SEC,
            generations: 1,
            events: 0,
            bytes: 0,
        }
    }

    #[test]
    fn snapshots_win_and_their_error_grows_with_distance() {
        let snap = |trace_ns, wall_unix_ns| ClockSnapshot {
            trace_ns,
            wall_unix_ns,
            mono_ns: trace_ns,
        };
        let s = summary(
            100 * S,
            102 * S,
            vec![
                snap(100 * S, 1_700_000_000 * S),
                snap(101 * S, 1_700_000_001 * S + 7),
            ],
        );
        let times = ScrapeTimes {
            request_unix_ns: 0,
            response_end_unix_ns: 1,
        };
        let a = align(&s, times, None);
        assert_eq!(a, Alignment::Snapshots);
        assert_eq!(a.method().as_str(), "clock_snapshot");
        let at = a.unix(&s, 100 * S + 400_000_000).unwrap();
        assert_eq!(at.unix_ns, 1_700_000_000 * S + 400_000_000);
        assert_eq!(at.error_ns, 1_000 + 200_000);
        // Past the middle, the second snapshot (whose wall clock moved 7 ns) is nearer.
        let at = a.unix(&s, 101 * S + 100).unwrap();
        assert_eq!(at.unix_ns, 1_700_000_001 * S + 107);
        assert_eq!(at.error_ns, 1_000);
    }

    #[test]
    fn local_monotonic_when_plausible_else_the_scrape() {
        // The trace ran 5 s on a monotonic clock at 1,000 s; the wall clock is 1.7e9 s ahead.
        let s = summary(1_000 * S, 1_005 * S, Vec::new());
        let offset = 1_700_000_000i128 * S as i128;
        let request = (1_700_001_000 * S) - 3_000_000;
        let times = ScrapeTimes {
            request_unix_ns: request,
            response_end_unix_ns: 1_700_001_005 * S + 2_000_000,
        };
        let local = LocalClocks {
            offset_ns: offset,
            error_ns: 300,
        };
        let a = align(&s, times, Some(local));
        assert_eq!(
            a,
            Alignment::Offset {
                method: Method::Monotonic,
                offset_ns: offset,
                error_ns: 300 + 128
            }
        );
        assert_eq!(a.unix(&s, 1_002 * S).unwrap().unix_ns, 1_700_001_002 * S);

        // Another time namespace: the monotonic clocks differ, and the scrape decides. The
        // end lies in [request + 5 s, response end], a 5 ms gap.
        let elsewhere = LocalClocks {
            offset_ns: offset + 3_600 * S as i128,
            error_ns: 300,
        };
        let a = align(&s, times, Some(elsewhere));
        let Alignment::Offset { method, error_ns, .. } = a else {
            panic!("{a:?}")
        };
        assert_eq!((method, error_ns), (Method::Scrape, 2_500_000));
        let end = a.unix(&s, 1_005 * S).unwrap().unix_ns;
        assert_eq!(end, request + 5 * S + 2_500_000);
        // Not a Linux trace clock: never monotonic.
        let mut windows = summary(1_000 * S, 1_005 * S, Vec::new());
        windows.ticks_per_sec = 10_000_000;
        assert_eq!(align(&windows, times, Some(local)).method(), Method::Scrape);
    }

    #[test]
    fn a_trace_longer_than_its_request_is_pinned_to_the_response_end() {
        let s = summary(0, 10 * S, Vec::new());
        let times = ScrapeTimes {
            request_unix_ns: 100 * S,
            response_end_unix_ns: 105 * S,
        };
        let a = align(&s, times, None);
        assert_eq!(
            a.unix(&s, 10 * S).unwrap(),
            Aligned {
                unix_ns: 105 * S,
                error_ns: 0
            }
        );
    }

    #[test]
    fn this_machine_is_local_and_documentation_addresses_are_not() {
        assert!(is_local("127.0.0.1".parse().unwrap()));
        assert!(is_local("::1".parse().unwrap()));
        // TEST-NET-3 (RFC 5737): assigned to no host.
        assert!(!is_local("203.0.113.9".parse().unwrap()));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn local_clocks_read_close_together() {
        let c = LocalClocks::read().expect("three reads");
        assert!(c.error_ns < 1_000_000, "{c:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i128;
        // The offset is the wall clock minus the time since boot: less than now, more than 0.
        assert!(c.offset_ns > 0 && c.offset_ns < now, "{c:?}");
    }
}
