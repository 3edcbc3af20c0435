//! Pipeline wiring: a receiver feeding two pipelines, an exporter shared by two, a connector
//! joining pipelines, the otlp_http exporter, and refusals mapped to the right statuses.

use std::time::Duration;

use anyhow::{ensure, Result};
use hotspan_config::Signal;
use hotspan_tests::{grpc_export, json_span_id, json_spans, post, wait_for_spans, Hotspan};

#[test]
fn receivers_exporters_and_connectors_are_shared_across_pipelines() -> Result<()> {
    let hotspan = Hotspan::start(
        r#"
receivers:
  otlp:
    protocols: {http: {endpoint: "127.0.0.1:{port:http}"}}
  otlp/2:
    protocols: {http: {endpoint: "127.0.0.1:{port:http2}"}}
processors:
  batch: {timeout: 20ms}
connectors:
  forward:
exporters:
  file/joined: {path: "{dir}/joined.jsonl", flush_interval: 20ms}
  file/copy: {path: "{dir}/copy.jsonl", flush_interval: 20ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces/in: {receivers: [otlp], exporters: [forward]}
    traces/out: {receivers: [forward], processors: [batch], exporters: [file/joined]}
    traces/copy: {receivers: [otlp], exporters: [file/copy]}
    traces/other: {receivers: [otlp/2], processors: [batch], exporters: [file/copy]}
"#,
    )?;
    let first = format!("http://127.0.0.1:{}/v1/traces", hotspan.port("http"));
    let second = format!("http://127.0.0.1:{}/v1/traces", hotspan.port("http2"));
    for i in 0..5 {
        ensure!(
            post(
                &first,
                "application/json",
                None,
                json_spans("a", i * 10, 10).into_bytes()
            )?
            .status
                == 200
        );
        ensure!(
            post(
                &second,
                "application/json",
                None,
                json_spans("b", 1000 + i * 10, 10).into_bytes()
            )?
            .status
                == 200
        );
    }
    // Through the connector: only what came in on `otlp`.
    let joined = wait_for_spans(&hotspan.path("joined.jsonl"), 50, Duration::from_secs(10))?;
    ensure!(
        joined.len() == 50
            && joined.contains_key(&json_span_id(0))
            && !joined.contains_key(&json_span_id(1000))
    );
    // The shared exporter: both receivers' spans, each once.
    let copy = wait_for_spans(&hotspan.path("copy.jsonl"), 100, Duration::from_secs(10))?;
    ensure!(
        copy.len() == 100 && copy.contains_key(&json_span_id(49)) && copy.contains_key(&json_span_id(1049))
    );
    Ok(())
}

#[test]
fn otlp_http_exporter_forwards_to_another_instance() -> Result<()> {
    let downstream = Hotspan::start(
        r#"
receivers:
  otlp: {protocols: {http: {endpoint: "127.0.0.1:{port:http}"}}}
exporters:
  file: {path: "{dir}/out.jsonl", flush_interval: 20ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], exporters: [file]}
"#,
    )?;
    for encoding in ["proto", "json"] {
        let mut upstream = Hotspan::start(&format!(
            r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:http}}"}}}}}}
exporters:
  otlphttp:
    endpoint: "http://127.0.0.1:{}"
    encoding: {encoding}
    headers: {{x-tenant: shop}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlphttp]}}
"#,
            downstream.port("http")
        ))?;
        let base = if encoding == "proto" { 0 } else { 500 };
        let url = format!("http://127.0.0.1:{}/v1/traces", upstream.port("http"));
        ensure!(
            post(
                &url,
                "application/json",
                None,
                json_spans("h", base, 20).into_bytes()
            )?
            .status
                == 200
        );
        // A graceful stop drains the exporter's queue to the downstream instance.
        ensure!(upstream.terminate()?.success());
    }
    let found = wait_for_spans(&downstream.path("out.jsonl"), 40, Duration::from_secs(15))?;
    ensure!(
        found.len() == 40 && found.contains_key(&json_span_id(519)) && found.contains_key(&json_span_id(19))
    );
    Ok(())
}

/// With no queue and no retry, a backend's answer decides the client's: a backend that is
/// down is retryable (503 with Retry-After), a backend that says 404 is permanent (400).
#[test]
fn exporter_failures_reach_the_client_as_retryable_or_permanent() -> Result<()> {
    let dead_port = hotspan_tests::free_port();
    let backend = Hotspan::start(
        r#"
receivers:
  otlp: {protocols: {http: {endpoint: "127.0.0.1:{port:http}"}}}
exporters:
  debug:
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], exporters: [debug]}
"#,
    )?;
    let hotspan = Hotspan::start(&format!(
        r#"
receivers:
  otlp/down: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:down}}"}}, grpc: {{endpoint: "127.0.0.1:{{port:downgrpc}}"}}}}}}
  otlp/wrong: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:wrong}}"}}}}}}
exporters:
  otlp:
    endpoint: "127.0.0.1:{dead_port}"
    tls: {{insecure: true}}
    timeout: 1s
    sending_queue: {{enabled: false}}
    retry_on_failure: {{enabled: false}}
  otlphttp:
    traces_endpoint: "http://127.0.0.1:{}/no/such/path"
    sending_queue: {{enabled: false}}
    retry_on_failure: {{enabled: false}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
  pipelines:
    traces/down: {{receivers: [otlp/down], exporters: [otlp]}}
    traces/wrong: {{receivers: [otlp/wrong], exporters: [otlphttp]}}
"#,
        backend.port("http")
    ))?;
    let body = || json_spans("x", 0, 4).into_bytes();
    let down = post(
        &format!("http://127.0.0.1:{}/v1/traces", hotspan.port("down")),
        "application/json",
        None,
        body(),
    )?;
    ensure!(down.status == 503, "backend down: {} {}", down.status, down.body);
    ensure!(
        down.headers.contains_key("retry-after"),
        "503 without Retry-After"
    );
    let wrong = post(
        &format!("http://127.0.0.1:{}/v1/traces", hotspan.port("wrong")),
        "application/json",
        None,
        body(),
    )?;
    ensure!(
        wrong.status == 400,
        "backend 404: {} {}",
        wrong.status,
        wrong.body
    );

    let request = hotspan_proto::TracesBatch::decode(&body(), hotspan_proto::Encoding::Json)?
        .encode(hotspan_proto::Encoding::Protobuf);
    let code = grpc_export(hotspan.port("downgrpc"), Signal::Traces, request)?
        .err()
        .map(|s| s.code());
    ensure!(
        code == Some(tonic::Code::Unavailable),
        "gRPC with the backend down: {code:?}"
    );

    let metrics = hotspan_tests::scrape(hotspan.port("metrics"))?;
    let refused = hotspan_tests::metric(
        &metrics,
        r#"otelcol_receiver_refused_spans{receiver="otlp/down",transport="http"}"#,
    );
    ensure!(refused == Some(4.0), "refused spans {refused:?}\n{metrics}");
    let failed = hotspan_tests::metric(
        &metrics,
        r#"otelcol_exporter_send_failed_spans{exporter="otlphttp"}"#,
    );
    ensure!(failed == Some(4.0), "failed spans {failed:?}\n{metrics}");
    Ok(())
}

/// A backend that is away fills the exporter's bounded queue; past that, clients are told to
/// retry (503) instead of hotspan buffering without bound.
#[test]
fn a_full_sending_queue_refuses_with_a_retryable_status() -> Result<()> {
    let dead_port = hotspan_tests::free_port();
    let hotspan = Hotspan::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:http}}"}}}}}}
exporters:
  otlp:
    endpoint: "127.0.0.1:{dead_port}"
    tls: {{insecure: true}}
    sending_queue: {{queue_size: 3, num_consumers: 1}}
    retry_on_failure: {{initial_interval: 10s, max_elapsed_time: 0s}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp]}}
"#
    ))?;
    let url = format!("http://127.0.0.1:{}/v1/traces", hotspan.port("http"));
    let statuses: Vec<u16> = (0..8)
        .map(|i| {
            post(
                &url,
                "application/json",
                None,
                json_spans("q", i * 5, 5).into_bytes(),
            )
            .map(|a| a.status)
        })
        .collect::<Result<_>>()?;
    // One batch is with the worker, three wait in the queue; the rest are refused.
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    ensure!((3..=4).contains(&accepted), "statuses {statuses:?}");
    ensure!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "statuses {statuses:?}"
    );
    let metrics = hotspan_tests::scrape(hotspan.port("metrics"))?;
    let refused = hotspan_tests::metric(
        &metrics,
        r#"otelcol_exporter_enqueue_failed_spans{exporter="otlp"}"#,
    );
    ensure!(
        refused == Some(((8 - accepted) * 5) as f64),
        "enqueue failures {refused:?}\n{metrics}"
    );
    Ok(())
}
