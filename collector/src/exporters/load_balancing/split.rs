//! Splitting a batch into one batch per backend: spans by trace id, samples by the trace id of
//! their link (or `trace_id` label), anything without one by `service.name`.

use std::collections::BTreeMap;

use hotspan_proto::otlp::collector::profiles::v1development::ExportProfilesServiceRequest;
use hotspan_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use hotspan_proto::otlp::profiles::v1development::{ProfilesDictionary, Sample};
use hotspan_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans};
use hotspan_proto::{Batch, ProfilesBatch, TracesBatch};

use super::config::RoutingKey;
use super::ring::Ring;

/// Sample attribute keys that carry a trace id, as the `spanprofile` connector reads them by
/// default (otel-profiling-go and pyroscope; Go labels seen by the OTel eBPF profiler).
const TRACE_ID_KEYS: [&str; 3] = ["trace_id", "trace id", "process.context.label.trace_id"];

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

fn valid_trace_id(id: &[u8]) -> bool {
    id.len() == 16 && id.iter().any(|b| *b != 0)
}

fn split_traces(batch: &TracesBatch, key: RoutingKey, ring: &Ring) -> BTreeMap<usize, TracesBatch> {
    let mut out: BTreeMap<usize, Vec<ResourceSpans>> = BTreeMap::new();
    for rs in batch.resource_spans() {
        let service = service_name(rs.resource.as_ref().map_or(&[][..], |r| &r.attributes));
        let by_service = ring.owner(service.as_bytes()).unwrap_or(0);
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

/// The trace id a sample belongs to: its link's, else a trace-id label's (hex, or decimal as
/// Datadog writes it), as the 16 big-endian bytes spans carry.
fn sample_trace_id(sample: &Sample, dict: &ProfilesDictionary) -> Option<[u8; 16]> {
    if let Some(link) = usize::try_from(sample.link_index)
        .ok()
        .and_then(|i| dict.link_table.get(i))
    {
        if valid_trace_id(&link.trace_id) {
            return link.trace_id.as_slice().try_into().ok();
        }
    }
    let string = |i: i32| usize::try_from(i).ok().and_then(|i| dict.string_table.get(i));
    for kv in sample
        .attribute_indices
        .iter()
        .filter_map(|a| usize::try_from(*a).ok().and_then(|a| dict.attribute_table.get(a)))
    {
        let Some(key) = string(kv.key_strindex) else {
            continue;
        };
        if !TRACE_ID_KEYS.contains(&key.as_str()) {
            continue;
        }
        let text = match kv.value.as_ref().and_then(|v: &AnyValue| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.as_str(),
            Some(any_value::Value::StringValueStrindex(i)) => match string(*i) {
                Some(s) => s.as_str(),
                None => continue,
            },
            Some(any_value::Value::IntValue(i)) => return id_bytes(*i as u64 as u128),
            _ => continue,
        };
        let text = text.trim();
        let id = if text.len() == 32 {
            u128::from_str_radix(text, 16).ok()
        } else {
            text.parse::<u64>().ok().map(u128::from)
        };
        if let Some(id) = id.and_then(id_bytes) {
            return Some(id);
        }
    }
    None
}

fn id_bytes(id: u128) -> Option<[u8; 16]> {
    (id != 0).then(|| id.to_be_bytes())
}

/// For each backend that gets samples, a copy of the request holding only its samples (the
/// dictionary is shared as it is: unused entries cost bytes, not correctness).
fn split_profiles(batch: &ProfilesBatch, key: RoutingKey, ring: &Ring) -> BTreeMap<usize, ProfilesBatch> {
    let empty = ProfilesDictionary::default();
    let dict = batch.dictionary().unwrap_or(&empty);
    // The owner of every sample, in walk order; a profile without samples goes with its
    // resource (one owner per profile, pushed as if it were a sample).
    let mut owners = Vec::with_capacity(batch.sample_count());
    let mut backends = std::collections::BTreeSet::new();
    for rp in batch.resource_profiles() {
        // Profiles may name their service by string-table reference (otelcol's exporters do).
        let resource = batch.resolved_attributes(rp.resource.as_ref().map_or(&[][..], |r| &r.attributes));
        let service = service_name(&resource);
        let by_service = ring.owner(service.as_bytes()).unwrap_or(0);
        for p in rp.scope_profiles.iter().flat_map(|sp| &sp.profiles) {
            if p.samples.is_empty() {
                owners.push(by_service);
                backends.insert(by_service);
            }
            for s in &p.samples {
                let owner = match key {
                    RoutingKey::Service => by_service,
                    RoutingKey::TraceId => sample_trace_id(s, dict)
                        .and_then(|id| ring.owner(&id))
                        .unwrap_or(by_service),
                };
                owners.push(owner);
                backends.insert(owner);
            }
        }
    }
    if backends.len() == 1 {
        let only = backends.into_iter().next().unwrap_or(0);
        return BTreeMap::from([(only, batch.clone())]);
    }
    backends
        .into_iter()
        .map(|backend| {
            let mut request: ExportProfilesServiceRequest = batch.request().clone();
            let mut next = owners.iter();
            for rp in &mut request.resource_profiles {
                for sp in &mut rp.scope_profiles {
                    sp.profiles.retain_mut(|p| {
                        if p.samples.is_empty() {
                            return next.next() == Some(&backend);
                        }
                        p.samples.retain(|_| next.next() == Some(&backend));
                        !p.samples.is_empty()
                    });
                }
                rp.scope_profiles.retain(|sp| !sp.profiles.is_empty());
            }
            request
                .resource_profiles
                .retain(|rp| !rp.scope_profiles.is_empty());
            (backend, ProfilesBatch::from_request(request))
        })
        .collect()
}
