use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use crate::otlp_batch::OtlpBatch;

/// A batch of spans as it travels through a traces pipeline.
pub type TracesBatch = OtlpBatch<ExportTraceServiceRequest>;

/// What [`TracesBatch::remove_invalid_spans`] took out, for an OTLP partial-success answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TracesSplit {
    pub rejected: usize,
    pub reason: Option<String>,
}

impl OtlpBatch<ExportTraceServiceRequest> {
    pub fn from_resource_spans(resource_spans: Vec<ResourceSpans>) -> Self {
        Self::from_resources(resource_spans)
    }

    pub fn span_count(&self) -> usize {
        self.item_count()
    }

    pub fn resource_spans(&self) -> &[ResourceSpans] {
        self.resources()
    }

    pub fn into_resource_spans(self) -> Vec<ResourceSpans> {
        self.into_resources()
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
            self.items -= rejected;
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
