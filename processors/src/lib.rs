//! Processors: pure data transformations with their config, no sockets and no runtime.
//! The collector runs each instance in a stage task that owns it, so `&mut self` is lock free.
#![forbid(unsafe_code)]

pub mod batch;
pub mod spanprofile;

use std::sync::Arc;
use std::time::Instant;

use hotspan_config::{FieldError, Signal};
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
}

/// Whether a request of `bytes` may come in now. A refusal is retryable and says why.
pub trait Admission: Send + Sync {
    fn admit(&self, bytes: usize) -> Result<(), String>;
}

/// How the collector finds, checks and builds one processor type.
pub trait ProcessorFactory: Sync {
    fn type_name(&self) -> &'static str;
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }
    fn signals(&self) -> &'static [Signal];
    /// Parses and validates a config without building anything.
    fn check(&self, config: &serde_yaml::Value) -> Vec<FieldError>;
    fn build(&self, config: &serde_yaml::Value) -> Result<Box<dyn Processor>, FieldError>;
}
