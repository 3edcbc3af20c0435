//! Processors: pure data transformations with their config, no sockets and no runtime. The
//! collector registers them (`collector/src/processors/`) and runs each instance in a stage
//! task that owns it; the join (`spanprofile`) is shared by many tasks and locks inside.
#![forbid(unsafe_code)]
// A panic on input would take the collector down: errors are handled; tests may unwrap.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod batch;
pub mod spanprofile;
pub mod tailsampling;

use std::sync::Arc;
use std::time::Instant;

use hotspan_proto::Batch;

/// A processor owns what it is given and pushes zero or more batches on.
pub trait Processor: Send + 'static {
    /// Takes one batch; whatever is ready to go downstream is pushed onto `out`.
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>);
    /// When the processor next wants [`Processor::on_deadline`] called, if ever.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }
    /// A timer it asked for has fired.
    fn on_deadline(&mut self, _now: Instant, _out: &mut Vec<Batch>) {}
    /// Input is closed: push everything still held.
    fn drain(&mut self, _out: &mut Vec<Batch>) {}
    /// For processors that gate intake (memory_limiter): the check receivers make before they
    /// read or decode a request, shared with them when the pipeline is built.
    fn admission(&self) -> Option<Arc<dyn Admission>> {
        None
    }
    /// Whether it holds nothing between calls: each batch's output (at most one batch) is
    /// ready when [`Processor::process`] returns, and it wants no timer. Such a processor runs in its
    /// caller's task, so the caller hears the next consumer's answer (an exporter without a
    /// queue refusing), as with otelcol's synchronous processors, not "ok" once it is queued.
    fn runs_inline(&self) -> bool {
        false
    }
}

/// Whether a request of `bytes` may come in now. A refusal is retryable and says why.
pub trait Admission: Send + Sync {
    fn admit(&self, bytes: usize) -> Result<(), String>;
}
