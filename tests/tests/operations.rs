//! What an operator sees: self metrics that equal the traffic, the health check across run
//! and shutdown, and JSON logs that name their component.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hotspan_tests::{
    free_port, http_status, json_spans, metric, post, scrape, signal, wait_for, wait_for_spans, Hotspan,
};

#[test]
fn metrics_equal_the_traffic_and_logs_are_json_with_components() -> Result<()> {
    let mut hotspan = Hotspan::start(
        r#"
receivers:
  otlp: {protocols: {http: {endpoint: "127.0.0.1:{port:http}"}}}
processors:
  batch: {timeout: 20ms}
exporters:
  file: {path: "{dir}/out.jsonl", flush_interval: 20ms}
  debug: {verbosity: basic}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  telemetry:
    metrics: {address: "127.0.0.1:{port:metrics}"}
    logs: {encoding: json, level: info}
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [file, debug]}
"#,
    )?;
    let url = format!("http://127.0.0.1:{}/v1/traces", hotspan.port("http"));
    let mut sent = 0;
    for i in 0..7 {
        let n = 10 + i;
        ensure!(
            post(
                &url,
                "application/json",
                None,
                json_spans("ops", i * 100, n).into_bytes()
            )?
            .status
                == 200
        );
        sent += n;
    }
    ensure!(post(&url, "text/plain", None, b"nope".to_vec())?.status == 415);
    wait_for_spans(&hotspan.path("out.jsonl"), sent as usize, Duration::from_secs(10))?;
    let m = wait_for(Duration::from_secs(10), "exporters to report every span", || {
        let m = scrape(hotspan.port("metrics")).ok()?;
        let file = metric(&m, r#"otelcol_exporter_sent_spans{exporter="file"}"#)?;
        let debug = metric(&m, r#"otelcol_exporter_sent_spans{exporter="debug"}"#)?;
        (file == sent as f64 && debug == sent as f64).then_some(m)
    })?;
    let accepted = metric(
        &m,
        r#"otelcol_receiver_accepted_spans{receiver="otlp",transport="http"}"#,
    );
    ensure!(accepted == Some(sent as f64), "accepted {accepted:?} of {sent}");
    ensure!(
        metric(
            &m,
            r#"otelcol_receiver_refused_spans{receiver="otlp",transport="http"}"#
        ) == Some(0.0)
    );
    ensure!(
        metric(
            &m,
            r#"hotspan_receiver_bad_requests{receiver="otlp",transport="http"}"#
        ) == Some(1.0)
    );
    ensure!(metric(&m, r#"otelcol_exporter_send_failed_spans{exporter="file"}"#) == Some(0.0));
    for process in [
        "otelcol_process_uptime",
        "otelcol_process_memory_rss",
        "otelcol_process_runtime_heap_alloc_bytes",
    ] {
        ensure!(
            metric(&m, process).is_some_and(|v| v > 0.0),
            "{process} missing or zero"
        );
    }
    // A short run may not have used a whole clock tick of CPU yet.
    ensure!(
        metric(&m, "otelcol_process_cpu_seconds").is_some_and(|v| v >= 0.0),
        "no CPU seconds"
    );
    ensure!(hotspan.terminate()?.success());

    let log = hotspan.log();
    let mut component_lines = 0;
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
        let fields = &v["fields"];
        // Lines from a component carry it as a field or in their tracing span.
        if v["target"]
            .as_str()
            .is_some_and(|t| t.contains("exporters") || t.contains("receivers"))
        {
            let named = ["receiver", "exporter", "processor", "connector", "extension"]
                .iter()
                .any(|k| fields.get(*k).is_some())
                || v["span"]["id"].is_string();
            ensure!(named, "a component's log line does not name it: {line}");
            component_lines += 1;
        }
    }
    ensure!(
        component_lines >= 2,
        "too few component log lines to judge:\n{log}"
    );
    Ok(())
}

/// 200 while pipelines run; 503 while they drain on shutdown. The drain is kept busy by an
/// exporter whose backend is away.
#[test]
fn health_is_503_while_shutting_down() -> Result<()> {
    let dead = free_port();
    let mut hotspan = Hotspan::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:http}}"}}}}}}
exporters:
  otlp:
    endpoint: "127.0.0.1:{dead}"
    tls: {{insecure: true}}
    retry_on_failure: {{initial_interval: 100ms, max_interval: 200ms, max_elapsed_time: 0s}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp]}}
"#
    ))?;
    let health = hotspan.health_port;
    ensure!(http_status(health, "/")? == 200, "not healthy while running");
    let url = format!("http://127.0.0.1:{}/v1/traces", hotspan.port("http"));
    ensure!(post(&url, "application/json", None, json_spans("h", 0, 5).into_bytes())?.status == 200);
    signal(hotspan.child.id(), "TERM")?;
    wait_for(Duration::from_secs(10), "503 while draining", || {
        (http_status(health, "/").ok()? == 503).then_some(())
    })?;
    // It gives up on the unreachable backend at the shutdown deadline and exits cleanly.
    let status = wait_for(Duration::from_secs(30), "exit", || {
        hotspan.child.try_wait().ok().flatten()
    })?;
    ensure!(status.success(), "exit {status}");
    Ok(())
}
