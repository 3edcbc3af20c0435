//! The [`Msg`] mapping of every message in a profiles export request.

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
use serde::de::{self, MapAccess};
use serde::ser::SerializeMap;

use super::read::{base64, hex, int, ints, msg, msgs, skip, string, strings};
use super::scalars::{Base64, Base64In, DoubleIn, IntIn};
use super::write::{AsStr, Double, Out, J};
use super::Msg;

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
