//! OTLP/JSON for profiles, written by hand.
//!
//! opentelemetry-proto's serde derives for `profiles::v1development` do not follow the OTLP JSON
//! encoding (link ids and `originalPayload` come out as arrays of numbers, most 64-bit integers
//! as JSON numbers, missing fields fail to parse, `stringValueStrindex` is dropped on input), so
//! the profiles request is encoded and decoded here instead, straight from and into the prost
//! types.
//!
//! The rules (OTLP spec, "JSON Protobuf Encoding", on top of proto3's JSON mapping):
//! - keys are lowerCamelCase; decoding also takes the original snake_case names, as protobuf
//!   JSON parsers do;
//! - trace, span and profile ids are lower-case hex (any case on input); other `bytes` are
//!   standard base64 (padding optional and the URL-safe alphabet accepted on input);
//! - 64-bit integers are decimal strings; 32-bit integers are numbers; both accept a number or
//!   a decimal string on input;
//! - default values are left out on output, `null` reads as absent, unknown keys are ignored.
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

use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use serde::de::MapAccess;
use serde::ser::SerializeMap;

use read::In;
use write::{Out, J};

/// Encodes a profiles export request as OTLP/JSON.
pub fn encode(request: &ExportProfilesServiceRequest) -> Vec<u8> {
    // Cannot fail: writing into a Vec does no I/O, every key is a string and no `Serialize`
    // here returns an error.
    serde_json::to_vec(&J(request)).unwrap_or_default()
}

/// Decodes an OTLP/JSON profiles export request. Any malformed input is an error, never a panic;
/// nesting deeper than serde_json's recursion limit (128) is an error too.
pub fn decode(bytes: &[u8]) -> Result<ExportProfilesServiceRequest, serde_json::Error> {
    serde_json::from_slice::<In<ExportProfilesServiceRequest>>(bytes).map(|m| m.0)
}

/// A protobuf message with its OTLP/JSON field mapping.
trait Msg: Default {
    /// Writes the fields that are not at their default value.
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error>;
    /// Reads the value of field `key` (already lowerCamelCase); unknown keys are skipped.
    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error>;
}
