//! What both pprof receivers share: turning pprof bytes into an OTLP profiles batch.

use std::collections::BTreeMap;

use hotspan_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use hotspan_proto::pprof::{self, ConvertOptions, Snapshot};
use hotspan_proto::ProfilesBatch;

/// The pprof label keys read as span and trace ids; `None` keeps the converter's defaults
/// (`span_id`, `profile_id`, `span id`; `trace_id`, `trace id`).
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorrelationLabels {
    pub span_id_labels: Option<Vec<String>>,
    pub trace_id_labels: Option<Vec<String>>,
}

pub fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

pub fn attributes(map: &BTreeMap<String, String>) -> Vec<KeyValue> {
    map.iter().map(|(k, v)| string_attribute(k, v)).collect()
}

/// Converts off the async workers: a large profile is milliseconds of CPU. `snapshot` stamps a
/// goroutine profile as one instant.
pub async fn convert(
    bytes: bytes::Bytes,
    resource: Vec<KeyValue>,
    labels: &CorrelationLabels,
    include_original_payload: bool,
    snapshot: Option<Snapshot>,
) -> Result<ProfilesBatch, String> {
    let mut opts = ConvertOptions {
        resource_attributes: resource,
        include_original_payload,
        snapshot,
        ..Default::default()
    };
    if let Some(keys) = &labels.span_id_labels {
        opts.span_id_labels = keys.clone();
    }
    if let Some(keys) = &labels.trace_id_labels {
        opts.trace_id_labels = keys.clone();
    }
    opts.scope_name = "hotspan/pprof".into();
    let converted = tokio::task::spawn_blocking(move || pprof::to_otlp(&bytes, &opts))
        .await
        .map_err(|e| format!("conversion task failed: {e}"))?;
    converted
        .map(ProfilesBatch::from_request)
        .map_err(|e| format!("invalid pprof: {e}"))
}
