//! The `debug` exporter: what passes, written to the log (stderr).

use std::fmt::Write;

use async_trait::async_trait;
use hotspan_config::{ComponentConfig, Signal};
use hotspan_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use hotspan_proto::Batch;
use serde::Deserialize;
use tracing::info;

use crate::component::{BoxError, BuildContext, BuiltExporter, ComponentType, Exporter, ExporterType};
use crate::exporters::ExportError;

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// Counts only.
    #[default]
    Basic,
    /// A line per item.
    Normal,
    /// Every field.
    Detailed,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DebugConfig {
    pub verbosity: Verbosity,
}

impl ComponentConfig for DebugConfig {}

impl ComponentType for DebugExporter {
    const TYPE_NAME: &'static str = "debug";
    type Config = DebugConfig;
}

impl ExporterType for DebugExporter {
    const SIGNALS: &'static [Signal] = &Signal::ALL;

    fn build(ctx: &BuildContext, config: DebugConfig) -> Result<BuiltExporter, BoxError> {
        Ok(BuiltExporter::direct(DebugExporter {
            name: ctx.name(),
            verbosity: config.verbosity,
        }))
    }
}

pub struct DebugExporter {
    name: String,
    verbosity: Verbosity,
}

#[async_trait]
impl Exporter for DebugExporter {
    async fn export(&self, batch: &Batch) -> Result<(), ExportError> {
        match batch {
            Batch::Metrics(metrics) => {
                info!(exporter = %self.name, resource_metrics = metrics.resources().len(), data_points = metrics.item_count(), "Metrics");
                if self.verbosity == Verbosity::Detailed {
                    info!(exporter = %self.name, "Metrics\n{}", String::from_utf8_lossy(&batch.encode(hotspan_proto::Encoding::Json)));
                }
            }
            Batch::Logs(logs) => {
                info!(exporter = %self.name, resource_logs = logs.resources().len(), log_records = logs.item_count(), "Logs");
                if self.verbosity != Verbosity::Basic {
                    let lines: Vec<String> = logs
                        .resources()
                        .iter()
                        .flat_map(|r| &r.scope_logs)
                        .flat_map(|s| &s.log_records)
                        .map(|r| format!("{} {}", r.severity_text, value(r.body.as_ref())))
                        .collect();
                    info!(exporter = %self.name, "Logs\n{}", lines.join("\n"));
                }
            }
            Batch::Profiles(profiles) => {
                let resources = profiles.resource_profiles().len();
                let samples = profiles.sample_count();
                if self.verbosity == Verbosity::Basic {
                    info!(exporter = %self.name, resource_profiles = resources, samples, "Profiles");
                } else {
                    let text = describe_profiles(profiles, self.verbosity == Verbosity::Detailed);
                    info!(exporter = %self.name, resource_profiles = resources, samples, "Profiles\n{text}");
                }
            }
            Batch::Traces(traces) => {
                let resources = traces.resource_spans().len();
                let spans = traces.span_count();
                if self.verbosity == Verbosity::Basic {
                    info!(exporter = %self.name, resource_spans = resources, spans, "Traces");
                } else {
                    let text = describe_traces(traces, self.verbosity == Verbosity::Detailed);
                    info!(exporter = %self.name, resource_spans = resources, spans, "Traces\n{text}");
                }
            }
        }
        Ok(())
    }
}

fn describe_traces(traces: &hotspan_proto::TracesBatch, detailed: bool) -> String {
    let mut out = String::new();
    for (ri, rs) in traces.resource_spans().iter().enumerate() {
        let attrs = rs
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let _ = writeln!(out, "ResourceSpans #{ri} {attrs}");
        for (si, ss) in rs.scope_spans.iter().enumerate() {
            let scope = ss
                .scope
                .as_ref()
                .map(|s| format!("{} {}", s.name, s.version))
                .unwrap_or_default();
            let _ = writeln!(out, "ScopeSpans #{si} {scope}");
            for span in &ss.spans {
                let _ = write!(
                    out,
                    "{} trace_id={} span_id={}",
                    span.name,
                    hex::encode(&span.trace_id),
                    hex::encode(&span.span_id)
                );
                if detailed {
                    let _ = write!(
                        out,
                        " parent_span_id={} kind={} start={} end={} {}",
                        hex::encode(&span.parent_span_id),
                        span.kind,
                        span.start_time_unix_nano,
                        span.end_time_unix_nano,
                        attributes(&span.attributes)
                    );
                    for event in &span.events {
                        let _ = write!(
                            out,
                            "\n  event {} at {} {}",
                            event.name,
                            event.time_unix_nano,
                            attributes(&event.attributes)
                        );
                    }
                }
                out.push('\n');
            }
        }
    }
    out
}

fn describe_profiles(profiles: &hotspan_proto::ProfilesBatch, detailed: bool) -> String {
    let empty = Default::default();
    let dict = profiles.dictionary().unwrap_or(&empty);
    let string = |i: i32| {
        dict.string_table
            .get(i as usize)
            .map(String::as_str)
            .unwrap_or("?")
    };
    let mut out = String::new();
    for (ri, rp) in profiles.resource_profiles().iter().enumerate() {
        // Resource attributes of profiles may be string-table references (otelcol sends them so).
        let attrs = rp
            .resource
            .as_ref()
            .map(|r| attributes(&profiles.resolved_attributes(&r.attributes)))
            .unwrap_or_default();
        let _ = writeln!(out, "ResourceProfiles #{ri} {attrs}");
        for sp in &rp.scope_profiles {
            for p in &sp.profiles {
                let (ty, unit) = p
                    .sample_type
                    .map(|t| (string(t.type_strindex), string(t.unit_strindex)))
                    .unwrap_or(("?", "?"));
                let _ = writeln!(
                    out,
                    "Profile {ty}/{unit} samples={} time={} duration={}ns",
                    p.samples.len(),
                    p.time_unix_nano,
                    p.duration_nano
                );
                if !detailed {
                    continue;
                }
                for s in &p.samples {
                    let frames: Vec<&str> = dict
                        .stack_table
                        .get(s.stack_index as usize)
                        .map(|st| {
                            st.location_indices
                                .iter()
                                .filter_map(|l| dict.location_table.get(*l as usize))
                                .flat_map(|l| &l.lines)
                                .filter_map(|line| dict.function_table.get(line.function_index as usize))
                                .map(|f| string(f.name_strindex))
                                .collect()
                        })
                        .unwrap_or_default();
                    let link = dict.link_table.get(s.link_index as usize);
                    let _ = writeln!(
                        out,
                        "  values={:?} span_id={} trace_id={} stack={}",
                        s.values,
                        link.map(|l| hex::encode(&l.span_id)).unwrap_or_default(),
                        link.map(|l| hex::encode(&l.trace_id)).unwrap_or_default(),
                        frames.join(";")
                    );
                }
            }
        }
    }
    out
}

fn attributes(kvs: &[KeyValue]) -> String {
    kvs.iter()
        .map(|kv| format!("{}={}", kv.key, value(kv.value.as_ref())))
        .collect::<Vec<_>>()
        .join(" ")
}

fn value(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => hex::encode(b),
        Some(any_value::Value::ArrayValue(a)) => {
            format!(
                "[{}]",
                a.values
                    .iter()
                    .map(|v| value(Some(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
        Some(any_value::Value::KvlistValue(l)) => format!("{{{}}}", attributes(&l.values)),
        Some(any_value::Value::StringValueStrindex(i)) => format!("strindex:{i}"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use hotspan_proto::otlp::collector::profiles::v1development::ExportProfilesServiceRequest;
    use hotspan_proto::otlp::profiles::v1development::{ProfilesDictionary, ResourceProfiles};
    use hotspan_proto::otlp::resource::v1::Resource;

    use super::*;

    #[test]
    fn profile_resources_by_reference_print_like_inline_ones() {
        let batch = hotspan_proto::ProfilesBatch::from_request(ExportProfilesServiceRequest {
            resource_profiles: vec![ResourceProfiles {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key_strindex: 1,
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValueStrindex(2)),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            dictionary: Some(ProfilesDictionary {
                string_table: vec![String::new(), "service.name".into(), "shop".into()],
                ..Default::default()
            }),
        });
        assert!(describe_profiles(&batch, false).starts_with("ResourceProfiles #0 service.name=shop\n"));
    }
}
