//! Load for benchmarks: sends realistic OTLP traces (and optionally OTLP profiles whose
//! samples link to the spans sent) over gRPC or HTTP, and runs a counting sink.
//!
//! loadgen send --endpoint 127.0.0.1:4317 [--protocol grpc|http] [--concurrency 8]
//!              [--batch 512] [--duration 10s] [--gzip] [--profiles-ratio 0.1]
//!              [--payload realistic|uniform] [--rate SPANS_PER_SEC]
//! loadgen sink --listen 127.0.0.1:24317 [--duration 120s]
//! loadgen describe [--payload realistic|uniform] [--batch 512]
//!
//! Every loop is bounded by --duration. `send` prints one JSON line with what was accepted and
//! request latency percentiles; `sink` prints the spans it has received once a second;
//! `describe` the payload's bytes per span, raw and gzipped, and what gzip level 6 costs a
//! span. The payloads are `hotspan_proto::synthetic`'s: realistic (the default) or uniform
//! (every value alike).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hotspan_proto::synthetic::{linked_profiles, service_name, Rng, Shape, Template};
use hotspan_proto::{Encoding, ProfilesBatch};
use hotspan_tests::wire::count_spans;
use tokio::net::TcpListener;

fn arg<'a>(args: &'a [String], key: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == key)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn duration(s: &str) -> Result<Duration> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().context("duration number")?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        other => bail!("unknown duration unit {other:?}"),
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args.get(1).map(String::as_str) {
        Some("send") => rt.block_on(send(&args)),
        Some("sink") => rt.block_on(sink(&args)),
        Some("describe") => describe(&args),
        _ => bail!("usage: loadgen send --endpoint HOST:PORT [...] | loadgen sink --listen HOST:PORT"),
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A worker's templates: realistic load cycles through several, so route mixes, failures
/// and counts vary between requests too.
fn templates(shape: Shape, worker: usize, batch: usize) -> Result<Vec<Template>> {
    let n = if shape == Shape::Realistic { 4 } else { 1 };
    (0..n)
        .map(|k| Template::new(shape, worker, batch, (worker * 31 + k) as u64).map_err(anyhow::Error::from))
        .collect()
}

/// Bytes per span of a payload, as sent and compressed as exporters compress it: one JSON
/// line, for the README and for checking a payload change.
fn describe(args: &[String]) -> Result<()> {
    let shape: Shape = arg(args, "--payload")
        .unwrap_or("realistic")
        .parse()
        .map_err(anyhow::Error::msg)?;
    let batch: usize = arg(args, "--batch").unwrap_or("512").parse()?;
    let mut rng = Rng::new(11);
    let (mut spans, mut raw, mut gz1, mut gz6) = (0usize, 0usize, 0usize, 0usize);
    let mut bodies = Vec::new();
    for w in 0..8 {
        for t in templates(shape, w, batch)? {
            let (body, _) = t.fill(&mut rng, 1, now_ns());
            spans += t.spans();
            raw += body.len();
            gz1 += gzip_len(&body, 1)?;
            gz6 += gzip_len(&body, 6)?;
            bodies.push(body);
        }
    }
    let per = |n: usize| n as f64 / spans as f64;
    println!(
        "{{\"payload\":\"{shape:?}\",\"spans\":{spans},\"bytes_per_span\":{:.1},\"gzip1_bytes_per_span\":{:.1},\"gzip6_bytes_per_span\":{:.1},\"gzip6_us_per_span\":{:.3}}}",
        per(raw),
        per(gz1),
        per(gz6),
        gzip6_us_per_span(&bodies, spans)?
    );
    Ok(())
}

/// What gzip level 6 alone costs a span, with the exporters' libdeflate on export-sized
/// batches (the requests concatenated, 8192 spans of 512-span requests): the floor under any
/// forwarding collector's CPU a span at that level. Best of 20 passes, as noise only adds.
fn gzip6_us_per_span(bodies: &[Vec<u8>], spans: usize) -> Result<f64> {
    let per_batch = (8192 / (spans / bodies.len().max(1)).max(1)).max(1);
    let batches: Vec<Vec<u8>> = bodies.chunks(per_batch).map(|c| c.concat()).collect();
    let mut best = f64::INFINITY;
    for _ in 0..20 {
        let start = Instant::now();
        for b in &batches {
            hotspan_proto::compression::gzip(6, b)?;
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best * 1e6 / spans as f64)
}

fn gzip_len(body: &[u8], level: u32) -> Result<usize> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    enc.write_all(body)?;
    Ok(enc.finish()?.len())
}

struct Stats {
    accepted: AtomicU64,
    refused: AtomicU64,
    samples: AtomicU64,
}

async fn send(args: &[String]) -> Result<()> {
    let endpoint = arg(args, "--endpoint")
        .context("--endpoint HOST:PORT")?
        .to_string();
    let protocol = arg(args, "--protocol").unwrap_or("grpc").to_string();
    let concurrency: usize = arg(args, "--concurrency").unwrap_or("8").parse()?;
    let batch: usize = arg(args, "--batch").unwrap_or("512").parse()?;
    let run_for = duration(arg(args, "--duration").unwrap_or("10s"))?;
    let gzip = args.iter().any(|a| a == "--gzip");
    let ratio: f64 = arg(args, "--profiles-ratio").unwrap_or("0").parse()?;
    let shape: Shape = arg(args, "--payload")
        .unwrap_or("realistic")
        .parse()
        .map_err(anyhow::Error::msg)?;
    // --rate SPANS_PER_SEC: paced, each worker sending its share on a fixed tick (a sidecar's
    // steady load); without it, as fast as accepted.
    let tick = match arg(args, "--rate") {
        Some(r) => {
            let rate: f64 = r.parse().context("--rate SPANS_PER_SEC")?;
            if rate <= 0.0 {
                bail!("--rate must be positive");
            }
            Some(Duration::from_secs_f64(batch as f64 * concurrency as f64 / rate))
        }
        None => None,
    };
    let stats = Arc::new(Stats {
        accepted: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        samples: AtomicU64::new(0),
    });
    let next = Arc::new(AtomicU64::new(std::process::id() as u64 * 1_000_000_000));
    let started = Instant::now();
    let deadline = started + run_for;
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (endpoint, protocol, stats, next) =
            (endpoint.clone(), protocol.clone(), stats.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut client = Client::new(&endpoint, &protocol, gzip).await?;
            // Profiles go on their own connection and task, as a profiler's exporter would,
            // so their round trips do not stall the span load; the bounded channel keeps
            // them from falling behind the spans they link to.
            let (profiles_tx, mut profiles_rx) = tokio::sync::mpsc::channel::<ProfilesBatch>(2);
            let mut profile_client = Client::new(&endpoint, &protocol, gzip).await?;
            let templates = templates(shape, w, batch)?;
            let mut rng = Rng::new(0x5eed_0000 + w as u64 * 7919 + std::process::id() as u64);
            let service = service_name(shape, w);
            let mut pace = tick.map(|t| {
                let mut i = tokio::time::interval(t);
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                i
            });
            let profile_stats = stats.clone();
            let profile_sender = tokio::spawn(async move {
                while let Some(p) = profiles_rx.recv().await {
                    let n = p.sample_count() as u64;
                    if profile_client
                        .export(hotspan_config::Signal::Profiles, p.encode(Encoding::Protobuf))
                        .await
                    {
                        profile_stats.samples.fetch_add(n, Ordering::Relaxed);
                    }
                }
            });
            for round in 0.. {
                if Instant::now() >= deadline {
                    break;
                }
                if let Some(p) = pace.as_mut() {
                    p.tick().await;
                }
                let template = &templates[round % templates.len()];
                let seq = next.fetch_add(batch as u64, Ordering::Relaxed) + 1;
                let (body, sent) = template.fill(&mut rng, seq, now_ns());
                let samples = (batch as f64 * ratio).round() as usize;
                let profiles = (samples > 0)
                    .then(|| ProfilesBatch::from_request(linked_profiles(service, &sent, samples, now_ns())));
                let t0 = Instant::now();
                let ok = client.export(hotspan_config::Signal::Traces, body).await;
                latencies.push(t0.elapsed());
                if ok {
                    stats.accepted.fetch_add(batch as u64, Ordering::Relaxed);
                } else {
                    stats.refused.fetch_add(batch as u64, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                if let Some(p) = profiles {
                    if profiles_tx.send(p).await.is_err() {
                        break;
                    }
                }
            }
            drop(profiles_tx);
            profile_sender.await?;
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let accepted = stats.accepted.load(Ordering::Relaxed);
    println!(
        "{{\"accepted_spans\":{accepted},\"refused_spans\":{},\"profile_samples\":{},\"seconds\":{seconds:.3},\"spans_per_sec\":{:.0},\"latency_ms\":{{\"p50\":{:.2},\"p99\":{:.2}}}}}",
        stats.refused.load(Ordering::Relaxed),
        stats.samples.load(Ordering::Relaxed),
        accepted as f64 / seconds,
        pct(0.5),
        pct(0.99)
    );
    Ok(())
}

enum Client {
    Grpc(tonic::client::Grpc<tonic::transport::Channel>),
    Http {
        client: reqwest::Client,
        base: String,
        gzip: bool,
    },
}

impl Client {
    async fn new(endpoint: &str, protocol: &str, gzip: bool) -> Result<Client> {
        Ok(match protocol {
            "grpc" => {
                let channel = tonic::transport::Channel::from_shared(format!("http://{endpoint}"))?
                    .tcp_nodelay(true)
                    .connect()
                    .await?;
                let mut grpc = tonic::client::Grpc::new(channel);
                if gzip {
                    grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
                }
                Client::Grpc(grpc)
            }
            "http" => Client::Http {
                client: reqwest::Client::builder().tcp_nodelay(true).build()?,
                base: format!("http://{endpoint}"),
                gzip,
            },
            other => bail!("--protocol {other}: grpc or http"),
        })
    }

    /// One export; true when accepted.
    async fn export(&mut self, signal: hotspan_config::Signal, body: Vec<u8>) -> bool {
        match self {
            Client::Grpc(grpc) => {
                if grpc.ready().await.is_err() {
                    return false;
                }
                let path = http::uri::PathAndQuery::from_static(hotspan::grpc::export_path(signal));
                grpc.unary::<Bytes, Bytes, _>(
                    tonic::Request::new(Bytes::from(body)),
                    path,
                    hotspan::grpc::RawCodec,
                )
                .await
                .is_ok()
            }
            Client::Http { client, base, gzip } => {
                let mut req = client
                    .post(format!("{base}{}", hotspan::grpc::http_path(signal)))
                    .header("content-type", "application/x-protobuf");
                let body = if *gzip {
                    req = req.header("content-encoding", "gzip");
                    hotspan_tests::gzip(&body)
                } else {
                    body
                };
                matches!(req.body(body).send().await, Ok(r) if r.status().is_success())
            }
        }
    }
}

/// A gRPC server that counts spans without decoding them and prints the totals each second:
/// spans, the requests that carried them and those requests' uncompressed bytes.
async fn sink(args: &[String]) -> Result<()> {
    let listen = arg(args, "--listen").context("--listen HOST:PORT")?;
    let run_for = duration(arg(args, "--duration").unwrap_or("120s"))?;
    let totals = Arc::new(Totals::default());
    let svc = Counting(totals.clone());
    let listener = TcpListener::bind(listen).await?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let routes = tonic::service::Routes::from(
        axum::Router::new().route_service("/opentelemetry.proto.collector.trace.v1.TraceService/Export", svc),
    );
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, tokio::time::sleep(run_for)),
    );
    let started = Instant::now();
    while started.elapsed() < run_for && !server.is_finished() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        println!(
            "{{\"spans\":{},\"requests\":{},\"bytes\":{}}}",
            totals.spans.load(Ordering::Relaxed),
            totals.requests.load(Ordering::Relaxed),
            totals.bytes.load(Ordering::Relaxed)
        );
        let _ = std::io::stdout().flush();
    }
    Ok(())
}

#[derive(Default)]
struct Totals {
    spans: AtomicU64,
    requests: AtomicU64,
    bytes: AtomicU64,
}

#[derive(Clone)]
struct Counting(Arc<Totals>);

impl tonic::codegen::Service<http::Request<axum::body::Body>> for Counting {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<axum::body::Body>) -> Self::Future {
        let counter = self.0.clone();
        Box::pin(async move {
            let mut accept = tonic::codec::EnabledCompressionEncodings::default();
            accept.enable(tonic::codec::CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(hotspan::grpc::RawCodec)
                .apply_compression_config(accept, Default::default())
                .apply_max_message_size_config(Some(64 * 1024 * 1024), None);
            Ok(grpc.unary(Count(counter), req).await)
        })
    }
}

struct Count(Arc<Totals>);

impl tonic::server::UnaryService<Bytes> for Count {
    type Response = Bytes;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<tonic::Response<Bytes>, tonic::Status>> + Send>,
    >;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let counter = self.0.clone();
        Box::pin(async move {
            let body = request.into_inner();
            let n = count_spans(&body).map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
            counter.spans.fetch_add(n as u64, Ordering::Relaxed);
            counter.requests.fetch_add(1, Ordering::Relaxed);
            counter.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            Ok(tonic::Response::new(Bytes::new()))
        })
    }
}
