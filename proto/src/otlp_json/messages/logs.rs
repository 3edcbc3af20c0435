//! The [`Msg`] mapping of every message in a logs export request.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use serde::de::MapAccess;
use serde::ser::SerializeMap;

use crate::otlp_json::read::{enumeration, hex, int, msg, msgs, skip, string};
use crate::otlp_json::scalars::Enum;
use crate::otlp_json::write::Out;
use crate::otlp_json::Msg;

impl Enum for SeverityNumber {
    const NAME: &'static str = "SeverityNumber";
    fn number(name: &str) -> Option<i32> {
        Self::from_str_name(name).map(|v| v as i32)
    }
}

impl Msg for ExportLogsServiceRequest {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msgs("resourceLogs", &self.resource_logs)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "resourceLogs" => self.resource_logs = msgs(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for ResourceLogs {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msg("resource", &self.resource)?;
        o.msgs("scopeLogs", &self.scope_logs)?;
        o.string("schemaUrl", &self.schema_url)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "resource" => self.resource = msg(a)?,
            "scopeLogs" => self.scope_logs = msgs(a)?,
            "schemaUrl" => self.schema_url = string(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for ScopeLogs {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msg("scope", &self.scope)?;
        o.msgs("logRecords", &self.log_records)?;
        o.string("schemaUrl", &self.schema_url)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "scope" => self.scope = msg(a)?,
            "logRecords" => self.log_records = msgs(a)?,
            "schemaUrl" => self.schema_url = string(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for LogRecord {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.int("timeUnixNano", self.time_unix_nano)?;
        o.int("observedTimeUnixNano", self.observed_time_unix_nano)?;
        o.int("severityNumber", self.severity_number)?;
        o.string("severityText", &self.severity_text)?;
        o.msg("body", &self.body)?;
        o.msgs("attributes", &self.attributes)?;
        o.int("droppedAttributesCount", self.dropped_attributes_count)?;
        o.int("flags", self.flags)?;
        o.hex("traceId", &self.trace_id)?;
        o.hex("spanId", &self.span_id)?;
        o.string("eventName", &self.event_name)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "timeUnixNano" => self.time_unix_nano = int(a)?,
            "observedTimeUnixNano" => self.observed_time_unix_nano = int(a)?,
            "severityNumber" => self.severity_number = enumeration::<A, SeverityNumber>(a)?,
            "severityText" => self.severity_text = string(a)?,
            "body" => self.body = msg(a)?,
            "attributes" => self.attributes = msgs(a)?,
            "droppedAttributesCount" => self.dropped_attributes_count = int(a)?,
            "flags" => self.flags = int(a)?,
            "traceId" => self.trace_id = hex(a)?,
            "spanId" => self.span_id = hex(a)?,
            "eventName" => self.event_name = string(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}
