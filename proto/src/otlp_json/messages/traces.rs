//! The [`Msg`] mapping of every message in a traces export request.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use serde::de::MapAccess;
use serde::ser::SerializeMap;

use crate::otlp_json::read::{enumeration, hex, int, msg, msgs, skip, string};
use crate::otlp_json::scalars::Enum;
use crate::otlp_json::write::Out;
use crate::otlp_json::Msg;

impl Enum for SpanKind {
    const NAME: &'static str = "SpanKind";
    fn number(name: &str) -> Option<i32> {
        Self::from_str_name(name).map(|v| v as i32)
    }
}

impl Enum for StatusCode {
    const NAME: &'static str = "StatusCode";
    fn number(name: &str) -> Option<i32> {
        Self::from_str_name(name).map(|v| v as i32)
    }
}

impl Msg for ExportTraceServiceRequest {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msgs("resourceSpans", &self.resource_spans)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "resourceSpans" => self.resource_spans = msgs(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for ResourceSpans {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msg("resource", &self.resource)?;
        o.msgs("scopeSpans", &self.scope_spans)?;
        o.string("schemaUrl", &self.schema_url)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "resource" => self.resource = msg(a)?,
            "scopeSpans" => self.scope_spans = msgs(a)?,
            "schemaUrl" => self.schema_url = string(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for ScopeSpans {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msg("scope", &self.scope)?;
        o.msgs("spans", &self.spans)?;
        o.string("schemaUrl", &self.schema_url)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "scope" => self.scope = msg(a)?,
            "spans" => self.spans = msgs(a)?,
            "schemaUrl" => self.schema_url = string(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for Span {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.hex("traceId", &self.trace_id)?;
        o.hex("spanId", &self.span_id)?;
        o.string("traceState", &self.trace_state)?;
        o.hex("parentSpanId", &self.parent_span_id)?;
        o.int("flags", self.flags)?;
        o.string("name", &self.name)?;
        o.int("kind", self.kind)?;
        o.int("startTimeUnixNano", self.start_time_unix_nano)?;
        o.int("endTimeUnixNano", self.end_time_unix_nano)?;
        o.msgs("attributes", &self.attributes)?;
        o.int("droppedAttributesCount", self.dropped_attributes_count)?;
        o.msgs("events", &self.events)?;
        o.int("droppedEventsCount", self.dropped_events_count)?;
        o.msgs("links", &self.links)?;
        o.int("droppedLinksCount", self.dropped_links_count)?;
        o.msg("status", &self.status)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "traceId" => self.trace_id = hex(a)?,
            "spanId" => self.span_id = hex(a)?,
            "traceState" => self.trace_state = string(a)?,
            "parentSpanId" => self.parent_span_id = hex(a)?,
            "flags" => self.flags = int(a)?,
            "name" => self.name = string(a)?,
            "kind" => self.kind = enumeration::<A, SpanKind>(a)?,
            "startTimeUnixNano" => self.start_time_unix_nano = int(a)?,
            "endTimeUnixNano" => self.end_time_unix_nano = int(a)?,
            "attributes" => self.attributes = msgs(a)?,
            "droppedAttributesCount" => self.dropped_attributes_count = int(a)?,
            "events" => self.events = msgs(a)?,
            "droppedEventsCount" => self.dropped_events_count = int(a)?,
            "links" => self.links = msgs(a)?,
            "droppedLinksCount" => self.dropped_links_count = int(a)?,
            "status" => self.status = msg(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for Event {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.int("timeUnixNano", self.time_unix_nano)?;
        o.string("name", &self.name)?;
        o.msgs("attributes", &self.attributes)?;
        o.int("droppedAttributesCount", self.dropped_attributes_count)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "timeUnixNano" => self.time_unix_nano = int(a)?,
            "name" => self.name = string(a)?,
            "attributes" => self.attributes = msgs(a)?,
            "droppedAttributesCount" => self.dropped_attributes_count = int(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for Link {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.hex("traceId", &self.trace_id)?;
        o.hex("spanId", &self.span_id)?;
        o.string("traceState", &self.trace_state)?;
        o.msgs("attributes", &self.attributes)?;
        o.int("droppedAttributesCount", self.dropped_attributes_count)?;
        o.int("flags", self.flags)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "traceId" => self.trace_id = hex(a)?,
            "spanId" => self.span_id = hex(a)?,
            "traceState" => self.trace_state = string(a)?,
            "attributes" => self.attributes = msgs(a)?,
            "droppedAttributesCount" => self.dropped_attributes_count = int(a)?,
            "flags" => self.flags = int(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for Status {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.string("message", &self.message)?;
        o.int("code", self.code)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "message" => self.message = string(a)?,
            "code" => self.code = enumeration::<A, StatusCode>(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}
