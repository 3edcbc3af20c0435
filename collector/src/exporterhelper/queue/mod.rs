//! The sending queue between an exporter's consumers and its workers. One interface, two
//! implementations: in memory, and in files (`sending_queue.storage`).

mod file;
mod memory;

pub use file::{FileQueue, FileQueueOptions};
pub use memory::MemoryQueue;

use async_trait::async_trait;
use hotspan_config::{ComponentId, ExtensionRef, FieldError};
use hotspan_proto::Batch;
use serde::Deserialize;

use super::batcher::QueueBatchConfig;
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
    /// A `file_storage` extension id: when set, the queue is kept on disk there and survives
    /// restarts and crashes. A string here, parsed by `validate`, since ids have no serde form.
    pub storage: Option<String>,
    /// The sender waits until a worker has sent the batch or given up on it, and hears which:
    /// the queue gives concurrency, and the client still learns what became of its data.
    pub wait_for_result: bool,
    /// Merge queued requests into bigger batches as they are sent (`batch:` alone: defaults).
    #[serde(deserialize_with = "hotspan_config::present::or_default")]
    pub batch: Option<QueueBatchConfig>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
            sizer: Sizer::Requests,
            block_on_overflow: false,
            storage: None,
            wait_for_result: false,
            batch: None,
        }
    }
}

/// Largest `queue_size`: tokio's semaphore takes a batch's share of the queue as a u32, so up
/// to this the share (clamped to the queue) is exact; past its own limit (2^61) it panics.
pub const MAX_QUEUE_SIZE: usize = u32::MAX as usize;

/// Most `num_consumers`: each is a task started with the exporter, with an export in flight;
/// more than this is more concurrency than one backend takes from one client, and a huge
/// count would spawn tasks until memory runs out.
pub const MAX_CONSUMERS: usize = 1000;

impl QueueConfig {
    pub fn disabled() -> Self {
        QueueConfig {
            enabled: false,
            ..Default::default()
        }
    }

    pub fn validate(&self, path: &str, errs: &mut Vec<FieldError>) {
        if self.enabled && !(1..=MAX_CONSUMERS).contains(&self.num_consumers) {
            errs.push(FieldError {
                path: format!("{path}.num_consumers"),
                message: format!("must be from 1 to {MAX_CONSUMERS}"),
            });
        }
        if self.enabled && !(1..=MAX_QUEUE_SIZE).contains(&self.queue_size) {
            errs.push(FieldError {
                path: format!("{path}.queue_size"),
                message: format!("must be from 1 to {MAX_QUEUE_SIZE}"),
            });
        }
        if self.enabled && self.wait_for_result && self.storage.is_some() {
            errs.push(FieldError {
                path: format!("{path}.wait_for_result"),
                message: "is not supported with a persistent queue (storage), as in otelcol".into(),
            });
        }
        if let (true, Some(batch)) = (self.enabled, &self.batch) {
            batch.validate(&format!("{path}.batch"), self.sizer, self.queue_size, errs);
        }
        if let Some(Err(e)) = self.storage_id() {
            errs.push(FieldError {
                path: format!("{path}.storage"),
                message: e.to_string(),
            });
        }
    }

    /// The `file_storage` extension a persistent queue needs, for validation.
    pub fn extension_ref(&self, path: &str) -> Option<ExtensionRef> {
        self.storage.as_ref().map(|id| ExtensionRef {
            path: format!("{path}.storage"),
            id: id.clone(),
            type_name: "file_storage",
        })
    }

    /// The storage extension's id, when the queue is to be persistent.
    pub fn storage_id(&self) -> Option<Result<ComponentId, hotspan_config::ParseIdError>> {
        self.storage.as_deref().map(str::parse)
    }

    /// The batching, when it is on (and the queue is).
    pub fn batching(&self) -> Option<&QueueBatchConfig> {
        self.batch.as_ref().filter(|b| self.enabled && b.enabled)
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

/// Where a waiting sender (`wait_for_result`) hears what became of its batch. Dropped
/// unanswered (the batch was lost at the shutdown deadline), the sender hears that too.
pub type Answer = tokio::sync::oneshot::Sender<Result<(), ConsumeError>>;

/// A batch taken from the queue. Dropping it without [`QueueItem::done`] is the same as done
/// for the in-memory queue; a durable queue keeps it (on disk, and for a later pop) until `done`.
pub struct QueueItem {
    pub batch: Batch,
    ticket: Ticket,
}

impl QueueItem {
    pub fn new(batch: Batch, on_done: impl FnOnce() + Send + 'static) -> Self {
        QueueItem {
            batch,
            ticket: Ticket {
                on_done: Some(Box::new(on_done)),
                answer: None,
            },
        }
    }

    /// With a sender waiting for its outcome.
    pub fn answered(mut self, answer: Option<Answer>) -> Self {
        self.ticket.answer = answer;
        self
    }

    /// The batch was sent or given up on: its place in the queue is free.
    pub fn done(self) {
        self.ticket.done(Ok(()));
    }

    pub fn into_parts(self) -> (Batch, Ticket) {
        (self.batch, self.ticket)
    }
}

/// What a batch taken from the queue still owes: its place in the queue, and the answer to a
/// sender waiting for it. Dropped unsettled, the place goes as `on_done` decides when dropped
/// uncalled (a permit is released, a file slot is kept), and a waiting sender hears that the
/// exporter stopped.
pub struct Ticket {
    on_done: Option<Box<dyn FnOnce() + Send>>,
    answer: Option<Answer>,
}

impl Ticket {
    /// Sent or given up on: the place is free for good; a waiting sender hears `outcome`.
    pub fn done(mut self, outcome: Result<(), ConsumeError>) {
        if let Some(on_done) = self.on_done.take() {
            on_done();
        }
        self.keep(outcome);
    }

    /// Not sent, but kept (on disk, or by the shutdown): a waiting sender hears `outcome`.
    pub fn keep(mut self, outcome: Result<(), ConsumeError>) {
        if let Some(answer) = self.answer.take() {
            let _ = answer.send(outcome);
        }
    }
}

#[async_trait]
pub trait SendingQueue: Send + Sync {
    /// Takes the batch, or refuses it with a retryable error when full or closed.
    async fn push(&self, batch: Batch) -> Result<(), ConsumeError>;
    /// As [`SendingQueue::push`], and `answer` hears the batch's outcome once a worker has
    /// sent it or given up on it. A queue that cannot carry answers (a durable one, which
    /// config validation keeps from `wait_for_result`) answers once the batch is stored.
    async fn push_answered(&self, batch: Batch, answer: Answer) -> Result<(), ConsumeError> {
        let stored = self.push(batch).await;
        if stored.is_ok() {
            let _ = answer.send(Ok(()));
        }
        stored
    }
    /// The next batch to send; `None` once closed and empty (a durable queue: once closed).
    async fn pop(&self) -> Option<QueueItem>;
    /// No more pushes. The in-memory queue's pops drain what is left; a durable queue's stop at
    /// once, leaving the rest on disk for the next start.
    fn close(&self);
    /// Called once nothing pops or pushes any more (the exporter's workers have ended): a
    /// durable queue lets go of its directory, which the exporter replacing this one on a
    /// reload opens next, in this same process.
    fn release(&self) {}
    /// After [`SendingQueue::close`], once nothing pops: the batches still queued that
    /// shutdown will lose (an in-memory queue's). A durable queue keeps them on disk.
    fn take_left(&self) -> Vec<Batch> {
        Vec::new()
    }
    /// Occupied capacity, in sizer units.
    fn size(&self) -> usize;
    fn capacity(&self) -> usize;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::exporterhelper::batcher::QueueBatchConfig;

    #[test]
    fn storage_is_an_extension_id() {
        let q: QueueConfig = hotspan_config::from_yaml("storage: file_storage/queue").unwrap();
        assert_eq!(
            q.storage_id().map(|r| r.map(|id| id.to_string())),
            Some(Ok("file_storage/queue".into()))
        );
        let mut errs = Vec::new();
        q.validate("sending_queue", &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        let bad: QueueConfig = hotspan_config::from_yaml("storage: \"not an/id/at all\"").unwrap();
        bad.validate("sending_queue", &mut errs);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "sending_queue.storage");
        assert_eq!(QueueConfig::default().storage, None);
    }

    fn problems(yaml: &str) -> Vec<String> {
        let q: QueueConfig = hotspan_config::from_yaml(yaml).unwrap();
        let mut errs = Vec::new();
        q.validate("sending_queue", &mut errs);
        errs.into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect()
    }

    #[test]
    fn sizes_are_bounded() {
        assert!(problems("{num_consumers: 1000, queue_size: 4294967295}").is_empty());
        assert_eq!(
            problems("{num_consumers: 1001, queue_size: 4294967296}"),
            [
                "sending_queue.num_consumers: must be from 1 to 1000",
                "sending_queue.queue_size: must be from 1 to 4294967295"
            ]
        );
        // Past tokio's semaphore limit, which panicked when the queue was made.
        assert_eq!(problems("{queue_size: 18446744073709551615}").len(), 1);
        // A disabled queue's numbers are not used.
        assert!(problems("{enabled: false, num_consumers: 0, queue_size: 0}").is_empty());
    }

    #[test]
    fn waiting_for_the_result_needs_an_in_memory_queue() {
        assert!(problems("{wait_for_result: true}").is_empty());
        assert_eq!(
            problems("{wait_for_result: true, storage: file_storage}"),
            ["sending_queue.wait_for_result: is not supported with a persistent queue (storage), as in otelcol"]
        );
    }

    #[test]
    fn batch_config_is_otelcols() {
        let q: QueueConfig = hotspan_config::from_yaml("batch:").expect("config");
        assert_eq!(
            q.batching(),
            Some(&QueueBatchConfig::default()),
            "written alone: on, defaults"
        );
        let d = QueueBatchConfig::default();
        assert_eq!(
            (d.flush_timeout, d.min_size, d.max_size),
            (Duration::from_millis(200), 8192, 0)
        );
        assert_eq!(d.sizer(Sizer::Requests), Sizer::Items);
        assert_eq!(d.sizer(Sizer::Bytes), Sizer::Bytes);
        let q: QueueConfig = hotspan_config::from_yaml("{}").expect("config");
        assert_eq!(q.batching(), None, "off unless written");
        let q: QueueConfig = hotspan_config::from_yaml("batch: {enabled: false}").expect("config");
        assert_eq!(q.batching(), None);
        let q: QueueConfig = hotspan_config::from_yaml("{enabled: false, batch: {}}").expect("config");
        assert_eq!(q.batching(), None, "no queue, no batching, as in otelcol");
        assert!(problems("{queue_size: 10000, batch: {}}").is_empty());
        assert_eq!(
            problems("{sizer: items, queue_size: 100, batch: {flush_timeout: 0s, sizer: requests, min_size: 500, max_size: 10}}"),
            [
                "sending_queue.batch.flush_timeout: must be greater than 0s and at most 1h0m0s",
                "sending_queue.batch.sizer: must be items or bytes: a batch is measured by what it carries, as in otelcol",
                "sending_queue.batch.max_size: must be 0 (no limit) or at least min_size (500)",
            ]
        );
        assert_eq!(
            problems("{sizer: items, queue_size: 100, batch: {min_size: 500}}"),
            ["sending_queue.batch.min_size: must be at most queue_size (100): the queue could never hold a full batch"]
        );
        assert!(hotspan_config::from_yaml::<QueueConfig>("batch: {partition: {}}").is_err());
    }
}
