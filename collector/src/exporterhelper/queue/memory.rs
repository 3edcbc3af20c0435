//! The in-memory sending queue: bounded by a semaphore in sizer units; a full one refuses
//! (retryably) or, with `block_on_overflow`, makes the sender wait.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use hotspan_proto::Batch;
use tokio::sync::{mpsc, Semaphore};

use super::{Answer, QueueConfig, QueueItem, SendingQueue};
use crate::consumer::ConsumeError;

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

impl MemoryQueue {
    async fn enqueue(&self, batch: Batch, answer: Option<Answer>) -> Result<(), ConsumeError> {
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
                // The permit goes with the item: freed on done or drop alike.
                .send(QueueItem::new(batch, move || drop(permit)).answered(answer))
                .map_err(|e| ConsumeError::refused("exporter is shutting down", e.0.batch)),
            None => Err(ConsumeError::refused("exporter is shutting down", batch)),
        }
    }
}

#[async_trait]
impl SendingQueue for MemoryQueue {
    async fn push(&self, batch: Batch) -> Result<(), ConsumeError> {
        self.enqueue(batch, None).await
    }

    async fn push_answered(&self, batch: Batch, answer: Answer) -> Result<(), ConsumeError> {
        self.enqueue(batch, Some(answer)).await
    }

    async fn pop(&self) -> Option<QueueItem> {
        self.rx.lock().await.recv().await
    }

    fn close(&self) {
        self.space.close();
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn take_left(&self) -> Vec<Batch> {
        let mut left = Vec::new();
        if let Ok(mut rx) = self.rx.try_lock() {
            while let Ok(item) = rx.try_recv() {
                left.push(item.batch);
            }
        }
        left
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
