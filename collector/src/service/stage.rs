//! A processor running in its own task, between a bounded input and the next consumer.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hotspan_processors::{Admission, Processor};
use hotspan_proto::Batch;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, Instrument};

use crate::component::{BoxError, Lifecycle};
use crate::consumer::{hand_on, BoxFuture, ConsumeError, Consumer, SharedConsumer};
use crate::sleep_until;
use crate::telemetry::Counter;

/// Batches a stage holds before `consume` makes its caller wait. Small: a full stage is
/// backpressure, and receivers turn a long wait into a retryable refusal.
const STAGE_CAPACITY: usize = 8;

/// The processor and its input, until the stage's task takes them over at start.
type Unstarted = (Box<dyn Processor>, mpsc::Receiver<Batch>);

pub struct Stage {
    name: String,
    /// `None` once shutdown began: no more input.
    tx: Mutex<Option<mpsc::Sender<Batch>>>,
    /// What the task takes over at start.
    parts: Mutex<Option<Unstarted>>,
    next: SharedConsumer,
    task: Mutex<Option<JoinHandle<()>>>,
    /// Set at shutdown: downstream retries stop at this instant.
    deadline: Arc<OnceLock<Instant>>,
    dropped: Counter,
    /// The processor's intake check, if it has one (memory_limiter).
    admission: Option<Arc<dyn Admission>>,
}

impl Stage {
    pub fn new(name: String, processor: Box<dyn Processor>, next: SharedConsumer, dropped: Counter) -> Self {
        let (tx, rx) = mpsc::channel(STAGE_CAPACITY);
        let admission = processor.admission();
        Stage {
            name,
            tx: Mutex::new(Some(tx)),
            parts: Mutex::new(Some((processor, rx))),
            next,
            task: Mutex::new(None),
            deadline: Arc::new(OnceLock::new()),
            dropped,
            admission,
        }
    }
}

/// A processor's intake check, then the rest of the pipeline's.
pub(super) fn admit(
    admission: &Option<Arc<dyn Admission>>,
    next: &SharedConsumer,
    bytes: usize,
) -> Result<(), ConsumeError> {
    if let Some(a) = admission {
        a.admit(bytes).map_err(|reason| ConsumeError::Retryable {
            reason,
            retry_after: Some(Duration::from_secs(1)),
            batch: None,
        })?;
    }
    next.admit(bytes)
}

impl Consumer for Stage {
    fn admit(&self, bytes: usize) -> Result<(), ConsumeError> {
        admit(&self.admission, &self.next, bytes)
    }

    fn consume(&self, batch: Batch) -> BoxFuture<'_, Result<(), ConsumeError>> {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Box::pin(async move {
            match tx {
                Some(tx) => tx
                    .send(batch)
                    .await
                    .map_err(|e| ConsumeError::refused("pipeline is shutting down", e.0)),
                None => Err(ConsumeError::refused("pipeline is shutting down", batch)),
            }
        })
    }
}

/// Hands a processor's output on; what cannot be handed on is counted and logged.
async fn forward(
    name: &str,
    out: &mut Vec<Batch>,
    next: &SharedConsumer,
    deadline: &OnceLock<Instant>,
    dropped: &Counter,
) {
    for batch in out.drain(..) {
        let items = batch.item_count() as u64;
        if let Err(reason) = hand_on(name, next, batch, deadline).await {
            dropped.add(items);
            error!(stage = name, items, error = %reason, "dropped");
        }
    }
}

#[async_trait]
impl Lifecycle for Stage {
    async fn start(&self) -> Result<(), BoxError> {
        let Some((mut processor, mut rx)) = self.parts.lock().unwrap_or_else(|p| p.into_inner()).take()
        else {
            return Err(format!("{} started twice", self.name).into());
        };
        let (name, next, deadline, dropped) = (
            self.name.clone(),
            self.next.clone(),
            self.deadline.clone(),
            self.dropped.clone(),
        );
        let task = tokio::spawn(
            async move {
                let mut out = Vec::new();
                loop {
                    let wake = processor.next_deadline();
                    tokio::select! {
                        msg = rx.recv() => match msg {
                            Some(batch) => processor.process(batch, &mut out),
                            None => {
                                processor.drain(&mut out);
                                forward(&name, &mut out, &next, &deadline, &dropped).await;
                                break;
                            }
                        },
                        _ = sleep_until(wake), if wake.is_some() => processor.on_deadline(Instant::now(), &mut out),
                    }
                    forward(&name, &mut out, &next, &deadline, &dropped).await;
                }
            }
            .in_current_span(),
        );
        *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) {
        let _ = self.deadline.set(deadline);
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), task)
                .await
                .is_err()
            {
                error!(stage = %self.name, "did not drain before the shutdown deadline");
                abort.abort();
            }
        }
    }
}
