//! OTLP/JSON as the OpenTelemetry Collector reads it: the same JSON bodies, in the spellings
//! pdata accepts beyond the canonical one (snake_case keys, enum names, `null`, 32-bit integers
//! as strings, "NaN" and "Infinity", empty arrays and maps written as `{}`, a key left out),
//! sent to otelcol directly and to hotspan, which forwards them to the same otelcol over gRPC.
//! What otelcol then holds must be the same both ways, and not empty: a body hotspan misread
//! would arrive with less (or nothing, as snake_case keys once did, answered 200).

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hotspan_config::Signal;
use hotspan_proto::otlp::common::v1::any_value::Value;
use hotspan_proto::otlp::metrics::v1::{metric, number_data_point};
use hotspan_proto::{Batch, Encoding};
use hotspan_tests::peers::start_otelcol;
use hotspan_tests::{post, wait_for, Hotspan};

const TRACES: &str = r#"{"resource_spans":[{"resource":{"attributes":[{"key":"service.name","value":{"string_value":"snake"}}]},
 "scope_spans":[{"scope":{"name":"json"},"spans":[{"trace_id":"5b8efff798038103d269b633813fc60c","span_id":"eee19b7ec3c1b174",
 "parent_span_id":"eee19b7ec3c1b173","name":"checkout","kind":"SPAN_KIND_SERVER","start_time_unix_nano":"1700000000000000000",
 "end_time_unix_nano":1700000000001000000,"dropped_attributes_count":"2","flags":"1","events":null,
 "attributes":[{"key":"tags","value":{"array_value":{}}},{"key":"labels","value":{"kvlistValue":{}}},{"value":{"intValue":"7"}},
  {"key":"ratio","value":{"doubleValue":"Infinity"}},{"key":"none","value":null}],
 "links":[{"traceId":"5b8efff798038103d269b633813fc60d","spanId":"eee19b7ec3c1b175","attributes":null}],
 "status":{"code":"STATUS_CODE_ERROR","message":"declined"}}]}]}]}"#;

const LOGS: &str = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"logs"}}]},
 "scopeLogs":[{"logRecords":[{"timeUnixNano":"1700000000000000000","severityNumber":"SEVERITY_NUMBER_WARN","severityText":"WARN",
  "body":{"kvlistValue":{}},"attributes":null,"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","flags":"1"}]},
 {"scope":{"name":"snake"},"log_records":[{"time_unix_nano":"1700000000000000001","severity_number":9,"body":{"string_value":"hello"},
  "dropped_attributes_count":"1"}]}]}]}"#;

const METRICS: &str = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"metrics"}}]},
 "scopeMetrics":[{"metrics":[
  {"name":"temperature","gauge":{"dataPoints":[{"asDouble":"NaN","timeUnixNano":"1700000000000000000"},
   {"asDouble":"-Infinity","timeUnixNano":"1700000000000000001","flags":"1"}]}},
  {"name":"requests","sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","isMonotonic":true,
   "dataPoints":[{"asInt":"5","startTimeUnixNano":"1699999999000000000","timeUnixNano":"1700000000000000000",
    "attributes":[{"key":"route","value":{"stringValue":"/pay"}}]}]}},
  {"name":"snake","sum":{"aggregation_temporality":1,"data_points":[{"as_int":3,"time_unix_nano":"1700000000000000000"}]}}]}]}]}"#;

/// Each complete line of a file exporter's output, as protobuf.
fn lines(path: &Path, signal: Signal) -> Result<Vec<Vec<u8>>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| {
            let batch = Batch::decode(signal, l.trim_end().as_bytes(), Encoding::Json)
                .with_context(|| format!("a line of {}", path.display()))?;
            Ok(batch.encode(Encoding::Protobuf))
        })
        .collect()
}

#[test]
fn json_bodies_reach_otelcol_through_hotspan_as_they_reach_it_directly() -> Result<()> {
    let mut exporters = String::new();
    let mut pipelines = String::new();
    for signal in ["traces", "metrics", "logs"] {
        for way in ["direct", "via"] {
            exporters += &format!(
                "  file/{way}_{signal}: {{path: \"{{dir}}/{way}_{signal}.jsonl\", flush_interval: 50ms}}\n"
            );
            pipelines += &format!(
                "    {signal}/{way}: {{receivers: [otlp/{way}], exporters: [file/{way}_{signal}]}}\n"
            );
        }
    }
    let mut otelcol = start_otelcol(&format!(
        r#"
receivers:
  otlp/direct: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:direct}}"}}}}}}
  otlp/via: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{{port:via}}"}}}}}}
exporters:
{exporters}extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
{pipelines}"#
    ))?;
    let hotspan = Hotspan::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:http}}"}}}}}}
exporters:
  otlp:
    endpoint: "127.0.0.1:{}"
    tls: {{insecure: true}}
    sending_queue: {{enabled: false}}
    retry_on_failure: {{enabled: false}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp]}}
    metrics: {{receivers: [otlp], exporters: [otlp]}}
    logs: {{receivers: [otlp], exporters: [otlp]}}
"#,
        otelcol.port("via")
    ))?;

    for (signal, name, body) in [
        (Signal::Traces, "traces", TRACES),
        (Signal::Metrics, "metrics", METRICS),
        (Signal::Logs, "logs", LOGS),
    ] {
        for (way, port) in [("direct", otelcol.port("direct")), ("via", hotspan.port("http"))] {
            let url = format!("http://127.0.0.1:{port}/v1/{name}");
            let answer = post(&url, "application/json", None, body.as_bytes().to_vec())?;
            ensure!(
                answer.status == 200,
                "{name} {way}: {} {}\n{}",
                answer.status,
                answer.body,
                hotspan.log()
            );
            // hotspan answered after otelcol took the export; a partial success would name
            // what was left out.
            ensure!(!answer.body.contains("rejected"), "{name} {way}: {}", answer.body);
        }
        let direct = otelcol.path(&format!("direct_{name}.jsonl"));
        let via = otelcol.path(&format!("via_{name}.jsonl"));
        let (direct, via) = wait_for(
            Duration::from_secs(20),
            &format!("{name} in otelcol's files"),
            || {
                let d = lines(&direct, signal).ok()?;
                let v = lines(&via, signal).ok()?;
                (!d.is_empty() && !v.is_empty()).then_some((d, v))
            },
        )?;
        ensure!(
            direct == via,
            "{name}: otelcol holds different data through hotspan"
        );
        let batch = Batch::decode(signal, &direct[0], Encoding::Protobuf)?;
        // What otelcol read is all there, so the comparison is not between two empty requests.
        match batch {
            Batch::Traces(t) => {
                let rs = t.resource_spans();
                let span = &rs[0].scope_spans[0].spans[0];
                ensure!(span.kind == 2 && span.status.as_ref().is_some_and(|s| s.code == 2));
                ensure!(span.attributes.len() == 5 && span.dropped_attributes_count == 2 && span.flags == 1);
                ensure!(span.links.len() == 1 && span.parent_span_id.len() == 8);
            }
            Batch::Logs(l) => {
                let records: Vec<_> = l
                    .resources()
                    .iter()
                    .flat_map(|r| &r.scope_logs)
                    .flat_map(|s| &s.log_records)
                    .collect();
                ensure!(
                    records.len() == 2 && records[0].severity_number == 13 && records[1].severity_number == 9
                );
                let hello = records[1].body.as_ref().and_then(|b| b.value.clone());
                ensure!(hello == Some(Value::StringValue("hello".into())), "{hello:?}");
            }
            Batch::Metrics(m) => {
                let metrics = &m.resources()[0].scope_metrics[0].metrics;
                ensure!(metrics.len() == 3);
                let Some(metric::Data::Gauge(gauge)) = &metrics[0].data else {
                    anyhow::bail!("no gauge: {:?}", metrics[0]);
                };
                let values: Vec<_> = gauge.data_points.iter().map(|p| p.value).collect();
                ensure!(
                    matches!(values[..], [Some(number_data_point::Value::AsDouble(a)), Some(number_data_point::Value::AsDouble(b))] if a.is_nan() && b == f64::NEG_INFINITY),
                    "{values:?}"
                );
                let Some(metric::Data::Sum(sum)) = &metrics[1].data else {
                    anyhow::bail!("no sum: {:?}", metrics[1]);
                };
                ensure!(sum.aggregation_temporality == 2 && sum.data_points.len() == 1);
            }
            Batch::Profiles(_) => unreachable!("no profiles sent"),
        }
    }
    otelcol.terminate()?;
    Ok(())
}
