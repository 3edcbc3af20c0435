//! OTLP types and hotspan's batch wrappers.
//!
//! Components read and write telemetry through the wrappers here ([`TracesBatch`]), never
//! through prost structs directly, so the representation can later become the received bytes
//! plus a lazy index without touching every component.
#![forbid(unsafe_code)]

mod batch;
pub mod compression;
mod error;
mod otlp_batch;
pub mod pprof;
mod profiles;
pub mod profiles_json;
pub mod rpc;
mod signal;
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
