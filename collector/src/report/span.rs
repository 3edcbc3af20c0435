//! One annotated span as the report and the live page read it: the attributes and events the
//! spanprofile connector wrote, parsed back without trusting them (missing or odd-typed
//! values are treated as absent).

use std::collections::BTreeMap;

use hotspan_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use hotspan_proto::otlp::trace::v1::Span;
use hotspan_proto::TracesBatch;

/// The attribute prefix spanprofile writes by default.
pub const DEFAULT_PREFIX: &str = "profile.";

/// Label keys left out of the breakdown: the join keys and the span name say nothing the
/// span name column does not.
const NOT_SEMANTIC: &[&str] = &["span_id", "trace_id", "span_name", "span id", "trace id"];

/// One `profile.hot_path` span event: a collapsed stack and its weight in this span.
#[derive(Clone, Debug, PartialEq)]
pub struct HotPath {
    /// Collapsed frames, root first, `;`-joined.
    pub stack: String,
    pub samples: u64,
    pub cpu_ns: u64,
    /// Of the span's own weight, 0..=1.
    pub share: f64,
}

/// What the report and the page need of one span.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpanRecord {
    pub name: String,
    /// `service.name` of the span's resource, empty when absent.
    pub service: String,
    /// Lower-case hex.
    pub trace_id: String,
    /// Lower-case hex; the live page's link key.
    pub span_id: String,
    /// Lower-case hex, empty for a root.
    pub parent_span_id: String,
    pub start_unix_nano: u64,
    pub duration_ns: u64,
    pub samples: u64,
    pub cpu_ns: u64,
    pub cpu_ns_total: u64,
    pub cpu_utilization: Option<f64>,
    pub hot_path: Option<String>,
    pub hot_path_share: Option<f64>,
    /// `profile.top_functions` as (function, share of the span's weight 0..=1).
    pub top_functions: Vec<(String, f64)>,
    pub join: Option<String>,
    /// `profile.labels.<key>` values (comma-joined when several).
    pub labels: BTreeMap<String, String>,
    /// The span's `profile.hot_path` events, heaviest first as written.
    pub hot_paths: Vec<HotPath>,
    /// The latency breakdown's estimates, where the join put them (`profile.wait_ns`, ...).
    pub wait_ns: Option<u64>,
    /// `profile.wait_reasons` as (reason, share of `wait_ns` 0..=1), e.g. ("sleep", 0.8).
    pub wait_reasons: Vec<(String, f64)>,
    pub runnable_ns: Option<u64>,
    pub gc_pause_ns: Option<u64>,
    pub throttled_ns: Option<u64>,
}

fn value(v: &Option<AnyValue>) -> Option<&any_value::Value> {
    v.as_ref().and_then(|v| v.value.as_ref())
}

fn as_u64(v: Option<&any_value::Value>) -> Option<u64> {
    match v? {
        any_value::Value::IntValue(i) => u64::try_from(*i).ok(),
        any_value::Value::DoubleValue(d) if *d >= 0.0 && d.is_finite() => Some(*d as u64),
        any_value::Value::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

fn as_f64(v: Option<&any_value::Value>) -> Option<f64> {
    match v? {
        any_value::Value::DoubleValue(d) if d.is_finite() => Some(*d),
        any_value::Value::IntValue(i) => Some(*i as f64),
        any_value::Value::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

fn as_str(v: Option<&any_value::Value>) -> Option<String> {
    match v? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs.iter().find(|a| a.key == key).and_then(|a| value(&a.value))
}

/// "main.chargeCard 62.5%" -> ("main.chargeCard", 0.625); also `profile.wait_reasons`'
/// "chan receive 20.0%". Shares outside 0..=100% are not believed.
fn parse_top_function(s: &str) -> Option<(String, f64)> {
    let (name, pct) = s.rsplit_once(' ')?;
    let pct: f64 = pct.strip_suffix('%')?.parse().ok()?;
    (pct.is_finite() && (0.0..=100.0).contains(&pct)).then(|| (name.to_string(), pct / 100.0))
}

/// An array of `name NN.N%` strings.
fn shares(v: Option<&any_value::Value>) -> Vec<(String, f64)> {
    match v {
        Some(any_value::Value::ArrayValue(arr)) => arr
            .values
            .iter()
            .filter_map(|v| as_str(v.value.as_ref()))
            .filter_map(|s| parse_top_function(&s))
            .collect(),
        _ => Vec::new(),
    }
}

impl SpanRecord {
    /// Reads `span` (from a resource whose `service.name` is `service`); `prefix` is the
    /// connector's `attribute_prefix`.
    pub fn from_span(span: &Span, service: &str, prefix: &str) -> SpanRecord {
        let a = &span.attributes;
        let key = |k: &str| format!("{prefix}{k}");
        let top_functions = shares(find(a, &key("top_functions")));
        let label_prefix = key("labels.");
        let labels = a
            .iter()
            .filter_map(|kv| {
                let k = kv.key.strip_prefix(&label_prefix)?;
                Some((k.to_string(), as_str(value(&kv.value))?))
            })
            .collect();
        let event_name = key("hot_path");
        let hot_paths = span
            .events
            .iter()
            .filter(|e| e.name == event_name)
            .filter_map(|e| {
                Some(HotPath {
                    stack: as_str(find(&e.attributes, "stack"))?,
                    samples: as_u64(find(&e.attributes, "samples")).unwrap_or(0),
                    cpu_ns: as_u64(find(&e.attributes, "cpu_ns")).unwrap_or(0),
                    share: as_f64(find(&e.attributes, "share")).unwrap_or(0.0),
                })
            })
            .collect();
        SpanRecord {
            name: span.name.clone(),
            service: service.to_string(),
            trace_id: hex::encode(&span.trace_id),
            span_id: hex::encode(&span.span_id),
            parent_span_id: hex::encode(&span.parent_span_id),
            start_unix_nano: span.start_time_unix_nano,
            duration_ns: span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano),
            samples: as_u64(find(a, &key("samples"))).unwrap_or(0),
            cpu_ns: as_u64(find(a, &key("cpu_ns"))).unwrap_or(0),
            cpu_ns_total: as_u64(find(a, &key("cpu_ns_total"))).unwrap_or(0),
            cpu_utilization: as_f64(find(a, &key("cpu_utilization"))),
            hot_path: as_str(find(a, &key("hot_path"))),
            hot_path_share: as_f64(find(a, &key("hot_path.share"))),
            top_functions,
            join: as_str(find(a, &key("join"))),
            labels,
            hot_paths,
            wait_ns: as_u64(find(a, &key("wait_ns"))),
            wait_reasons: shares(find(a, &key("wait_reasons"))),
            runnable_ns: as_u64(find(a, &key("runnable_ns"))),
            gc_pause_ns: as_u64(find(a, &key("gc.pause_ns"))),
            throttled_ns: as_u64(find(a, &key("cpu.throttled_ns"))),
        }
    }

    /// Every span of a batch.
    pub fn all(batch: &TracesBatch, prefix: &str) -> Vec<SpanRecord> {
        let mut out = Vec::new();
        for rs in batch.resource_spans() {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| as_str(find(&r.attributes, "service.name")))
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    out.push(SpanRecord::from_span(span, &service, prefix));
                }
            }
        }
        out
    }

    /// Whether the join gave this span samples of its own.
    pub fn has_samples(&self) -> bool {
        self.samples > 0
    }

    /// Whether the span carries anything of the latency breakdown besides CPU.
    pub fn has_breakdown(&self) -> bool {
        self.wait_ns.is_some()
            || self.runnable_ns.is_some()
            || self.gc_pause_ns.is_some()
            || self.throttled_ns.is_some()
    }

    pub fn end_unix_nano(&self) -> u64 {
        self.start_unix_nano.saturating_add(self.duration_ns)
    }

    /// True when this span's weights are CPU time; false when only sample counts exist.
    pub fn by_cpu(&self) -> bool {
        self.cpu_ns > 0
    }

    /// The span's own weight: CPU ns, or samples when the profile carried no time.
    pub fn weight(&self) -> u64 {
        if self.by_cpu() {
            self.cpu_ns
        } else {
            self.samples
        }
    }

    /// Each top function's weight in this span (its share of [`Self::weight`]).
    pub fn function_weights(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        let w = self.weight() as f64;
        self.top_functions.iter().map(move |(f, s)| (f.as_str(), s * w))
    }

    /// Collapsed stacks and their weights, for flame graphs and the hot path: the events, or
    /// the `hot_path` attribute when the events were turned off.
    pub fn stack_weights(&self) -> Vec<(&str, u64)> {
        if !self.hot_paths.is_empty() {
            let by_cpu = self.by_cpu();
            return self
                .hot_paths
                .iter()
                .map(|h| (h.stack.as_str(), if by_cpu { h.cpu_ns } else { h.samples }))
                .filter(|(_, w)| *w > 0)
                .collect();
        }
        match (&self.hot_path, self.hot_path_share) {
            (Some(path), Some(share)) => {
                let w = (share * self.weight() as f64).round() as u64;
                if w > 0 {
                    vec![(path.as_str(), w)]
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(),
        }
    }

    /// The semantic labels as `k=v, k=v` (sorted by key), or `(no labels)`.
    pub fn label_key(&self) -> String {
        let parts: Vec<String> = self
            .labels
            .iter()
            .filter(|(k, _)| !NOT_SEMANTIC.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if parts.is_empty() {
            "(no labels)".into()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_function_strings_parse() {
        assert_eq!(
            parse_top_function("main.chargeCard 62.5%"),
            Some(("main.chargeCard".into(), 0.625))
        );
        assert_eq!(parse_top_function("garbage"), None);
        assert_eq!(parse_top_function("f x%"), None);
        assert_eq!(parse_top_function("f 120%"), None);
        assert_eq!(
            parse_top_function("chan receive 20.0%"),
            Some(("chan receive".into(), 0.2))
        );
    }
}
