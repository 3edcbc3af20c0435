//! Sending one batch with the exporter's retry policy, counting the outcome as otelcol does.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hotspan_config::Signal;
use hotspan_proto::Batch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::item_unit;
use crate::component::Exporter;
use crate::consumer::ConsumeError;
use crate::exporters::ExportError;
use crate::retry::{Attempt, GaveUp, Retrier, RetryConfig};
use crate::telemetry::{Counter, Telemetry};

/// Per-signal item counters, named as otelcol names them.
pub(super) struct SignalCounters {
    sent: Counter,
    failed: Counter,
    enqueue_failed: Counter,
}

impl SignalCounters {
    pub(super) fn new(telemetry: &Telemetry, exporter: &str, signal: Signal) -> Self {
        let m = &telemetry.metrics;
        let labels = [("exporter", exporter)];
        let unit = item_unit(signal);
        SignalCounters {
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
        }
    }
}

pub(super) struct Sender {
    pub(super) name: String,
    pub(super) exporter: Arc<dyn Exporter>,
    retry: RetryConfig,
    counters: Vec<(Signal, SignalCounters)>,
    /// Set when shutdown starts: retries stop waiting past the deadline.
    stopping: CancellationToken,
    deadline: OnceLock<Instant>,
    /// When shutdown starts, retries stop at once and keep their batch (it is on disk, or
    /// goes to a successor) instead of retrying until the deadline.
    pub(super) keep_on_stop: AtomicBool,
}

/// What became of a batch a worker tried to send.
pub(super) enum Delivery {
    Sent,
    /// Failed for good (counted and logged): its place in the queue is freed.
    Dropped(ConsumeError),
    /// Shutdown interrupted retrying; the persistent queue or a successor keeps it.
    Kept(ConsumeError),
}

impl Sender {
    pub(super) fn new(
        name: String,
        exporter: Arc<dyn Exporter>,
        retry: RetryConfig,
        counters: Vec<(Signal, SignalCounters)>,
        persistent: bool,
    ) -> Self {
        Sender {
            name,
            exporter,
            retry,
            counters,
            stopping: CancellationToken::new(),
            deadline: OnceLock::new(),
            keep_on_stop: AtomicBool::new(persistent),
        }
    }

    fn counters(&self, signal: Signal) -> Option<&SignalCounters> {
        self.counters.iter().find(|(s, _)| *s == signal).map(|(_, c)| c)
    }

    pub(super) fn enqueue_failed(&self, signal: Signal, items: u64) {
        self.counters(signal).inspect(|c| c.enqueue_failed.add(items));
    }

    /// Items given up on after they left this exporter's hands (a hand-off that failed).
    pub(super) fn failed(&self, signal: Signal, items: u64, reason: &str) {
        self.counters(signal).inspect(|c| c.failed.add(items));
        error!(exporter = %self.name, %signal, items, error = %reason, "dropping data");
    }

    pub(super) fn begin_shutdown(&self, deadline: Instant) {
        let _ = self.deadline.set(deadline);
        self.stopping.cancel();
        let keep = self.keep_on_stop.load(std::sync::atomic::Ordering::Acquire);
        self.exporter.begin_shutdown(deadline, keep);
    }

    /// Cancelled when shutdown starts.
    pub(super) fn stopping(&self) -> CancellationToken {
        self.stopping.clone()
    }

    pub(super) fn deadline_lock(&self) -> &OnceLock<Instant> {
        &self.deadline
    }

    /// Sends until it succeeds, fails for good, runs out of retry time or of shutdown grace.
    pub(super) async fn send(&self, batch: &Batch) -> Result<(), ConsumeError> {
        match self.deliver(batch, false).await {
            Delivery::Sent => Ok(()),
            Delivery::Dropped(e) | Delivery::Kept(e) => Err(e),
        }
    }

    /// As `send`, for a batch from the queue (`queued`): when the queue is on disk, or once a
    /// successor takes over, a retryable failure after shutdown has started stops at once and
    /// keeps the batch instead of dropping it.
    pub(super) async fn deliver(&self, batch: &Batch, queued: bool) -> Delivery {
        let items = batch.item_count() as u64;
        let counters = self.counters(batch.signal());
        let never = AtomicBool::new(false);
        let retrier = Retrier {
            policy: &self.retry,
            deadline: &self.deadline,
            stopping: Some(&self.stopping),
            stop_at_shutdown: if queued { &self.keep_on_stop } else { &never },
        };
        // Of a batch refused for good, how many items were not sent after all.
        let failed_items = AtomicU64::new(items);
        let attempt = |()| async {
            match self.exporter.export(batch).await {
                Ok(()) => Attempt::Done,
                Err(ExportError::Permanent(reason)) => Attempt::Fail(reason),
                Err(ExportError::PartlySent { failed, reason }) => {
                    failed_items.store(failed.min(items), Ordering::Relaxed);
                    Attempt::Fail(reason)
                }
                Err(ExportError::Retryable { reason, retry_after }) => Attempt::Retry {
                    reason,
                    after: retry_after,
                    item: (),
                },
            }
        };
        let on_retry = |reason: &str, wait: Duration| {
            warn!(exporter = %self.name, error = %reason, retry_in = ?wait, "export failed, will retry");
        };
        let (reason, outcome) = match retrier.run((), attempt, on_retry).await {
            Ok(()) => {
                counters.inspect(|c| c.sent.add(items));
                return Delivery::Sent;
            }
            Err(GaveUp::Stopped { reason, .. }) => {
                info!(exporter = %self.name, items, error = %reason, "shutting down: the batch is kept (on disk, or for the reloaded exporter)");
                return Delivery::Kept(ConsumeError::retryable(reason));
            }
            Err(GaveUp::Failed(reason)) => (
                format!("permanent error: {reason}"),
                ConsumeError::Permanent(reason),
            ),
            Err(GaveUp::Exhausted { reason, .. }) => (reason.clone(), ConsumeError::retryable(reason)),
        };
        let failed = match outcome {
            ConsumeError::Permanent(_) => failed_items.load(Ordering::Relaxed),
            _ => items,
        };
        counters.inspect(|c| {
            c.sent.add(items - failed);
            c.failed.add(failed);
        });
        error!(exporter = %self.name, items = failed, error = %reason, "dropping data");
        Delivery::Dropped(outcome)
    }
}
