//! Runs an [`Exporter`] behind its sending queue and retry policy, the way otelcol's
//! exporterhelper does: consumers enqueue and return; workers send, retry and count. On a
//! config reload an exporter whose config changed hands what it still holds to its successor.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use hotspan_config::{Kind, Signal};
use hotspan_proto::Batch;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, Instrument};

mod batcher;
mod compress;
pub mod queue;
mod sender;

pub use batcher::QueueBatchConfig;
pub(crate) use compress::compress;
pub use compress::{COMPRESSION_NICE, COMPRESSION_THREAD};
pub use queue::QueueConfig;

use crate::component::{BoxError, BuiltExporter, Extensions, Lifecycle};
use crate::consumer::{hand_on, BoxFuture, ConsumeError, Consumer, SharedConsumer};
use crate::extensions::file_storage::FileStorage;
use crate::sleep_until;
use crate::telemetry::{Gauge, Telemetry};
use batcher::{Batcher, Outgoing};
use queue::{FileQueue, FileQueueOptions, MemoryQueue, SendingQueue};
use sender::{Delivery, Sender, SignalCounters};

pub(crate) fn item_unit(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "spans",
        Signal::Metrics => "metric_points",
        Signal::Logs => "log_records",
        Signal::Profiles => "samples",
    }
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

/// A persistent queue, opened when the exporter starts: its directory's lock may still be
/// held by the exporter it replaces on a reload until that one stops.
struct FileQueuePlan {
    dir: std::path::PathBuf,
    config: QueueConfig,
    options: FileQueueOptions,
    corrupt: crate::telemetry::Counter,
}

pub struct ExporterRuntime {
    sender: Arc<Sender>,
    /// Set at build for an in-memory queue, at start for a persistent one; never for an
    /// exporter with its queue disabled.
    queue: OnceLock<Arc<dyn SendingQueue>>,
    file_queue: Mutex<Option<FileQueuePlan>>,
    /// The queue is on disk: shutdown leaves what is queued there instead of draining it.
    persistent: bool,
    num_consumers: usize,
    /// `sending_queue.wait_for_result`: consumers wait for the batch's outcome.
    wait_for_result: bool,
    capacity: Gauge,
    queue_size: Arc<QueueGauge>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// `sending_queue.batch`: merges what the queue's reader takes.
    batcher: Option<Arc<Batcher>>,
    /// Batching: batches made and not yet sent, still there after the shutdown deadline.
    ready: Mutex<Option<Ready>>,
    /// On a reload, the exporter of the same id in the new config: what this one still holds
    /// goes there instead of being retried until the deadline.
    successor: Arc<OnceLock<SharedConsumer>>,
}

impl ExporterRuntime {
    /// Wraps a built exporter in its queue and retries. A queue with `storage` gets its
    /// directory in that `file_storage` extension here, and is opened (finding what a previous
    /// run left) at start.
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
            .map(|&s| (s, SignalCounters::new(telemetry, &name, s)))
            .collect();
        let queue = OnceLock::new();
        let mut file_queue = None;
        match built.queue.storage_id() {
            _ if !built.queue.enabled => {}
            None => {
                let _ = queue.set(Arc::new(MemoryQueue::new(built.queue.clone())) as Arc<dyn SendingQueue>);
            }
            Some(id) => {
                let id = id?;
                let storage = extensions.get::<FileStorage>(&id, "file_storage extension")?;
                file_queue = Some(FileQueuePlan {
                    dir: storage.component_dir(Kind::Exporter, &name)?,
                    config: built.queue.clone(),
                    options: FileQueueOptions {
                        fsync: storage.fsync(),
                        write_timeout: storage.timeout(),
                    },
                    corrupt: m.counter(
                        "hotspan_exporter_queue_corrupt_batches",
                        "Batches found damaged in a persistent queue and set aside.",
                        &labels,
                    ),
                });
            }
        }
        let persistent = file_queue.is_some();
        let queue_size = Arc::new(QueueGauge {
            gauge: m.gauge(
                "otelcol_exporter_queue_size",
                "Occupied size of the sending queue.",
                &labels,
            ),
            lock: Mutex::new(()),
        });
        let capacity = m.gauge(
            "otelcol_exporter_queue_capacity",
            "Capacity of the sending queue.",
            &labels,
        );
        if let Some(q) = queue.get() {
            capacity.set(q.capacity() as i64);
        }
        Ok(ExporterRuntime {
            queue_size,
            capacity,
            persistent,
            sender: Arc::new(Sender::new(
                name,
                built.exporter,
                built.retry,
                counters,
                persistent,
            )),
            queue,
            file_queue: Mutex::new(file_queue),
            num_consumers: built.queue.num_consumers,
            wait_for_result: built.queue.wait_for_result,
            workers: Mutex::new(Vec::new()),
            batcher: built
                .queue
                .batching()
                .map(|b| Arc::new(Batcher::new(b, built.queue.sizer))),
            ready: Mutex::new(None),
            successor: Arc::new(OnceLock::new()),
        })
    }

    /// Opens the persistent queue, if this exporter has one: it may start with what a
    /// previous run (or the exporter this one replaces) left.
    async fn open_file_queue(&self) -> Result<(), BoxError> {
        let plan = self.file_queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(plan) = plan else { return Ok(()) };
        let name = self.sender.name.clone();
        let dir = plan.dir.clone();
        // Waiting for the directory's lock is blocking I/O, bounded by file_storage's timeout.
        let queue = tokio::task::spawn_blocking(move || {
            FileQueue::open(plan.dir, plan.config, plan.options, name, plan.corrupt)
        })
        .await
        .map_err(|e| format!("opening the persistent queue in {}: {e}", dir.display()))?
        .map_err(|e| format!("opening the persistent queue in {}: {e}", dir.display()))?;
        self.capacity.set(queue.capacity() as i64);
        self.queue_size.update(&queue);
        let _ = self.queue.set(Arc::new(queue));
        Ok(())
    }

    /// Whether its queue is on disk.
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// Reload: stops this exporter and hands what it still holds (queued, or being retried)
    /// to `successor`, the exporter that replaces it, by `deadline`. A persistent queue
    /// leaves its files for the successor, which opens the same directory.
    pub async fn hand_off(&self, successor: SharedConsumer, deadline: Instant) {
        if !self.persistent {
            let _ = self.successor.set(successor);
            // Retries in progress stop at once and give their batch up to the successor.
            self.sender.keep_on_stop.store(true, Ordering::Release);
        }
        self.shutdown(deadline).await;
    }
}

impl Consumer for ExporterRuntime {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, Result<(), ConsumeError>> {
        Box::pin(async move {
            if self
                .file_queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
            {
                return Err(ConsumeError::refused("exporter is not started yet", batch));
            }
            match self.queue.get() {
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
                    let (answer, outcome) = match self.wait_for_result {
                        true => {
                            let (answer, outcome) = tokio::sync::oneshot::channel();
                            (Some(answer), Some(outcome))
                        }
                        false => (None, None),
                    };
                    let result = match answer {
                        Some(answer) => queue.push_answered(batch, answer).await,
                        None => queue.push(batch).await,
                    };
                    match &result {
                        Ok(()) => self.queue_size.update(queue.as_ref()),
                        Err(_) => self.sender.enqueue_failed(signal, items),
                    }
                    result?;
                    match outcome {
                        // Unanswered: the batch was lost at the shutdown deadline (and counted).
                        Some(outcome) => outcome.await.unwrap_or_else(|_| {
                            Err(ConsumeError::retryable("the exporter stopped before sending it"))
                        }),
                        None => Ok(()),
                    }
                }
            }
        })
    }
}

/// A batch a worker is sending from an in-memory queue. Dropped unsettled (the worker was
/// aborted at the shutdown deadline), it is lost, and counted as failed.
struct Unsent<'a> {
    sender: &'a Sender,
    signal: Signal,
    items: u64,
}

impl Unsent<'_> {
    /// Sent, or given up on and counted by the sender.
    fn settled(mut self) {
        self.items = 0;
    }
}

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        if self.items > 0 {
            let reason = "shutdown deadline passed while sending it";
            self.sender.failed(self.signal, self.items, reason);
        }
    }
}

/// What an exporter's queue workers share: they take batches from the queue (or, batching,
/// from its reader and flusher) and send them.
struct Workers {
    queue: Arc<dyn SendingQueue>,
    sender: Arc<Sender>,
    gauge: Arc<QueueGauge>,
    successor: Arc<OnceLock<SharedConsumer>>,
    persistent: bool,
}

/// Batches the reader and flusher made, for the workers to send.
type Ready = Arc<tokio::sync::Mutex<mpsc::Receiver<Outgoing>>>;

impl Workers {
    /// Without batching: pops and sends until the queue is closed and drained.
    async fn pop_and_send(&self) {
        while let Some(item) = self.queue.pop().await {
            // A pop may have set damaged files aside.
            self.gauge.update(self.queue.as_ref());
            self.send(Outgoing::whole(item)).await;
        }
    }

    /// Batching: the one reader, so requests merge in queue order. Once the queue is closed
    /// and drained, what still waits goes as it is.
    async fn read(&self, batcher: &Batcher, ready: mpsc::Sender<Outgoing>) {
        while let Some(item) = self.queue.pop().await {
            self.gauge.update(self.queue.as_ref());
            for out in batcher.add(item) {
                self.pass_on(&ready, out).await;
            }
        }
        for out in batcher.flush(None) {
            self.pass_on(&ready, out).await;
        }
    }

    /// Batching: sends what has waited `flush_timeout`, until shutdown starts (the reader
    /// then sends the rest).
    async fn flush_on_time(&self, batcher: &Batcher, ready: mpsc::Sender<Outgoing>) {
        let stopping = self.sender.stopping();
        loop {
            let deadline = batcher.next_deadline();
            tokio::select! {
                _ = stopping.cancelled() => return,
                _ = batcher.started.notified() => {}
                _ = sleep_until(deadline), if deadline.is_some() => {
                    for out in batcher.flush(Some(Instant::now())) {
                        self.pass_on(&ready, out).await;
                    }
                }
            }
        }
    }

    /// Batching: gives a batch to the workers, waiting while they are all busy.
    async fn pass_on(&self, ready: &mpsc::Sender<Outgoing>, out: Outgoing) {
        let waiting = (!self.persistent).then(|| Unsent {
            sender: &self.sender,
            signal: out.batch.signal(),
            items: out.batch.item_count() as u64,
        });
        // The workers end only after the reader and flusher: a refusal cannot happen, but
        // would not lose the batch.
        let passed = ready.send(out).await;
        if let Some(waiting) = waiting {
            waiting.settled();
        }
        if let Err(refused) = passed {
            self.send(refused.0).await;
        }
    }

    /// Batching: sends what the reader and flusher made until both are done.
    async fn send_ready(&self, ready: Ready) {
        loop {
            let next = ready.lock().await.recv().await;
            let Some(out) = next else { return };
            self.send(out).await;
        }
    }

    async fn send(&self, out: Outgoing) {
        let signal = out.batch.signal();
        // Aborted at the shutdown deadline, an in-memory queue's batch is lost: counted as
        // failed. A durable queue's stays on disk.
        let in_flight = (!self.persistent).then(|| Unsent {
            sender: &self.sender,
            signal,
            items: out.batch.item_count() as u64,
        });
        // Handing off: what is left goes to the successor without another try.
        let delivery = match self.successor.get() {
            Some(_) => Delivery::Kept(ConsumeError::retryable("handed off")),
            None => self.sender.deliver(&out.batch, true).await,
        };
        // Failures were counted and logged by `deliver`; the requests leave the queue either
        // way, unless shutdown cut retrying short: then the disk still holds them, or the
        // successor takes the batch.
        match (delivery, self.successor.get()) {
            (Delivery::Kept(_), Some(next)) if !self.persistent => {
                let deadline = self.sender.deadline_lock();
                let items = out.batch.item_count() as u64;
                let outcome = hand_on(&self.sender.name, next, out.batch.clone(), deadline)
                    .await
                    .map_err(|reason| {
                        self.sender.failed(signal, items, &reason);
                        ConsumeError::retryable(reason)
                    });
                out.settle(false, &outcome);
            }
            (Delivery::Kept(e), _) => out.settle(true, &Err(e)),
            (Delivery::Sent, _) => out.settle(false, &Ok(())),
            (Delivery::Dropped(e), _) => out.settle(false, &Err(e)),
        }
        if let Some(unsent) = in_flight {
            unsent.settled();
        }
        self.gauge.update(self.queue.as_ref());
    }
}

#[async_trait]
impl Lifecycle for ExporterRuntime {
    async fn start(&self) -> Result<(), BoxError> {
        self.open_file_queue().await?;
        self.sender.exporter.start().await?;
        let Some(queue) = self.queue.get() else {
            return Ok(());
        };
        let shared = Arc::new(Workers {
            queue: queue.clone(),
            sender: self.sender.clone(),
            gauge: self.queue_size.clone(),
            successor: self.successor.clone(),
            persistent: self.persistent,
        });
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let mut spawn = |work: BoxFuture<'static, ()>| workers.push(tokio::spawn(work.in_current_span()));
        let Some(batcher) = &self.batcher else {
            for _ in 0..self.num_consumers {
                let w = shared.clone();
                spawn(Box::pin(async move { w.pop_and_send().await }));
            }
            return Ok(());
        };
        let (tx, rx) = mpsc::channel(1);
        let rx: Ready = Arc::new(tokio::sync::Mutex::new(rx));
        let (w, b, ready) = (shared.clone(), batcher.clone(), tx.clone());
        spawn(Box::pin(async move { w.read(&b, ready).await }));
        let (w, b) = (shared.clone(), batcher.clone());
        spawn(Box::pin(async move { w.flush_on_time(&b, tx).await }));
        for _ in 0..self.num_consumers {
            let (w, rx) = (shared.clone(), rx.clone());
            spawn(Box::pin(async move { w.send_ready(rx).await }));
        }
        *self.ready.lock().unwrap_or_else(|p| p.into_inner()) = Some(rx);
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) {
        self.sender.begin_shutdown(deadline);
        if let Some(queue) = self.queue.get() {
            queue.close();
            let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
            for mut w in workers {
                if tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), &mut w)
                    .await
                    .is_err()
                {
                    w.abort();
                    // Until its future is dropped: what it held is counted then.
                    let _ = w.await;
                }
            }
            let mut left = queue.take_left();
            // Batching: what the workers were cut off from, made or still waiting to fill.
            let ready = self.ready.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(Ok(mut ready)) = ready.as_ref().map(|r| r.try_lock()) {
                while let Ok(out) = ready.try_recv() {
                    left.push(out.batch);
                }
            }
            if let Some(batcher) = &self.batcher {
                left.extend(batcher.flush(None).into_iter().map(|out| out.batch));
            }
            for batch in left.into_iter().filter(|_| !self.persistent) {
                let reason = "shutdown deadline passed with the batch still queued";
                self.sender
                    .failed(batch.signal(), batch.item_count() as u64, reason);
            }
            self.queue_size.update(queue.as_ref());
            queue.release();
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
    use crate::component::Exporter;
    use crate::exporters::{ExportError, QueueBatchConfig, QueueConfig, RetryConfig};
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
        // Opened at start: the replayed batches count from then.
        second.start().await.expect("start");
        assert!(gauge.get() <= 3);
        eventually("the replay", || backend.sent.load(Ordering::Relaxed) == 6).await;
        eventually("the gauge to drop", || gauge.get() == 0).await;
        eventually("the files to go", || queue_files(&dir) == 0).await;
        second.shutdown(Instant::now() + Duration::from_secs(5)).await;
        let _ = std::fs::remove_dir_all(&base);
    }

    /// A backend that never answers.
    struct Stuck;

    #[async_trait]
    impl Exporter for Stuck {
        async fn export(&self, _batch: &Batch) -> Result<(), ExportError> {
            std::future::pending().await
        }
    }

    /// An exporter behind an in-memory queue, started, with no retry limit.
    async fn started(
        exporter: Arc<dyn Exporter>,
        queue: QueueConfig,
        telemetry: &Telemetry,
    ) -> ExporterRuntime {
        let built = BuiltExporter {
            exporter,
            queue,
            retry: RetryConfig::default(),
        };
        let runtime = ExporterRuntime::new(
            "otlp".into(),
            built,
            &[Signal::Traces],
            telemetry,
            &Extensions::default(),
        )
        .expect("runtime");
        runtime.start().await.expect("start");
        runtime
    }

    #[tokio::test]
    async fn an_in_memory_queue_counts_what_the_shutdown_deadline_cuts_off() {
        let telemetry = Telemetry::default();
        let runtime = started(
            Arc::new(Stuck),
            QueueConfig {
                num_consumers: 1,
                ..Default::default()
            },
            &telemetry,
        )
        .await;
        for n in [2, 3, 4] {
            runtime.consume(spans(n)).await.expect("queued");
        }
        runtime
            .shutdown(Instant::now() + Duration::from_millis(200))
            .await;
        let counter = |name| telemetry.metrics.counter(name, "", &[("exporter", "otlp")]).get();
        // One batch in flight, two still queued: all nine spans lost, and said so.
        assert_eq!(counter("otelcol_exporter_send_failed_spans"), 9);
        assert_eq!(counter("otelcol_exporter_sent_spans"), 0);
    }

    #[tokio::test]
    async fn a_sender_waiting_for_the_result_hears_when_shutdown_cuts_its_batch_off() {
        let telemetry = Telemetry::default();
        let runtime = Arc::new(
            started(
                Arc::new(Stuck),
                QueueConfig {
                    num_consumers: 1,
                    wait_for_result: true,
                    ..Default::default()
                },
                &telemetry,
            )
            .await,
        );
        // One consumer: one batch goes in flight (and never comes back), the other waits.
        let waiting: Vec<_> = [2, 3]
            .map(|n| {
                let r = runtime.clone();
                tokio::spawn(async move { r.consume(spans(n)).await })
            })
            .into();
        let queue = runtime.queue.get().expect("in-memory queue").clone();
        eventually("both batches to be queued", || queue.size() == 2).await;
        // Without wait_for_result each would have returned in the poll that queued it.
        assert!(
            waiting.iter().all(|w| !w.is_finished()),
            "answered before any outcome"
        );
        runtime
            .shutdown(Instant::now() + Duration::from_millis(200))
            .await;
        for waiting in waiting {
            let heard = waiting.await.expect("joins");
            assert!(matches!(&heard, Err(ConsumeError::Retryable { .. })), "{heard:?}");
        }
    }

    /// Never answers; counts the batches it was given.
    struct Hung(AtomicUsize);

    #[async_trait]
    impl Exporter for Arc<Hung> {
        async fn export(&self, _batch: &Batch) -> Result<(), ExportError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_batching_queue_counts_what_the_shutdown_deadline_cuts_off() {
        let telemetry = Telemetry::default();
        let hung = Arc::new(Hung(AtomicUsize::new(0)));
        let runtime = started(
            Arc::new(hung.clone()),
            QueueConfig {
                num_consumers: 1,
                batch: Some(QueueBatchConfig {
                    flush_timeout: Duration::from_millis(20),
                    min_size: 100,
                    ..Default::default()
                }),
                ..Default::default()
            },
            &telemetry,
        )
        .await;
        for n in [2, 3, 4] {
            runtime.consume(spans(n)).await.expect("queued");
        }
        eventually("the first batch to be in flight", || {
            hung.0.load(Ordering::SeqCst) == 1
        })
        .await;
        // Waits in the batcher, then (at shutdown) for the one worker, which never comes back.
        runtime.consume(spans(5)).await.expect("queued");
        runtime
            .shutdown(Instant::now() + Duration::from_millis(200))
            .await;
        let counter = |name| telemetry.metrics.counter(name, "", &[("exporter", "otlp")]).get();
        assert_eq!(
            counter("otelcol_exporter_send_failed_spans"),
            14,
            "in flight and waiting"
        );
        assert_eq!(hung.0.load(Ordering::SeqCst), 1, "the three merged into one");
    }

    #[tokio::test]
    async fn a_batching_persistent_queue_keeps_what_waits_and_sends_it_merged_next_time() {
        let base = std::env::temp_dir().join(format!("hotspan-batch-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let storage = |create_directory| {
            let mut extensions = Extensions::default();
            let storage = FileStorage::open(FileStorageConfig {
                directory: base.display().to_string(),
                create_directory,
                ..Default::default()
            })
            .expect("storage");
            extensions.insert(ComponentId::new("file_storage", None), Arc::new(storage));
            extensions
        };
        let backend = Arc::new(Backend {
            up: AtomicBool::new(false),
            sent: AtomicUsize::new(0),
        });
        let batching = |min_size, flush_ms| BuiltExporter {
            exporter: Arc::new(backend.clone()),
            queue: QueueConfig {
                storage: Some("file_storage".into()),
                batch: Some(QueueBatchConfig {
                    flush_timeout: Duration::from_millis(flush_ms),
                    min_size,
                    ..Default::default()
                }),
                ..Default::default()
            },
            retry: RetryConfig {
                initial_interval: Duration::from_millis(10),
                max_elapsed_time: Duration::ZERO,
                ..Default::default()
            },
        };
        let telemetry = Telemetry::default();
        let extensions = storage(true);
        let first = ExporterRuntime::new(
            "otlp".into(),
            batching(100, 20),
            &[Signal::Traces],
            &telemetry,
            &extensions,
        )
        .expect("runtime");
        first.start().await.expect("start");
        for _ in 0..3 {
            first.consume(spans(2)).await.expect("queued");
        }
        first.shutdown(Instant::now() + Duration::from_secs(10)).await;
        let dir = base.join("exporter_otlp");
        assert_eq!(
            queue_files(&dir),
            3,
            "merged or waiting, each request stays on disk"
        );
        let failed =
            telemetry
                .metrics
                .counter("otelcol_exporter_send_failed_spans", "", &[("exporter", "otlp")]);
        assert_eq!(failed.get(), 0, "kept, not dropped");
        drop((first, extensions));

        backend.up.store(true, Ordering::Relaxed);
        let telemetry = Telemetry::default();
        let extensions = storage(false);
        // A minimum the replay just fills, and a flush timeout it must not need.
        let second = ExporterRuntime::new(
            "otlp".into(),
            batching(6, 60_000),
            &[Signal::Traces],
            &telemetry,
            &extensions,
        )
        .expect("runtime");
        second.start().await.expect("start");
        eventually("the replay", || backend.sent.load(Ordering::Relaxed) == 6).await;
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
