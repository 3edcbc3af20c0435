//! Decoding and encoding a realistic 512-span export request (about 600 bytes a span: 8
//! resource attributes, 10 span attributes of mixed types, one or two events), protobuf and
//! OTLP/JSON, and splitting it as the batch processor does; and reading one attribute of each
//! span of a realistic request (`hotspan_proto::synthetic`), as tail_sampling's attribute
//! policies do. Run: `cargo bench -p hotspan-proto --bench codec`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hotspan_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use hotspan_proto::otlp::resource::v1::Resource;
use hotspan_proto::otlp::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use hotspan_proto::raw::AttributeKey;
use hotspan_proto::synthetic::{Rng, Shape, Template};
use hotspan_proto::{Encoding, TracesBatch};

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

fn request() -> TracesBatch {
    let resource = Resource {
        attributes: [
            ("service.name", "checkout"),
            ("service.version", "1.14.2"),
            ("service.instance.id", "checkout-7d9f-1"),
            ("host.name", "node-17.eu-west-1.compute.internal"),
            ("telemetry.sdk.language", "go"),
            ("telemetry.sdk.name", "opentelemetry"),
            ("k8s.namespace.name", "shop"),
            ("k8s.pod.name", "checkout-7d9f-1"),
        ]
        .iter()
        .map(|(k, v)| kv(k, s(v)))
        .collect(),
        ..Default::default()
    };
    let spans = (0..512u64)
        .map(|i| Span {
            trace_id: ((i / 8 + 1) as u128).to_be_bytes().to_vec(),
            span_id: (i + 1).to_be_bytes().to_vec(),
            parent_span_id: if i % 8 == 0 {
                vec![]
            } else {
                (i - i % 8 + 1).to_be_bytes().to_vec()
            },
            name: format!("SELECT orders.{}", i % 8),
            kind: 3,
            start_time_unix_nano: 1_700_000_000_000_000_000 + i * 1000,
            end_time_unix_nano: 1_700_000_000_000_800_000 + i * 1000,
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
                kv("peer.service", s("orders-db")),
            ],
            events: vec![span::Event {
                name: "cache lookup".into(),
                time_unix_nano: 1,
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    TracesBatch::from_resource_spans(vec![ResourceSpans {
        resource: Some(resource),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn bench(c: &mut Criterion) {
    let batch = request();
    let protobuf = batch.encode(Encoding::Protobuf);
    let json = batch.encode(Encoding::Json);
    let mut g = c.benchmark_group("traces_512");
    g.throughput(Throughput::Elements(512));
    g.bench_function("decode_protobuf", |b| {
        b.iter(|| TracesBatch::decode(&protobuf, Encoding::Protobuf))
    });
    g.bench_function("encode_protobuf", |b| b.iter(|| batch.encode(Encoding::Protobuf)));
    g.bench_function("decode_json", |b| {
        b.iter(|| TracesBatch::decode(&json, Encoding::Json))
    });
    g.bench_function("encode_json", |b| b.iter(|| batch.encode(Encoding::Json)));
    g.bench_function("split_into_64s", |b| {
        b.iter_batched(
            || batch.clone(),
            |mut all| {
                let mut parts = Vec::new();
                while !all.is_empty() {
                    parts.push(all.split_front(64));
                }
                parts
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
    eprintln!(
        "request: {} bytes protobuf ({} a span), {} bytes JSON",
        protobuf.len(),
        protobuf.len() / 512,
        json.len()
    );

    // A key no span has (what the join adds, before the join), one the server spans have,
    // and one most spans have.
    let template = Template::new(Shape::Realistic, 0, 512, 5).expect("the realistic template builds");
    let (body, _) = template.fill(&mut Rng::new(3), 1, 1_700_000_000_000_000_000);
    let realistic = TracesBatch::decode(&body, Encoding::Protobuf).expect("a synthetic request decodes");
    let spans = || {
        realistic
            .raw()
            .iter()
            .flat_map(|r| r.scopes().iter().flat_map(|s| s.spans()))
    };
    let mut g = c.benchmark_group("attribute_of_each_realistic_span_512");
    g.throughput(Throughput::Elements(512));
    for name in ["profile.cpu_ns", "enduser.id", "server.address"] {
        let key = AttributeKey::new(name);
        let found = spans().filter(|s| s.attribute(&key).is_some()).count();
        eprintln!("{name}: on {found} of 512 realistic spans");
        g.bench_function(name, |b| {
            b.iter(|| spans().filter(|s| s.attribute(&key).is_some()).count())
        });
    }
    g.bench_function("status_code", |b| {
        b.iter(|| spans().filter(|s| s.status_code() == 2).count())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
