//! The `pprof_scrape` receiver (the sidecar mode): pulls Go's `/debug/pprof` endpoints the way
//! Grafana Alloy's pyroscope.scrape does. CPU is scraped back to back with
//! `profile?seconds=<interval>` so consecutive windows cover the timeline. Goroutine snapshots
//! come on their own timer (`goroutine_interval`), each stamped as the instant it was taken.
//! Execution traces (`trace`) become log records of the stop-the-world pauses they saw. The
//! other profiles are snapshots taken once per interval.

pub mod align;
mod client;
mod config;
#[cfg(test)]
mod tests;
mod trace;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use hotspan_config::Signal;
use hotspan_proto::otlp::common::v1::KeyValue;
use hotspan_proto::pprof::Snapshot;
use hotspan_proto::Batch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use self::client::{read_body, FetchError, TargetClient};
pub use self::config::{PprofScrapeConfig, ProfileKind, Target};
use self::trace::{Refusal, TraceMetrics};
pub use self::trace::{SCOPE as TRACE_SCOPE, STW_EVENT, WINDOW_EVENT};
use super::pprof_common::{attributes, convert, string_attribute, CorrelationLabels};
use crate::component::{BoxError, BuildContext, ComponentType, Lifecycle, ReceiverType};
use crate::consumer::{ConsumeError, SignalConsumers};
use crate::receivers::ingest::{Ingest, IngestError};
use crate::telemetry::{Counter, Telemetry};

/// The largest pprof body taken: the converter's own limit on the decompressed size, which a
/// gzipped body is well under.
const MAX_PPROF_BYTES: usize = 64 << 20;

impl ComponentType for PprofScrape {
    const TYPE_NAME: &'static str = "pprof_scrape";
    type Config = PprofScrapeConfig;
}

impl ReceiverType for PprofScrape {
    /// Profiles from pprof; logs (stop-the-world pauses) from execution traces.
    const SIGNALS: &'static [Signal] = &[Signal::Profiles, Signal::Logs];

    fn build(
        ctx: &BuildContext,
        config: PprofScrapeConfig,
        next: SignalConsumers,
    ) -> Result<Arc<dyn Lifecycle>, BoxError> {
        let traces = config.profiles.contains(&ProfileKind::Trace);
        let profiles = config.profiles.iter().any(|k| *k != ProfileKind::Trace);
        let name = ctx.name();
        // Scraping what no pipeline takes would fail every scrape at run time: say so now.
        if traces && next.get(Signal::Logs).is_none() {
            return Err(format!(
                "profiles lists trace, whose stop-the-world pauses are logs: list {name} in a logs pipeline's receivers"
            )
            .into());
        }
        if profiles && next.get(Signal::Profiles).is_none() {
            return Err(format!(
                "list {name} in a profiles pipeline's receivers for the profiles it scrapes"
            )
            .into());
        }
        if next.get(Signal::Logs).is_some() && !traces {
            return Err(
                "it is in a logs pipeline, which only `trace` feeds: add trace to its profiles".into(),
            );
        }
        let targets = config
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut resource = attributes(&t.attributes);
                resource.push(string_attribute("service.name", &t.service_name));
                Ok(Arc::new(TargetState {
                    client: TargetClient::new(t, &format!("targets[{i}]"), ctx, config.scrape_timeout)?,
                    config: t.clone(),
                    resource,
                }))
            })
            .collect::<Result<Vec<_>, BoxError>>()?;
        Ok(Arc::new(PprofScrape {
            ingest: Arc::new(Ingest::new(&name, "scrape", next, ctx.telemetry)),
            name,
            config,
            targets,
            telemetry: ctx.telemetry.clone(),
            stop: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
        }))
    }
}

pub struct PprofScrape {
    name: String,
    config: PprofScrapeConfig,
    ingest: Arc<Ingest>,
    /// One per configured target, in order.
    targets: Vec<Arc<TargetState>>,
    telemetry: Arc<Telemetry>,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// What every scraper of one target shares.
struct TargetState {
    config: Target,
    client: TargetClient,
    /// Its resource attributes, `service.name` last.
    resource: Vec<KeyValue>,
}

/// One loop: one target, one profile kind.
struct Scraper {
    receiver: String,
    target: Arc<TargetState>,
    kind: ProfileKind,
    /// Start to start.
    period: Duration,
    /// For one whole request, body included.
    timeout: Duration,
    trace_duration: Duration,
    max_trace_bytes: u64,
    include_original_payload: bool,
    correlation: CorrelationLabels,
    ingest: Arc<Ingest>,
    stop: CancellationToken,
    outcomes: Outcomes,
    /// For `trace` only.
    traces: Option<TraceMetrics>,
}

/// Scrapes by result, per target and profile.
struct Outcomes {
    ok: Counter,
    failed: Counter,
    bad_data: Counter,
    refused: Counter,
}

impl Outcomes {
    fn new(telemetry: &Telemetry, receiver: &str, target: &str, profile: &str) -> Self {
        let c = |outcome: &str| {
            telemetry.metrics.counter(
                "hotspan_scrapes",
                "pprof scrapes by outcome: ok, failed (unreachable, timeout, TLS, HTTP error), bad_data (not pprof, or a trace refused), refused (pipeline full).",
                &[("receiver", receiver), ("target", target), ("profile", profile), ("outcome", outcome)],
            )
        };
        Outcomes {
            ok: c("ok"),
            failed: c("failed"),
            bad_data: c("bad_data"),
            refused: c("refused"),
        }
    }
}

/// What one scrape brought back.
enum Payload {
    Pprof {
        body: Bytes,
        /// The middle of the request, for a snapshot that carries no time of its own.
        midpoint_unix_ns: u64,
    },
    Trace(trace::Fetched),
}

/// Why a scrape brought nothing back.
enum Failure {
    /// The target or the network: unreachable, TLS, timeout, HTTP error.
    Failed(String),
    /// The target answered with something unusable.
    BadData(String),
    /// A trace not read, with its reason.
    Trace(Refusal),
}

/// `seconds` as Go's handlers parse it: whole seconds bare, else with the fraction.
fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{:.3}", d.as_secs_f64())
    }
}

impl Scraper {
    fn url(&self) -> String {
        let base = self.target.config.endpoint.trim_end_matches('/');
        match self.kind {
            ProfileKind::Cpu => format!(
                "{base}/debug/pprof/profile?seconds={}",
                self.period.as_secs().max(1)
            ),
            // debug=0: the binary profile, which carries the goroutines' labels.
            ProfileKind::Goroutine => format!("{base}/debug/pprof/goroutine?debug=0"),
            ProfileKind::Trace => format!(
                "{base}/debug/pprof/trace?seconds={}",
                seconds(self.trace_duration)
            ),
            other => format!("{base}/debug/pprof/{}", other.path()),
        }
    }

    async fn fetch(&self) -> Result<Payload, Failure> {
        let url = self.url();
        if self.kind == ProfileKind::Trace {
            return trace::fetch(&self.target.client, &url, self.timeout, self.max_trace_bytes)
                .await
                .map(Payload::Trace)
                .map_err(Failure::Trace);
        }
        let requested = trace::unix_now();
        let started = Instant::now();
        let exchange = async {
            let response = self.target.client.get(&url).await?;
            read_body(response.into_body(), MAX_PPROF_BYTES).await
        };
        let body = match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => {
                return Err(Failure::Failed(format!(
                    "no complete answer within {:?}",
                    self.timeout
                )))
            }
            Ok(Err(FetchError::Failed(e))) => return Err(Failure::Failed(e)),
            Ok(Err(FetchError::TooLarge { limit })) => {
                return Err(Failure::BadData(format!("the profile is over {limit} bytes")))
            }
            Ok(Ok(body)) => body,
        };
        let half = u64::try_from(started.elapsed().as_nanos() / 2).unwrap_or(u64::MAX);
        Ok(Payload::Pprof {
            body,
            midpoint_unix_ns: requested.saturating_add(half),
        })
    }

    async fn run(self) {
        // Spread targets over the interval so a fleet of them does not scrape in lockstep.
        let jitter = self.jitter();
        if self.pause(jitter).await {
            return;
        }
        let mut failures: u32 = 0;
        loop {
            let started = Instant::now();
            let result = tokio::select! {
                r = self.fetch() => r,
                _ = self.stop.cancelled() => return,
            };
            let ok = match result {
                Ok(Payload::Pprof {
                    body,
                    midpoint_unix_ns,
                }) => self.deliver_profile(body, midpoint_unix_ns).await,
                Ok(Payload::Trace(fetched)) => self.deliver_trace(fetched).await,
                Err(failure) => {
                    self.failed(failure);
                    false
                }
            };
            let wait = if ok {
                failures = 0;
                // Start to start: a CPU profile or a back-to-back trace took its whole period
                // to collect, so the next one starts at once.
                self.period.saturating_sub(started.elapsed())
            } else {
                failures = failures.saturating_add(1);
                // Back off on a target that is down, up to one period, then keep trying.
                Duration::from_millis(500)
                    .saturating_mul(1 << failures.min(6))
                    .min(self.period)
            };
            if self.pause(wait).await {
                return;
            }
        }
    }

    fn failed(&self, failure: Failure) {
        let (endpoint, profile) = (&self.target.config.endpoint, self.kind.path());
        match failure {
            Failure::Failed(e) => {
                self.outcomes.failed.add(1);
                warn!(receiver = %self.receiver, target = %endpoint, profile, error = %e, "scrape failed");
            }
            Failure::BadData(e) => self.bad_data(&e),
            Failure::Trace(refusal) => self.trace_refused(&refusal),
        }
    }

    fn bad_data(&self, e: &str) {
        self.outcomes.bad_data.add(1);
        let signal = match self.kind {
            ProfileKind::Trace => Signal::Logs,
            _ => Signal::Profiles,
        };
        self.ingest.bad_request(signal, e);
        warn!(receiver = %self.receiver, target = %self.target.config.endpoint, profile = self.kind.path(), error = %e, "target answered with something that is not usable");
    }

    fn trace_refused(&self, refusal: &Refusal) {
        if let Some(m) = &self.traces {
            m.refused(refusal);
        }
        if let Refusal::Failed(e) = refusal {
            self.outcomes.failed.add(1);
            warn!(receiver = %self.receiver, target = %self.target.config.endpoint, profile = "trace", error = %e, "scrape failed");
        } else {
            self.outcomes.bad_data.add(1);
            self.ingest.bad_request(Signal::Logs, refusal.message());
            warn!(receiver = %self.receiver, target = %self.target.config.endpoint, reason = refusal.reason(), error = %refusal.message(), "Go execution trace refused");
        }
    }

    /// Sleeps; true when the receiver is stopping.
    async fn pause(&self, wait: Duration) -> bool {
        if wait.is_zero() {
            return self.stop.is_cancelled();
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = self.stop.cancelled() => true,
        }
    }

    fn jitter(&self) -> Duration {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self
            .target
            .config
            .endpoint
            .bytes()
            .chain(self.kind.path().bytes())
        {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        let spread = self.period.as_millis().max(1) as u64;
        Duration::from_millis(h % spread.min(5_000))
    }

    /// Converts and hands on one scrape; true when the target answered with a usable profile.
    async fn deliver_profile(&self, body: Bytes, midpoint_unix_ns: u64) -> bool {
        let snapshot = (self.kind == ProfileKind::Goroutine).then(|| Snapshot {
            period_nano: u64::try_from(self.period.as_nanos()).unwrap_or(u64::MAX),
            fallback_time_unix_nano: midpoint_unix_ns,
        });
        let batch = match convert(
            body,
            self.target.resource.clone(),
            &self.correlation,
            self.include_original_payload,
            snapshot,
        )
        .await
        {
            Ok(b) => b,
            Err(e) => {
                self.bad_data(&e);
                return false;
            }
        };
        self.hand_on(Batch::Profiles(batch)).await;
        true
    }

    /// Aligns a parsed trace to Unix time and hands its records on; true when it was usable.
    async fn deliver_trace(&self, fetched: trace::Fetched) -> bool {
        let alignment = trace::alignment(&self.target.config.endpoint, &fetched).await;
        let observed = trace::unix_now();
        let (records, clock_error_ns) = match trace::records(&fetched.summary, &alignment, observed) {
            Ok(r) => r,
            Err(refusal) => {
                self.trace_refused(&refusal);
                return false;
            }
        };
        let summary = &fetched.summary;
        if let Some(m) = &self.traces {
            m.parsed(summary.stw.len(), clock_error_ns);
        }
        debug!(receiver = %self.receiver, target = %self.target.config.endpoint, version = %summary.version,
            pauses = summary.stw.len(), gc_cycles = summary.gc.len(), bytes = summary.bytes,
            alignment = alignment.method().as_str(), clock_error_ns, "Go execution trace read");
        let batch = trace::batch(self.target.resource.clone(), records);
        self.hand_on(Batch::Logs(batch)).await;
        true
    }

    /// No client waits on a scrape: a full pipeline gets a few tries before the data is given up.
    async fn hand_on(&self, mut batch: Batch) {
        for attempt in 0..5u32 {
            match self.ingest.deliver(batch).await {
                Ok(_) => {
                    self.outcomes.ok.add(1);
                    debug!(receiver = %self.receiver, target = %self.target.config.endpoint, profile = self.kind.path(), "scraped");
                    return;
                }
                Err(IngestError::Refused(ConsumeError::Retryable {
                    batch: Some(back),
                    reason,
                    ..
                })) if attempt < 4 => {
                    debug!(error = %reason, "pipeline busy, retrying the scrape's delivery");
                    batch = *back;
                    if self.pause(Duration::from_millis(200 << attempt)).await {
                        break;
                    }
                }
                Err(e) => {
                    warn!(receiver = %self.receiver, target = %self.target.config.endpoint, error = ?e, "scraped data dropped: the pipeline did not take it");
                    break;
                }
            }
        }
        self.outcomes.refused.add(1);
    }
}

#[async_trait]
impl Lifecycle for PprofScrape {
    async fn start(&self) -> Result<(), BoxError> {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for target in &self.targets {
            let endpoint = &target.config.endpoint;
            for &kind in &self.config.profiles {
                let scraper = Scraper {
                    receiver: self.name.clone(),
                    target: target.clone(),
                    kind,
                    period: self.config.period_for(kind),
                    timeout: self.config.timeout_for(kind),
                    trace_duration: self.config.trace_duration,
                    max_trace_bytes: self.config.max_trace_bytes,
                    include_original_payload: self.config.include_original_payload,
                    correlation: self.config.correlation.clone(),
                    ingest: self.ingest.clone(),
                    stop: self.stop.clone(),
                    outcomes: Outcomes::new(&self.telemetry, &self.name, endpoint, kind.path()),
                    traces: (kind == ProfileKind::Trace)
                        .then(|| TraceMetrics::new(&self.telemetry, &self.name, endpoint)),
                };
                tasks.push(tokio::spawn(scraper.run().in_current_span()));
            }
        }
        info!(receiver = %self.name, targets = self.config.targets.len(), interval = ?self.config.scrape_interval, "scraping pprof");
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) {
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}
