//! `profiles: [trace]`: Go execution traces (`/debug/pprof/trace?seconds=N`), parsed as they
//! stream in, become OTLP log records: one `go.stw` per stop-the-world pause and one
//! `go.trace.window` per trace, saying which times were traced at all.

use std::io::{self, Read};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use hotspan_gotrace::{Limits, Summary, TraceError};
use hotspan_proto::otlp::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use hotspan_proto::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use hotspan_proto::otlp::resource::v1::Resource;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::mpsc;

use super::align::{align, on_this_host, Alignment, LocalClocks, ScrapeTimes};
use super::client::{FetchError, TargetClient};
use crate::net::error_chain;
use crate::telemetry::{Counter, Gauge, Telemetry};
use hotspan_proto::LogsBatch;

/// Body chunks on their way to the parser. When the parser falls behind, reading the body
/// waits and TCP slows the target's writes: memory stays at a few chunks (hyper's are at most
/// tens of KiB), never the trace.
const CHUNKS_IN_FLIGHT: usize = 16;

/// `InstrumentationScope.name` of the records.
pub const SCOPE: &str = "hotspan/gotrace";
pub const STW_EVENT: &str = "go.stw";
pub const WINDOW_EVENT: &str = "go.trace.window";
/// The runtime's reason for the pause that switches tracing on.
const START_TRACE: &str = "start trace";

/// Why a trace gave no records; the name is the `reason` label of the refusal counter.
#[derive(Debug)]
pub enum Refusal {
    TooLarge(String),
    UnsupportedVersion(String),
    Malformed(String),
    /// Not the trace's fault: unreachable, HTTP error, cut short, timed out.
    Failed(String),
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::TooLarge(_) => "too_large",
            Refusal::UnsupportedVersion(_) => "unsupported_version",
            Refusal::Malformed(_) => "malformed",
            Refusal::Failed(_) => "failed",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Refusal::TooLarge(m)
            | Refusal::UnsupportedVersion(m)
            | Refusal::Malformed(m)
            | Refusal::Failed(m) => m,
        }
    }
}

impl From<TraceError> for Refusal {
    fn from(e: TraceError) -> Self {
        let message = e.to_string();
        match e {
            TraceError::TooLarge { .. } => Refusal::TooLarge(message),
            TraceError::UnsupportedVersion { .. } => Refusal::UnsupportedVersion(message),
            TraceError::Malformed { .. } => Refusal::Malformed(message),
            TraceError::Io(_) => Refusal::Failed(message),
        }
    }
}

/// Traces by result, pauses, and the last clock error bound, per target.
pub struct TraceMetrics {
    parsed: Counter,
    too_large: Counter,
    unsupported_version: Counter,
    malformed: Counter,
    failed: Counter,
    pauses: Counter,
    clock_error: Gauge,
}

impl TraceMetrics {
    pub fn new(telemetry: &Telemetry, receiver: &str, target: &str) -> Self {
        let m = &telemetry.metrics;
        let labels = [("receiver", receiver), ("target", target)];
        let refused = |reason: &str| {
            m.counter(
                "hotspan_go_traces_refused",
                "Go execution traces not read, by reason: too_large (over max_trace_bytes), unsupported_version (before Go 1.22), malformed, failed (unreachable, HTTP error, cut short).",
                &[("receiver", receiver), ("target", target), ("reason", reason)],
            )
        };
        TraceMetrics {
            parsed: m.counter(
                "hotspan_go_traces_parsed",
                "Go execution traces read into log records.",
                &labels,
            ),
            too_large: refused("too_large"),
            unsupported_version: refused("unsupported_version"),
            malformed: refused("malformed"),
            failed: refused("failed"),
            pauses: m.counter(
                "hotspan_go_stw_pauses",
                "Stop-the-world pauses found in Go execution traces.",
                &labels,
            ),
            clock_error: m.gauge(
                "hotspan_go_trace_clock_error_ns",
                "Error bound of the last trace's alignment to Unix time, ns.",
                &labels,
            ),
        }
    }

    pub fn refused(&self, r: &Refusal) {
        match r {
            Refusal::TooLarge(_) => &self.too_large,
            Refusal::UnsupportedVersion(_) => &self.unsupported_version,
            Refusal::Malformed(_) => &self.malformed,
            Refusal::Failed(_) => &self.failed,
        }
        .add(1);
    }

    pub fn parsed(&self, pauses: usize, clock_error_ns: u64) {
        self.parsed.add(1);
        self.pauses.add(pauses as u64);
        self.clock_error
            .set(i64::try_from(clock_error_ns).unwrap_or(i64::MAX));
    }
}

/// A parsed trace and when it was fetched.
pub struct Fetched {
    pub summary: Summary,
    pub times: ScrapeTimes,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Fetches one trace within `timeout`, parsing on a blocking thread as the body arrives, at
/// most `max_bytes` of it.
pub async fn fetch(
    client: &TargetClient,
    url: &str,
    timeout: Duration,
    max_bytes: u64,
) -> Result<Fetched, Refusal> {
    // Unix time from one wall clock reading plus monotonic elapsed time: a wall clock step
    // during the trace does not bend the window.
    let request_unix_ns = unix_now();
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let no_answer = || Refusal::Failed(format!("no complete answer within {timeout:?}"));
    let response = match tokio::time::timeout_at(deadline, client.get(url)).await {
        Err(_) => return Err(no_answer()),
        Ok(Err(FetchError::Failed(e))) => return Err(Refusal::Failed(e)),
        Ok(Err(FetchError::TooLarge { limit })) => {
            return Err(Refusal::TooLarge(format!("over {limit} bytes")))
        }
        Ok(Ok(r)) => r,
    };
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let defaults = Limits::default();
    let limits = Limits {
        max_bytes,
        max_generation_bytes: usize::try_from(max_bytes)
            .unwrap_or(usize::MAX)
            .min(defaults.max_generation_bytes),
        ..defaults
    };
    let parser = tokio::task::spawn_blocking(move || hotspan_gotrace::parse(ChannelReader::new(rx), &limits));
    let fed = tokio::time::timeout_at(deadline, feed(response.into_body(), &tx)).await;
    // The end of input for the parser. Past this point (and on cancellation) it stops by itself.
    drop(tx);
    let response_end_unix_ns =
        request_unix_ns.saturating_add(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
    match fed {
        Err(_) => return Err(no_answer()),
        Ok(Fed::Failed(e)) => return Err(Refusal::Failed(e)),
        Ok(Fed::Done | Fed::ParserStopped) => {}
    }
    let summary = parser
        .await
        .map_err(|e| Refusal::Failed(format!("the trace parser stopped: {e}")))??;
    Ok(Fetched {
        summary,
        times: ScrapeTimes {
            request_unix_ns,
            response_end_unix_ns,
        },
    })
}

enum Fed {
    Done,
    /// The parser stopped reading (refused the trace); its error says why.
    ParserStopped,
    Failed(String),
}

async fn feed(mut body: Incoming, tx: &mpsc::Sender<io::Result<Bytes>>) -> Fed {
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    if tx.send(Ok(data)).await.is_err() {
                        return Fed::ParserStopped;
                    }
                }
            }
            Err(e) => {
                let message = format!("the trace was cut short: {}", error_chain(&e));
                // So the parser does not take a cut trace for a whole one.
                let _ = tx.send(Err(io::Error::other(message.clone()))).await;
                return Fed::Failed(message);
            }
        }
    }
    Fed::Done
}

/// The body as a `Read` for the parser's thread.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        ChannelReader {
            rx,
            chunk: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        self.chunk.copy_to_slice(&mut buf[..n]);
        Ok(n)
    }
}

/// How the target's trace clock was tied to Unix time: by the trace's own snapshots, else
/// by hotspan's clocks when the target is on this host, else by the scrape's times.
pub async fn alignment(endpoint: &str, fetched: &Fetched) -> Alignment {
    let local = if fetched.summary.clock_snapshots.is_empty() && on_this_host(endpoint).await {
        LocalClocks::read()
    } else {
        None
    };
    align(&fetched.summary, fetched.times, local)
}

fn attribute(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn int(key: &str, n: u64) -> KeyValue {
    attribute(
        key,
        any_value::Value::IntValue(i64::try_from(n).unwrap_or(i64::MAX)),
    )
}

fn string(key: &str, s: &str) -> KeyValue {
    attribute(key, any_value::Value::StringValue(s.to_string()))
}

/// The records of one trace: its window first, then its pauses in order, and the largest error
/// bound among them. A time no clock can hold (only a corrupt trace has one) refuses the trace.
pub fn records(
    summary: &Summary,
    alignment: &Alignment,
    observed_unix_ns: u64,
) -> Result<(Vec<LogRecord>, u64), Refusal> {
    let unix = |trace_ns: u64| {
        alignment.unix(summary, trace_ns).ok_or_else(|| {
            Refusal::Malformed(format!(
                "trace time {trace_ns} ns cannot be put on the Unix clock"
            ))
        })
    };
    let method = alignment.method().as_str();
    let (start, end) = (unix(covered_from(summary))?, unix(summary.covered_until_ns)?);
    let mut max_error = start.error_ns.max(end.error_ns);
    let mut out = Vec::with_capacity(summary.stw.len() + 1);
    out.push(LogRecord {
        time_unix_nano: start.unix_ns,
        observed_time_unix_nano: observed_unix_ns,
        event_name: WINDOW_EVENT.into(),
        attributes: vec![
            int("go.trace.window_end_unix_nano", end.unix_ns),
            string("go.trace.version", &summary.version.to_string()),
            int("go.trace.gc_cycles", summary.gc.len() as u64),
            int("go.trace.stw_pauses", summary.stw.len() as u64),
            string("go.trace.clock_alignment", method),
            int("go.trace.clock_error_ns", max_error),
        ],
        ..Default::default()
    });
    for p in &summary.stw {
        let at = unix(p.start_ns)?;
        max_error = max_error.max(at.error_ns);
        let mut attributes = vec![
            string("go.stw.reason", &p.reason),
            attribute("go.stw.gc", any_value::Value::BoolValue(p.gc)),
            int(
                "go.stw.duration_ns",
                p.end_ns
                    .unwrap_or(summary.covered_until_ns)
                    .saturating_sub(p.start_ns),
            ),
            string("go.trace.clock_alignment", method),
            int("go.trace.clock_error_ns", at.error_ns),
        ];
        if p.end_ns.is_none() {
            // The trace ended before the world restarted: the duration is a lower bound.
            attributes.push(attribute("go.stw.truncated", any_value::Value::BoolValue(true)));
        }
        out.push(LogRecord {
            time_unix_nano: at.unix_ns,
            observed_time_unix_nano: observed_unix_ns,
            event_name: STW_EVENT.into(),
            attributes,
            ..Default::default()
        });
    }
    Ok((out, max_error))
}

/// Where the trace sees every pause: from when the world stopped to start tracing. The first
/// events Go's parser reports are older, but tracing was still being switched on then, and a
/// GC pause there can be missing (seen under heavy GC): the window must not claim that time.
fn covered_from(summary: &Summary) -> u64 {
    summary
        .stw
        .iter()
        .find(|p| p.reason == START_TRACE)
        .map_or(summary.start_ns, |p| p.start_ns.max(summary.start_ns))
}

/// The records under the target's resource.
pub fn batch(resource: Vec<KeyValue>, records: Vec<LogRecord>) -> LogsBatch {
    LogsBatch::from_resources(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: resource,
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: SCOPE.into(),
                ..Default::default()
            }),
            log_records: records,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }])
}

#[cfg(test)]
mod tests {
    use hotspan_gotrace::{ClockSnapshot, GcCycle, GoVersion, Stw};

    use super::super::align::Method;
    use super::*;

    fn value<'a>(r: &'a LogRecord, key: &str) -> Option<&'a any_value::Value> {
        r.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn pauses_become_events_on_the_unix_clock() {
        let s = Summary {
            version: GoVersion::Go126,
            stw: vec![
                Stw {
                    start_ns: 1_000_050,
                    end_ns: Some(1_000_060),
                    reason: START_TRACE.into(),
                    gc: false,
                },
                Stw {
                    start_ns: 1_000_100,
                    end_ns: Some(1_000_400),
                    reason: "GC sweep termination".into(),
                    gc: true,
                },
                Stw {
                    start_ns: 1_900_000,
                    end_ns: None,
                    reason: "goroutine profile".into(),
                    gc: false,
                },
            ],
            gc: vec![GcCycle {
                seq: 1,
                start_ns: Some(1_000_200),
                end_ns: None,
            }],
            clock_snapshots: vec![ClockSnapshot {
                trace_ns: 1_000_000,
                wall_unix_ns: 5_000_000_000,
                mono_ns: 1_000_000,
            }],
            start_ns: 1_000_000,
            end_ns: 2_000_100,
            // Goroutine statuses written as tracing stopped come after: the window ends here.
            covered_until_ns: 2_000_000,
            ticks_per_sec: 15_625_000,
            generations: 1,
            events: 10,
            bytes: 100,
        };
        let (recs, max_error) = records(&s, &Alignment::Snapshots, 7).unwrap();
        assert_eq!(recs.len(), 4);
        let w = &recs[0];
        // The window starts when the world stopped to start tracing, not at the first event.
        assert_eq!(
            (w.event_name.as_str(), w.time_unix_nano),
            (WINDOW_EVENT, 5_000_000_050)
        );
        assert_eq!(
            value(w, "go.trace.window_end_unix_nano"),
            Some(&any_value::Value::IntValue(5_001_000_000))
        );
        assert_eq!(
            value(w, "go.trace.version"),
            Some(&any_value::Value::StringValue("go1.26".into()))
        );
        assert_eq!(
            value(w, "go.trace.gc_cycles"),
            Some(&any_value::Value::IntValue(1))
        );
        assert_eq!(recs[1].time_unix_nano, 5_000_000_050);
        let p = &recs[2];
        assert_eq!(
            (p.event_name.as_str(), p.time_unix_nano, p.observed_time_unix_nano),
            (STW_EVENT, 5_000_000_100, 7)
        );
        assert_eq!(
            value(p, "go.stw.duration_ns"),
            Some(&any_value::Value::IntValue(300))
        );
        assert_eq!(value(p, "go.stw.gc"), Some(&any_value::Value::BoolValue(true)));
        assert_eq!(
            value(p, "go.trace.clock_alignment"),
            Some(&any_value::Value::StringValue("clock_snapshot".into()))
        );
        assert_eq!(value(p, "go.stw.truncated"), None);
        // Cut by the trace's end: lasted at least until then.
        let open = &recs[3];
        assert_eq!(
            value(open, "go.stw.duration_ns"),
            Some(&any_value::Value::IntValue(100_000))
        );
        assert_eq!(
            value(open, "go.stw.truncated"),
            Some(&any_value::Value::BoolValue(true))
        );
        assert_eq!(
            value(open, "go.stw.gc"),
            Some(&any_value::Value::BoolValue(false))
        );
        // 1 µs at a snapshot, plus 500 ppm of the distance to it (1 ms at the window's end).
        assert_eq!(max_error, 1_000 + 500);

        let before_epoch = Alignment::Offset {
            method: Method::Scrape,
            offset_ns: -1_500_000,
            error_ns: 1,
        };
        assert!(matches!(
            records(&s, &before_epoch, 0),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn the_reader_hands_on_chunks_and_errors() {
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Ok(Bytes::from_static(b"go 1."))).unwrap();
        tx.try_send(Ok(Bytes::from_static(b"26 trace"))).unwrap();
        tx.try_send(Err(io::Error::other("cut"))).unwrap();
        let mut r = ChannelReader::new(rx);
        let mut got = vec![0; 3];
        r.read_exact(&mut got).unwrap();
        assert_eq!(got, b"go ");
        let mut rest = vec![0; 10];
        r.read_exact(&mut rest).unwrap();
        assert_eq!(rest, b"1.26 trace");
        assert_eq!(r.read(&mut rest).unwrap_err().to_string(), "cut");
        drop(tx);
        assert_eq!(r.read(&mut rest).unwrap(), 0);
    }
}
