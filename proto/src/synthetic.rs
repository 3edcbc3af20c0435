//! Synthetic OTLP trace requests for load generators and benchmarks, encoded once as a
//! template and refilled per send (fresh ids, times and varying values written in place), so
//! producing a request costs a copy and a few hundred byte writes, not an encode.
//!
//! Two shapes:
//! - [`Shape::Realistic`]: traces of 8 spans shaped like an instrumented Go service's (a server
//!   root; database, cache, HTTP and messaging clients; internal steps), with random ids and, in
//!   every send, fresh digits and hex where SDKs put unique values (full URLs with query ids,
//!   user and tenant ids, peer addresses, statement parameters, exception messages), and
//!   repeated values where they repeat (service, route, method, attribute keys).
//! - [`Shape::Uniform`]: every span alike except ids and times (the earlier benchmark load; it
//!   compresses far better than real spans).

use crate::otlp::collector::profiles::v1development::ExportProfilesServiceRequest;
use crate::otlp::collector::trace::v1::ExportTraceServiceRequest;
use crate::otlp::common::v1::{any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue};
use crate::otlp::profiles::v1development::{
    Function, Line, Link, Location, Profile, ProfilesDictionary, ResourceProfiles, Sample, ScopeProfiles,
    Stack, ValueType,
};
use crate::otlp::resource::v1::Resource;
use crate::otlp::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Realistic,
    Uniform,
}

impl std::str::FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Shape, String> {
        match s {
            "realistic" => Ok(Shape::Realistic),
            "uniform" => Ok(Shape::Uniform),
            other => Err(format!("payload {other:?}: realistic or uniform")),
        }
    }
}

/// splitmix64: fast, good enough for test values, and no crate for a dozen lines.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len() as u64) as usize]
    }
}

/// Bytes marking, in template strings, where each send writes a fresh decimal digit or hex
/// digit. Runs of at least two are filled (a lone 0x7f can be a varint byte).
const DIGIT: u8 = 0x7f;
const HEX: u8 = 0x7e;

/// `n` marker characters, to splice into template strings.
fn d(n: usize) -> String {
    String::from_utf8(vec![DIGIT; n]).unwrap_or_default()
}

fn h(n: usize) -> String {
    String::from_utf8(vec![HEX; n]).unwrap_or_default()
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

fn int(v: i64) -> any_value::Value {
    any_value::Value::IntValue(v)
}

/// Marks the bytes a template overwrites on every send: unique per span and field, so each
/// is found in the encoding.
fn placeholder(i: usize, field: u8) -> [u8; 8] {
    let mut p = [0xa5, 0x5a, 0xc3, field, 0, 0, 0, 0];
    p[4..].copy_from_slice(&(i as u32).to_be_bytes());
    p
}

const SPANS_PER_TRACE: usize = 8;

/// The `service.name` of `worker`'s spans.
pub fn service_name(shape: Shape, worker: usize) -> &'static str {
    match shape {
        Shape::Uniform => "checkout",
        Shape::Realistic => ["checkout", "cart", "payment", "catalog"][worker % 4],
    }
}

fn resource(worker: usize, shape: Shape) -> Resource {
    let service = service_name(shape, worker);
    Resource {
        attributes: vec![
            kv("service.name", s(service)),
            kv("service.version", s("1.14.2")),
            kv("service.instance.id", s(&format!("{service}-7d9f-{worker}"))),
            kv("host.name", s("node-17.eu-west-1.compute.internal")),
            kv("telemetry.sdk.language", s("go")),
            kv("telemetry.sdk.name", s("opentelemetry")),
            kv("k8s.namespace.name", s("shop")),
            kv("process.pid", int(4242 + worker as i64)),
        ],
        ..Default::default()
    }
}

/// The earlier benchmark's spans: traces of 8, ~600 bytes each, every value identical.
fn uniform_spans(n: usize, made: u64) -> Vec<Span> {
    (0..n)
        .map(|i| {
            let is_root = i % SPANS_PER_TRACE == 0;
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
                    attributes: vec![kv("attempt", int(2))],
                    dropped_attributes_count: 0,
                });
            }
            Span {
                name: if is_root {
                    "GET /api/checkout".into()
                } else {
                    format!("SELECT orders.{}", i % SPANS_PER_TRACE)
                },
                kind: if is_root { 2 } else { 3 },
                attributes: vec![
                    kv("http.request.method", s("GET")),
                    kv("url.path", s("/api/checkout")),
                    kv("http.response.status_code", int(200)),
                    kv("db.system", s("postgresql")),
                    kv(
                        "db.statement",
                        s("SELECT id, total FROM orders WHERE customer_id = $1"),
                    ),
                    kv("server.address", s("orders-db.shop.svc")),
                    kv("server.port", int(5432)),
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
            }
        })
        .collect()
}

/// (method, route, path with its id digits)
const ROUTES: &[(&str, &str, &str)] = &[
    (
        "GET",
        "/api/v1/orders/{id}",
        "/api/v1/orders/\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}",
    ),
    ("POST", "/api/v1/orders", "/api/v1/orders"),
    (
        "GET",
        "/api/v1/carts/{id}/items",
        "/api/v1/carts/\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}/items",
    ),
    (
        "PUT",
        "/api/v1/carts/{id}",
        "/api/v1/carts/\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}",
    ),
    ("GET", "/api/v1/products", "/api/v1/products"),
    (
        "DELETE",
        "/api/v1/sessions/{id}",
        "/api/v1/sessions/\u{7e}\u{7e}\u{7e}\u{7e}\u{7e}\u{7e}\u{7e}\u{7e}\u{7e}\u{7e}\u{7e}\u{7e}",
    ),
];

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "shop-ios/4.12.0 (iPhone15,3; iOS 18.1)",
    "okhttp/4.12.0",
];

fn ip(prefix: &str) -> String {
    format!("{prefix}.{}.{}", d(2), d(2))
}

/// One trace of 8 spans: ids and times are placeholders (span `i` of the request), values
/// to vary are marker runs.
fn realistic_trace(first: usize, rng: &mut Rng, made: u64) -> Vec<Span> {
    let (method, route, path) = *rng.pick(ROUTES);
    let failed = rng.below(10) == 0;
    let status = *rng.pick(&[200, 200, 200, 200, 201, 204, 404]);
    let user = format!("user-{}", d(7));
    let tenant = format!("acme-{}", d(4));
    let span = |i: usize, name: String, kind: i32, attributes: Vec<KeyValue>| Span {
        trace_id: [placeholder(first + i, 1), placeholder(first + i, 1)].concat(),
        span_id: placeholder(first + i, 2).to_vec(),
        parent_span_id: if i == 0 {
            Vec::new()
        } else {
            placeholder(first + i, 3).to_vec()
        },
        name,
        kind,
        start_time_unix_nano: u64::from_le_bytes(placeholder(first + i, 4)),
        end_time_unix_nano: u64::from_le_bytes(placeholder(first + i, 5)),
        attributes,
        ..Default::default()
    };
    let db = |op: &str, table: &str, query: String, peer: String| {
        vec![
            kv("db.system.name", s("postgresql")),
            kv("db.namespace", s("shop")),
            kv("db.operation.name", s(op)),
            kv("db.collection.name", s(table)),
            kv("db.query.text", s(&query)),
            kv("server.address", s("orders-db.shop.svc.cluster.local")),
            kv("server.port", int(5432)),
            kv("network.peer.address", s(&peer)),
        ]
    };
    let code = |function: &str, file: &str, line: i64| {
        vec![
            kv("code.function.name", s(function)),
            kv("code.file.path", s(file)),
            kv("code.line.number", int(line)),
        ]
    };

    let query = if ROUTES.iter().position(|r| r.1 == route).unwrap_or(0) == 4 {
        format!("?category={}&page={}&sort=price", d(3), d(2))
    } else {
        format!("?tenant={tenant}&request_id={}", h(16))
    };
    let root = span(
        0,
        format!("{method} {route}"),
        span::SpanKind::Server as i32,
        vec![
            kv("http.request.method", s(method)),
            kv("http.route", s(route)),
            kv("url.scheme", s("https")),
            kv("url.path", s(path)),
            kv("url.query", s(&query)),
            kv("server.address", s("shop.example.com")),
            kv(
                "client.address",
                s(&format!("{}.{}.{}.{}", d(2), d(3), d(2), d(3))),
            ),
            kv("network.peer.address", s(&ip("10.42"))),
            kv("network.peer.port", int(40_000 + rng.below(20_000) as i64)),
            kv("user_agent.original", s(rng.pick::<&str>(USER_AGENTS))),
            kv("enduser.id", s(&user)),
            kv("app.tenant.id", s(&tenant)),
            kv(
                "http.response.status_code",
                int(if failed { 502 } else { status }),
            ),
        ],
    );
    let mut auth = span(
        1,
        "auth.Verify".into(),
        span::SpanKind::Internal as i32,
        code(
            "github.com/acme/shop/internal/auth.(*Verifier).Verify",
            "/src/internal/auth/verify.go",
            118,
        ),
    );
    auth.attributes.push(kv("enduser.id", s(&user)));
    let select = span(
        2,
        "SELECT shop.orders".into(),
        span::SpanKind::Client as i32,
        db(
            "SELECT",
            "orders",
            format!(
                "SELECT id, status, total_cents, currency FROM orders WHERE tenant_id = '{tenant}' AND customer_id = {} ORDER BY created_at DESC LIMIT 20",
                d(7)
            ),
            ip("10.43"),
        ),
    );
    let stock_url = format!(
        "http://inventory.shop.svc.cluster.local:8080/v2/stock/SKU-{}?warehouse=fra{}",
        h(10),
        d(2)
    );
    let mut stock = span(
        3,
        "GET".into(),
        span::SpanKind::Client as i32,
        vec![
            kv("http.request.method", s("GET")),
            kv("url.full", s(&stock_url)),
            kv("server.address", s("inventory.shop.svc.cluster.local")),
            kv("server.port", int(8080)),
            kv("network.peer.address", s(&ip("10.44"))),
        ],
    );
    if failed {
        let peer = ip("10.44");
        stock.attributes.push(kv("error.type", s("*net.OpError")));
        stock.status = Some(Status {
            code: 2,
            message: format!("dial tcp {peer}:8080: connect: connection refused"),
        });
        stock.events.push(span::Event {
            time_unix_nano: made + 3_000,
            name: "exception".into(),
            attributes: vec![
                kv("exception.type", s("*net.OpError")),
                kv(
                    "exception.message",
                    s(&format!(
                        "Get \"{stock_url}\": dial tcp {peer}:8080: connect: connection refused"
                    )),
                ),
            ],
            dropped_attributes_count: 0,
        });
    } else {
        stock.attributes.push(kv("http.response.status_code", int(200)));
    }
    let cache = span(
        4,
        "GET".into(),
        span::SpanKind::Client as i32,
        vec![
            kv("db.system.name", s("redis")),
            kv("db.operation.name", s("GET")),
            kv("db.query.text", s(&format!("GET session:{}", h(32)))),
            kv("server.address", s("redis-master.shop.svc.cluster.local")),
            kv("server.port", int(6379)),
            kv("network.peer.address", s(&ip("10.45"))),
        ],
    );
    let mut pricing = span(
        5,
        "pricing.Compute".into(),
        span::SpanKind::Internal as i32,
        code(
            "github.com/acme/shop/internal/pricing.Compute",
            "/src/internal/pricing/compute.go",
            57,
        ),
    );
    pricing
        .attributes
        .push(kv("app.cart.items", int(1 + rng.below(12) as i64)));
    pricing.attributes.push(kv("app.currency", s("EUR")));
    let publish = span(
        6,
        "publish orders.v1".into(),
        span::SpanKind::Producer as i32,
        vec![
            kv("messaging.system", s("kafka")),
            kv("messaging.operation.type", s("send")),
            kv("messaging.destination.name", s("orders.v1")),
            kv("messaging.destination.partition.id", s(&d(2))),
            kv("messaging.kafka.message.key", s(&format!("order-{}", d(8)))),
            kv(
                "messaging.message.id",
                s(&format!("{}-{}-{}-{}-{}", h(8), h(4), h(4), h(4), h(12))),
            ),
            kv("server.address", s("kafka-0.kafka.shop.svc.cluster.local")),
        ],
    );
    let update = span(
        7,
        "UPDATE shop.orders".into(),
        span::SpanKind::Client as i32,
        db(
            "UPDATE",
            "orders",
            format!(
                "UPDATE orders SET status = 'confirmed', updated_at = now() WHERE id = {} AND tenant_id = '{tenant}'",
                d(8)
            ),
            ip("10.43"),
        ),
    );
    let mut trace = vec![root, auth, select, stock, cache, pricing, publish, update];
    let failed_status = Status {
        code: 2,
        message: "upstream inventory unavailable".into(),
    };
    if failed {
        trace[0].status = Some(failed_status);
    }
    trace
}

/// Parent of span `i` within its trace (`None` for the root): the database read happens
/// inside auth.Verify, the rest directly under the server span.
fn parent_in_trace(i: usize) -> Option<usize> {
    match i % SPANS_PER_TRACE {
        0 => None,
        2 => Some(1),
        _ => Some(0),
    }
}

/// Where each span's ids and times sit in a template body.
#[derive(Debug)]
struct Slots {
    trace: usize,
    span: usize,
    parent: Option<usize>,
    start: usize,
    end: usize,
}

/// One worker's request, encoded once; [`Template::fill`] makes each send's copy.
#[derive(Debug)]
pub struct Template {
    shape: Shape,
    body: Vec<u8>,
    slots: Vec<Slots>,
    /// (offset, length, hex) of each run of marker bytes.
    runs: Vec<(usize, usize, bool)>,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("a placeholder is missing from the encoded template")]
    Placeholder,
    #[error("batch of {0} spans: between 1 and 30000")]
    Size(usize),
}

impl Template {
    /// A request of `spans` spans (traces of 8) from `worker`; `seed` picks the realistic
    /// shape's routes, failures and counts.
    pub fn new(shape: Shape, worker: usize, spans: usize, seed: u64) -> Result<Template, TemplateError> {
        // Placeholders carry the span index in their last two bytes; past 30000 those could
        // read as a marker run.
        if spans == 0 || spans > 30_000 {
            return Err(TemplateError::Size(spans));
        }
        let made = now_ns();
        let list = match shape {
            Shape::Uniform => {
                let mut list = uniform_spans(spans, made);
                for (i, span) in list.iter_mut().enumerate() {
                    span.trace_id = [placeholder(i, 1), placeholder(i, 1)].concat();
                    span.span_id = placeholder(i, 2).to_vec();
                    if i % SPANS_PER_TRACE != 0 {
                        span.parent_span_id = placeholder(i, 3).to_vec();
                    }
                    span.start_time_unix_nano = u64::from_le_bytes(placeholder(i, 4));
                    span.end_time_unix_nano = u64::from_le_bytes(placeholder(i, 5));
                }
                list
            }
            Shape::Realistic => {
                let mut rng = Rng::new(seed);
                let mut list = Vec::with_capacity(spans);
                while list.len() < spans {
                    list.extend(realistic_trace(list.len(), &mut rng, made));
                }
                list.truncate(spans);
                list
            }
        };
        let body = request(worker, shape, list).encode_to_vec();
        let mut from = 0;
        let mut find = |needle: [u8; 8]| -> Result<usize, TemplateError> {
            let at = body[from..]
                .windows(8)
                .position(|w| w == needle)
                .ok_or(TemplateError::Placeholder)?;
            from += at + 8;
            Ok(from - 8)
        };
        let mut slots = Vec::with_capacity(spans);
        for i in 0..spans {
            // prost writes fields in tag order: trace_id, span_id, parent, start, end.
            let trace = find(placeholder(i, 1))?;
            find(placeholder(i, 1))?;
            let span = find(placeholder(i, 2))?;
            let parent = match parent_in_trace(i) {
                None => None,
                Some(_) => Some(find(placeholder(i, 3))?),
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
        let mut runs = Vec::new();
        let mut i = 0;
        while i < body.len() {
            let b = body[i];
            if b == DIGIT || b == HEX {
                let len = body[i..].iter().take_while(|&&c| c == b).count();
                if len >= 2 {
                    runs.push((i, len, b == HEX));
                }
                i += len;
            } else {
                i += 1;
            }
        }
        Ok(Template {
            shape,
            body,
            slots,
            runs,
        })
    }

    pub fn spans(&self) -> usize {
        self.slots.len()
    }

    pub fn encoded_len(&self) -> usize {
        self.body.len()
    }

    /// A body with new ids and times from `now_ns`, fresh varying values, and the
    /// (trace, span) ids it carries. Uniform templates take sequential span ids from `seq`
    /// (the earlier load's), realistic ones random ids as SDKs make them.
    pub fn fill(&self, rng: &mut Rng, seq: u64, now_ns: u64) -> (Vec<u8>, Vec<(u128, u64)>) {
        let mut body = self.body.clone();
        let mut ids = Vec::with_capacity(self.slots.len());
        let (mut trace, mut root, mut auth) = (0u128, 0u64, 0u64);
        for (i, slot) in self.slots.iter().enumerate() {
            let in_trace = i % SPANS_PER_TRACE;
            let (id, start, end) = match self.shape {
                Shape::Uniform => {
                    let id = seq + i as u64;
                    if in_trace == 0 {
                        trace = ((id as u128) << 64) | 0x5eed;
                    }
                    let start = now_ns + in_trace as u64 * 1_000_000;
                    (id, start, start + 800_000)
                }
                Shape::Realistic => {
                    let id = rng.next_u64() | 1;
                    if in_trace == 0 {
                        trace = ((rng.next_u64() as u128) << 64) | rng.next_u64() as u128;
                        (id, now_ns, now_ns + 12_000_000 + rng.below(30_000_000))
                    } else {
                        let start = now_ns + in_trace as u64 * 1_200_000 + rng.below(400_000);
                        (id, start, start + 50_000 + rng.below(1_100_000))
                    }
                }
            };
            match in_trace {
                0 => root = id,
                1 => auth = id,
                _ => {}
            }
            body[slot.trace..slot.trace + 16].copy_from_slice(&trace.to_be_bytes());
            body[slot.span..slot.span + 8].copy_from_slice(&id.to_be_bytes());
            if let Some(p) = slot.parent {
                let parent = match (self.shape, parent_in_trace(i)) {
                    (Shape::Realistic, Some(1)) => auth,
                    _ => root,
                };
                body[p..p + 8].copy_from_slice(&parent.to_be_bytes());
            }
            body[slot.start..slot.start + 8].copy_from_slice(&start.to_le_bytes());
            body[slot.end..slot.end + 8].copy_from_slice(&end.to_le_bytes());
            ids.push((trace, id));
        }
        for &(at, len, hex) in &self.runs {
            let mut bits = rng.next_u64();
            let mut left = 16;
            for (k, b) in body[at..at + len].iter_mut().enumerate() {
                if left == 0 {
                    bits = rng.next_u64();
                    left = 16;
                }
                *b = if hex {
                    b"0123456789abcdef"[(bits & 15) as usize]
                } else if k == 0 {
                    // No leading zeros: ids and octets read as numbers.
                    b'1' + (bits % 9) as u8
                } else {
                    b'0' + (bits % 10) as u8
                };
                bits >>= 4;
                left -= 1;
            }
        }
        (body, ids)
    }
}

fn request(worker: usize, shape: Shape, spans: Vec<Span>) -> ExportTraceServiceRequest {
    let scope = match shape {
        Shape::Uniform => InstrumentationScope {
            name: "loadgen".into(),
            version: "1".into(),
            ..Default::default()
        },
        Shape::Realistic => InstrumentationScope {
            name: "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp".into(),
            version: "0.63.0".into(),
            ..Default::default()
        },
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(worker, shape)),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// CPU samples linking to `spans` (each of up to `count` samples to the next span, seven on,
/// so every span gets one when `count` is their number and not a multiple of seven), as a
/// profiler with OTLP `Link`s sends them: pprof-shaped (samples/count and cpu/nanoseconds).
pub fn linked_profiles(
    service: &str,
    spans: &[(u128, u64)],
    count: usize,
    now_ns: u64,
) -> ExportProfilesServiceRequest {
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
        time_unix_nano: now_ns,
        duration_nano: 1_000_000_000,
        ..Default::default()
    };
    ExportProfilesServiceRequest {
        resource_profiles: vec![ResourceProfiles {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s(service))],
                ..Default::default()
            }),
            scope_profiles: vec![ScopeProfiles {
                profiles: vec![profile(1, 2, count_samples), profile(3, 4, cpu_samples)],
                ..Default::default()
            }],
            ..Default::default()
        }],
        dictionary: Some(d),
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realistic_fill_decodes_with_varying_values_and_linked_ids() {
        let t = Template::new(Shape::Realistic, 1, 512, 7).expect("template");
        let mut rng = Rng::new(3);
        let (a, ids) = t.fill(&mut rng, 0, 1_000);
        let (b, _) = t.fill(&mut rng, 0, 1_000);
        assert_eq!(a.len(), b.len());
        assert_ne!(a, b);
        let req = ExportTraceServiceRequest::decode(a.as_slice()).expect("decodes");
        let spans = &req.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 512);
        for (i, sp) in spans.iter().enumerate() {
            assert_eq!(
                u64::from_be_bytes(sp.span_id.as_slice().try_into().unwrap()),
                ids[i].1
            );
            let root = &spans[i - i % 8];
            assert_eq!(sp.trace_id, root.trace_id);
            match parent_in_trace(i) {
                None => assert!(sp.parent_span_id.is_empty()),
                Some(p) => assert_eq!(sp.parent_span_id, spans[i - i % 8 + p].span_id),
            }
            assert!(sp.end_time_unix_nano > sp.start_time_unix_nano);
        }
        let text = format!("{spans:?}");
        assert!(!text.contains('\u{7f}') && !text.contains('\u{7e}'));
    }

    #[test]
    fn uniform_fill_keeps_the_earlier_load() {
        let t = Template::new(Shape::Uniform, 0, 64, 0).expect("template");
        let (body, ids) = t.fill(&mut Rng::new(1), 100, 5);
        let req = ExportTraceServiceRequest::decode(body.as_slice()).expect("decodes");
        let spans = &req.resource_spans[0].scope_spans[0].spans;
        assert_eq!(ids[3].1, 103);
        assert_eq!(spans[3].parent_span_id, 100u64.to_be_bytes());
        assert_eq!(spans[3].name, "SELECT orders.3");
    }
}
