//! The messages every signal shares: resource, scope, attributes and their values.

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::de::MapAccess;
use serde::ser::SerializeMap;

use crate::otlp_json::read::{int, msg, msgs, oneof, skip, string, strings};
use crate::otlp_json::scalars::{Base64, Base64In, DoubleIn, IntIn};
use crate::otlp_json::write::{AsStr, Double, Out, J};
use crate::otlp_json::Msg;

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

list_wrapper!(ArrayValue => "values" values, KeyValueList => "values" values);

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
        oneof(&mut self.value, value, "an AnyValue")
    }
}
