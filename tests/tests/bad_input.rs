//! Malformed, oversized and mislabelled requests get the right status and a counter, and the
//! next good request still goes through.

use std::time::Duration;

use anyhow::{ensure, Result};
use hotspan_config::Signal;
use hotspan_proto::rpc;
use hotspan_tests::peers::start_otelcol;
use hotspan_tests::{
    grpc_export, gzip, json_span_id, json_spans, metric, post, read_logs, scrape, wait_for, wait_for_spans,
    Hotspan,
};
use prost::Message;

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:{port:grpc}", max_recv_msg_size_mib: 1}
      http: {endpoint: "127.0.0.1:{port:http}", max_request_body_size: 65536}
exporters:
  file: {path: "{dir}/out.jsonl", flush_interval: 50ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  telemetry: {metrics: {address: "127.0.0.1:{port:metrics}"}}
  pipelines:
    traces: {receivers: [otlp], exporters: [file]}
"#;

#[test]
fn http_bad_requests_are_refused_and_good_ones_still_pass() -> Result<()> {
    let hotspan = Hotspan::start(CONFIG)?;
    let url = format!("http://127.0.0.1:{}/v1/traces", hotspan.port("http"));
    let good_json = |i: u64| json_spans("shop", i * 10, 10).into_bytes();
    let protobuf_body = hotspan_proto::TracesBatch::decode(&good_json(100), hotspan_proto::Encoding::Json)?
        .encode(hotspan_proto::Encoding::Protobuf);
    let truncated_gzip = {
        let full = gzip(&good_json(101));
        full[..full.len() / 2].to_vec()
    };
    // Zeros compress ~1000:1: a small body that would inflate far past the limit.
    let bomb = gzip(&vec![b' '; 20 * 1024 * 1024]);
    // (what, content type, content encoding, body, expected status)
    type Case = (&'static str, &'static str, Option<&'static str>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        (
            "malformed protobuf",
            "application/x-protobuf",
            None,
            b"\x0a\xff\xff\xff\x0f".to_vec(),
            400,
        ),
        (
            "malformed json",
            "application/json",
            None,
            b"{\"resourceSpans\": [{".to_vec(),
            400,
        ),
        (
            "json with a bad id",
            "application/json",
            None,
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"xyz"}]}]}]}"#.to_vec(),
            400,
        ),
        ("oversized", "application/json", None, vec![b' '; 70_000], 413),
        ("wrong content type", "text/plain", None, good_json(102), 415),
        (
            "truncated gzip",
            "application/json",
            Some("gzip"),
            truncated_gzip,
            400,
        ),
        ("gzip bomb", "application/json", Some("gzip"), bomb, 413),
        (
            "unknown encoding",
            "application/json",
            Some("br"),
            good_json(103),
            400,
        ),
    ];
    let bad_count = cases.len();
    let mut good = 0;
    for (i, (what, ct, enc, body, want)) in cases.into_iter().enumerate() {
        let answer = post(&url, ct, enc, body)?;
        ensure!(
            answer.status == want,
            "{what}: status {} (want {want}): {}",
            answer.status,
            answer.body
        );
        // The error body is a google.rpc.Status in the request's encoding (JSON when unknown).
        if ct == "application/x-protobuf" {
            let status = rpc::Status::decode(&answer.bytes[..])?;
            ensure!(
                status.code == 3 && !status.message.is_empty(),
                "{what}: {status:?}"
            );
        } else {
            let status: serde_json::Value = serde_json::from_str(&answer.body)?;
            ensure!(
                status["code"] == 3 && status["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{what}: {status}"
            );
        }
        let ok = post(&url, "application/json", None, good_json(i as u64))?;
        ensure!(
            ok.status == 200,
            "good request after {what}: {} {}",
            ok.status,
            ok.body
        );
        good += 10;
    }
    // Protobuf and gzip good requests too.
    ensure!(post(&url, "application/x-protobuf", None, protobuf_body)?.status == 200);
    ensure!(post(&url, "application/json", Some("gzip"), gzip(&good_json(104)))?.status == 200);
    good += 20;

    let found = wait_for_spans(&hotspan.path("out.jsonl"), good, Duration::from_secs(10))?;
    ensure!(
        found.len() == good,
        "{} spans stored, {good} sent in good requests",
        found.len()
    );
    ensure!(found.contains_key(&json_span_id(1040)) && found.contains_key(&json_span_id(1000)));

    let metrics = scrape(hotspan.port("metrics"))?;
    let bad = metric(
        &metrics,
        r#"hotspan_receiver_bad_requests{receiver="otlp",transport="http"}"#,
    );
    ensure!(
        bad == Some(bad_count as f64),
        "bad request counter {bad:?}, sent {bad_count}\n{metrics}"
    );
    let accepted = metric(
        &metrics,
        r#"otelcol_receiver_accepted_spans{receiver="otlp",transport="http"}"#,
    );
    ensure!(
        accepted == Some(good as f64),
        "accepted {accepted:?}, sent {good}"
    );
    Ok(())
}

/// A span whose parent id is 16 bytes long, and a log record whose trace id is 10, are
/// refused as a partial success. Passed on, each would make the OpenTelemetry Collector
/// downstream refuse the whole batch it is in, other clients' good data with it (pdata takes
/// no id of the wrong length).
#[test]
fn ids_of_the_wrong_length_cost_their_item_not_the_batch_downstream() -> Result<()> {
    let mut otelcol = start_otelcol(
        r#"
receivers:
  otlp: {protocols: {grpc: {endpoint: "127.0.0.1:{port:grpc}"}}}
exporters:
  file: {path: "{dir}/out.jsonl", flush_interval: 50ms}
  file/logs: {path: "{dir}/logs.jsonl", flush_interval: 50ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], exporters: [file]}
    logs: {receivers: [otlp], exporters: [file/logs]}
"#,
    )?;
    let hotspan = Hotspan::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:http}}"}}}}}}
processors:
  batch: {{timeout: 1s}}
exporters:
  otlp: {{endpoint: "127.0.0.1:{}", tls: {{insecure: true}}}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [otlp]}}
    logs: {{receivers: [otlp], processors: [batch], exporters: [otlp]}}
"#,
        otelcol.port("grpc")
    ))?;
    let url = format!("http://127.0.0.1:{}/v1/traces", hotspan.port("http"));
    // Two clients within one batch: one sends good spans, the other one bad parent id.
    let good = post(
        &url,
        "application/json",
        None,
        json_spans("good", 0, 4).into_bytes(),
    )?;
    ensure!(good.status == 200, "{}", good.body);
    let bad_parent =
        r#""name":"op 11","#.to_string() + r#""parentSpanId":"0102030405060708090a0b0c0d0e0f10","#;
    let body = json_spans("mixed", 10, 3).replacen(r#""name":"op 11","#, &bad_parent, 1);
    let answer = post(&url, "application/json", None, body.into_bytes())?;
    ensure!(answer.status == 200, "{}", answer.body);
    let found = wait_for_spans(&otelcol.path("out.jsonl"), 6, Duration::from_secs(20))
        .map_err(|e| anyhow::anyhow!("{e}\n--- otelcol ---\n{}", otelcol.log()))?;
    ensure!(found.len() == 6, "{} spans", found.len());
    let json: serde_json::Value = serde_json::from_str(&answer.body)?;
    ensure!(json["partialSuccess"]["rejectedSpans"] == "1", "{json}");

    // The same for a log record's trace id.
    let logs = |trace_id: &str| {
        format!(
            r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{{"stringValue":"a"}}}},{{"body":{{"stringValue":"b"}},"traceId":"{trace_id}"}}]}}]}}]}}"#
        )
    };
    let url = format!("http://127.0.0.1:{}/v1/logs", hotspan.port("http"));
    let good = post(
        &url,
        "application/json",
        None,
        logs("5b8efff798038103d269b633813fc60c").into_bytes(),
    )?;
    ensure!(good.status == 200, "{}", good.body);
    let answer = post(
        &url,
        "application/json",
        None,
        logs("0102030405060708090a").into_bytes(),
    )?;
    ensure!(answer.status == 200, "{}", answer.body);
    let records = wait_for(Duration::from_secs(20), "3 log records in otelcol's file", || {
        let batches = read_logs(&otelcol.path("logs.jsonl")).ok()?;
        let n: usize = batches.iter().map(|b| b.item_count()).sum();
        (n >= 3).then_some(n)
    })
    .map_err(|e| anyhow::anyhow!("{e}\n--- otelcol ---\n{}", otelcol.log()))?;
    ensure!(records == 3, "{records} log records");
    let json: serde_json::Value = serde_json::from_str(&answer.body)?;
    ensure!(json["partialSuccess"]["rejectedLogRecords"] == "1", "{json}");
    otelcol.terminate()?;
    Ok(())
}

#[test]
fn partial_success_names_rejected_spans() -> Result<()> {
    let hotspan = Hotspan::start(CONFIG)?;
    let url = format!("http://127.0.0.1:{}/v1/traces", hotspan.port("http"));
    let body = json_spans("shop", 0, 3).replacen(&format!("{:016x}", 2), "0000000000000000", 1);
    let answer = post(&url, "application/json", None, body.into_bytes())?;
    ensure!(answer.status == 200, "{}", answer.body);
    let json: serde_json::Value = serde_json::from_str(&answer.body)?;
    ensure!(json["partialSuccess"]["rejectedSpans"] == "1", "{json}");
    ensure!(
        json["partialSuccess"]["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("span_id")),
        "{json}"
    );
    let found = wait_for_spans(&hotspan.path("out.jsonl"), 2, Duration::from_secs(10))?;
    ensure!(found.len() == 2);
    Ok(())
}

#[test]
fn grpc_bad_messages_are_invalid_argument() -> Result<()> {
    let hotspan = Hotspan::start(CONFIG)?;
    let port = hotspan.port("grpc");
    let malformed = grpc_export(port, Signal::Traces, b"\x0a\xff\xff\xff\x0f".to_vec())?;
    let status = malformed
        .err()
        .ok_or_else(|| anyhow::anyhow!("malformed message accepted"))?;
    ensure!(status.code() == tonic::Code::InvalidArgument, "{status:?}");

    let oversized = grpc_export(port, Signal::Traces, vec![0x0a; 2 * 1024 * 1024])?;
    let status = oversized
        .err()
        .ok_or_else(|| anyhow::anyhow!("oversized message accepted"))?;
    ensure!(status.code() == tonic::Code::OutOfRange, "{status:?}");

    let good = hotspan_proto::TracesBatch::decode(
        json_spans("shop", 0, 5).as_bytes(),
        hotspan_proto::Encoding::Json,
    )?
    .encode(hotspan_proto::Encoding::Protobuf);
    let ok = grpc_export(port, Signal::Traces, good)?
        .map_err(|s| anyhow::anyhow!("good request refused: {s:?}"))?;
    // An empty ExportTraceServiceResponse: full success.
    ensure!(ok.is_empty(), "response {ok:?}");
    let found = wait_for_spans(&hotspan.path("out.jsonl"), 5, Duration::from_secs(10))?;
    ensure!(found.len() == 5);
    Ok(())
}

/// A body far over the limit gets its 413 and message even though the client is still sending
/// when the limit is reached: the receiver reads on (and discards) rather than cut the
/// connection, which the client would see as a reset.
#[test]
fn an_oversized_body_gets_its_answer_not_a_reset() -> Result<()> {
    let hotspan = Hotspan::start(CONFIG)?;
    let url = format!("http://127.0.0.1:{}/v1/traces", hotspan.port("http"));
    for round in 0..5 {
        let answer = post(&url, "application/json", None, vec![b' '; 4 * 1024 * 1024])?;
        ensure!(
            answer.status == 413 && answer.body.contains("larger than 65536"),
            "round {round}: {} {}",
            answer.status,
            answer.body
        );
    }
    let ok = post(
        &url,
        "application/json",
        None,
        json_spans("shop", 0, 3).into_bytes(),
    )?;
    ensure!(
        ok.status == 200,
        "good after oversized: {} {}",
        ok.status,
        ok.body
    );
    Ok(())
}
