//! A processor that holds nothing ([`Processor::runs_inline`]), run in its caller's task: the
//! caller waits for the rest of the pipeline and hears its answer, as otelcol's synchronous
//! processors (memory_limiter) let an exporter's refusal reach the receiver.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use hotspan_processors::{Admission, Processor};
use hotspan_proto::Batch;

use super::stage::admit;
use crate::component::{BoxError, Lifecycle};
use crate::consumer::{BoxFuture, ConsumeError, Consumer, SharedConsumer};

pub struct Inline {
    /// Locked only while `process` runs, never across an await.
    processor: Mutex<Box<dyn Processor>>,
    next: SharedConsumer,
    admission: Option<Arc<dyn Admission>>,
    /// Set at shutdown: no more input, as a stage's closed channel.
    closed: AtomicBool,
}

impl Inline {
    pub fn new(processor: Box<dyn Processor>, next: SharedConsumer) -> Self {
        let admission = processor.admission();
        Inline {
            processor: Mutex::new(processor),
            next,
            admission,
            closed: AtomicBool::new(false),
        }
    }
}

impl Consumer for Inline {
    fn admit(&self, bytes: usize) -> Result<(), ConsumeError> {
        admit(&self.admission, &self.next, bytes)
    }

    fn consume(&self, batch: Batch) -> BoxFuture<'_, Result<(), ConsumeError>> {
        if self.closed.load(Ordering::Acquire) {
            return Box::pin(async move { Err(ConsumeError::refused("pipeline is shutting down", batch)) });
        }
        let mut out = Vec::new();
        self.processor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .process(batch, &mut out);
        Box::pin(async move {
            // Every output is offered; the caller hears the first refusal.
            let mut first_error = None;
            for batch in out {
                if let Err(e) = self.next.consume(batch).await {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        })
    }
}

#[async_trait]
impl Lifecycle for Inline {
    async fn start(&self) -> Result<(), BoxError> {
        Ok(())
    }

    async fn shutdown(&self, _deadline: Instant) {
        self.closed.store(true, Ordering::Release);
    }
}
