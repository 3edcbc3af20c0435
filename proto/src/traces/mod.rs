//! Traces as they travel through a pipeline: the received bytes plus an index ([`raw`]).
//! Decoding into prost structs happens only where a component needs every field (JSON, the
//! debug exporter, the report).

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;

use crate::{otlp_json, DecodeError, Encoding};

pub mod raw;
mod wire;

use raw::ResourceSpansRaw;

/// A batch of spans. Cloning shares the bytes.
#[derive(Clone, Debug, Default)]
pub struct TracesBatch {
    resources: Vec<ResourceSpansRaw>,
    spans: usize,
}

/// What [`TracesBatch::remove_invalid_spans`] took out, for an OTLP partial-success answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TracesSplit {
    pub rejected: usize,
    pub reason: Option<String>,
}

impl PartialEq for TracesBatch {
    /// Equal when they decode to the same spans, however they were encoded.
    fn eq(&self, other: &Self) -> bool {
        self.spans == other.spans && self.resource_spans() == other.resource_spans()
    }
}

impl TracesBatch {
    /// Decodes an export request body; protobuf is checked and indexed, not decoded.
    pub fn decode(bytes: &[u8], encoding: Encoding) -> Result<Self, DecodeError> {
        match encoding {
            Encoding::Protobuf => Self::from_protobuf(Bytes::copy_from_slice(bytes)),
            Encoding::Json => {
                let request: ExportTraceServiceRequest = otlp_json::decode(bytes)?;
                Ok(Self::from_resource_spans(request.resource_spans))
            }
        }
    }

    /// Like [`TracesBatch::decode`], keeping slices of `bytes` instead of copying them.
    pub fn decode_bytes(bytes: Bytes, encoding: Encoding) -> Result<Self, DecodeError> {
        match encoding {
            Encoding::Protobuf => Self::from_protobuf(bytes),
            Encoding::Json => Self::decode(&bytes, encoding),
        }
    }

    fn from_protobuf(bytes: Bytes) -> Result<Self, DecodeError> {
        Ok(Self::from_raw(raw::scan(&bytes)?))
    }

    pub fn from_resource_spans(resource_spans: Vec<ResourceSpans>) -> Self {
        let bytes = Bytes::from(ExportTraceServiceRequest { resource_spans }.encode_to_vec());
        // prost's own output always passes the scan; a message nested past prost's depth
        // limit would not decode anywhere either.
        let resources = raw::scan(&bytes);
        debug_assert!(resources.is_ok(), "prost output failed the scan: {resources:?}");
        Self::from_raw(resources.unwrap_or_default())
    }

    pub fn from_raw(resources: Vec<ResourceSpansRaw>) -> Self {
        let spans = resources.iter().map(ResourceSpansRaw::span_count).sum();
        TracesBatch { resources, spans }
    }

    pub fn raw(&self) -> &[ResourceSpansRaw] {
        &self.resources
    }

    pub fn into_raw(self) -> Vec<ResourceSpansRaw> {
        self.resources
    }

    /// Encodes the batch as an export request body.
    pub fn encode(&self, encoding: Encoding) -> Vec<u8> {
        match encoding {
            Encoding::Protobuf => raw::encode(&self.resources),
            Encoding::Json => otlp_json::encode(&ExportTraceServiceRequest {
                resource_spans: self.resource_spans(),
            }),
        }
    }

    /// Size of the protobuf encoding, for byte-based limits.
    pub fn encoded_len(&self) -> usize {
        raw::encoded_len(&self.resources)
    }

    pub fn span_count(&self) -> usize {
        self.spans
    }

    pub fn item_count(&self) -> usize {
        self.spans
    }

    pub fn is_empty(&self) -> bool {
        self.spans == 0
    }

    /// Every field, decoded: for components that read more than the index.
    pub fn resource_spans(&self) -> Vec<ResourceSpans> {
        let decoded = ExportTraceServiceRequest::decode(&self.encode(Encoding::Protobuf)[..]);
        // The bytes passed the scan, which refuses what prost refuses.
        debug_assert!(decoded.is_ok(), "scanned bytes failed to decode: {decoded:?}");
        decoded.map(|r| r.resource_spans).unwrap_or_default()
    }

    pub fn into_resource_spans(self) -> Vec<ResourceSpans> {
        self.resource_spans()
    }

    /// Moves every span of `other` into this batch.
    pub fn append(&mut self, other: Self) {
        self.spans += other.spans;
        self.resources.extend(other.resources);
    }

    /// Splits off the first `max` spans (at least one) into a new batch. A resource or scope
    /// cut in two goes into both halves.
    pub fn split_front(&mut self, max: usize) -> Self {
        if max == 0 {
            return Self::default();
        }
        if max >= self.spans {
            return std::mem::take(self);
        }
        let mut front = Vec::new();
        let mut taken = 0;
        let mut whole = 0;
        for r in &self.resources {
            let n = r.span_count();
            if taken + n > max {
                break;
            }
            taken += n;
            whole += 1;
        }
        front.extend(self.resources.drain(..whole));
        if taken < max {
            if let Some(first) = self.resources.first_mut() {
                front.push(first.split_front(max - taken));
                taken = max;
            }
        }
        self.spans -= taken;
        TracesBatch {
            resources: front,
            spans: taken,
        }
    }

    /// Removes spans whose trace or span id is not a valid OTLP id (16 and 8 bytes, not all
    /// zero), which nothing downstream could correlate, and says how many went.
    pub fn remove_invalid_spans(&mut self) -> TracesSplit {
        let mut reason = None;
        let mut rejected = 0;
        for r in &mut self.resources {
            rejected += r.retain_spans(|span| match span.index.id_problem() {
                None => true,
                Some(p) => {
                    reason.get_or_insert(p);
                    false
                }
            });
        }
        if rejected > 0 {
            self.spans -= rejected;
            self.resources.retain(|r| !r.scopes().is_empty());
        }
        TracesSplit { rejected, reason }
    }
}

#[cfg(test)]
mod tests;
