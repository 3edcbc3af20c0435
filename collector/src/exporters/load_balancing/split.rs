//! Splitting a batch into one batch per backend: spans by trace id, samples by the trace id of
//! their link (or `trace_id` label), anything without one by `service.name`.

use std::collections::BTreeMap;

use hotspan_proto::otlp::common::v1::{any_value, KeyValue};
use hotspan_proto::otlp::profiles::v1development::ProfilesDictionary;
use hotspan_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans};
use hotspan_proto::{Batch, ProfilesBatch, TracesBatch};

use super::config::RoutingKey;
use super::ring::Ring;
use crate::exporters::split::{sample_trace_id, split_profiles_by, valid_trace_id};

/// `batch` as (backend index in `ring`, the part that goes there), every item in exactly one
/// part. Empty on an empty ring. Metrics and logs, which this exporter does not take, go
/// whole by nothing in particular (the first backend).
pub fn split(batch: &Batch, key: RoutingKey, ring: &Ring) -> Vec<(usize, Batch)> {
    if ring.is_empty() || batch.is_empty() {
        return Vec::new();
    }
    if ring.backends().len() == 1 {
        return vec![(0, batch.clone())];
    }
    match batch {
        Batch::Traces(t) => split_traces(t, key, ring)
            .into_iter()
            .map(|(b, t)| (b, Batch::Traces(t)))
            .collect(),
        Batch::Profiles(p) => split_profiles(p, key, ring)
            .into_iter()
            .map(|(b, p)| (b, Batch::Profiles(p)))
            .collect(),
        other => vec![(0, other.clone())],
    }
}

fn service_name(attributes: &[KeyValue]) -> &str {
    attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        })
        .unwrap_or("")
}

fn split_traces(batch: &TracesBatch, key: RoutingKey, ring: &Ring) -> BTreeMap<usize, TracesBatch> {
    let mut out: BTreeMap<usize, Vec<ResourceSpans>> = BTreeMap::new();
    for rs in batch.resource_spans() {
        let service = service_name(rs.resource.as_ref().map_or(&[][..], |r| &r.attributes));
        let by_service = ring.service_owner(service).unwrap_or(0);
        if key == RoutingKey::Service {
            out.entry(by_service).or_default().push(rs.clone());
            continue;
        }
        // This resource's spans, per backend, per scope.
        let mut parts: BTreeMap<usize, Vec<ScopeSpans>> = BTreeMap::new();
        for ss in &rs.scope_spans {
            let mut per_backend: BTreeMap<usize, ScopeSpans> = BTreeMap::new();
            for span in &ss.spans {
                let owner = if valid_trace_id(&span.trace_id) {
                    ring.owner(&span.trace_id).unwrap_or(0)
                } else {
                    by_service
                };
                per_backend
                    .entry(owner)
                    .or_insert_with(|| ScopeSpans {
                        scope: ss.scope.clone(),
                        schema_url: ss.schema_url.clone(),
                        ..Default::default()
                    })
                    .spans
                    .push(span.clone());
            }
            for (b, scope) in per_backend {
                parts.entry(b).or_default().push(scope);
            }
        }
        for (b, scope_spans) in parts {
            out.entry(b).or_default().push(ResourceSpans {
                resource: rs.resource.clone(),
                schema_url: rs.schema_url.clone(),
                scope_spans,
            });
        }
    }
    out.into_iter()
        .map(|(b, rs)| (b, TracesBatch::from_resource_spans(rs)))
        .collect()
}

/// For each backend that gets samples, a copy of the request holding only its samples.
fn split_profiles(batch: &ProfilesBatch, key: RoutingKey, ring: &Ring) -> BTreeMap<usize, ProfilesBatch> {
    let empty = ProfilesDictionary::default();
    let dict = batch.dictionary().unwrap_or(&empty);
    split_profiles_by(batch, |resource, sample| {
        // Profiles may name their service by string-table reference (otelcol's exporters do);
        // `resource` has those resolved.
        let by_service = || ring.service_owner(service_name(resource)).unwrap_or(0);
        match (key, sample) {
            (RoutingKey::TraceId, Some(s)) => sample_trace_id(s, dict)
                .and_then(|id| ring.owner(&id))
                .unwrap_or_else(by_service),
            _ => by_service(),
        }
    })
}
