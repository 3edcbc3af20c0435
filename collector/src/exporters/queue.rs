//! The sending queue between an exporter's consumers and its workers. One interface, so a
//! file-backed queue can stand where the in-memory one does.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use hotspan_config::FieldError;
use hotspan_proto::Batch;
use serde::Deserialize;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::consumer::ConsumeError;

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Sizer {
    Requests,
    Items,
    Bytes,
}

/// otelcol's `sending_queue`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub enabled: bool,
    /// Workers sending from the queue at once.
    pub num_consumers: usize,
    /// Capacity, in units of `sizer`.
    pub queue_size: usize,
    pub sizer: Sizer,
    /// When full, make the sender wait instead of refusing it (a refusal is retryable).
    pub block_on_overflow: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
            sizer: Sizer::Requests,
            block_on_overflow: false,
        }
    }
}

impl QueueConfig {
    pub fn disabled() -> Self {
        QueueConfig {
            enabled: false,
            ..Default::default()
        }
    }

    pub fn validate(&self, path: &str, errs: &mut Vec<FieldError>) {
        if self.enabled && self.num_consumers == 0 {
            errs.push(FieldError {
                path: format!("{path}.num_consumers"),
                message: "must be at least 1".into(),
            });
        }
        if self.enabled && self.queue_size == 0 {
            errs.push(FieldError {
                path: format!("{path}.queue_size"),
                message: "must be at least 1".into(),
            });
        }
    }

    /// How much of the capacity a batch takes.
    pub fn size_of(&self, batch: &Batch) -> usize {
        match self.sizer {
            Sizer::Requests => 1,
            Sizer::Items => batch.item_count(),
            Sizer::Bytes => batch.encoded_len(),
        }
    }
}

/// A batch taken from the queue. Dropping it without [`QueueItem::done`] is the same as done
/// for the in-memory queue; a durable queue keeps it until `done`.
pub struct QueueItem {
    pub batch: Batch,
    _permit: OwnedSemaphorePermit,
}

impl QueueItem {
    /// The batch was sent or given up on: its place in the queue is free.
    pub fn done(self) {}
}

#[async_trait]
pub trait SendingQueue: Send + Sync {
    /// Takes the batch, or refuses it with a retryable error when full or closed.
    async fn push(&self, batch: Batch) -> Result<(), ConsumeError>;
    /// The next batch to send; `None` once closed and empty.
    async fn pop(&self) -> Option<QueueItem>;
    /// No more pushes; pops drain what is left.
    fn close(&self);
    /// Occupied capacity, in sizer units.
    fn size(&self) -> usize;
    fn capacity(&self) -> usize;
}

pub struct MemoryQueue {
    config: QueueConfig,
    /// Capacity left; a batch holds its permits until it leaves the queue for good.
    space: Arc<Semaphore>,
    /// Unbounded on its own: `space` is what bounds it.
    tx: Mutex<Option<mpsc::UnboundedSender<QueueItem>>>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<QueueItem>>,
}

impl MemoryQueue {
    pub fn new(config: QueueConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        MemoryQueue {
            space: Arc::new(Semaphore::new(config.queue_size)),
            config,
            tx: Mutex::new(Some(tx)),
            rx: tokio::sync::Mutex::new(rx),
        }
    }
}

#[async_trait]
impl SendingQueue for MemoryQueue {
    async fn push(&self, batch: Batch) -> Result<(), ConsumeError> {
        // A batch bigger than the whole queue would never fit: let it take all of it.
        let need = self.config.size_of(&batch).clamp(1, self.config.queue_size) as u32;
        let permit = if self.config.block_on_overflow {
            self.space.clone().acquire_many_owned(need).await.ok()
        } else {
            self.space.clone().try_acquire_many_owned(need).ok()
        };
        let Some(permit) = permit else {
            let reason = if self.space.is_closed() {
                "exporter is shutting down"
            } else {
                "sending queue is full"
            };
            return Err(ConsumeError::refused(reason, batch));
        };
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match tx {
            Some(tx) => tx
                .send(QueueItem {
                    batch,
                    _permit: permit,
                })
                .map_err(|e| ConsumeError::refused("exporter is shutting down", e.0.batch)),
            None => Err(ConsumeError::refused("exporter is shutting down", batch)),
        }
    }

    async fn pop(&self) -> Option<QueueItem> {
        self.rx.lock().await.recv().await
    }

    fn close(&self) {
        self.space.close();
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn size(&self) -> usize {
        self.config
            .queue_size
            .saturating_sub(self.space.available_permits())
    }

    fn capacity(&self) -> usize {
        self.config.queue_size
    }
}
