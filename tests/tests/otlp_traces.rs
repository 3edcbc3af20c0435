//! OTLP traces in and out: real SDK clients over gRPC and HTTP, raw OTLP/JSON, two hotspans
//! chained; every span must come out the other end as it went in.

use std::time::Duration;

use anyhow::{ensure, Result};
use hotspan_tests::sdk::{assert_same_span, send_spans, Transport};
use hotspan_tests::{hex, post, wait_for_spans, Hotspan};

const SINGLE: &str = r#"
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:{port:grpc}"}
      http: {endpoint: "127.0.0.1:{port:http}"}
processors:
  batch: {timeout: 50ms, send_batch_size: 100}
exporters:
  file: {path: "{dir}/out.jsonl", flush_interval: 50ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [file]}
"#;

fn roundtrip(transport: Transport) -> Result<()> {
    let hotspan = Hotspan::start(SINGLE)?;
    let endpoint = match transport {
        Transport::Grpc => format!("http://127.0.0.1:{}", hotspan.port("grpc")),
        _ => format!("http://127.0.0.1:{}", hotspan.port("http")),
    };
    let sent = send_spans(transport, endpoint, "checkout", 20)?;
    ensure!(sent.len() == 60, "the SDK made {} spans", sent.len());
    let found = wait_for_spans(&hotspan.path("out.jsonl"), sent.len(), Duration::from_secs(20))?;
    ensure!(
        found.len() == sent.len(),
        "{} spans out for {} in",
        found.len(),
        sent.len()
    );
    for span in &sent {
        let id = span.span_context.span_id().to_bytes().to_vec();
        let Some(out) = found.get(&id) else {
            anyhow::bail!("span {} missing", hex(&id))
        };
        assert_same_span(span, out, "checkout")?;
    }
    Ok(())
}

#[test]
fn sdk_over_grpc_arrives_intact() -> Result<()> {
    roundtrip(Transport::Grpc)
}

#[test]
fn sdk_over_http_protobuf_arrives_intact() -> Result<()> {
    roundtrip(Transport::HttpProtobuf)
}

#[test]
fn sdk_over_http_json_arrives_intact() -> Result<()> {
    roundtrip(Transport::HttpJson)
}

/// OTLP/JSON written by hand to the spec's rules (hex ids, int64 as strings or numbers, integer
/// enums, an unknown field), the way non-Rust clients write it.
#[test]
fn raw_otlp_json_over_http() -> Result<()> {
    let hotspan = Hotspan::start(SINGLE)?;
    let body = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"payments"}}]},
      "scopeSpans":[{"scope":{"name":"manual"},"spans":[
        {"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"authorize",
         "kind":3,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":1700000000250000000,
         "attributes":[{"key":"amount","value":{"intValue":"1250"}},{"key":"currency","value":{"stringValue":"EUR"}}],
         "status":{"code":1},"futureField":[1,2,3]},
        {"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"00f067aa0ba902b7","parentSpanId":"b7ad6b7169203331",
         "name":"rules","startTimeUnixNano":"1700000000010000000","endTimeUnixNano":"1700000000200000000"}]}]}]}"#;
    let answer = post(
        &format!("http://127.0.0.1:{}/v1/traces", hotspan.port("http")),
        "application/json",
        None,
        body.as_bytes().to_vec(),
    )?;
    ensure!(answer.status == 200, "status {}: {}", answer.status, answer.body);
    ensure!(
        answer.body.trim() == "{}",
        "full success has no partialSuccess: {}",
        answer.body
    );
    let found = wait_for_spans(&hotspan.path("out.jsonl"), 2, Duration::from_secs(10))?;
    let auth = &found[&vec![0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31]];
    ensure!(hex(&auth.span.trace_id) == "0af7651916cd43dd8448eb211c80319c");
    ensure!(auth.span.kind == 3 && auth.span.end_time_unix_nano == 1_700_000_000_250_000_000);
    ensure!(auth.span.attributes.len() == 2 && auth.scope_name == "manual");
    let rules = &found[&vec![0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]];
    ensure!(hex(&rules.span.parent_span_id) == "b7ad6b7169203331");
    Ok(())
}

/// Two hotspans in a row: the SDK sends to the first, whose otlp_grpc exporter sends to the
/// second; both write what they saw, and the two files must agree span for span.
#[test]
fn chained_instances_agree() -> Result<()> {
    let downstream = Hotspan::start(SINGLE)?;
    let upstream = Hotspan::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{{port:grpc}}"}}
processors:
  batch: {{timeout: 50ms}}
exporters:
  otlp:
    endpoint: "127.0.0.1:{}"
    tls: {{insecure: true}}
  file: {{path: "{{dir}}/out.jsonl", flush_interval: 50ms}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [otlp, file]}}
"#,
        downstream.port("grpc")
    ))?;
    let sent = send_spans(
        Transport::Grpc,
        format!("http://127.0.0.1:{}", upstream.port("grpc")),
        "cart",
        30,
    )?;
    let first = wait_for_spans(&upstream.path("out.jsonl"), sent.len(), Duration::from_secs(20))?;
    let second = wait_for_spans(&downstream.path("out.jsonl"), sent.len(), Duration::from_secs(20))?;
    ensure!(first.len() == sent.len() && second.len() == sent.len());
    ensure!(first == second, "the two ends differ");
    for span in &sent {
        assert_same_span(
            span,
            &second[&span.span_context.span_id().to_bytes().to_vec()],
            "cart",
        )?;
    }
    Ok(())
}
