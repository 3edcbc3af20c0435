//! OTLP/JSON for every signal (traces, metrics, logs, profiles), written by hand.
//!
//! opentelemetry-proto's serde derives do not follow the OTLP JSON encoding: they ignore
//! snake_case keys (a request decodes empty and is answered 200), turn any error inside a
//! flattened oneof into "no value" (a metric loses its data), refuse enum names, `null`, 32-bit
//! integers as strings and messages with fields left out, and write NaN and the infinities as
//! `null`. So the export requests are encoded and decoded here instead, straight from and into
//! the prost types.
//!
//! The rules (OTLP spec, "JSON Protobuf Encoding", on top of proto3's JSON mapping):
//! - keys are lowerCamelCase; decoding also takes the original snake_case names, as protobuf
//!   JSON parsers do;
//! - trace, span and profile ids are lower-case hex (any case on input); other `bytes` are
//!   standard base64 (padding optional and the URL-safe alphabet accepted on input);
//! - 64-bit integers are decimal strings; 32-bit integers are numbers; both accept a number or
//!   a decimal string on input;
//! - enums are numbers; on input a number (kept as is when the enum has no such value) or the
//!   value's name from the .proto (`SPAN_KIND_SERVER`); an unknown name is an error;
//! - doubles are numbers, or the strings "NaN", "Infinity" and "-Infinity";
//! - default values are left out on output, `null` reads as absent, unknown keys are ignored;
//! - a oneof set twice is an error.
//!
//! Every message implements [`Msg`]: one function writes its fields, one reads a field by name,
//! side by side so the two stay in step. Serialization streams from the borrowed request and
//! deserialization streams into the prost structs; neither builds a `serde_json::Value`.

mod messages;
mod read;
mod scalars;
#[cfg(test)]
mod tests;
mod write;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde::de::MapAccess;
use serde::ser::SerializeMap;

use read::In;
use write::{Out, J};

/// An OTLP export request with an OTLP/JSON encoding: one of the four signals' requests.
pub trait Request: Sized {
    #[doc(hidden)]
    fn to_json(&self) -> Vec<u8>;
    #[doc(hidden)]
    fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error>;
}

// `Msg` stays private (its methods name this module's types); `Request` is its public face.
macro_rules! request {
    ($($req:ty),*) => {$(
        impl Request for $req {
            fn to_json(&self) -> Vec<u8> {
                // Cannot fail: writing into a Vec does no I/O, every key is a string and no
                // `Serialize` here returns an error.
                serde_json::to_vec(&J(self)).unwrap_or_default()
            }
            fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
                serde_json::from_slice::<In<$req>>(bytes).map(|m| m.0)
            }
        }
    )*};
}

request!(
    ExportTraceServiceRequest,
    ExportMetricsServiceRequest,
    ExportLogsServiceRequest,
    ExportProfilesServiceRequest
);

/// Encodes an export request as OTLP/JSON.
pub fn encode<R: Request>(request: &R) -> Vec<u8> {
    request.to_json()
}

/// Decodes an OTLP/JSON export request. Any malformed input is an error, never a panic;
/// nesting deeper than serde_json's recursion limit (128) is an error too.
pub fn decode<R: Request>(bytes: &[u8]) -> Result<R, serde_json::Error> {
    R::from_json(bytes)
}

/// A protobuf message with its OTLP/JSON field mapping.
trait Msg: Default {
    /// Writes the fields that are not at their default value.
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error>;
    /// Reads the value of field `key` (already lowerCamelCase); unknown keys are skipped.
    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error>;
}
