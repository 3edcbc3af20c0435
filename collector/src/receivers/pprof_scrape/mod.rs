//! The `pprof_scrape` receiver (the sidecar mode): pulls Go's `/debug/pprof` endpoints the way
//! Grafana Alloy's pyroscope.scrape does. CPU is scraped back to back with
//! `profile?seconds=<interval>` so consecutive windows cover the timeline; the other profiles
//! are snapshots taken once per interval.

mod config;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hotspan_config::Signal;
use hotspan_proto::Batch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

pub use config::{PprofScrapeConfig, ProfileKind, Target};

use super::pprof_common::{attributes, convert, string_attribute};
use crate::component::{BoxError, BuildContext, ComponentType, Lifecycle, ReceiverType};
use crate::consumer::{ConsumeError, SignalConsumers};
use crate::receivers::ingest::{Ingest, IngestError};
use crate::telemetry::{Counter, Telemetry};

impl ComponentType for PprofScrape {
    const TYPE_NAME: &'static str = "pprof_scrape";
    type Config = PprofScrapeConfig;
}

impl ReceiverType for PprofScrape {
    const SIGNALS: &'static [Signal] = &[Signal::Profiles];

    fn build(
        ctx: &BuildContext,
        config: PprofScrapeConfig,
        next: SignalConsumers,
    ) -> Result<Arc<dyn Lifecycle>, BoxError> {
        let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
        Ok(Arc::new(PprofScrape {
            name: ctx.name(),
            ingest: Arc::new(Ingest::new(&ctx.name(), "scrape", next, ctx.telemetry)),
            config,
            client,
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
    client: reqwest::Client,
    telemetry: Arc<Telemetry>,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// One loop: one target, one profile kind.
struct Scraper {
    receiver: String,
    target: Target,
    kind: ProfileKind,
    interval: Duration,
    timeout: Duration,
    include_original_payload: bool,
    correlation: super::pprof_common::CorrelationLabels,
    client: reqwest::Client,
    ingest: Arc<Ingest>,
    stop: CancellationToken,
    outcomes: Outcomes,
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
                "pprof scrapes by outcome: ok, failed (unreachable, timeout, HTTP error), bad_data (not pprof), refused (pipeline full).",
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

impl Scraper {
    fn url(&self) -> String {
        let base = self.target.endpoint.trim_end_matches('/');
        match self.kind {
            ProfileKind::Cpu => format!(
                "{base}/debug/pprof/profile?seconds={}",
                self.interval.as_secs().max(1)
            ),
            other => format!("{base}/debug/pprof/{}", other.path()),
        }
    }

    async fn fetch(&self) -> Result<bytes::Bytes, (bool, String)> {
        let response = self
            .client
            .get(self.url())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| (false, format!("request failed: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            return Err((false, format!("HTTP {status}")));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| (false, format!("reading body: {e}")))?;
        Ok(body)
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
                Ok(body) => self.deliver(body).await,
                Err((_, e)) => {
                    self.outcomes.failed.add(1);
                    warn!(receiver = %self.receiver, target = %self.target.endpoint, profile = self.kind.path(), error = %e, "scrape failed");
                    false
                }
            };
            let wait = if ok {
                failures = 0;
                // CPU profiles already took the interval to collect: go again at once.
                match self.kind {
                    ProfileKind::Cpu => Duration::ZERO,
                    _ => self.interval.saturating_sub(started.elapsed()),
                }
            } else {
                failures = failures.saturating_add(1);
                // Back off on a target that is down, up to one interval, then keep trying.
                Duration::from_millis(500)
                    .saturating_mul(1 << failures.min(6))
                    .min(self.interval)
            };
            if self.pause(wait).await {
                return;
            }
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
        for b in self.target.endpoint.bytes().chain(self.kind.path().bytes()) {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        let spread = self.interval.as_millis().max(1) as u64;
        Duration::from_millis(h % spread.min(5_000))
    }

    /// Converts and hands on one scrape; true when the target answered with a usable profile.
    async fn deliver(&self, body: bytes::Bytes) -> bool {
        let mut resource = attributes(&self.target.attributes);
        resource.push(string_attribute("service.name", &self.target.service_name));
        let batch = match convert(body, resource, &self.correlation, self.include_original_payload).await {
            Ok(b) => b,
            Err(e) => {
                self.outcomes.bad_data.add(1);
                self.ingest.bad_request(Signal::Profiles, &e);
                warn!(receiver = %self.receiver, target = %self.target.endpoint, profile = self.kind.path(), error = %e, "target answered with something that is not pprof");
                return false;
            }
        };
        // No client waits on a scrape: a full pipeline gets a few tries before the data is given up.
        let mut batch = Batch::Profiles(batch);
        for attempt in 0..5u32 {
            match self.ingest.deliver(batch).await {
                Ok(_) => {
                    self.outcomes.ok.add(1);
                    debug!(receiver = %self.receiver, target = %self.target.endpoint, profile = self.kind.path(), "scraped");
                    return true;
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
                    warn!(receiver = %self.receiver, target = %self.target.endpoint, error = ?e, "scraped profile dropped: the pipeline did not take it");
                    break;
                }
            }
        }
        self.outcomes.refused.add(1);
        true
    }
}

#[async_trait]
impl Lifecycle for PprofScrape {
    async fn start(&self) -> Result<(), BoxError> {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for target in &self.config.targets {
            for &kind in &self.config.profiles {
                let scraper = Scraper {
                    receiver: self.name.clone(),
                    target: target.clone(),
                    kind,
                    interval: self.config.scrape_interval,
                    timeout: self.config.timeout_for(kind),
                    include_original_payload: self.config.include_original_payload,
                    correlation: self.config.correlation.clone(),
                    client: self.client.clone(),
                    ingest: self.ingest.clone(),
                    stop: self.stop.clone(),
                    outcomes: Outcomes::new(&self.telemetry, &self.name, &target.endpoint, kind.path()),
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
