//! The `batch` processor: groups small batches into bigger ones by size or age.

mod config;
#[cfg(test)]
mod tests;

use std::time::Instant;

use hotspan_proto::Batch;

pub use config::BatchConfig;

use crate::Processor;

pub struct BatchProcessor {
    config: BatchConfig,
    /// Items waiting for the batch to fill or the timeout to pass.
    pending: Option<Batch>,
    /// When the oldest pending item arrived.
    pending_since: Option<Instant>,
}

impl BatchProcessor {
    pub fn new(config: BatchConfig) -> Self {
        BatchProcessor {
            config,
            pending: None,
            pending_since: None,
        }
    }

    /// Pushes the pending batch in pieces no bigger than `send_batch_max_size`; with
    /// `only_full`, stops when less than `send_batch_size` is left.
    fn emit(&mut self, only_full: bool, out: &mut Vec<Batch>) {
        let Some(mut pending) = self.pending.take() else {
            return;
        };
        let max = match self.config.send_batch_max_size {
            0 => usize::MAX,
            max => max,
        };
        while !pending.is_empty() && (!only_full || pending.item_count() >= self.config.send_batch_size) {
            out.push(pending.split_front(max));
        }
        if pending.is_empty() {
            self.pending_since = None;
        } else {
            self.pending = Some(pending);
        }
    }
}

impl Processor for BatchProcessor {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        if batch.is_empty() {
            return;
        }
        match &mut self.pending {
            None => {
                self.pending = Some(batch);
                self.pending_since = Some(Instant::now());
            }
            Some(pending) => {
                if let Some(other) = pending.append(batch) {
                    // A processor instance serves one pipeline, hence one signal; should another
                    // ever arrive, send what we hold first rather than mix them.
                    self.emit(false, out);
                    self.pending = Some(other);
                    self.pending_since = Some(Instant::now());
                }
            }
        }
        let only_full = !self.config.timeout.is_zero();
        self.emit(only_full, out);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.pending_since.map(|since| since + self.config.timeout)
    }

    fn on_deadline(&mut self, now: Instant, out: &mut Vec<Batch>) {
        if self.next_deadline().is_some_and(|d| d <= now) {
            self.emit(false, out);
        }
    }

    fn drain(&mut self, out: &mut Vec<Batch>) {
        self.emit(false, out);
    }
}
