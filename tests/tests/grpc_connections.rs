//! How the OTLP/gRPC receiver treats its connections, with otelcol's (grpc-go's) `keepalive`
//! keys: past `max_connection_age` (and its grace) a client's connection is closed, so clients
//! reconnect and spread over a gateway's replicas; without it, an idle connection stays open.
//! The connections are the kernel's (`/proc/net/tcp`), the client tonic's.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hotspan_config::Signal;
use hotspan_proto::{Encoding, TracesBatch};
use hotspan_tests::{
    h2c_channel, json_spans, tcp_connections as connections_to, wait_for_closed, wait_for_spans, Hotspan,
};

/// One export over `channel`, which stays open afterwards.
async fn export(channel: &tonic::transport::Channel, first_id: u64) -> Result<()> {
    let json = json_spans("keepalive", first_id, 2);
    let body = TracesBatch::decode(json.as_bytes(), Encoding::Json)?.encode(Encoding::Protobuf);
    let mut client = tonic::client::Grpc::new(channel.clone());
    client.ready().await?;
    let path = http::uri::PathAndQuery::from_static(hotspan::grpc::export_path(Signal::Traces));
    client
        .unary::<bytes::Bytes, bytes::Bytes, _>(
            tonic::Request::new(bytes::Bytes::from(body)),
            path,
            hotspan::grpc::RawCodec,
        )
        .await?;
    Ok(())
}

#[test]
fn a_connection_past_its_max_age_is_closed_and_the_client_comes_back() -> Result<()> {
    let hotspan = Hotspan::start(
        r#"
receivers:
  otlp/aged:
    protocols:
      grpc:
        endpoint: "127.0.0.1:{port:aged}"
        max_concurrent_streams: 16
        keepalive:
          server_parameters: {max_connection_age: 2s, max_connection_age_grace: 1s, time: 30s, timeout: 5s}
          enforcement_policy: {min_time: 10s, permit_without_stream: true}
  otlp/plain:
    protocols:
      grpc: {endpoint: "127.0.0.1:{port:plain}"}
exporters:
  file: {path: "{dir}/traces.jsonl", flush_interval: 50ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp/aged, otlp/plain], exporters: [file]}
"#,
    )?;
    let (aged, plain) = (hotspan.port("aged"), hotspan.port("plain"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (to_aged, to_plain) = (h2c_channel(&rt, aged)?, h2c_channel(&rt, plain)?);
    rt.block_on(export(&to_aged, 0))?;
    rt.block_on(export(&to_plain, 10))?;
    ensure!(connections_to(aged)? == 2 && connections_to(plain)? == 2);
    // Age 2 s, grace 1 s: the server closes the aged connection by itself.
    wait_for_closed(
        &rt,
        aged,
        Duration::from_secs(10),
        "the aged connection to close, both ends",
    )
    .with_context(|| hotspan.log())?;
    ensure!(
        connections_to(plain)? == 2,
        "the connection without max_connection_age was closed too"
    );
    // The client reconnects for its next export, retrying a transport error as the SDKs'
    // exporters retry UNAVAILABLE.
    let mut sent = rt.block_on(export(&to_aged, 20));
    for _ in 0..4 {
        if sent.is_ok() {
            break;
        }
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
        sent = rt.block_on(export(&to_aged, 20));
    }
    sent.context("exporting again after the connection was closed")?;
    let spans = wait_for_spans(&hotspan.path("traces.jsonl"), 6, Duration::from_secs(20))?;
    ensure!(spans.len() == 6, "{} spans arrived", spans.len());
    Ok(())
}
