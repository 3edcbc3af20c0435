//! TLS, mTLS and bearer tokens, end to end: certificates made here with rcgen, hotspan's
//! receivers driven by clients that are not hotspan's own (the OpenTelemetry SDK over tonic,
//! tonic, bare hyper over tokio-rustls), and hotspans chained through their exporters.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::Bytes;
use hotspan::grpc::RawCodec;
use hotspan_proto::{Encoding, TracesBatch};
use hotspan_tests::{json_span_id, json_spans, metric, post, scrape, wait_for, wait_for_spans, Hotspan};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rcgen::ExtendedKeyUsagePurpose;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

mod common;
use common::pki::{make_ca, make_leaf};

/// Certificates for one test, as PEM files in their own directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: String,
    client_cert: String,
    client_key: String,
    rogue_cert: String,
    rogue_key: String,
}

impl Pki {
    /// A CA; a server certificate it signed for `localhost` only (so clients dialling
    /// 127.0.0.1 must name it); a client certificate it signed; and a client certificate from
    /// an unrelated CA.
    fn new() -> Result<Pki> {
        let dir = tempfile::tempdir()?;
        let (ca_pem, ca) = make_ca("hotspan test CA")?;
        let (_, rogue_ca) = make_ca("rogue CA")?;
        let (server_cert, server_key) = make_leaf(&ca, "localhost", ExtendedKeyUsagePurpose::ServerAuth)?;
        let (client_cert, client_key) = make_leaf(&ca, "client", ExtendedKeyUsagePurpose::ClientAuth)?;
        let (rogue_cert, rogue_key) = make_leaf(&rogue_ca, "client", ExtendedKeyUsagePurpose::ClientAuth)?;
        let pki = Pki {
            dir,
            ca: ca_pem,
            client_cert,
            client_key,
            rogue_cert,
            rogue_key,
        };
        for (name, pem) in [
            ("ca.pem", &pki.ca),
            ("server.pem", &server_cert),
            ("server.key", &server_key),
            ("client.pem", &pki.client_cert),
            ("client.key", &pki.client_key),
        ] {
            std::fs::write(pki.path(name), pem)?;
        }
        Ok(pki)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces `@CA@`, `@SERVER_CERT@`, `@SERVER_KEY@`, `@CLIENT_CERT@`, `@CLIENT_KEY@` and
    /// `@PKI@` (the directory) in a config.
    fn fill(&self, config: &str) -> String {
        let p = |n: &str| self.path(n).display().to_string();
        config
            .replace("@CA@", &p("ca.pem"))
            .replace("@SERVER_CERT@", &p("server.pem"))
            .replace("@SERVER_KEY@", &p("server.key"))
            .replace("@CLIENT_CERT@", &p("client.pem"))
            .replace("@CLIENT_KEY@", &p("client.key"))
            .replace("@PKI@", &self.dir.path().display().to_string())
    }

    /// A rustls client trusting the test CA, optionally presenting a certificate.
    fn client(&self, identity: Option<(&str, &str)>) -> Result<Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.ca.as_bytes())?)?;
        let builder =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder.with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes())?],
                PrivateKeyDer::from_pem_slice(key.as_bytes())?,
            )?,
        };
        Ok(Arc::new(config))
    }

    /// tonic's TLS settings trusting the test CA, optionally presenting a certificate.
    fn tonic(&self, identity: Option<(&str, &str)>) -> tonic::transport::ClientTlsConfig {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca))
            .domain_name("localhost");
        match identity {
            None => tls,
            Some((cert, key)) => tls.identity(tonic::transport::Identity::from_pem(cert, key)),
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// An HTTP/1.1 POST over TLS with a bare hyper client, verifying the server as `localhost`.
async fn https_post(
    port: u16,
    path: &str,
    tls: Arc<rustls::ClientConfig>,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<(u16, String)> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut request = http::Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = sender
        .send_request(request.body(Full::new(Bytes::from(body)))?)
        .await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// An OTLP/gRPC trace export with tonic: over TLS when given its settings, with an
/// `authorization` header when given a token. Connection failures come back as statuses.
async fn grpc_export(
    port: u16,
    tls: Option<tonic::transport::ClientTlsConfig>,
    authorization: Option<&str>,
    body: Vec<u8>,
) -> Result<Result<(), tonic::Status>> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://127.0.0.1:{port}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls)?;
    }
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => return Ok(Err(tonic::Status::unavailable(format!("connect: {e:?}")))),
    };
    let mut client = tonic::client::Grpc::new(channel);
    if let Err(e) = client.ready().await {
        return Ok(Err(tonic::Status::unavailable(format!("ready: {e:?}"))));
    }
    let mut request = tonic::Request::new(Bytes::from(body));
    if let Some(value) = authorization {
        request.metadata_mut().insert("authorization", value.parse()?);
    }
    let path =
        http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export");
    Ok(client
        .unary::<Bytes, Bytes, _>(request, path, RawCodec)
        .await
        .map(|_| ()))
}

/// `n` spans from `json_spans`, as an OTLP protobuf export request.
fn proto_spans(first_id: u64, n: u64) -> Result<Vec<u8>> {
    Ok(
        TracesBatch::decode(json_spans("tls", first_id, n).as_bytes(), Encoding::Json)?
            .encode(Encoding::Protobuf),
    )
}

/// Fails unless every `json_spans` id in `ids` is in the file, within the deadline.
fn expect_spans(path: &Path, ids: impl IntoIterator<Item = u64> + Clone) -> Result<()> {
    let n = ids.clone().into_iter().count();
    let found = wait_for_spans(path, n, Duration::from_secs(15))?;
    for id in ids {
        ensure!(found.contains_key(&json_span_id(id)), "span {id} missing");
    }
    Ok(())
}

const TLS_RECEIVER: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "127.0.0.1:{port:grpc}"
        tls: {cert_file: "@SERVER_CERT@", key_file: "@SERVER_KEY@" @CLIENT_CA@}
      http:
        endpoint: "127.0.0.1:{port:http}"
        tls: {cert_file: "@SERVER_CERT@", key_file: "@SERVER_KEY@" @CLIENT_CA@}
exporters:
  file: {path: "{dir}/out.jsonl", flush_interval: 50ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], exporters: [file]}
"#;

fn tls_receiver(pki: &Pki, mtls: bool) -> Result<Hotspan> {
    let client_ca = if mtls { r#", client_ca_file: "@CA@""# } else { "" };
    Hotspan::start(&pki.fill(&TLS_RECEIVER.replace("@CLIENT_CA@", client_ca)))
}

#[test]
fn otlp_http_over_tls_delivers_and_survives_bad_handshakes() -> Result<()> {
    let pki = Pki::new()?;
    let hotspan = tls_receiver(&pki, false)?;
    let port = hotspan.port("http");
    // Plain HTTP to a TLS port is a failed handshake, not a request.
    let plain = post(
        &format!("http://127.0.0.1:{port}/v1/traces"),
        "application/json",
        None,
        json_spans("tls", 100, 1).into_bytes(),
    );
    ensure!(plain.is_err(), "plaintext was served: {plain:?}");
    let rt = runtime()?;
    rt.block_on(async {
        // Clients that never finish a handshake, or send garbage, hold up nobody.
        let _stalled = TcpStream::connect(("127.0.0.1", port)).await?;
        let mut garbage = TcpStream::connect(("127.0.0.1", port)).await?;
        garbage.write_all(b"\x16\x03\x01\x00\x05hello, not TLS").await?;
        // A client that does not trust the server's CA is refused by its own side.
        let untrusting = Pki::new()?;
        ensure!(
            https_post(
                port,
                "/v1/traces",
                untrusting.client(None)?,
                &[],
                json_spans("tls", 100, 1).into_bytes()
            )
            .await
            .is_err(),
            "a client trusting another CA completed a handshake"
        );
        let (status, body) = https_post(
            port,
            "/v1/traces",
            pki.client(None)?,
            &[],
            json_spans("tls", 0, 5).into_bytes(),
        )
        .await?;
        ensure!(status == 200, "{status}: {body}");
        Ok(())
    })?;
    expect_spans(&hotspan.path("out.jsonl"), 0..5)
}

/// The OpenTelemetry SDK's own gRPC exporter, over TLS, trusting the test CA.
#[test]
fn sdk_over_grpc_tls_delivers_spans() -> Result<()> {
    use opentelemetry::trace::{Tracer, TracerProvider as _};
    use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};

    let pki = Pki::new()?;
    let hotspan = tls_receiver(&pki, false)?;
    let endpoint = format!("https://127.0.0.1:{}", hotspan.port("grpc"));
    let tls = pki.tonic(None);
    let sent = std::thread::spawn(move || -> Result<Vec<Vec<u8>>> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let _guard = rt.enter();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_tls_config(tls)
            .build()?;
        let recorder = hotspan_tests::sdk::Recorder::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(recorder.clone())
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer("tls-test");
        for i in 0..10 {
            tracer.in_span(format!("op {i}"), |_| {});
        }
        provider.force_flush()?;
        provider.shutdown()?;
        Ok(recorder
            .spans()
            .iter()
            .map(|s| s.span_context.span_id().to_bytes().to_vec())
            .collect())
    })
    .join()
    .map_err(|_| anyhow!("SDK thread panicked"))??;
    ensure!(sent.len() == 10);
    let found = wait_for_spans(&hotspan.path("out.jsonl"), sent.len(), Duration::from_secs(15))?;
    for id in &sent {
        ensure!(found.contains_key(id), "span {} missing", hotspan_tests::hex(id));
    }
    Ok(())
}

#[test]
fn mtls_admits_only_clients_signed_by_the_ca() -> Result<()> {
    let pki = Pki::new()?;
    let hotspan = tls_receiver(&pki, true)?;
    let (http_port, grpc_port) = (hotspan.port("http"), hotspan.port("grpc"));
    let good = Some((pki.client_cert.as_str(), pki.client_key.as_str()));
    let rogue = Some((pki.rogue_cert.as_str(), pki.rogue_key.as_str()));
    let rt = runtime()?;
    rt.block_on(async {
        for (who, identity) in [("no certificate", None), ("another CA's certificate", rogue)] {
            let http = https_post(
                http_port,
                "/v1/traces",
                pki.client(identity)?,
                &[],
                json_spans("tls", 100, 1).into_bytes(),
            )
            .await;
            ensure!(http.is_err(), "HTTP with {who} was served: {http:?}");
            let grpc = grpc_export(grpc_port, Some(pki.tonic(identity)), None, proto_spans(100, 1)?).await?;
            ensure!(grpc.is_err(), "gRPC with {who} was served");
        }
        let (status, body) = https_post(
            http_port,
            "/v1/traces",
            pki.client(good)?,
            &[],
            json_spans("tls", 0, 3).into_bytes(),
        )
        .await?;
        ensure!(status == 200, "{status}: {body}");
        grpc_export(grpc_port, Some(pki.tonic(good)), None, proto_spans(3, 3)?)
            .await?
            .map_err(|s| anyhow!("gRPC with the right certificate refused: {s:?}"))?;
        Ok(())
    })?;
    expect_spans(&hotspan.path("out.jsonl"), 0..6)?;
    // Nothing from the refused clients got in.
    std::thread::sleep(Duration::from_millis(200));
    let found = hotspan_tests::read_spans(&hotspan.path("out.jsonl"))?;
    ensure!(found.len() == 6, "{} spans", found.len());
    Ok(())
}

/// hotspan -> hotspan over TLS: otlp_grpc with a client certificate into an mTLS listener
/// (endpoint without scheme: TLS because `insecure` is false), and otlphttp to
/// `https://127.0.0.1` with `server_name_override` naming the certificate's host.
#[test]
fn chain_over_tls_with_otlp_grpc_and_otlphttp() -> Result<()> {
    let pki = Pki::new()?;
    let downstream = tls_receiver(&pki, true)?;
    let upstream_config = pki.fill(
        &r#"
receivers:
  otlp/to_grpc: {protocols: {http: {endpoint: "127.0.0.1:{port:in_grpc}"}}}
  otlp/to_http: {protocols: {http: {endpoint: "127.0.0.1:{port:in_http}"}}}
exporters:
  otlp:
    endpoint: "localhost:@GRPC@"
    tls: {ca_file: "@CA@", cert_file: "@CLIENT_CERT@", key_file: "@CLIENT_KEY@"}
    retry_on_failure: {initial_interval: 50ms}
  otlphttp:
    endpoint: "https://127.0.0.1:@HTTP@"
    tls: {ca_file: "@CA@", cert_file: "@CLIENT_CERT@", key_file: "@CLIENT_KEY@", server_name_override: localhost}
    retry_on_failure: {initial_interval: 50ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces/grpc: {receivers: [otlp/to_grpc], exporters: [otlp]}
    traces/http: {receivers: [otlp/to_http], exporters: [otlphttp]}
"#
        .replace("@GRPC@", &downstream.port("grpc").to_string())
        .replace("@HTTP@", &downstream.port("http").to_string()),
    );
    let upstream = Hotspan::start(&upstream_config)?;
    for (port, first) in [(upstream.port("in_grpc"), 0), (upstream.port("in_http"), 10)] {
        let answer = post(
            &format!("http://127.0.0.1:{port}/v1/traces"),
            "application/json",
            None,
            json_spans("tls", first, 10).into_bytes(),
        )?;
        ensure!(answer.status == 200, "{}", answer.body);
    }
    expect_spans(&downstream.path("out.jsonl"), 0..20)
        .with_context(|| format!("--- upstream log ---\n{}", upstream.log()))
}

#[test]
fn missing_certificate_file_fails_start_naming_it() -> Result<()> {
    let pki = Pki::new()?;
    std::fs::remove_file(pki.path("server.key"))?;
    let Err(e) = tls_receiver(&pki, false) else {
        bail!("hotspan started without its key file");
    };
    let message = format!("{e:#}");
    ensure!(
        message.contains(&pki.path("server.key").display().to_string()),
        "{message}"
    );
    Ok(())
}

const GUARDED: &str = r#"
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:{port:grpc}", auth: {authenticator: bearertokenauth}}
      http:
        endpoint: "127.0.0.1:{port:http}"
        auth: {authenticator: bearertokenauth}
        tls: {cert_file: "@SERVER_CERT@", key_file: "@SERVER_KEY@"}
  pprof: {endpoint: "127.0.0.1:{port:pprof}", auth: {authenticator: bearertokenauth}}
exporters:
  file: {path: "{dir}/out.jsonl", flush_interval: 50ms}
  file/profiles: {path: "{dir}/profiles.jsonl"}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
  bearertokenauth: {filename: "@PKI@/token"}
service:
  extensions: [health_check, bearertokenauth]
  telemetry: {metrics: {address: "127.0.0.1:{port:metrics}"}}
  pipelines:
    traces: {receivers: [otlp], exporters: [file]}
    profiles: {receivers: [pprof], exporters: [file/profiles]}
"#;

/// Receivers that require a token (from a file, re-read when rotated) refuse callers without
/// it, over gRPC and HTTP(S), count them, and admit exporters that send it.
#[test]
fn bearer_token_guards_receivers_and_exporters_send_it() -> Result<()> {
    let pki = Pki::new()?;
    std::fs::write(pki.path("token"), "first-secret\n")?;
    let guarded = Hotspan::start(&pki.fill(GUARDED))?;
    let (http_port, grpc_port, pprof_port) =
        (guarded.port("http"), guarded.port("grpc"), guarded.port("pprof"));
    let rt = runtime()?;
    rt.block_on(async {
        let tls = pki.client(None)?;
        for (who, header) in [
            ("no token", None),
            ("a wrong token", Some("Bearer second-secret")),
            ("the token without its scheme", Some("first-secret")),
        ] {
            let headers: Vec<(&str, &str)> = header.map(|h| ("authorization", h)).into_iter().collect();
            let (status, _) = https_post(
                http_port,
                "/v1/traces",
                tls.clone(),
                &headers,
                json_spans("tls", 100, 1).into_bytes(),
            )
            .await?;
            ensure!(status == 401, "HTTP with {who}: {status}");
            let grpc = grpc_export(grpc_port, None, header, proto_spans(100, 1)?).await?;
            ensure!(
                grpc.as_ref()
                    .is_err_and(|s| s.code() == tonic::Code::Unauthenticated),
                "gRPC with {who}: {grpc:?}"
            );
        }
        let (status, body) = https_post(
            http_port,
            "/v1/traces",
            tls.clone(),
            &[("authorization", "Bearer first-secret")],
            json_spans("tls", 0, 2).into_bytes(),
        )
        .await?;
        ensure!(status == 200, "{status}: {body}");
        grpc_export(grpc_port, None, Some("Bearer first-secret"), proto_spans(2, 2)?)
            .await?
            .map_err(|s| anyhow!("gRPC with the token refused: {s:?}"))?;
        Ok(())
    })?;
    // pprof: refused without the token; with it, the (empty) body gets as far as the decoder.
    let url = format!("http://127.0.0.1:{pprof_port}/v1/pprof");
    let answer = post(&url, "application/octet-stream", None, b"not pprof".to_vec())?;
    ensure!(answer.status == 401, "pprof without a token: {}", answer.status);
    let answer = reqwest::blocking::Client::new()
        .post(&url)
        .header("authorization", "Bearer first-secret")
        .body(b"not pprof".to_vec())
        .send()?;
    ensure!(
        answer.status() == 400,
        "pprof with the token: {}",
        answer.status()
    );

    let metrics = scrape(guarded.port("metrics"))?;
    for (transport, refused) in [("grpc", 3.0), ("http", 4.0)] {
        let series = format!(
            r#"hotspan_receiver_unauthenticated_requests{{receiver="otlp",transport="{transport}"}}"#
        );
        let pprof = format!(
            r#"hotspan_receiver_unauthenticated_requests{{receiver="pprof",transport="{transport}"}}"#
        );
        let got = metric(&metrics, &series).unwrap_or(0.0) + metric(&metrics, &pprof).unwrap_or(0.0);
        ensure!(got == refused, "{transport}: {got} refusals counted\n{metrics}");
    }

    // Exporters send the token: otlp (gRPC) and otlphttp (over TLS, not verifying the
    // server's certificate) through an upstream.
    let upstream = Hotspan::start(
        &pki.fill(
            &r#"
receivers:
  otlp: {protocols: {http: {endpoint: "127.0.0.1:{port:in}"}}}
exporters:
  otlp: {endpoint: "127.0.0.1:@GRPC@", tls: {insecure: true}, auth: {authenticator: bearertokenauth/out}}
  otlphttp:
    endpoint: "https://127.0.0.1:@HTTP@"
    tls: {insecure_skip_verify: true}
    auth: {authenticator: bearertokenauth/out}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
  bearertokenauth/out: {token: "first-secret"}
service:
  extensions: [health_check, bearertokenauth/out]
  pipelines:
    traces: {receivers: [otlp], exporters: [otlp, otlphttp]}
"#
            .replace("@GRPC@", &grpc_port.to_string())
            .replace("@HTTP@", &http_port.to_string()),
        ),
    )?;
    let answer = post(
        &format!("http://127.0.0.1:{}/v1/traces", upstream.port("in")),
        "application/json",
        None,
        json_spans("tls", 10, 3).into_bytes(),
    )?;
    ensure!(answer.status == 200, "{}", answer.body);
    // Each of the two exporters delivers the three spans: duplicates by id, so count lines.
    wait_for(Duration::from_secs(15), "both exporters' spans", || {
        let text = std::fs::read_to_string(guarded.path("out.jsonl")).ok()?;
        (text.matches("\"spanId\"").count() >= 4 + 6).then_some(())
    })
    .with_context(|| format!("--- upstream log ---\n{}", upstream.log()))?;

    // Rotation: a new token in the file takes over at once; the old one stops working.
    std::fs::write(pki.path("token"), "rotated-secret-2\n")?;
    rt.block_on(async {
        let old = grpc_export(grpc_port, None, Some("Bearer first-secret"), proto_spans(200, 1)?).await?;
        ensure!(old.is_err(), "the old token still works after rotation");
        grpc_export(
            grpc_port,
            None,
            Some("Bearer rotated-secret-2"),
            proto_spans(20, 1)?,
        )
        .await?
        .map_err(|s| anyhow!("the rotated token was refused: {s:?}"))?;
        Ok(())
    })
}
