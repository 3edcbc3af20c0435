//! The `spanprofile` connector: the end of traces/in and profiles/in, the head of traces/out
//! (spans annotated with their hot paths) and profiles/out (samples with Links filled in).
//! The join itself lives in `hotspan_processors::spanprofile`; this is its runtime.

use std::any::Any;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hotspan_config::Signal;
use hotspan_processors::spanprofile::{Join, SpanProfileConfig};
use hotspan_proto::{Batch, TracesBatch};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, Instrument};

use crate::component::{BoxError, BuildContext, ComponentType, ConnectorType, ConsumerComponent, Lifecycle};
use crate::consumer::{hand_on, BoxFuture, ConsumeError, Consumer, SharedConsumer, SignalConsumers};
use crate::telemetry::{Follower, Gauge, Telemetry};

/// Released batches waiting for traces/out. Small: when downstream is slow this fills and
/// the connector's consumers wait, which is the backpressure.
const OUTPUT_CAPACITY: usize = 16;

impl ComponentType for SpanProfile {
    const TYPE_NAME: &'static str = "spanprofile";
    type Config = SpanProfileConfig;
}

impl ConnectorType for SpanProfile {
    const PAIRS: &'static [(Signal, Signal)] = &[
        (Signal::Traces, Signal::Traces),
        (Signal::Profiles, Signal::Traces),
        // Stop-the-world pauses (logs) and cgroup throttling (metrics) go on the spans.
        (Signal::Logs, Signal::Traces),
        (Signal::Metrics, Signal::Traces),
        (Signal::Traces, Signal::Profiles),
        (Signal::Profiles, Signal::Profiles),
    ];

    fn build(
        ctx: &BuildContext,
        config: SpanProfileConfig,
        next: SignalConsumers,
    ) -> Result<Arc<dyn ConsumerComponent>, BoxError> {
        let (tx, rx) = mpsc::channel(OUTPUT_CAPACITY);
        // A reload with this config unchanged: carry on with the old join and its counters.
        let taken = ctx.carried.clone().and_then(|c| c.downcast::<Carry>().ok());
        let (join, metrics) = match &taken {
            Some(c) => (c.join.clone(), c.metrics.clone()),
            None => (
                Arc::new(Join::new(config)),
                Arc::new(JoinMetrics::new(ctx.telemetry, &ctx.name())),
            ),
        };
        Ok(Arc::new(SpanProfile {
            name: ctx.name(),
            join,
            traces_out: next.get(Signal::Traces).cloned(),
            profiles_out: next.get(Signal::Profiles).cloned(),
            tx: Mutex::new(Some(tx)),
            rx: Mutex::new(Some(rx)),
            stop: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
            metrics,
            handed: Mutex::new(Weak::new()),
            _taken: taken,
        }))
    }
}

/// What a reload hands to the connector rebuilt with the same config: the join with the spans
/// and samples it holds, and its counters, so that nothing leaves early and no count restarts.
struct Carry {
    join: Arc<Join>,
    metrics: Arc<JoinMetrics>,
}

/// The join's counters, mirrored into the collector's metrics on every tick.
struct JoinMetrics {
    joined: [Follower; 3],
    unjoined: Follower,
    late: Follower,
    released_early: Follower,
    drained: Follower,
    pauses: Follower,
    misfits: Follower,
    cpu_readings: Follower,
    held: Gauge,
    pending: Gauge,
}

impl JoinMetrics {
    fn new(telemetry: &Telemetry, name: &str) -> Self {
        let m = &telemetry.metrics;
        let counter = |name: &str, help: &'static str, labels: &[(&str, &str)]| {
            Follower::new(m.counter(name, help, labels))
        };
        let joined = |rule: &str| {
            counter(
                "hotspan_spanprofile_joined_samples",
                "Profile samples joined to a span, by the rule that joined them.",
                &[("connector", name), ("rule", rule)],
            )
        };
        JoinMetrics {
            joined: [joined("span"), joined("trace"), joined("thread")],
            unjoined: counter(
                "hotspan_spanprofile_unjoined_samples",
                "Samples that found no span within the wait.",
                &[("connector", name)],
            ),
            late: counter(
                "hotspan_spanprofile_late_samples",
                "Samples that arrived after their span had left.",
                &[("connector", name)],
            ),
            released_early: counter(
                "hotspan_spanprofile_spans_released_early",
                "Spans that left before their wait was over, to keep the buffer bounded.",
                &[("connector", name)],
            ),
            drained: counter(
                "hotspan_spanprofile_spans_drained",
                "Spans that left before their wait was over because the connector stopped (shutdown, or a reload that rebuilt it).",
                &[("connector", name)],
            ),
            pauses: counter(
                "hotspan_spanprofile_pauses",
                "Stop-the-world pauses taken in from logs, to put on the spans they overlapped.",
                &[("connector", name)],
            ),
            misfits: counter(
                "hotspan_spanprofile_misfit_samples",
                "Samples naming a span that was not running when they were taken: given by thread, or unjoined.",
                &[("connector", name)],
            ),
            cpu_readings: counter(
                "hotspan_spanprofile_cpu_readings",
                "cgroup CPU data points (throttling, quota) taken in from metrics.",
                &[("connector", name)],
            ),
            held: m.gauge(
                "hotspan_spanprofile_held_spans",
                "Spans held waiting for samples.",
                &[("connector", name)],
            ),
            pending: m.gauge(
                "hotspan_spanprofile_pending_samples",
                "Samples waiting for their span.",
                &[("connector", name)],
            ),
        }
    }

    fn update(&self, join: &Join) {
        for (c, a) in self.joined.iter().zip(&join.stats.joined) {
            c.follow(a.load(Ordering::Relaxed));
        }
        self.unjoined.follow(join.stats.unjoined.load(Ordering::Relaxed));
        self.late.follow(join.stats.late.load(Ordering::Relaxed));
        self.released_early
            .follow(join.stats.released_early.load(Ordering::Relaxed));
        self.drained.follow(join.stats.drained.load(Ordering::Relaxed));
        self.pauses.follow(join.stats.pauses.load(Ordering::Relaxed));
        self.misfits.follow(join.stats.misfits.load(Ordering::Relaxed));
        self.cpu_readings
            .follow(join.stats.cpu_readings.load(Ordering::Relaxed));
        self.held.set(join.held_spans() as i64);
        self.pending.set(join.pending_samples() as i64);
    }
}

pub struct SpanProfile {
    name: String,
    join: Arc<Join>,
    traces_out: Option<SharedConsumer>,
    profiles_out: Option<SharedConsumer>,
    /// Released spans on their way to traces/out; `None` once shutdown began.
    tx: Mutex<Option<mpsc::Sender<TracesBatch>>>,
    rx: Mutex<Option<mpsc::Receiver<TracesBatch>>>,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    metrics: Arc<JoinMetrics>,
    /// What this connector handed to its successor; alive while the successor is (a reload
    /// refused after building it drops it, and this one drains at shutdown as usual).
    handed: Mutex<Weak<Carry>>,
    /// What this connector took over from its predecessor, kept alive for the check above.
    _taken: Option<Arc<Carry>>,
}

impl SpanProfile {
    async fn send(&self, batches: Vec<TracesBatch>) -> Result<(), ConsumeError> {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for b in batches.into_iter().filter(|b| !b.is_empty()) {
            match &tx {
                Some(tx) => tx
                    .send(b)
                    .await
                    .map_err(|_| ConsumeError::retryable("spanprofile is shutting down"))?,
                None => return Err(ConsumeError::retryable("spanprofile is shutting down")),
            }
        }
        Ok(())
    }
}

impl Consumer for SpanProfile {
    fn admit(&self, bytes: usize) -> Result<(), ConsumeError> {
        self.traces_out
            .iter()
            .chain(&self.profiles_out)
            .try_for_each(|c| c.admit(bytes))
    }

    fn consume(&self, batch: Batch) -> BoxFuture<'_, Result<(), ConsumeError>> {
        Box::pin(async move {
            match batch {
                Batch::Traces(traces) => {
                    let early = self.join.add_spans(traces, Instant::now());
                    self.send(early).await
                }
                Batch::Logs(logs) => {
                    self.join.add_logs(&logs);
                    Ok(())
                }
                Batch::Metrics(metrics) => {
                    self.join.add_metrics(&metrics);
                    Ok(())
                }
                Batch::Profiles(profiles) => {
                    // profiles/out first: if it refuses, the sender retries and the join must
                    // not have counted these samples yet.
                    if let Some(out) = &self.profiles_out {
                        out.consume(Batch::Profiles(self.join.link_profiles(&profiles)))
                            .await?;
                    }
                    // Inline: a request's samples take tens of microseconds to place, less than
                    // a hop to the blocking pool (which on a small machine only adds threads).
                    self.join.add_profiles(&profiles, Instant::now());
                    Ok(())
                }
            }
        })
    }
}

/// Hands released spans to traces/out, retrying refusals: the connector acknowledged these
/// spans upstream, so they are never dropped for a busy downstream, only at shutdown's
/// deadline.
async fn deliver(name: &str, next: &SharedConsumer, batch: TracesBatch, deadline: &OnceLock<Instant>) {
    if let Err(reason) = hand_on(name, next, Batch::Traces(batch), deadline).await {
        error!(connector = name, error = %reason, "annotated spans undelivered");
    }
}

#[async_trait]
impl Lifecycle for SpanProfile {
    async fn start(&self) -> Result<(), BoxError> {
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let (Some(mut rx), Some(next)) = (rx, self.traces_out.clone()) else {
            return Err(format!(
                "{}: needs a traces pipeline to send annotated spans to",
                self.name
            )
            .into());
        };
        let name = self.name.clone();
        let output = tokio::spawn(
            async move {
                // Never set: while running, refused spans are retried until taken.
                let no_deadline = OnceLock::new();
                while let Some(batch) = rx.recv().await {
                    deliver(&name, &next, batch, &no_deadline).await;
                }
            }
            .in_current_span(),
        );
        // The wait is in seconds; releasing a few times a second keeps latency a small fraction.
        let tick =
            (self.join.config().wait / 20).clamp(Duration::from_millis(20), Duration::from_millis(500));
        let (join, stop) = (self.join.clone(), self.stop.clone());
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let metrics = self.metrics.clone();
        let ticker = tokio::spawn(
            async move {
                let mut every = tokio::time::interval(tick);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = every.tick() => {}
                        _ = stop.cancelled() => break,
                    }
                    let due = join.release_due(Instant::now());
                    metrics.update(&join);
                    let Some(tx) = &tx else { break };
                    for b in due.into_iter().filter(|b| !b.is_empty()) {
                        if tx.send(b).await.is_err() {
                            return;
                        }
                    }
                }
            }
            .in_current_span(),
        );
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend([ticker, output]);
        Ok(())
    }

    fn carry_over(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        let carry = Arc::new(Carry {
            join: self.join.clone(),
            metrics: self.metrics.clone(),
        });
        *self.handed.lock().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(&carry);
        Some(carry)
    }

    async fn shutdown(&self, deadline: Instant) {
        self.stop.cancel();
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        // The ticker first, so nothing else sends while everything held is drained.
        if !tasks.is_empty() {
            let ticker = tasks.remove(0);
            let _ = tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), ticker).await;
        }
        let successor = self.handed.lock().unwrap_or_else(|p| p.into_inner()).upgrade();
        let drained = match successor {
            Some(_) => {
                info!(connector = %self.name, held = self.join.held_spans(), "the reloaded connector carries on with the spans held");
                Vec::new()
            }
            None => self.join.drain(Instant::now()),
        };
        if let Some(next) = &self.traces_out {
            // What is already queued goes first, in order, then what was still held.
            let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
            drop(tx);
            for task in tasks {
                let abort = task.abort_handle();
                if tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), task)
                    .await
                    .is_err()
                {
                    abort.abort();
                }
            }
            let until = OnceLock::from(deadline);
            for batch in drained.into_iter().filter(|b| !b.is_empty()) {
                deliver(&self.name, next, batch, &until).await;
            }
        }
        self.metrics.update(&self.join);
    }
}
