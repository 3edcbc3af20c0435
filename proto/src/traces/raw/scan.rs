//! Reading a request's bytes into the index: every field checked as prost would, spans'
//! few indexed fields read, everything else kept as slices of the received buffer.

use std::sync::Arc;

use bytes::Bytes;
use prost::encoding::{decode_key, WireType};

use super::super::wire::{self, check_field, expect, field, skip, take_len, Msg};
use super::{
    record_len, status_code_in, thread_id, Head, RawSpan, ResourceSpansRaw, ScopeSpansRaw, SpanIndex,
    RESOURCE_SPANS, SCOPE_SPANS, SPANS, SPAN_ATTRIBUTES, SPAN_LINKS, SPAN_STATUS,
};
use crate::DecodeError;

/// Checks an encoded `ExportTraceServiceRequest` and indexes its spans, keeping slices of
/// `buf` rather than copies.
pub(crate) fn scan(buf: &Bytes) -> Result<Vec<ResourceSpansRaw>, DecodeError> {
    let mut out = Vec::new();
    let mut rest: &[u8] = buf;
    while !rest.is_empty() {
        let (tag, wire_type) = decode_key(&mut rest)?;
        if tag == RESOURCE_SPANS {
            expect(wire_type, WireType::LengthDelimited)?;
            let body = take_len(&mut rest)?;
            out.push(scan_resource(buf, body)?);
        } else {
            skip(wire_type, tag, &mut rest, 0)?;
        }
    }
    Ok(out)
}

/// Walks a container's fields: children go to `child`, every other record is checked as
/// `head_field` says and kept in the head.
fn scan_container<'a>(
    buf: &Bytes,
    body: &'a [u8],
    depth: u32,
    child_tag: u32,
    head_field: impl Fn(u32) -> Option<wire::Field>,
    mut child: impl FnMut(&'a [u8], bool) -> Result<(), DecodeError>,
) -> Result<Head, DecodeError> {
    let mut head = Head::default();
    let mut rest = body;
    while !rest.is_empty() {
        let record_start = rest;
        let (tag, wire_type) = decode_key(&mut rest)?;
        if tag == child_tag {
            expect(wire_type, WireType::LengthDelimited)?;
            let body = take_len(&mut rest)?;
            // Written minimally: key and length take no more bytes than they need.
            let header = record_start.len() - rest.len() - body.len();
            child(body, header == record_len(body.len()) - body.len())?;
            continue;
        }
        match head_field(tag) {
            Some(f) => {
                check_field(f, wire_type, &mut rest, depth)?;
            }
            None => skip(wire_type, tag, &mut rest, depth)?,
        }
        // `rest` is what is left of `record_start` once the record is read.
        let record = record_start
            .get(..record_start.len() - rest.len())
            .ok_or_else(|| wire::error("a record past its container's end"))?;
        head.records.push(buf.slice_ref(record));
    }
    Ok(head)
}

fn scan_resource(buf: &Bytes, body: &[u8]) -> Result<ResourceSpansRaw, DecodeError> {
    let mut scopes = Vec::new();
    let head = scan_container(
        buf,
        body,
        1,
        SCOPE_SPANS,
        |tag| match tag {
            1 => Some(wire::Field::Message(Msg::Resource)),
            3 => Some(wire::Field::Str),
            _ => None,
        },
        |scope, _| {
            scopes.push(scan_scope(buf, scope)?);
            Ok(())
        },
    )?;
    Ok(ResourceSpansRaw {
        whole: Some(buf.slice_ref(body)),
        head: Arc::new(head),
        scopes,
    })
}

fn scan_scope(buf: &Bytes, body: &[u8]) -> Result<ScopeSpansRaw, DecodeError> {
    let mut spans = Vec::new();
    let head = scan_container(
        buf,
        body,
        2,
        SPANS,
        |tag| match tag {
            1 => Some(wire::Field::Message(Msg::Scope)),
            3 => Some(wire::Field::Str),
            _ => None,
        },
        |span, record_minimal| {
            let mut index = scan_span(span)?;
            index.set_record_minimal(record_minimal);
            spans.push(RawSpan {
                index,
                bytes: buf.slice_ref(span),
                extra: Box::default(),
            });
            Ok(())
        },
    )?;
    Ok(ScopeSpansRaw {
        whole: Some(buf.slice_ref(body)),
        sources: vec![buf.slice_ref(body)],
        head: Arc::new(head),
        spans,
    })
}

/// Depth of a span below the request: request > resource spans > scope spans > span.
const SPAN_DEPTH: u32 = 3;

fn len_u8(bytes: &[u8]) -> u8 {
    u8::try_from(bytes.len()).unwrap_or(u8::MAX)
}

fn scan_span(body: &[u8]) -> Result<SpanIndex, DecodeError> {
    let mut index = SpanIndex::default();
    let mut status = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let (tag, wire_type) = decode_key(&mut rest)?;
        let Some(f) = field(Msg::Span, tag) else {
            skip(wire_type, tag, &mut rest, SPAN_DEPTH)?;
            continue;
        };
        let value = check_field(f, wire_type, &mut rest, SPAN_DEPTH)?;
        // A field given twice: the last one counts, as in any decoder.
        match tag {
            1 => {
                index.trace_id_len = len_u8(value);
                index.trace_id = value.try_into().map_or(0, u128::from_be_bytes);
            }
            2 => {
                index.span_id_len = len_u8(value);
                index.span_id = value.try_into().map_or(0, u64::from_be_bytes);
            }
            4 => {
                index.parent_span_id = value.try_into().map_or(0, u64::from_be_bytes);
                index.check_nested_ids(tag, value);
            }
            SPAN_LINKS => index.check_nested_ids(tag, value),
            7 => index.start = value.try_into().map_or(0, u64::from_le_bytes),
            8 => index.end = value.try_into().map_or(0, u64::from_le_bytes),
            16 => index.flags = value.try_into().map_or(0, u32::from_le_bytes),
            SPAN_ATTRIBUTES if index.thread_id().is_none() => {
                if let Some(t) = thread_id(value) {
                    index.set_thread_id(t);
                }
            }
            SPAN_STATUS => {
                // Checked above; a code given in any of several `Status` fields counts.
                status_code_in(value, &mut status);
            }
            _ => {}
        }
    }
    index.set_status(status);
    Ok(index)
}
