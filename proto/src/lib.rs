//! OTLP types, hotspan's batch wrappers and the encodings it reads and writes (OTLP protobuf,
//! OTLP/JSON, pprof).
//!
//! Telemetry moves between components as a [`Batch`]. Traces stay the received bytes plus an
//! index ([`raw`]), so the path that only routes, counts or re-sends them never decodes a span;
//! components that need whole messages (the join, tail sampling, the debug exporter, the
//! report, receivers building requests) work on the prost structs, re-exported as [`otlp`].
#![forbid(unsafe_code)]
// A panic on input would take the collector down: errors are handled, and indexing is `get`
// (every parser here reads untrusted bytes); tests may unwrap and index.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod batch;
pub mod compression;
mod error;
mod otlp_batch;
pub mod otlp_json;
pub mod pprof;
mod profiles;
pub mod rpc;
mod signal;
// Benchmark load built from its own tables and templates, never from outside input.
#[allow(clippy::indexing_slicing)]
pub mod synthetic;
mod traces;
#[doc(hidden)]
pub mod tree;

pub use batch::{Batch, Rejected};
pub use error::DecodeError;
pub use opentelemetry_proto::tonic as otlp;
pub use otlp_batch::{LogsBatch, MetricsBatch, OtlpBatch, TreeRequest};
pub use profiles::{ProfilesBatch, ProfilesRejected};
pub use signal::{ParseSignalError, Signal};
pub use traces::{raw, TracesBatch, TracesSplit};

/// Wire encodings OTLP defines for request and response bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`
    Protobuf,
    /// `application/json`, OTLP/JSON (hex ids, 64-bit integers as strings).
    Json,
}

impl Encoding {
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}
