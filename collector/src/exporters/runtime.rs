//! Runs an [`Exporter`] behind its sending queue and retry policy, the way otelcol's
//! exporterhelper does: consumers enqueue and return; workers send, retry and count.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use hotspan_config::Signal;
use hotspan_proto::Batch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn, Instrument};

use super::queue::{MemoryQueue, SendingQueue};
use super::retry::{Backoff, RetryConfig};
use super::ExportError;
use crate::component::{BoxError, BuiltExporter, Exporter, Lifecycle};
use crate::consumer::{BoxFuture, ConsumeError, Consumer};
use crate::telemetry::{Counter, Gauge, Telemetry};

/// Per-signal item counters, named as otelcol names them.
struct SignalCounters {
    sent: Counter,
    failed: Counter,
    enqueue_failed: Counter,
}

pub(crate) fn item_unit(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "spans",
        Signal::Metrics => "metric_points",
        Signal::Logs => "log_records",
        Signal::Profiles => "samples",
    }
}

struct Sender {
    name: String,
    exporter: Arc<dyn Exporter>,
    retry: RetryConfig,
    counters: Vec<(Signal, SignalCounters)>,
    /// Set when shutdown starts: retries stop waiting past the deadline.
    stopping: CancellationToken,
    deadline: OnceLock<Instant>,
}

impl Sender {
    fn counters(&self, signal: Signal) -> Option<&SignalCounters> {
        self.counters.iter().find(|(s, _)| *s == signal).map(|(_, c)| c)
    }

    /// Sends until it succeeds, fails for good, runs out of retry time or of shutdown grace.
    async fn send(&self, batch: &Batch) -> Result<(), ConsumeError> {
        let started = Instant::now();
        let mut backoff = Backoff::new(&self.retry);
        let items = batch.item_count() as u64;
        let counters = self.counters(batch.signal());
        loop {
            let err = match self.exporter.export(batch).await {
                Ok(()) => {
                    counters.inspect(|c| c.sent.add(items));
                    return Ok(());
                }
                Err(e) => e,
            };
            let give_up = |reason: String, err: ConsumeError| {
                counters.inspect(|c| c.failed.add(items));
                error!(exporter = %self.name, items, error = %reason, "dropping data");
                Err(err)
            };
            let hint = match &err {
                ExportError::Permanent(reason) => {
                    return give_up(
                        format!("permanent error: {reason}"),
                        ConsumeError::Permanent(reason.clone()),
                    )
                }
                ExportError::Retryable { retry_after, .. } => *retry_after,
            };
            if !self.retry.enabled {
                return give_up(
                    format!("{err} (retry disabled)"),
                    ConsumeError::retryable(err.to_string()),
                );
            }
            let wait = backoff.next(hint);
            let elapsed = started.elapsed();
            if !self.retry.max_elapsed_time.is_zero() && elapsed + wait > self.retry.max_elapsed_time {
                return give_up(
                    format!("{err}; no more retries after {elapsed:?}"),
                    ConsumeError::retryable(err.to_string()),
                );
            }
            let wake = Instant::now() + wait;
            if let Some(deadline) = self.deadline.get() {
                if wake > *deadline {
                    return give_up(
                        format!("{err}; shutdown deadline reached"),
                        ConsumeError::retryable(err.to_string()),
                    );
                }
            }
            warn!(exporter = %self.name, error = %err, retry_in = ?wait, "export failed, will retry");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                // Shutdown started: re-check the wait against its deadline.
                _ = self.stopping.cancelled(), if !self.stopping.is_cancelled() => {
                    if let Some(deadline) = self.deadline.get() {
                        tokio::time::sleep_until(tokio::time::Instant::from_std(wake.min(*deadline))).await;
                    }
                }
            }
        }
    }
}

pub struct ExporterRuntime {
    sender: Arc<Sender>,
    queue: Option<Arc<dyn SendingQueue>>,
    num_consumers: usize,
    queue_size: Gauge,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl ExporterRuntime {
    pub fn new(name: String, built: BuiltExporter, signals: &[Signal], telemetry: &Telemetry) -> Self {
        let m = &telemetry.metrics;
        let labels = [("exporter", name.as_str())];
        let counters = signals
            .iter()
            .map(|&s| {
                let unit = item_unit(s);
                let c = SignalCounters {
                    sent: m.counter(
                        &format!("otelcol_exporter_sent_{unit}"),
                        "Items sent to the destination.",
                        &labels,
                    ),
                    failed: m.counter(
                        &format!("otelcol_exporter_send_failed_{unit}"),
                        "Items that could not be sent and were dropped.",
                        &labels,
                    ),
                    enqueue_failed: m.counter(
                        &format!("otelcol_exporter_enqueue_failed_{unit}"),
                        "Items refused because the sending queue was full.",
                        &labels,
                    ),
                };
                (s, c)
            })
            .collect();
        let queue: Option<Arc<dyn SendingQueue>> = built
            .queue
            .enabled
            .then(|| Arc::new(MemoryQueue::new(built.queue.clone())) as Arc<dyn SendingQueue>);
        if let Some(q) = &queue {
            m.gauge(
                "otelcol_exporter_queue_capacity",
                "Capacity of the sending queue.",
                &labels,
            )
            .set(q.capacity() as i64);
        }
        ExporterRuntime {
            queue_size: m.gauge(
                "otelcol_exporter_queue_size",
                "Occupied size of the sending queue.",
                &labels,
            ),
            sender: Arc::new(Sender {
                name,
                exporter: built.exporter,
                retry: built.retry,
                counters,
                stopping: CancellationToken::new(),
                deadline: OnceLock::new(),
            }),
            queue,
            num_consumers: built.queue.num_consumers,
            workers: Mutex::new(Vec::new()),
        }
    }
}

impl Consumer for ExporterRuntime {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, Result<(), ConsumeError>> {
        Box::pin(async move {
            match &self.queue {
                None => self.sender.send(&batch).await.map_err(|e| match e {
                    ConsumeError::Retryable {
                        reason, retry_after, ..
                    } => ConsumeError::Retryable {
                        reason,
                        retry_after,
                        batch: Some(Box::new(batch)),
                    },
                    permanent => permanent,
                }),
                Some(queue) => {
                    let (signal, items) = (batch.signal(), batch.item_count() as u64);
                    let result = queue.push(batch).await;
                    match &result {
                        Ok(()) => self.queue_size.set(queue.size() as i64),
                        Err(_) => {
                            self.sender
                                .counters(signal)
                                .inspect(|c| c.enqueue_failed.add(items));
                        }
                    }
                    result
                }
            }
        })
    }
}

#[async_trait]
impl Lifecycle for ExporterRuntime {
    async fn start(&self) -> Result<(), BoxError> {
        self.sender.exporter.start().await?;
        let Some(queue) = &self.queue else { return Ok(()) };
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..self.num_consumers {
            let (queue, sender, gauge) = (queue.clone(), self.sender.clone(), self.queue_size.clone());
            let span = tracing::info_span!("component", kind = "exporter", id = %sender.name);
            workers.push(tokio::spawn(
                async move {
                    while let Some(item) = queue.pop().await {
                        // Failures were counted and logged by `send`; the item leaves either way.
                        let _ = sender.send(&item.batch).await;
                        item.done();
                        gauge.set(queue.size() as i64);
                    }
                }
                .instrument(span),
            ));
        }
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) {
        let _ = self.sender.deadline.set(deadline);
        self.sender.stopping.cancel();
        if let Some(queue) = &self.queue {
            queue.close();
            let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
            for w in workers {
                let abort = w.abort_handle();
                if tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), w)
                    .await
                    .is_err()
                {
                    abort.abort();
                }
            }
            let left = queue.size();
            if left > 0 {
                error!(exporter = %self.sender.name, left, "shutdown deadline passed with data still queued");
            }
        }
        self.sender.exporter.shutdown().await;
    }
}
