//! A gzip body of several members is one body, as Go's gzip reader (so otelcol's receivers)
//! reads it: over OTLP/HTTP and OTLP/gRPC, every member's spans arrive. Bytes after a member
//! that are not another member refuse the request whole, counted as a bad request. (flate2's `GzDecoder`, which tonic
//! and this receiver used, stopped at the first member and ignored the rest: the client was
//! told "ok" for spans never read.)

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hotspan_proto::synthetic::{Rng, Shape, Template};
use hotspan_proto::{Encoding, TracesBatch};
use hotspan_tests::{grpc_export_on, gzip, metric, post, read_spans, scrape, wait_for_spans, Hotspan};
use hyper_util::rt::{TokioExecutor, TokioIo};

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:{port:grpc}"}
      http: {endpoint: "127.0.0.1:{port:http}"}
exporters:
  file: {path: "{dir}/out.jsonl", flush_interval: 50ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], exporters: [file]}
"#;

const SPANS: usize = 64;

/// An export request of 64 realistic spans, ids fresh for each seed, and those ids.
fn request(seed: u64) -> Result<(Vec<u8>, BTreeSet<Vec<u8>>)> {
    let t = Template::new(Shape::Realistic, 0, SPANS, seed)?;
    let body = t.fill(&mut Rng::new(seed), 1, 1_700_000_000_000_000_000).0;
    let ids = TracesBatch::decode(&body, Encoding::Protobuf)?
        .resource_spans()
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.span_id.clone())
        .collect();
    Ok((body, ids))
}

/// Two requests, each gzipped on its own, one after the other: a body of two members.
fn two_members(seeds: [u64; 2]) -> Result<(Vec<u8>, BTreeSet<Vec<u8>>)> {
    let (a, mut ids) = request(seeds[0])?;
    let (b, more) = request(seeds[1])?;
    ids.extend(more);
    Ok(([gzip(&a), gzip(&b)].concat(), ids))
}

/// One OTLP/gRPC trace export whose message is `gzipped` as given (compressed flag set,
/// `grpc-encoding: gzip`): tonic's client would compress it again. Returns `grpc-status`.
fn grpc_gzip_export(port: u16, gzipped: Vec<u8>) -> Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        let answer = tokio::time::timeout(
            Duration::from_secs(20),
            grpc_export_on(&mut sender, port, &gzipped, true),
        )
        .await
        .context("no answer in 20 s")??;
        Ok(answer)
    })
}

#[test]
fn every_member_of_a_gzip_body_is_read_and_trailing_bytes_are_refused() -> Result<()> {
    let h = Hotspan::start(CONFIG)?;
    let url = format!("http://127.0.0.1:{}/v1/traces", h.port("http"));
    let out = h.path("out.jsonl");

    // A member followed by bytes that are not one: refused, none of its spans kept.
    let (first, refused) = request(1)?;
    let junk = [gzip(&first), b"not a gzip member".to_vec()].concat();
    let answer = post(&url, "application/x-protobuf", Some("gzip"), junk.clone())?;
    ensure!(
        answer.status == 400,
        "HTTP, bytes after a member: {} {}",
        answer.status,
        answer.body
    );
    let status = grpc_gzip_export(h.port("grpc"), junk)?;
    ensure!(
        status == "3",
        "gRPC, bytes after a member: grpc-status {status}, not 3 (InvalidArgument)"
    );

    let (http_body, mut expected) = two_members([2, 3])?;
    let answer = post(&url, "application/x-protobuf", Some("gzip"), http_body)?;
    ensure!(
        answer.status == 200,
        "HTTP, two members: {} {}",
        answer.status,
        answer.body
    );
    let (grpc_body, grpc_ids) = two_members([4, 5])?;
    let status = grpc_gzip_export(h.port("grpc"), grpc_body)?;
    ensure!(status == "0", "gRPC, two members: grpc-status {status}");
    expected.extend(grpc_ids);
    ensure!(expected.len() == 4 * SPANS, "the requests' ids overlap");

    let got = wait_for_spans(&out, expected.len(), Duration::from_secs(20))
        .with_context(|| format!("every member's spans; log:\n{}", h.log()))?;
    let got: BTreeSet<Vec<u8>> = got.into_keys().collect();
    ensure!(
        got == expected,
        "{} spans written, {} expected",
        got.len(),
        expected.len()
    );
    ensure!(
        read_spans(&out)?.keys().all(|id| !refused.contains(id)),
        "spans of a refused request were written"
    );
    let metrics = scrape(h.port("metrics"))?;
    for transport in ["http", "grpc"] {
        let series = format!(r#"hotspan_receiver_bad_requests{{receiver="otlp",transport="{transport}"}}"#);
        ensure!(
            metric(&metrics, &series) == Some(1.0),
            "{series} is not 1:\n{metrics}"
        );
    }
    Ok(())
}
