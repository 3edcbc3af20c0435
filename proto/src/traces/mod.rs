use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;

use crate::{DecodeError, Encoding};

/// A batch of spans as it travels through a traces pipeline.
///
/// Holds a decoded export request today; components go through its methods so it can become
/// received bytes plus a lazy index later.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TracesBatch {
    request: ExportTraceServiceRequest,
    /// Kept in step with `request` so counting is free on the hot path.
    spans: usize,
}

/// What [`TracesBatch::remove_invalid_spans`] took out, for an OTLP partial-success answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TracesSplit {
    pub rejected: usize,
    pub reason: Option<String>,
}

fn count_spans(resource_spans: &[ResourceSpans]) -> usize {
    resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum()
}

impl TracesBatch {
    pub fn from_resource_spans(resource_spans: Vec<ResourceSpans>) -> Self {
        let spans = count_spans(&resource_spans);
        TracesBatch {
            request: ExportTraceServiceRequest { resource_spans },
            spans,
        }
    }

    /// Decodes an `ExportTraceServiceRequest` body.
    pub fn decode(bytes: &[u8], encoding: Encoding) -> Result<Self, DecodeError> {
        let request = match encoding {
            Encoding::Protobuf => ExportTraceServiceRequest::decode(bytes)?,
            Encoding::Json => serde_json::from_slice(bytes)?,
        };
        Ok(Self::from_resource_spans(request.resource_spans))
    }

    /// Encodes the batch as an `ExportTraceServiceRequest` body.
    pub fn encode(&self, encoding: Encoding) -> Vec<u8> {
        match encoding {
            Encoding::Protobuf => self.request.encode_to_vec(),
            Encoding::Json => {
                // Serializing plain data structs into a Vec cannot fail.
                serde_json::to_vec(&self.request).unwrap_or_default()
            }
        }
    }

    /// Size of the protobuf encoding, for byte-based limits.
    pub fn encoded_len(&self) -> usize {
        self.request.encoded_len()
    }

    pub fn span_count(&self) -> usize {
        self.spans
    }

    pub fn is_empty(&self) -> bool {
        self.spans == 0
    }

    pub fn resource_spans(&self) -> &[ResourceSpans] {
        &self.request.resource_spans
    }

    pub fn into_resource_spans(self) -> Vec<ResourceSpans> {
        self.request.resource_spans
    }

    /// Moves every span of `other` into this batch.
    pub fn append(&mut self, other: TracesBatch) {
        self.spans += other.spans;
        self.request.resource_spans.extend(other.request.resource_spans);
    }

    /// Splits off the first `max_spans` spans into a new batch, keeping the rest here.
    /// A resource or scope cut in two is copied into both halves.
    pub fn split_front(&mut self, max_spans: usize) -> TracesBatch {
        if max_spans >= self.spans {
            return std::mem::take(self);
        }
        let mut front = Vec::new();
        let mut taken = 0;
        let mut rest = std::mem::take(&mut self.request.resource_spans).into_iter();
        for mut rs in rest.by_ref() {
            let rs_spans: usize = rs.scope_spans.iter().map(|s| s.spans.len()).sum();
            if taken + rs_spans <= max_spans {
                taken += rs_spans;
                front.push(rs);
                if taken == max_spans {
                    break;
                }
                continue;
            }
            // This resource straddles the cut: split its scopes.
            let mut front_scopes = Vec::new();
            let mut scopes = std::mem::take(&mut rs.scope_spans).into_iter();
            let mut back_scopes: Vec<ScopeSpans> = Vec::new();
            for mut ss in scopes.by_ref() {
                let room = max_spans - taken;
                if room == 0 {
                    back_scopes.push(ss);
                    break;
                }
                if ss.spans.len() <= room {
                    taken += ss.spans.len();
                    front_scopes.push(ss);
                } else {
                    let tail = ss.spans.split_off(room);
                    taken += room;
                    back_scopes.push(ScopeSpans {
                        scope: ss.scope.clone(),
                        spans: tail,
                        schema_url: ss.schema_url.clone(),
                    });
                    front_scopes.push(ss);
                }
            }
            back_scopes.extend(scopes);
            front.push(ResourceSpans {
                resource: rs.resource.clone(),
                scope_spans: front_scopes,
                schema_url: rs.schema_url.clone(),
            });
            rs.scope_spans = back_scopes;
            self.request.resource_spans.push(rs);
            break;
        }
        self.request.resource_spans.extend(rest);
        self.spans -= taken;
        TracesBatch {
            request: ExportTraceServiceRequest {
                resource_spans: front,
            },
            spans: taken,
        }
    }

    /// Removes spans whose trace or span id is not a valid OTLP id (16 and 8 bytes, not all
    /// zero), which nothing downstream could correlate, and says how many went.
    pub fn remove_invalid_spans(&mut self) -> TracesSplit {
        let mut rejected = 0;
        let mut reason = None;
        for rs in &mut self.request.resource_spans {
            for ss in &mut rs.scope_spans {
                ss.spans.retain(|span| {
                    let problem = id_problem(&span.trace_id, 16, "trace_id")
                        .or_else(|| id_problem(&span.span_id, 8, "span_id"));
                    match problem {
                        None => true,
                        Some(p) => {
                            rejected += 1;
                            reason.get_or_insert(p);
                            false
                        }
                    }
                });
            }
        }
        if rejected > 0 {
            self.spans -= rejected;
            self.request
                .resource_spans
                .iter_mut()
                .for_each(|rs| rs.scope_spans.retain(|ss| !ss.spans.is_empty()));
            self.request
                .resource_spans
                .retain(|rs| !rs.scope_spans.is_empty());
        }
        TracesSplit { rejected, reason }
    }
}

fn id_problem(id: &[u8], len: usize, what: &str) -> Option<String> {
    if id.len() != len {
        Some(format!("{what} must be {len} bytes, got {}", id.len()))
    } else if id.iter().all(|b| *b == 0) {
        Some(format!("{what} must not be all zeros"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
