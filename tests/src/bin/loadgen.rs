//! Load for benchmarks: sends realistic OTLP traces (and optionally OTLP profiles whose
//! samples link to the spans sent) over gRPC or HTTP, and runs a counting sink.
//!
//! loadgen send --endpoint 127.0.0.1:4317 [--protocol grpc|http] [--concurrency 8]
//!              [--batch 512] [--duration 10s] [--gzip] [--profiles-ratio 0.1]
//! loadgen sink --listen 127.0.0.1:24317 [--duration 120s]
//!
//! Every loop is bounded by --duration. `send` prints one JSON line with what was accepted and
//! request latency percentiles; `sink` prints the spans it has received once a second.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hotspan_proto::otlp::collector::profiles::v1development::ExportProfilesServiceRequest;
use hotspan_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use hotspan_proto::otlp::common::v1::{any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue};
use hotspan_proto::otlp::profiles::v1development::{
    Function, Line, Link, Location, Profile, ProfilesDictionary, ResourceProfiles, Sample, ScopeProfiles,
    Stack, ValueType,
};
use hotspan_proto::otlp::resource::v1::Resource;
use hotspan_proto::otlp::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use hotspan_proto::{Encoding, ProfilesBatch};
use hotspan_tests::wire::count_spans;
use prost::Message;
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
        _ => bail!("usage: loadgen send --endpoint HOST:PORT [...] | loadgen sink --listen HOST:PORT"),
    }
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A resource with 8 attributes, like an SDK in a Kubernetes pod.
fn resource(worker: usize) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", s("checkout")),
            kv("service.version", s("1.14.2")),
            kv("service.instance.id", s(&format!("checkout-7d9f-{worker}"))),
            kv("host.name", s("node-17.eu-west-1.compute.internal")),
            kv("telemetry.sdk.language", s("go")),
            kv("telemetry.sdk.name", s("opentelemetry")),
            kv("k8s.namespace.name", s("shop")),
            kv("process.pid", any_value::Value::IntValue(4242 + worker as i64)),
        ],
        ..Default::default()
    }
}

/// Marks the bytes a template overwrites on every send: unique per span and field, so each
/// is found in the encoding.
fn placeholder(i: usize, field: u8) -> [u8; 8] {
    let mut p = [0xa5, 0x5a, 0xc3, field, 0, 0, 0, 0];
    p[4..].copy_from_slice(&(i as u32).to_be_bytes());
    p
}

/// `n` spans in traces of 8 (a server root and 7 children), ~600 bytes each encoded: 10
/// attributes of mixed types and one or two events. Ids and times are placeholders that
/// [`Template::fill`] replaces.
fn spans(n: usize) -> Vec<Span> {
    // Events keep the time the template was made: a few seconds off at most.
    let made = now_ns();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let is_root = i % 8 == 0;
        let start = u64::from_le_bytes(placeholder(i, 4));
        let mut events = vec![span::Event {
            time_unix_nano: made + 1_000,
            name: "cache lookup".into(),
            attributes: vec![kv("cache.hit", any_value::Value::BoolValue(i % 3 == 0))],
            dropped_attributes_count: 0,
        }];
        if i % 2 == 0 {
            events.push(span::Event {
                time_unix_nano: made + 2_000,
                name: "retry".into(),
                attributes: vec![kv("attempt", any_value::Value::IntValue(2))],
                dropped_attributes_count: 0,
            });
        }
        out.push(Span {
            trace_id: [placeholder(i, 1), placeholder(i, 1)].concat(),
            span_id: placeholder(i, 2).to_vec(),
            parent_span_id: if is_root {
                Vec::new()
            } else {
                placeholder(i, 3).to_vec()
            },
            name: if is_root {
                "GET /api/checkout".into()
            } else {
                format!("SELECT orders.{}", i % 8)
            },
            kind: if is_root { 2 } else { 3 },
            start_time_unix_nano: start,
            end_time_unix_nano: u64::from_le_bytes(placeholder(i, 5)),
            attributes: vec![
                kv("http.request.method", s("GET")),
                kv("url.path", s("/api/checkout")),
                kv("http.response.status_code", any_value::Value::IntValue(200)),
                kv("db.system", s("postgresql")),
                kv(
                    "db.statement",
                    s("SELECT id, total FROM orders WHERE customer_id = $1"),
                ),
                kv("server.address", s("orders-db.shop.svc")),
                kv("server.port", any_value::Value::IntValue(5432)),
                kv("retry.enabled", any_value::Value::BoolValue(true)),
                kv("sample.rate", any_value::Value::DoubleValue(0.25)),
                kv(
                    "tags",
                    any_value::Value::ArrayValue(ArrayValue {
                        values: vec![
                            AnyValue { value: Some(s("eu")) },
                            AnyValue {
                                value: Some(s("web")),
                            },
                        ],
                    }),
                ),
            ],
            events,
            status: Some(Status {
                code: 1,
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    out
}

fn traces(worker: usize, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(worker)),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "loadgen".into(),
                    version: "1".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Where each span's ids and times sit in a template body.
struct Slots {
    trace: usize,
    span: usize,
    parent: Option<usize>,
    start: usize,
    end: usize,
}

/// One worker's request, encoded once: every send copies it and writes fresh ids and times
/// into their places, so the generator spends its core on sending, not on encoding.
struct Template {
    body: Vec<u8>,
    slots: Vec<Slots>,
}

impl Template {
    fn new(worker: usize, n: usize) -> Result<Template> {
        let body = traces(worker, spans(n)).encode_to_vec();
        let mut from = 0;
        let mut find = |needle: [u8; 8]| -> Result<usize> {
            let at = body[from..]
                .windows(8)
                .position(|w| w == needle)
                .context("placeholder missing from the template")?;
            from += at + 8;
            Ok(from - 8)
        };
        let mut slots = Vec::with_capacity(n);
        for i in 0..n {
            // prost writes fields in tag order: trace_id, span_id, parent, start, end.
            let trace = find(placeholder(i, 1))?;
            find(placeholder(i, 1))?;
            let span = find(placeholder(i, 2))?;
            let parent = if i % 8 == 0 {
                None
            } else {
                Some(find(placeholder(i, 3))?)
            };
            let start = find(placeholder(i, 4))?;
            let end = find(placeholder(i, 5))?;
            slots.push(Slots {
                trace,
                span,
                parent,
                start,
                end,
            });
        }
        Ok(Template { body, slots })
    }

    /// A body with new ids from `next` (so they never repeat) and times from now, and the
    /// (trace, span) ids it carries.
    fn fill(&self, next: &AtomicU64) -> (Vec<u8>, Vec<(u128, u64)>) {
        let mut body = self.body.clone();
        let now = now_ns();
        let first = next.fetch_add(self.slots.len() as u64, Ordering::Relaxed) + 1;
        let mut ids = Vec::with_capacity(self.slots.len());
        let (mut trace, mut root) = (0u128, 0u64);
        for (i, slot) in self.slots.iter().enumerate() {
            let id = first + i as u64;
            if i % 8 == 0 {
                root = id;
                trace = ((id as u128) << 64) | 0x5eed;
            }
            let start = now + (i % 8) as u64 * 1_000_000;
            body[slot.trace..slot.trace + 16].copy_from_slice(&trace.to_be_bytes());
            body[slot.span..slot.span + 8].copy_from_slice(&id.to_be_bytes());
            if let Some(p) = slot.parent {
                body[p..p + 8].copy_from_slice(&root.to_be_bytes());
            }
            body[slot.start..slot.start + 8].copy_from_slice(&start.to_le_bytes());
            body[slot.end..slot.end + 8].copy_from_slice(&(start + 800_000).to_le_bytes());
            ids.push((trace, id));
        }
        (body, ids)
    }
}

/// CPU samples linking to some of `spans`: pprof-shaped (samples/count and cpu/nanoseconds).
fn profiles(worker: usize, spans: &[(u128, u64)], count: usize) -> ProfilesBatch {
    let names = [
        "main.handle",
        "main.validateCart",
        "main.chargeCard",
        "crypto/sha256.block",
        "runtime.mallocgc",
    ];
    let mut d = ProfilesDictionary {
        string_table: vec![
            String::new(),
            "samples".into(),
            "count".into(),
            "cpu".into(),
            "nanoseconds".into(),
        ],
        function_table: vec![Function::default()],
        location_table: vec![Location::default()],
        stack_table: vec![Stack::default()],
        link_table: vec![Link::default()],
        attribute_table: vec![Default::default()],
        mapping_table: vec![Default::default()],
    };
    for (i, n) in names.iter().enumerate() {
        d.string_table.push((*n).into());
        d.function_table.push(Function {
            name_strindex: (5 + i) as i32,
            ..Default::default()
        });
        d.location_table.push(Location {
            lines: vec![Line {
                function_index: (i + 1) as i32,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    for leaf in 2..=5 {
        d.stack_table.push(Stack {
            location_indices: vec![leaf, 1],
        });
    }
    let mut count_samples = Vec::with_capacity(count);
    let mut cpu_samples = Vec::with_capacity(count);
    for i in 0..count.min(spans.len().max(1) * 4) {
        let Some((trace, span)) = spans.get((i * 7) % spans.len().max(1)) else {
            break;
        };
        d.link_table.push(Link {
            trace_id: trace.to_be_bytes().to_vec(),
            span_id: span.to_be_bytes().to_vec(),
        });
        let link_index = d.link_table.len() as i32 - 1;
        let stack_index = 1 + (i % 4) as i32;
        count_samples.push(Sample {
            stack_index,
            link_index,
            values: vec![1],
            ..Default::default()
        });
        cpu_samples.push(Sample {
            stack_index,
            link_index,
            values: vec![10_000_000],
            ..Default::default()
        });
    }
    let period_type = Some(ValueType {
        type_strindex: 3,
        unit_strindex: 4,
    });
    let profile = |type_strindex, unit_strindex, samples| Profile {
        sample_type: Some(ValueType {
            type_strindex,
            unit_strindex,
        }),
        samples,
        period_type,
        period: 10_000_000,
        time_unix_nano: now_ns(),
        duration_nano: 1_000_000_000,
        ..Default::default()
    };
    ProfilesBatch::from_request(ExportProfilesServiceRequest {
        resource_profiles: vec![ResourceProfiles {
            resource: Some(resource(worker)),
            scope_profiles: vec![ScopeProfiles {
                profiles: vec![profile(1, 2, count_samples), profile(3, 4, cpu_samples)],
                ..Default::default()
            }],
            ..Default::default()
        }],
        dictionary: Some(d),
    })
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
            let template = Template::new(w, batch)?;
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
            while Instant::now() < deadline {
                let (body, sent) = template.fill(&next);
                let samples = (batch as f64 * ratio).round() as usize;
                let profiles = (samples > 0).then(|| profiles(w, &sent, samples));
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
