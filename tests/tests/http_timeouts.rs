//! The OTLP/HTTP receiver's connection timeouts, otelcol's (Go's `http.Server`):
//! `read_header_timeout`, `idle_timeout`, `read_timeout` and `write_timeout`. A client that
//! sends a header or a body and then nothing, or keeps a connection open without using it,
//! cannot hold the server's connections; a receiver with otelcol's defaults (a minute) keeps
//! the same connections open for the length of the test. Clients are bare TCP sockets, so
//! what they send is exactly as slow as the test says, and tonic's HTTP/2 client.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use hotspan_tests::{
    h2c_channel, json_spans, metric, post, scrape, tcp_connections, wait_for_closed, Hotspan,
};

/// Reads until the server closes `stream`, at most `limit`: how long that took, and what the
/// server wrote before closing.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Result<(Duration, String)> {
    let start = Instant::now();
    let mut got = Vec::new();
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Ok((start.elapsed(), String::from_utf8_lossy(&got).into_owned())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return Ok((start.elapsed(), String::from_utf8_lossy(&got).into_owned()))
            }
            Err(e) => return Err(e.into()),
        }
    }
    bail!(
        "still open after {limit:?}; the server wrote {:?}",
        String::from_utf8_lossy(&got)
    )
}

/// Whether the server has neither closed `stream` nor written anything to it.
fn open_and_silent(stream: &mut TcpStream) -> Result<bool> {
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut buf = [0u8; 1];
    match stream.read(&mut buf) {
        Ok(_) => Ok(false),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(true),
        Err(_) => Ok(false),
    }
}

fn connect(port: u16) -> Result<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One whole OTLP/JSON request over `stream`, kept alive; the answer's status line.
fn export_kept_alive(stream: &mut TcpStream, first_id: u64) -> Result<String> {
    let body = json_spans("timeouts", first_id, 2);
    write!(
        stream,
        "POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // The answer is small: its head and a Content-Length body.
    loop {
        let n = stream.read(&mut buf)?;
        ensure!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")?
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
                .context("no content-length")?;
            if body.len() >= length {
                return Ok(head.lines().next().unwrap_or_default().to_owned());
            }
        }
    }
}

#[test]
fn connections_that_hold_the_server_are_closed() -> Result<()> {
    let hotspan = Hotspan::start(
        r#"
receivers:
  otlp/strict:
    protocols:
      http: {endpoint: "127.0.0.1:{port:strict}", read_header_timeout: 1s, idle_timeout: 1s, read_timeout: 2s, write_timeout: 10s}
  otlp/lax:
    protocols:
      http: {endpoint: "127.0.0.1:{port:lax}"}
exporters:
  file: {path: "{dir}/traces.jsonl", flush_interval: 50ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp/strict, otlp/lax], exporters: [file]}
"#,
    )?;
    let (strict, lax) = (hotspan.port("strict"), hotspan.port("lax"));
    let log = || hotspan.log();

    // A header that never ends: closed at read_header_timeout, without an answer.
    let partial = b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl";
    let (mut to_strict, mut to_lax) = (connect(strict)?, connect(lax)?);
    to_strict.write_all(partial)?;
    to_lax.write_all(partial)?;
    let (took, wrote) = closed_within(&mut to_strict, Duration::from_secs(10)).with_context(log)?;
    ensure!(
        took >= Duration::from_millis(900),
        "a slow header was cut off after {took:?}, before read_header_timeout: {wrote:?}"
    );
    ensure!(
        open_and_silent(&mut to_lax)?,
        "the receiver with the default header timeout let go of a slow header"
    );

    // A kept-alive connection that sends nothing after its request: closed at idle_timeout.
    let (mut to_strict, mut to_lax) = (connect(strict)?, connect(lax)?);
    for (stream, first_id) in [(&mut to_strict, 0), (&mut to_lax, 10)] {
        let status = export_kept_alive(stream, first_id)?;
        ensure!(status.starts_with("HTTP/1.1 200"), "{status}");
    }
    // A second request on the same connection: still within the idle time.
    let status = export_kept_alive(&mut to_strict, 20)?;
    ensure!(status.starts_with("HTTP/1.1 200"), "{status}");
    let (took, wrote) = closed_within(&mut to_strict, Duration::from_secs(10)).with_context(log)?;
    ensure!(
        took >= Duration::from_millis(900) && wrote.is_empty(),
        "an idle connection was closed after {took:?}: {wrote:?}"
    );
    ensure!(
        open_and_silent(&mut to_lax)?,
        "the receiver with the default idle timeout closed an idle connection"
    );

    // An HTTP/2 connection (h2c, tonic's client) that carries nothing: GOAWAY, then closed.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (_h2_strict, _h2_lax) = (h2c_channel(&rt, strict)?, h2c_channel(&rt, lax)?);
    ensure!(tcp_connections(strict)? == 2, "the h2c connection did not open");
    wait_for_closed(
        &rt,
        strict,
        Duration::from_secs(10),
        "the idle HTTP/2 connection to close, both ends",
    )
    .with_context(log)?;
    // The lax receiver's: the HTTP/1.1 connections above, and this one.
    ensure!(
        tcp_connections(lax)? == 2 * 3,
        "the receiver with the default idle timeout closed an HTTP/2 connection: {} ends open",
        tcp_connections(lax)?
    );

    // A body that never ends: 408 at read_timeout, counted as a bad request.
    let head = "POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"resourceSpans\":";
    let (mut to_strict, mut to_lax) = (connect(strict)?, connect(lax)?);
    to_strict.write_all(head.as_bytes())?;
    to_lax.write_all(head.as_bytes())?;
    let (took, wrote) = closed_within(&mut to_strict, Duration::from_secs(10)).with_context(log)?;
    ensure!(
        wrote.starts_with("HTTP/1.1 408")
            && wrote.contains("read_timeout")
            && took >= Duration::from_millis(1900),
        "a slow body was answered after {took:?}: {wrote:?}"
    );
    ensure!(
        open_and_silent(&mut to_lax)?,
        "the receiver without read_timeout answered a body still arriving"
    );
    let metrics = scrape(hotspan.port("metrics"))?;
    let bad = |receiver: &str| {
        metric(
            &metrics,
            &format!(r#"hotspan_receiver_bad_requests{{receiver="{receiver}",transport="http"}}"#),
        )
        .unwrap_or(0.0)
    };
    ensure!(
        bad("otlp/strict") == 1.0 && bad("otlp/lax") == 0.0,
        "bad requests: strict {}, lax {}",
        bad("otlp/strict"),
        bad("otlp/lax")
    );
    Ok(())
}

/// With a pipeline that cannot deliver (no queue, a backend that refuses connections, retries
/// for a minute), the client hears 503 at `write_timeout`, not at the receivers' usual 5 s.
#[test]
fn write_timeout_bounds_the_wait_for_the_pipeline() -> Result<()> {
    let hotspan = Hotspan::start(
        r#"
receivers:
  otlp/strict:
    protocols:
      http: {endpoint: "127.0.0.1:{port:strict}", write_timeout: 1s}
  otlp/lax:
    protocols:
      http: {endpoint: "127.0.0.1:{port:lax}"}
exporters:
  otlphttp:
    endpoint: "http://127.0.0.1:{port:nobody}"
    sending_queue: {enabled: false}
    retry_on_failure: {initial_interval: 100ms, max_elapsed_time: 60s}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp/strict, otlp/lax], exporters: [otlphttp]}
"#,
    )?;
    let export = |port: u16| -> Result<(Duration, u16)> {
        let start = Instant::now();
        let answer = post(
            &format!("http://127.0.0.1:{port}/v1/traces"),
            "application/json",
            None,
            json_spans("timeouts", 0, 2).into_bytes(),
        )?;
        Ok((start.elapsed(), answer.status))
    };
    let (strict_took, strict_status) = export(hotspan.port("strict"))?;
    let (lax_took, lax_status) = export(hotspan.port("lax"))?;
    ensure!(
        strict_status == 503 && lax_status == 503,
        "statuses {strict_status} and {lax_status}\n{}",
        hotspan.log()
    );
    ensure!(
        strict_took < Duration::from_secs(4) && lax_took >= Duration::from_millis(4500),
        "write_timeout 1s answered after {strict_took:?}; the default after {lax_took:?}"
    );
    Ok(())
}
