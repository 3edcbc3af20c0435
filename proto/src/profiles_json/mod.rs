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

use std::borrow::Cow;
use std::fmt::{self, Display, Write as _};
use std::marker::PhantomData;
use std::str::FromStr;

use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::profiles::v1development::{
    Function, KeyValueAndUnit, Line, Link, Location, Mapping, Profile, ProfilesDictionary, ResourceProfiles,
    Sample, ScopeProfiles, Stack, ValueType,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::de::{self, IgnoredAny, MapAccess, Unexpected, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[cfg(test)]
mod tests;

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

impl Msg for ExportProfilesServiceRequest {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msgs("resourceProfiles", &self.resource_profiles)?;
        o.msg("dictionary", &self.dictionary)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "resourceProfiles" => self.resource_profiles = msgs(a)?,
            "dictionary" => self.dictionary = msg(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for ProfilesDictionary {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msgs("mappingTable", &self.mapping_table)?;
        o.msgs("locationTable", &self.location_table)?;
        o.msgs("functionTable", &self.function_table)?;
        o.msgs("linkTable", &self.link_table)?;
        o.strings("stringTable", &self.string_table)?;
        o.msgs("attributeTable", &self.attribute_table)?;
        o.msgs("stackTable", &self.stack_table)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "mappingTable" => self.mapping_table = msgs(a)?,
            "locationTable" => self.location_table = msgs(a)?,
            "functionTable" => self.function_table = msgs(a)?,
            "linkTable" => self.link_table = msgs(a)?,
            "stringTable" => self.string_table = strings(a)?,
            "attributeTable" => self.attribute_table = msgs(a)?,
            "stackTable" => self.stack_table = msgs(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for ResourceProfiles {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msg("resource", &self.resource)?;
        o.msgs("scopeProfiles", &self.scope_profiles)?;
        o.string("schemaUrl", &self.schema_url)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "resource" => self.resource = msg(a)?,
            "scopeProfiles" => self.scope_profiles = msgs(a)?,
            "schemaUrl" => self.schema_url = string(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for ScopeProfiles {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msg("scope", &self.scope)?;
        o.msgs("profiles", &self.profiles)?;
        o.string("schemaUrl", &self.schema_url)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "scope" => self.scope = msg(a)?,
            "profiles" => self.profiles = msgs(a)?,
            "schemaUrl" => self.schema_url = string(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for Profile {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msg("sampleType", &self.sample_type)?;
        o.msgs("samples", &self.samples)?;
        o.int("timeUnixNano", self.time_unix_nano)?;
        o.int("durationNano", self.duration_nano)?;
        o.msg("periodType", &self.period_type)?;
        o.int("period", self.period)?;
        o.hex("profileId", &self.profile_id)?;
        o.int("droppedAttributesCount", self.dropped_attributes_count)?;
        o.string("originalPayloadFormat", &self.original_payload_format)?;
        o.base64("originalPayload", &self.original_payload)?;
        o.ints("attributeIndices", &self.attribute_indices)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "sampleType" => self.sample_type = msg(a)?,
            "samples" => self.samples = msgs(a)?,
            "timeUnixNano" => self.time_unix_nano = int(a)?,
            "durationNano" => self.duration_nano = int(a)?,
            "periodType" => self.period_type = msg(a)?,
            "period" => self.period = int(a)?,
            "profileId" => self.profile_id = hex(a)?,
            "droppedAttributesCount" => self.dropped_attributes_count = int(a)?,
            "originalPayloadFormat" => self.original_payload_format = string(a)?,
            "originalPayload" => self.original_payload = base64(a)?,
            "attributeIndices" => self.attribute_indices = ints(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for Link {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.hex("traceId", &self.trace_id)?;
        o.hex("spanId", &self.span_id)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "traceId" => self.trace_id = hex(a)?,
            "spanId" => self.span_id = hex(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for ValueType {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.int("typeStrindex", self.type_strindex)?;
        o.int("unitStrindex", self.unit_strindex)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "typeStrindex" => self.type_strindex = int(a)?,
            "unitStrindex" => self.unit_strindex = int(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for Sample {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.int("stackIndex", self.stack_index)?;
        o.ints("attributeIndices", &self.attribute_indices)?;
        o.int("linkIndex", self.link_index)?;
        o.ints("values", &self.values)?;
        o.ints("timestampsUnixNano", &self.timestamps_unix_nano)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "stackIndex" => self.stack_index = int(a)?,
            "attributeIndices" => self.attribute_indices = ints(a)?,
            "linkIndex" => self.link_index = int(a)?,
            "values" => self.values = ints(a)?,
            "timestampsUnixNano" => self.timestamps_unix_nano = ints(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for Mapping {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.int("memoryStart", self.memory_start)?;
        o.int("memoryLimit", self.memory_limit)?;
        o.int("fileOffset", self.file_offset)?;
        o.int("filenameStrindex", self.filename_strindex)?;
        o.ints("attributeIndices", &self.attribute_indices)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "memoryStart" => self.memory_start = int(a)?,
            "memoryLimit" => self.memory_limit = int(a)?,
            "fileOffset" => self.file_offset = int(a)?,
            "filenameStrindex" => self.filename_strindex = int(a)?,
            "attributeIndices" => self.attribute_indices = ints(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for Stack {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.ints("locationIndices", &self.location_indices)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "locationIndices" => self.location_indices = ints(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for Location {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.int("mappingIndex", self.mapping_index)?;
        o.int("address", self.address)?;
        o.msgs("lines", &self.lines)?;
        o.ints("attributeIndices", &self.attribute_indices)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "mappingIndex" => self.mapping_index = int(a)?,
            "address" => self.address = int(a)?,
            "lines" => self.lines = msgs(a)?,
            "attributeIndices" => self.attribute_indices = ints(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for Line {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.int("functionIndex", self.function_index)?;
        o.int("line", self.line)?;
        o.int("column", self.column)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "functionIndex" => self.function_index = int(a)?,
            "line" => self.line = int(a)?,
            "column" => self.column = int(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for Function {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.int("nameStrindex", self.name_strindex)?;
        o.int("systemNameStrindex", self.system_name_strindex)?;
        o.int("filenameStrindex", self.filename_strindex)?;
        o.int("startLine", self.start_line)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "nameStrindex" => self.name_strindex = int(a)?,
            "systemNameStrindex" => self.system_name_strindex = int(a)?,
            "filenameStrindex" => self.filename_strindex = int(a)?,
            "startLine" => self.start_line = int(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for KeyValueAndUnit {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.int("keyStrindex", self.key_strindex)?;
        o.msg("value", &self.value)?;
        o.int("unitStrindex", self.unit_strindex)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "keyStrindex" => self.key_strindex = int(a)?,
            "value" => self.value = msg(a)?,
            "unitStrindex" => self.unit_strindex = int(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for Resource {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msgs("attributes", &self.attributes)?;
        o.int("droppedAttributesCount", self.dropped_attributes_count)?;
        o.msgs("entityRefs", &self.entity_refs)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "attributes" => self.attributes = msgs(a)?,
            "droppedAttributesCount" => self.dropped_attributes_count = int(a)?,
            "entityRefs" => self.entity_refs = msgs(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for EntityRef {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.string("schemaUrl", &self.schema_url)?;
        o.string("type", &self.r#type)?;
        o.strings("idKeys", &self.id_keys)?;
        o.strings("descriptionKeys", &self.description_keys)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "schemaUrl" => self.schema_url = string(a)?,
            "type" => self.r#type = string(a)?,
            "idKeys" => self.id_keys = strings(a)?,
            "descriptionKeys" => self.description_keys = strings(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for InstrumentationScope {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.string("name", &self.name)?;
        o.string("version", &self.version)?;
        o.msgs("attributes", &self.attributes)?;
        o.int("droppedAttributesCount", self.dropped_attributes_count)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "name" => self.name = string(a)?,
            "version" => self.version = string(a)?,
            "attributes" => self.attributes = msgs(a)?,
            "droppedAttributesCount" => self.dropped_attributes_count = int(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for KeyValue {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.string("key", &self.key)?;
        o.msg("value", &self.value)?;
        o.int("keyStrindex", self.key_strindex)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "key" => self.key = string(a)?,
            "value" => self.value = msg(a)?,
            "keyStrindex" => self.key_strindex = int(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for ArrayValue {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msgs("values", &self.values)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "values" => self.values = msgs(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for KeyValueList {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msgs("values", &self.values)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "values" => self.values = msgs(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

/// A oneof: whichever value is set is written even when it is the default (`""`, `0`, `false`),
/// as proto3 JSON does for oneof members, so it survives a round trip.
impl Msg for AnyValue {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        match &self.value {
            None => Ok(()),
            Some(Value::StringValue(v)) => o.entry("stringValue", v),
            Some(Value::BoolValue(v)) => o.entry("boolValue", v),
            Some(Value::IntValue(v)) => o.entry("intValue", &AsStr(v)),
            Some(Value::DoubleValue(v)) => o.entry("doubleValue", &Double(*v)),
            Some(Value::ArrayValue(v)) => o.entry("arrayValue", &J(v)),
            Some(Value::KvlistValue(v)) => o.entry("kvlistValue", &J(v)),
            Some(Value::BytesValue(v)) => o.entry("bytesValue", &AsStr(Base64(v))),
            Some(Value::StringValueStrindex(v)) => o.entry("stringValueStrindex", v),
        }
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        let value = match key {
            "stringValue" => a.next_value::<Option<String>>()?.map(Value::StringValue),
            "boolValue" => a.next_value::<Option<bool>>()?.map(Value::BoolValue),
            "intValue" => a
                .next_value::<Option<IntIn<i64>>>()?
                .map(|v| Value::IntValue(v.0)),
            "doubleValue" => a
                .next_value::<Option<DoubleIn>>()?
                .map(|v| Value::DoubleValue(v.0)),
            "arrayValue" => msg(a)?.map(Value::ArrayValue),
            "kvlistValue" => msg(a)?.map(Value::KvlistValue),
            "bytesValue" => a
                .next_value::<Option<Base64In>>()?
                .map(|v| Value::BytesValue(v.0)),
            "stringValueStrindex" => a
                .next_value::<Option<IntIn<i32>>>()?
                .map(|v| Value::StringValueStrindex(v.0)),
            _ => {
                skip(a)?;
                None
            }
        };
        if value.is_some() {
            if self.value.is_some() {
                return Err(de::Error::custom(
                    "an AnyValue sets more than one of its value fields",
                ));
            }
            self.value = value;
        }
        Ok(())
    }
}

// ---- writing ----

/// Serializes a message as a JSON object.
struct J<'a, T>(&'a T);

impl<T: Msg> Serialize for J<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        self.0.write(&mut Out(&mut map))?;
        map.end()
    }
}

/// Serializes a repeated message field as a JSON array.
struct Seq<'a, T>(&'a [T]);

impl<T: Msg> Serialize for Seq<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(J))
    }
}

/// Serializes anything `Display` as a JSON string without an intermediate `String`.
struct AsStr<T>(T);

impl<T: Display> Serialize for AsStr<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A repeated 64-bit integer field: an array of decimal strings.
struct AsStrs<'a, T>(&'a [T]);

impl<T: Display> Serialize for AsStrs<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(AsStr))
    }
}

/// A double: a JSON number, or "NaN" / "Infinity" / "-Infinity" as proto3 JSON writes them
/// (serde_json would write `null`).
struct Double(f64);

impl Serialize for Double {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_nan() {
            s.serialize_str("NaN")
        } else if v.is_infinite() {
            s.serialize_str(if v > 0.0 { "Infinity" } else { "-Infinity" })
        } else {
            s.serialize_f64(v)
        }
    }
}

/// Writes a message's fields into the JSON object being serialized, leaving defaults out.
struct Out<'a, M>(&'a mut M);

impl<M: SerializeMap> Out<'_, M> {
    fn entry<V: Serialize + ?Sized>(&mut self, key: &'static str, value: &V) -> Result<(), M::Error> {
        self.0.serialize_entry(key, value)
    }

    fn int<T: Int>(&mut self, key: &'static str, v: T) -> Result<(), M::Error> {
        if v == T::default() {
            Ok(())
        } else if T::QUOTED {
            self.entry(key, &AsStr(v))
        } else {
            self.entry(key, &v)
        }
    }

    fn ints<T: Int>(&mut self, key: &'static str, v: &[T]) -> Result<(), M::Error> {
        if v.is_empty() {
            Ok(())
        } else if T::QUOTED {
            self.entry(key, &AsStrs(v))
        } else {
            self.entry(key, v)
        }
    }

    fn string(&mut self, key: &'static str, v: &str) -> Result<(), M::Error> {
        if v.is_empty() {
            return Ok(());
        }
        self.entry(key, v)
    }

    fn strings(&mut self, key: &'static str, v: &[String]) -> Result<(), M::Error> {
        if v.is_empty() {
            return Ok(());
        }
        self.entry(key, v)
    }

    fn hex(&mut self, key: &'static str, v: &[u8]) -> Result<(), M::Error> {
        if v.is_empty() {
            return Ok(());
        }
        self.entry(key, &AsStr(Hex(v)))
    }

    fn base64(&mut self, key: &'static str, v: &[u8]) -> Result<(), M::Error> {
        if v.is_empty() {
            return Ok(());
        }
        self.entry(key, &AsStr(Base64(v)))
    }

    /// A present message is written even when all its fields are default (`{}`).
    fn msg<T: Msg>(&mut self, key: &'static str, v: &Option<T>) -> Result<(), M::Error> {
        match v {
            Some(m) => self.entry(key, &J(m)),
            None => Ok(()),
        }
    }

    fn msgs<T: Msg>(&mut self, key: &'static str, v: &[T]) -> Result<(), M::Error> {
        if v.is_empty() {
            return Ok(());
        }
        self.entry(key, &Seq(v))
    }
}

// ---- reading ----

/// Deserializes a message from a JSON object.
struct In<T>(T);

impl<'de, T: Msg> Deserialize<'de> for In<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MsgVisitor(PhantomData))
    }
}

struct MsgVisitor<T>(PhantomData<T>);

impl<'de, T: Msg> Visitor<'de> for MsgVisitor<T> {
    type Value = In<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<In<T>, A::Error> {
        let mut msg = T::default();
        while let Some(Key(key)) = a.next_key()? {
            msg.read(&camel(&key), &mut a)?;
        }
        Ok(In(msg))
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The lowerCamelCase form of a snake_case proto field name (`memory_start` -> `memoryStart`);
/// other keys are returned as they are.
fn camel(key: &str) -> Cow<'_, str> {
    if !key.contains('_') || key.bytes().any(|b| b.is_ascii_uppercase()) {
        return Cow::Borrowed(key);
    }
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

// Field readers: `null` means absent, so it gives the field's default.

fn skip<'de, A: MapAccess<'de>>(a: &mut A) -> Result<(), A::Error> {
    a.next_value::<IgnoredAny>().map(|_| ())
}

fn int<'de, A: MapAccess<'de>, T: Int>(a: &mut A) -> Result<T, A::Error> {
    Ok(a.next_value::<Option<IntIn<T>>>()?
        .map_or_else(T::default, |v| v.0))
}

fn ints<'de, A: MapAccess<'de>, T: Int>(a: &mut A) -> Result<Vec<T>, A::Error> {
    let v = a.next_value::<Option<Vec<IntIn<T>>>>()?.unwrap_or_default();
    Ok(v.into_iter().map(|v| v.0).collect())
}

fn string<'de, A: MapAccess<'de>>(a: &mut A) -> Result<String, A::Error> {
    Ok(a.next_value::<Option<String>>()?.unwrap_or_default())
}

fn strings<'de, A: MapAccess<'de>>(a: &mut A) -> Result<Vec<String>, A::Error> {
    Ok(a.next_value::<Option<Vec<String>>>()?.unwrap_or_default())
}

fn hex<'de, A: MapAccess<'de>>(a: &mut A) -> Result<Vec<u8>, A::Error> {
    Ok(a.next_value::<Option<HexIn>>()?.map(|v| v.0).unwrap_or_default())
}

fn base64<'de, A: MapAccess<'de>>(a: &mut A) -> Result<Vec<u8>, A::Error> {
    Ok(a.next_value::<Option<Base64In>>()?
        .map(|v| v.0)
        .unwrap_or_default())
}

fn msg<'de, A: MapAccess<'de>, T: Msg>(a: &mut A) -> Result<Option<T>, A::Error> {
    Ok(a.next_value::<Option<In<T>>>()?.map(|m| m.0))
}

fn msgs<'de, A: MapAccess<'de>, T: Msg>(a: &mut A) -> Result<Vec<T>, A::Error> {
    let v = a.next_value::<Option<Vec<In<T>>>>()?.unwrap_or_default();
    Ok(v.into_iter().map(|m| m.0).collect())
}

/// A bad string for an error message; long ones are not copied into it.
fn unexpected_str(v: &str) -> Unexpected<'_> {
    if v.len() <= 64 {
        Unexpected::Str(v)
    } else {
        Unexpected::Other("a long string")
    }
}

// ---- integers ----

/// The integer types of the profiles messages.
trait Int: Copy + Default + PartialEq + Display + FromStr + TryFrom<i128> + Serialize {
    /// 64-bit integers are decimal strings in OTLP/JSON, 32-bit ones are numbers.
    const QUOTED: bool;
}

impl Int for i32 {
    const QUOTED: bool = false;
}
impl Int for u32 {
    const QUOTED: bool = false;
}
impl Int for i64 {
    const QUOTED: bool = true;
}
impl Int for u64 {
    const QUOTED: bool = true;
}

/// An integer read from a JSON number or a decimal string, checked against `T`'s range.
struct IntIn<T>(T);

impl<'de, T: Int> Deserialize<'de> for IntIn<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IntVisitor(PhantomData)).map(IntIn)
    }
}

struct IntVisitor<T>(PhantomData<T>);

impl<T: Int> IntVisitor<T> {
    /// Integral floats (`3.0`, `1e3`) are accepted, as proto3 JSON parsers do.
    fn integral<E: de::Error>(&self, v: f64) -> Result<T, E> {
        let whole = v.is_finite() && v.fract() == 0.0;
        // `as` saturates; anything outside `T` then fails `try_from`.
        let n = if whole { T::try_from(v as i128).ok() } else { None };
        n.ok_or_else(|| E::invalid_value(Unexpected::Float(v), self))
    }
}

impl<T: Int> Visitor<'_> for IntVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "an integer in the {} range, as a number or a decimal string",
            std::any::type_name::<T>()
        )
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::try_from(i128::from(v)).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::try_from(i128::from(v)).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        self.integral(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        if let Ok(n) = v.parse::<T>() {
            return Ok(n);
        }
        // "1e3" is an integer too; `f64` parsing also takes "inf" / "nan", which `integral` refuses.
        match v.parse::<f64>() {
            Ok(f) => self.integral(f),
            Err(_) => Err(E::invalid_value(unexpected_str(v), &self)),
        }
    }
}

/// A double read from a JSON number or a string ("NaN", "Infinity", "-Infinity", "1.5").
struct DoubleIn(f64);

impl<'de> Deserialize<'de> for DoubleIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DoubleVisitor;
        impl Visitor<'_> for DoubleVisitor {
            type Value = f64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, \"NaN\", \"Infinity\" or \"-Infinity\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
                Ok(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
                match v {
                    "NaN" => Ok(f64::NAN),
                    "Infinity" => Ok(f64::INFINITY),
                    "-Infinity" => Ok(f64::NEG_INFINITY),
                    _ => v.parse().map_err(|_| E::invalid_value(unexpected_str(v), &self)),
                }
            }
        }
        d.deserialize_any(DoubleVisitor).map(DoubleIn)
    }
}

// ---- bytes ----

/// Lower-case hex, for trace, span and profile ids.
struct Hex<'a>(&'a [u8]);

impl Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for &b in self.0 {
            f.write_char(char::from(DIGITS[usize::from(b >> 4)]))?;
            f.write_char(char::from(DIGITS[usize::from(b & 0xf)]))?;
        }
        Ok(())
    }
}

/// Decodes hex of either case; `None` for odd lengths and non-hex characters.
fn hex_decode(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks_exact(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

/// Bytes read from a hex string.
struct HexIn(Vec<u8>);

impl<'de> Deserialize<'de> for HexIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct HexVisitor;
        impl Visitor<'_> for HexVisitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an id as a hex string of even length")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                hex_decode(v).ok_or_else(|| E::invalid_value(unexpected_str(v), &self))
            }
        }
        d.deserialize_str(HexVisitor).map(HexIn)
    }
}

const BASE64_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, for `bytes` fields other than ids.
struct Base64<'a>(&'a [u8]);

impl Display for Base64<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digit = |n: u32| char::from(BASE64_ALPHABET[(n & 63) as usize]);
        for chunk in self.0.chunks(3) {
            let b = |i: usize| chunk.get(i).map_or(0, |&b| u32::from(b));
            let n = b(0) << 16 | b(1) << 8 | b(2);
            f.write_char(digit(n >> 18))?;
            f.write_char(digit(n >> 12))?;
            f.write_char(if chunk.len() > 1 { digit(n >> 6) } else { '=' })?;
            f.write_char(if chunk.len() > 2 { digit(n) } else { '=' })?;
        }
        Ok(())
    }
}

/// Decodes base64, standard or URL-safe alphabet, with or without padding. `None` for other
/// characters, misplaced or wrong padding and impossible lengths.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let data = s.trim_end_matches('=');
    let padding = s.len() - data.len();
    if padding > 2 || (padding > 0 && !s.len().is_multiple_of(4)) || data.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() / 4 * 3 + 2);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in data.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6 | u32::from(v)) & 0xff_ffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Bytes read from a base64 string.
struct Base64In(Vec<u8>);

impl<'de> Deserialize<'de> for Base64In {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Base64Visitor;
        impl Visitor<'_> for Base64Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("bytes as a base64 string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                base64_decode(v).ok_or_else(|| E::invalid_value(unexpected_str(v), &self))
            }
        }
        d.deserialize_str(Base64Visitor).map(Base64In)
    }
}
