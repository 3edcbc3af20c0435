//! SIGHUP: a bad file leaves the running pipelines serving; a good one replaces them without
//! losing what the old ones acknowledged.

use std::time::Duration;

use anyhow::{ensure, Result};
use hotspan_tests::{json_span_id, json_spans, post, read_spans, signal, wait_for, wait_for_spans, Hotspan};

fn config(file: &str, http_port: u16, health_port: u16, metrics_port: u16) -> String {
    format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{http_port}"}}}}}}
processors:
  batch: {{timeout: 5s}}
exporters:
  file: {{path: "{file}", flush_interval: 50ms}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{health_port}"}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{metrics_port}"}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [file]}}
"#
    )
}

#[test]
fn sighup_keeps_serving_on_a_bad_file_and_switches_on_a_good_one() -> Result<()> {
    let http = hotspan_tests::free_port();
    let health = hotspan_tests::free_port();
    let metrics = hotspan_tests::free_port();
    let dir = tempfile::tempdir()?;
    let first = dir.path().join("first.jsonl");
    let second = dir.path().join("second.jsonl");
    let mut hotspan = Hotspan::start(
        &config(&first.display().to_string(), http, health, metrics)
            .replace(&format!("127.0.0.1:{health}"), "127.0.0.1:{port:health}"),
    )?;
    let config_path = hotspan.path("config.yaml");
    let health = hotspan.health_port;
    let url = format!("http://127.0.0.1:{http}/v1/traces");
    // Held in the batch processor (5 s) when the reload comes: the drain must deliver it.
    ensure!(
        post(
            &url,
            "application/json",
            None,
            json_spans("r", 0, 10).into_bytes()
        )?
        .status
            == 200
    );

    std::fs::write(
        &config_path,
        "receivers: {otlp: {protocols: {grpc: {endpont: x}}}}\n",
    )?;
    signal(hotspan.child.id(), "HUP")?;
    wait_for(Duration::from_secs(10), "the refusal in the log", || {
        hotspan.log().contains("config reload refused").then_some(())
    })?;
    ensure!(
        post(
            &url,
            "application/json",
            None,
            json_spans("r", 100, 10).into_bytes()
        )?
        .status
            == 200,
        "old pipelines stopped serving"
    );

    std::fs::write(
        &config_path,
        config(&second.display().to_string(), http, health, metrics),
    )?;
    signal(hotspan.child.id(), "HUP")?;
    wait_for(Duration::from_secs(20), "the reload", || {
        hotspan.log().contains("config reloaded").then_some(())
    })?;
    // Everything the old pipelines acknowledged was drained into the first file.
    let old = wait_for_spans(&first, 20, Duration::from_secs(10))?;
    ensure!(old.contains_key(&json_span_id(0)) && old.contains_key(&json_span_id(109)));
    // The new pipeline serves and writes to the second file.
    let answer = wait_for(Duration::from_secs(10), "the new listener", || {
        post(
            &url,
            "application/json",
            None,
            json_spans("r", 200, 10).into_bytes(),
        )
        .ok()
        .filter(|a| a.status == 200)
    })?;
    ensure!(answer.status == 200);
    ensure!(hotspan.terminate()?.success());
    let new = read_spans(&second)?;
    ensure!(
        new.len() == 10 && new.contains_key(&json_span_id(200)),
        "{} spans in the new file",
        new.len()
    );
    ensure!(
        read_spans(&first)?.len() == 20,
        "the old file got spans after the reload"
    );
    Ok(())
}
