//! Metrics and logs pass through like traces (otlp -> batch -> exporters), so a gateway needs
//! no second collector.

use std::time::Duration;

use anyhow::{ensure, Result};
use hotspan_config::Signal;
use hotspan_proto::{Encoding, LogsBatch, MetricsBatch};
use hotspan_tests::{grpc_export, post, wait_for, Hotspan};

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:{port:grpc}"}
      http: {endpoint: "127.0.0.1:{port:http}"}
processors:
  batch: {timeout: 50ms}
exporters:
  file/metrics: {path: "{dir}/metrics.jsonl", flush_interval: 20ms}
  file/logs: {path: "{dir}/logs.jsonl", flush_interval: 20ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    metrics: {receivers: [otlp], processors: [batch], exporters: [file/metrics]}
    logs: {receivers: [otlp], processors: [batch], exporters: [file/logs]}
"#;

/// OTLP/JSON as the spec writes it: a gauge with an int point and a sum with a double point.
const METRICS: &str = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}}]},
  "scopeMetrics":[{"scope":{"name":"m"},"metrics":[
    {"name":"queue.depth","unit":"1","gauge":{"dataPoints":[{"asInt":"42","timeUnixNano":"1700000000000000000"}]}},
    {"name":"bytes.sent","unit":"By","sum":{"aggregationTemporality":2,"isMonotonic":true,
      "dataPoints":[{"asDouble":1.5,"startTimeUnixNano":"1700000000000000000","timeUnixNano":"1700000001000000000"},
                    {"asDouble":2.5,"startTimeUnixNano":"1700000000000000000","timeUnixNano":"1700000002000000000"}]}}]}]}]}"#;

const LOGS: &str = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}}]},
  "scopeLogs":[{"scope":{"name":"l"},"logRecords":[
    {"timeUnixNano":"1700000000000000000","severityNumber":9,"severityText":"INFO","body":{"stringValue":"card charged"},
     "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"},
    {"timeUnixNano":"1700000000500000000","severityNumber":17,"severityText":"ERROR","body":{"stringValue":"card declined"}}]}]}]}"#;

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn metrics_and_logs_round_trip_over_http_and_grpc() -> Result<()> {
    let hotspan = Hotspan::start(CONFIG)?;
    let base = format!("http://127.0.0.1:{}", hotspan.port("http"));
    let m = post(
        &format!("{base}/v1/metrics"),
        "application/json",
        None,
        METRICS.as_bytes().to_vec(),
    )?;
    ensure!(m.status == 200, "{} {}", m.status, m.body);
    let l = post(
        &format!("{base}/v1/logs"),
        "application/json",
        None,
        LOGS.as_bytes().to_vec(),
    )?;
    ensure!(l.status == 200, "{} {}", l.status, l.body);

    // The same over gRPC, as protobuf.
    let metrics = MetricsBatch::decode(METRICS.as_bytes(), Encoding::Json)?;
    let logs = LogsBatch::decode(LOGS.as_bytes(), Encoding::Json)?;
    let port = hotspan.port("grpc");
    for (signal, body) in [
        (Signal::Metrics, metrics.encode(Encoding::Protobuf)),
        (Signal::Logs, logs.encode(Encoding::Protobuf)),
    ] {
        grpc_export(port, signal, body)?.map_err(|s| anyhow::anyhow!("{signal}: {s:?}"))?;
    }

    let got_metrics = wait_for(Duration::from_secs(10), "6 data points", || {
        let batches: Vec<MetricsBatch> = lines(&hotspan.path("metrics.jsonl"))
            .iter()
            .filter_map(|l| MetricsBatch::decode(l.as_bytes(), Encoding::Json).ok())
            .collect();
        (batches.iter().map(MetricsBatch::item_count).sum::<usize>() >= 6).then_some(batches)
    })?;
    let total: usize = got_metrics.iter().map(MetricsBatch::item_count).sum();
    ensure!(total == 6, "{total} data points");
    for b in &got_metrics {
        for r in b.resources() {
            for s in &r.scope_metrics {
                ensure!(s
                    .metrics
                    .iter()
                    .all(|m| m.name == "queue.depth" || m.name == "bytes.sent"));
            }
        }
    }
    let got_logs = wait_for(Duration::from_secs(10), "4 log records", || {
        let batches: Vec<LogsBatch> = lines(&hotspan.path("logs.jsonl"))
            .iter()
            .filter_map(|l| LogsBatch::decode(l.as_bytes(), Encoding::Json).ok())
            .collect();
        (batches.iter().map(LogsBatch::item_count).sum::<usize>() >= 4).then_some(batches)
    })?;
    let bodies: Vec<String> = got_logs
        .iter()
        .flat_map(|b| {
            b.resources()
                .iter()
                .flat_map(|r| &r.scope_logs)
                .flat_map(|s| &s.log_records)
        })
        .map(|r| {
            format!(
                "{} {:?}",
                r.severity_text,
                r.body.as_ref().and_then(|b| b.value.clone())
            )
        })
        .collect();
    ensure!(
        bodies.len() == 4 && bodies.iter().filter(|b| b.contains("card declined")).count() == 2,
        "{bodies:?}"
    );
    // The file exporter writes OTLP/JSON: ids as hex.
    ensure!(lines(&hotspan.path("logs.jsonl"))
        .iter()
        .any(|l| l.contains("\"traceId\":\"5b8efff798038103d269b633813fc60c\"")));
    Ok(())
}
