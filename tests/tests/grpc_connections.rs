//! How the OTLP/gRPC receiver treats its connections, with otelcol's (grpc-go's) `keepalive`
//! keys: past `max_connection_age` (and its grace) a client's connection is closed, so clients
//! reconnect and spread over a gateway's replicas; past `max_connection_idle` without a call,
//! too; without them, an idle connection stays open. The connections are the kernel's
//! (`/proc/net/tcp`), the clients tonic's and hyper's own HTTP/2 connection.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use hotspan_config::Signal;
use hotspan_proto::{Encoding, TracesBatch};
use hotspan_tests::{
    grpc_export_on, h2c_channel, json_spans, tcp_connections as connections_to, wait_for_closed,
    wait_for_spans, Hotspan,
};
use http_body_util::Full;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

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

/// One export on a bare HTTP/2 connection, which never reconnects: its gRPC status.
async fn export_on(sender: &mut SendRequest<Full<Bytes>>, port: u16, first_id: u64) -> Result<String> {
    let json = json_spans("idle", first_id, 2);
    let body = TracesBatch::decode(json.as_bytes(), Encoding::Json)?.encode(Encoding::Protobuf);
    grpc_export_on(sender, port, &body, false).await
}

#[test]
fn a_connection_idle_past_max_connection_idle_is_closed_and_a_busy_one_is_not() -> Result<()> {
    let hotspan = Hotspan::start(
        r#"
receivers:
  otlp/idle:
    protocols:
      grpc:
        endpoint: "127.0.0.1:{port:idle}"
        keepalive:
          server_parameters: {max_connection_idle: 1s}
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
    traces: {receivers: [otlp/idle, otlp/plain], exporters: [file]}
"#,
    )?;
    let (idle, plain) = (hotspan.port("idle"), hotspan.port("plain"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", idle)).await?;
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
        let mut connection = tokio::spawn(connection);
        // A call every 300 ms for 3 s: three times the idle limit, never idle that long.
        let busy_until = Instant::now() + Duration::from_secs(3);
        let mut calls = 0;
        let mut last_answer = Instant::now();
        while Instant::now() < busy_until {
            let status = export_on(&mut sender, idle, calls * 2).await?;
            last_answer = Instant::now();
            ensure!(
                status == "0",
                "call {calls} on the busy connection: grpc-status {status}"
            );
            calls += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        ensure!(!connection.is_finished(), "the busy connection was closed");
        // Then idle: the server says GOAWAY and the connection ends cleanly.
        let ended = tokio::time::timeout(Duration::from_secs(10), &mut connection)
            .await
            .context("the idle connection was still open after 10 s")?;
        let waited = last_answer.elapsed();
        ended?.context("the connection ended with an error, not a GOAWAY")?;
        // The server's clock starts as it answers, a moment before the client hears it.
        ensure!(
            waited >= Duration::from_millis(900),
            "closed {waited:?} after its last call, before max_connection_idle"
        );
        anyhow::Ok(calls)
    })?;
    // Without the key, an idle connection stays.
    let to_plain = h2c_channel(&rt, plain)?;
    rt.block_on(export(&to_plain, 1000))?;
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(1500)).await });
    ensure!(
        connections_to(plain)? == 2,
        "the connection without max_connection_idle was closed"
    );
    wait_for_closed(
        &rt,
        idle,
        Duration::from_secs(5),
        "the idle connection's both ends to close",
    )?;
    Ok(())
}
