//! Splitting batches by trace, for exporters that send each trace's data to one place
//! (`load_balancing` to a backend, `kafka` to a partition): every span and sample goes to
//! exactly one part, and a sample's trace is its link's or its trace-id label's.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use hotspan_proto::otlp::collector::profiles::v1development::ExportProfilesServiceRequest;
use hotspan_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use hotspan_proto::otlp::profiles::v1development::{ProfilesDictionary, Sample};
use hotspan_proto::raw::{Head, RawSpan, ResourceSpansRaw, ScopeSpansRaw};
use hotspan_proto::{ProfilesBatch, TracesBatch};

/// Sample attribute keys that carry a trace id, as the `spanprofile` connector reads them by
/// default (otel-profiling-go and pyroscope; Go labels seen by the OTel eBPF profiler).
const TRACE_ID_KEYS: [&str; 3] = ["trace_id", "trace id", "process.context.label.trace_id"];

pub fn valid_trace_id(id: &[u8]) -> bool {
    id.len() == 16 && id.iter().any(|b| *b != 0)
}

/// The trace id a sample belongs to: its link's, else a trace-id label's (hex, or decimal as
/// Datadog writes it), as the 16 big-endian bytes spans carry.
pub fn sample_trace_id(sample: &Sample, dict: &ProfilesDictionary) -> Option<[u8; 16]> {
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

/// `batch` cut into one batch per owner, each a copy of the request holding only its samples
/// (the dictionary is shared as it is: unused entries cost bytes, not correctness). `owner`
/// is asked once per sample, with the profile's resource attributes (string-table references
/// resolved), and once with no sample for each profile that has none.
pub fn split_profiles_by<K: Ord + Clone>(
    batch: &ProfilesBatch,
    mut owner: impl FnMut(&[KeyValue], Option<&Sample>) -> K,
) -> BTreeMap<K, ProfilesBatch> {
    // The owner of every sample, in walk order; a profile without samples counts as one.
    let mut owners = Vec::with_capacity(batch.sample_count());
    let mut parts = std::collections::BTreeSet::new();
    for rp in batch.resource_profiles() {
        let resource = batch.resolved_attributes(rp.resource.as_ref().map_or(&[][..], |r| &r.attributes));
        for p in rp.scope_profiles.iter().flat_map(|sp| &sp.profiles) {
            if p.samples.is_empty() {
                owners.push(owner(&resource, None));
            }
            for s in &p.samples {
                owners.push(owner(&resource, Some(s)));
            }
        }
    }
    parts.extend(owners.iter().cloned());
    if parts.len() <= 1 {
        return parts.into_iter().map(|k| (k, batch.clone())).collect();
    }
    parts
        .into_iter()
        .map(|part| {
            let mut request: ExportProfilesServiceRequest = batch.request().clone();
            let mut next = owners.iter();
            for rp in &mut request.resource_profiles {
                for sp in &mut rp.scope_profiles {
                    sp.profiles.retain_mut(|p| {
                        if p.samples.is_empty() {
                            return next.next() == Some(&part);
                        }
                        p.samples.retain(|_| next.next() == Some(&part));
                        !p.samples.is_empty()
                    });
                }
                rp.scope_profiles.retain(|sp| !sp.profiles.is_empty());
            }
            request
                .resource_profiles
                .retain(|rp| !rp.scope_profiles.is_empty());
            (part, ProfilesBatch::from_request(request))
        })
        .collect()
}

/// `batch` as one batch per trace id, in the order the traces first appear, spans keeping
/// their resource and scope; spans with no valid trace id together under `None`. Spans are
/// copied as the bytes they came in.
pub fn split_traces_by_id(batch: &TracesBatch) -> Vec<(Option<u128>, TracesBatch)> {
    /// One trace's spans so far: per resource (by position in the batch), per scope.
    type Scopes = Vec<(usize, Arc<Head>, Vec<RawSpan>)>;
    struct Part {
        trace: Option<u128>,
        resources: Vec<(usize, Arc<Head>, Scopes)>,
    }
    let mut parts: Vec<Part> = Vec::new();
    let mut index: HashMap<Option<u128>, usize> = HashMap::new();
    for (ri, resource) in batch.raw().iter().enumerate() {
        for (si, scope) in resource.scopes().iter().enumerate() {
            for span in scope.spans() {
                let valid = span.index.trace_id_len == 16 && span.index.trace_id != 0;
                let trace = valid.then_some(span.index.trace_id);
                let at = *index.entry(trace).or_insert_with(|| {
                    parts.push(Part {
                        trace,
                        resources: Vec::new(),
                    });
                    parts.len() - 1
                });
                let part = &mut parts[at];
                if part.resources.last().is_none_or(|(r, _, _)| *r != ri) {
                    part.resources.push((ri, resource.head().clone(), Vec::new()));
                }
                let scopes = match part.resources.last_mut() {
                    Some((_, _, scopes)) => scopes,
                    None => continue,
                };
                if scopes.last().is_none_or(|(s, _, _)| *s != si) {
                    scopes.push((si, scope.head().clone(), Vec::new()));
                }
                if let Some((_, _, spans)) = scopes.last_mut() {
                    spans.push(span.clone());
                }
            }
        }
    }
    if parts.len() == 1 {
        return vec![(parts[0].trace, batch.clone())];
    }
    parts
        .into_iter()
        .map(|p| {
            let resources = p
                .resources
                .into_iter()
                .map(|(_, head, scopes)| {
                    let scopes = scopes
                        .into_iter()
                        .map(|(_, head, spans)| ScopeSpansRaw::new(head, spans))
                        .collect();
                    ResourceSpansRaw::new(head, scopes)
                })
                .collect();
            (p.trace, TracesBatch::from_raw(resources))
        })
        .collect()
}
