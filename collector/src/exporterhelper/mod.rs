//! Runs an [`Exporter`] behind its sending queue and retry policy, the way otelcol's
//! exporterhelper does: consumers enqueue and return; workers send, retry and count.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hotspan_config::{Kind, Signal};
use hotspan_proto::Batch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn, Instrument};

pub mod queue;

pub use queue::QueueConfig;

use crate::component::{BoxError, BuiltExporter, Exporter, Extensions, Lifecycle};
use crate::consumer::{BoxFuture, ConsumeError, Consumer};
use crate::exporters::ExportError;
use crate::extensions::file_storage::FileStorage;
use crate::retry::{Attempt, GaveUp, Retrier, RetryConfig};
use crate::telemetry::{Counter, Gauge, Telemetry};
use queue::{FileQueue, FileQueueOptions, MemoryQueue, SendingQueue};

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
        match self.deliver(batch, false).await {
            Delivery::Sent => Ok(()),
            Delivery::Dropped(e) | Delivery::Kept(e) => Err(e),
        }
    }

    /// As `send`; with `keep` (the batch is safe in a persistent queue), a retryable failure
    /// once shutdown has started stops at once and leaves the batch for the next start instead
    /// of dropping it.
    async fn deliver(&self, batch: &Batch, keep: bool) -> Delivery {
        let items = batch.item_count() as u64;
        let counters = self.counters(batch.signal());
        let retrier = Retrier {
            policy: &self.retry,
            deadline: &self.deadline,
            stopping: Some(&self.stopping),
            stop_at_shutdown: keep,
        };
        let attempt = |()| async {
            match self.exporter.export(batch).await {
                Ok(()) => Attempt::Done,
                Err(ExportError::Permanent(reason)) => Attempt::Fail(reason),
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
                info!(exporter = %self.name, items, error = %reason, "shutting down: batch stays in the persistent queue for the next start");
                return Delivery::Kept(ConsumeError::retryable(reason));
            }
            Err(GaveUp::Failed(reason)) => (
                format!("permanent error: {reason}"),
                ConsumeError::Permanent(reason),
            ),
            Err(GaveUp::Exhausted { reason, .. }) => (reason.clone(), ConsumeError::retryable(reason)),
        };
        counters.inspect(|c| c.failed.add(items));
        error!(exporter = %self.name, items, error = %reason, "dropping data");
        Delivery::Dropped(outcome)
    }
}

/// What became of a batch a worker tried to send.
enum Delivery {
    Sent,
    /// Failed for good (counted and logged): its place in the queue is freed.
    Dropped(ConsumeError),
    /// Shutdown interrupted retrying; the persistent queue keeps it.
    Kept(ConsumeError),
}

/// Keeps `otelcol_exporter_queue_size` equal to the queue's size. Reading the size and setting
/// the gauge under one lock means the last update always wins with the latest size, which
/// separate read-then-set calls from many workers do not guarantee.
struct QueueGauge {
    gauge: Gauge,
    lock: Mutex<()>,
}

impl QueueGauge {
    fn update(&self, queue: &dyn SendingQueue) {
        let _serial = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.gauge.set(queue.size() as i64);
    }
}

pub struct ExporterRuntime {
    sender: Arc<Sender>,
    queue: Option<Arc<dyn SendingQueue>>,
    /// The queue is on disk: shutdown leaves what is queued there instead of draining it.
    persistent: bool,
    num_consumers: usize,
    queue_size: Arc<QueueGauge>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl ExporterRuntime {
    /// Wraps a built exporter in its queue and retries. A queue with `storage` is opened here,
    /// in that `file_storage` extension's directory, and finds what a previous run left.
    pub fn new(
        name: String,
        built: BuiltExporter,
        signals: &[Signal],
        telemetry: &Telemetry,
        extensions: &Extensions,
    ) -> Result<Self, BoxError> {
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
        let queue: Option<Arc<dyn SendingQueue>> = match built.queue.storage_id() {
            _ if !built.queue.enabled => None,
            None => Some(Arc::new(MemoryQueue::new(built.queue.clone()))),
            Some(id) => {
                let id = id?;
                let storage = extensions.get::<FileStorage>(&id, "file_storage extension")?;
                let dir = storage.component_dir(Kind::Exporter, &name)?;
                let corrupt = m.counter(
                    "hotspan_exporter_queue_corrupt_batches",
                    "Batches found damaged in a persistent queue and set aside.",
                    &labels,
                );
                let options = FileQueueOptions {
                    fsync: storage.fsync(),
                    write_timeout: storage.timeout(),
                };
                let queue = FileQueue::open(dir.clone(), built.queue.clone(), options, name.clone(), corrupt)
                    .map_err(|e| format!("opening the persistent queue in {}: {e}", dir.display()))?;
                Some(Arc::new(queue))
            }
        };
        if let Some(q) = &queue {
            m.gauge(
                "otelcol_exporter_queue_capacity",
                "Capacity of the sending queue.",
                &labels,
            )
            .set(q.capacity() as i64);
        }
        let queue_size = Arc::new(QueueGauge {
            gauge: m.gauge(
                "otelcol_exporter_queue_size",
                "Occupied size of the sending queue.",
                &labels,
            ),
            lock: Mutex::new(()),
        });
        // A persistent queue may start with what a previous run left.
        if let Some(q) = &queue {
            queue_size.update(q.as_ref());
        }
        Ok(ExporterRuntime {
            queue_size,
            persistent: queue.is_some() && built.queue.storage.is_some(),
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
        })
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
                        Ok(()) => self.queue_size.update(queue.as_ref()),
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
            let persistent = self.persistent;
            workers.push(tokio::spawn(
                async move {
                    while let Some(item) = queue.pop().await {
                        // A pop may have set damaged files aside.
                        gauge.update(queue.as_ref());
                        // Failures were counted and logged by `deliver`; the item leaves either
                        // way, unless shutdown cut retrying short and the disk still holds it.
                        match sender.deliver(&item.batch, persistent).await {
                            Delivery::Kept(_) => drop(item),
                            Delivery::Sent | Delivery::Dropped(_) => item.done(),
                        }
                        gauge.update(queue.as_ref());
                    }
                }
                .in_current_span(),
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
            self.queue_size.update(queue.as_ref());
            let left = queue.size();
            if left > 0 && self.persistent {
                info!(exporter = %self.sender.name, left, "data still queued stays on disk for the next start");
            } else if left > 0 {
                error!(exporter = %self.sender.name, left, "shutdown deadline passed with data still queued");
            }
        }
        self.sender.exporter.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use hotspan_config::ComponentId;
    use hotspan_proto::{Encoding, TracesBatch};

    use super::*;
    use crate::exporters::{QueueConfig, RetryConfig};
    use crate::extensions::file_storage::FileStorageConfig;

    /// Fails retryably until `up`, then counts what it sends.
    struct Backend {
        up: AtomicBool,
        sent: AtomicUsize,
    }

    #[async_trait]
    impl Exporter for Arc<Backend> {
        async fn export(&self, batch: &Batch) -> Result<(), ExportError> {
            if !self.up.load(Ordering::Relaxed) {
                return Err(ExportError::retryable("backend down"));
            }
            self.sent.fetch_add(batch.item_count(), Ordering::Relaxed);
            Ok(())
        }
    }

    fn spans(n: u64) -> Batch {
        let spans: Vec<String> = (0..n)
            .map(|id| {
                format!(
                    r#"{{"traceId":"{:032x}","spanId":"{:016x}","name":"op","startTimeUnixNano":"1","endTimeUnixNano":"2"}}"#,
                    1,
                    id + 1
                )
            })
            .collect();
        let json = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
            spans.join(",")
        );
        Batch::Traces(TracesBatch::decode(json.as_bytes(), Encoding::Json).expect("test json"))
    }

    fn runtime(backend: &Arc<Backend>, extensions: &Extensions, telemetry: &Telemetry) -> ExporterRuntime {
        let built = BuiltExporter {
            exporter: Arc::new(backend.clone()),
            queue: QueueConfig {
                storage: Some("file_storage".into()),
                num_consumers: 2,
                ..Default::default()
            },
            retry: RetryConfig {
                initial_interval: Duration::from_millis(10),
                max_elapsed_time: Duration::ZERO,
                ..Default::default()
            },
        };
        ExporterRuntime::new("otlp".into(), built, &[Signal::Traces], telemetry, extensions).expect("runtime")
    }

    fn queue_files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".batch"))
                    .count()
            })
            .unwrap_or(0)
    }

    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_persistent_queue_keeps_unsent_data_through_shutdown_and_sends_it_next_time() {
        let base = std::env::temp_dir().join(format!("hotspan-runtime-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let mut extensions = Extensions::default();
        let storage = FileStorage::open(FileStorageConfig {
            directory: base.display().to_string(),
            create_directory: true,
            ..Default::default()
        })
        .expect("storage");
        extensions.insert(ComponentId::new("file_storage", None), Arc::new(storage));
        let dir = base.join("exporter_otlp");
        let backend = Arc::new(Backend {
            up: AtomicBool::new(false),
            sent: AtomicUsize::new(0),
        });

        let telemetry = Telemetry::default();
        let first = runtime(&backend, &extensions, &telemetry);
        first.start().await.expect("start");
        for _ in 0..3 {
            first.consume(spans(2)).await.expect("queued");
        }
        let gauge = telemetry
            .metrics
            .gauge("otelcol_exporter_queue_size", "", &[("exporter", "otlp")]);
        assert_eq!(gauge.get(), 3);
        let stopping = Instant::now();
        first.shutdown(Instant::now() + Duration::from_secs(10)).await;
        assert!(
            stopping.elapsed() < Duration::from_secs(2),
            "shutdown waited for the deadline"
        );
        assert_eq!(queue_files(&dir), 3, "unsent batches stay on disk");
        let failed =
            telemetry
                .metrics
                .counter("otelcol_exporter_send_failed_spans", "", &[("exporter", "otlp")]);
        assert_eq!(failed.get(), 0, "kept, not dropped");
        drop(first);

        // The same storage in a new process: a fresh extension claims the directory again.
        let mut extensions = Extensions::default();
        let storage = FileStorage::open(FileStorageConfig {
            directory: base.display().to_string(),
            ..Default::default()
        })
        .expect("storage");
        extensions.insert(ComponentId::new("file_storage", None), Arc::new(storage));
        let telemetry = Telemetry::default();
        backend.up.store(true, Ordering::Relaxed);
        let second = runtime(&backend, &extensions, &telemetry);
        let gauge = telemetry
            .metrics
            .gauge("otelcol_exporter_queue_size", "", &[("exporter", "otlp")]);
        assert_eq!(gauge.get(), 3, "replayed batches count from the start");
        second.start().await.expect("start");
        eventually("the replay", || backend.sent.load(Ordering::Relaxed) == 6).await;
        eventually("the gauge to drop", || gauge.get() == 0).await;
        eventually("the files to go", || queue_files(&dir) == 0).await;
        second.shutdown(Instant::now() + Duration::from_secs(5)).await;
        let _ = std::fs::remove_dir_all(&base);
    }

    #[tokio::test]
    async fn storage_must_name_an_enabled_file_storage() {
        let backend = Arc::new(Backend {
            up: AtomicBool::new(true),
            sent: AtomicUsize::new(0),
        });
        let built = BuiltExporter {
            exporter: Arc::new(backend),
            queue: QueueConfig {
                storage: Some("file_storage/missing".into()),
                ..Default::default()
            },
            retry: RetryConfig::default(),
        };
        let err = ExporterRuntime::new(
            "otlp".into(),
            built,
            &[Signal::Traces],
            &Telemetry::default(),
            &Extensions::default(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            err.contains("file_storage/missing") && err.contains("not enabled"),
            "{err}"
        );
    }
}
