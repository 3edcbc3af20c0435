//! The [`Msg`] mapping of every message in a profiles export request.

use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::profiles::v1development::{
    Function, KeyValueAndUnit, Line, Link, Location, Mapping, Profile, ProfilesDictionary, ResourceProfiles,
    Sample, ScopeProfiles, Stack, ValueType,
};
use serde::de::MapAccess;
use serde::ser::SerializeMap;

use crate::otlp_json::read::{base64, hex, int, ints, msg, msgs, skip, string, strings};
use crate::otlp_json::write::Out;
use crate::otlp_json::Msg;

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
