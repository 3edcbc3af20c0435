//! Sending spans with the real OpenTelemetry Rust SDK and keeping what it sent as ground truth.

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{ensure, Result};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use crate::FoundSpan;
use hotspan_proto::otlp::common::v1::any_value;

/// Keeps every span the SDK finished, as the SDK saw it.
#[derive(Clone, Debug, Default)]
pub struct Recorder(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Recorder {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().expect("recorder lock").extend(batch);
        Ok(())
    }
}

impl Recorder {
    pub fn spans(&self) -> Vec<SpanData> {
        self.0.lock().expect("recorder lock").clone()
    }
}

/// How the SDK talks to hotspan.
#[derive(Clone, Copy, Debug)]
pub enum Transport {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

/// Makes `traces` traces of a root with two children each, with attributes of every type, an
/// event and a status, sends them through the SDK's batch processor and OTLP exporter, and
/// returns what the SDK recorded. Runs on its own thread with its own runtime, as an
/// application would.
pub fn send_spans(
    transport: Transport,
    endpoint: String,
    service: &'static str,
    traces: usize,
) -> Result<Vec<SpanData>> {
    std::thread::spawn(move || -> Result<Vec<SpanData>> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let _guard = rt.enter();
        let exporter = match transport {
            Transport::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?,
            Transport::HttpProtobuf | Transport::HttpJson => {
                let protocol = if matches!(transport, Transport::HttpJson) {
                    Protocol::HttpJson
                } else {
                    Protocol::HttpBinary
                };
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(protocol)
                    .with_endpoint(format!("{endpoint}/v1/traces"))
                    .build()?
            }
        };
        let recorder = Recorder::default();
        let provider = SdkTracerProvider::builder()
            .with_resource(
                Resource::builder()
                    .with_service_name(service)
                    .with_attribute(KeyValue::new("deployment.environment", "test"))
                    .build(),
            )
            .with_simple_exporter(recorder.clone())
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer("hotspan-tests");
        for t in 0..traces {
            let mut root = tracer
                .span_builder("GET /checkout")
                .with_kind(SpanKind::Server)
                .with_attributes([
                    KeyValue::new("http.method", "GET"),
                    KeyValue::new("http.status_code", 200_i64),
                    KeyValue::new("retry", false),
                    KeyValue::new("ratio", 0.25),
                    KeyValue::new("trace.index", t as i64),
                    KeyValue::new(
                        "tags",
                        Value::Array(vec![opentelemetry::StringValue::from("a"), "b".into()].into()),
                    ),
                ])
                .start(&tracer);
            root.add_event("cache miss", vec![KeyValue::new("key", "cart:42")]);
            let cx = Context::current_with_span(root);
            for name in ["load cart", "charge card"] {
                let mut child = tracer.start_with_context(name, &cx);
                child.set_attribute(KeyValue::new("db.rows", 3_i64));
                if name == "charge card" {
                    child.set_status(Status::error("card declined"));
                }
                child.end();
            }
            cx.span().end();
        }
        provider.force_flush()?;
        provider.shutdown()?;
        Ok(recorder.spans())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("SDK thread panicked"))?
}

fn nanos(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_nanos() as u64
}

fn same_value(sdk: &Value, otlp: Option<&any_value::Value>) -> bool {
    use any_value::Value as V;
    match (sdk, otlp) {
        (Value::String(s), Some(V::StringValue(o))) => s.as_str() == o,
        (Value::I64(i), Some(V::IntValue(o))) => i == o,
        (Value::F64(f), Some(V::DoubleValue(o))) => f == o,
        (Value::Bool(b), Some(V::BoolValue(o))) => b == o,
        (Value::Array(opentelemetry::Array::String(a)), Some(V::ArrayValue(o))) => {
            a.len() == o.values.len()
                && a.iter()
                    .zip(&o.values)
                    .all(|(s, v)| matches!(&v.value, Some(V::StringValue(x)) if x == s.as_str()))
        }
        _ => false,
    }
}

/// Checks that a span found in hotspan's output is the span the SDK made: ids, parent, name,
/// kind, times, attributes, events, status, resource.
pub fn assert_same_span(sdk: &SpanData, found: &FoundSpan, service: &str) -> Result<()> {
    let s = &found.span;
    let id = sdk.span_context.span_id();
    ensure!(
        s.trace_id == sdk.span_context.trace_id().to_bytes(),
        "{id}: trace id differs"
    );
    ensure!(s.span_id == id.to_bytes(), "{id}: span id differs");
    let parent = sdk.parent_span_id.to_bytes();
    let parent_ok = if sdk.parent_span_id == opentelemetry::trace::SpanId::INVALID {
        s.parent_span_id.is_empty() || s.parent_span_id == parent
    } else {
        s.parent_span_id == parent
    };
    ensure!(parent_ok, "{id}: parent differs");
    ensure!(s.name == sdk.name, "{id}: name {:?} != {:?}", s.name, sdk.name);
    let kind = match sdk.span_kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    };
    ensure!(s.kind == kind, "{id}: kind {} != {kind}", s.kind);
    ensure!(
        s.start_time_unix_nano == nanos(sdk.start_time),
        "{id}: start time differs"
    );
    ensure!(
        s.end_time_unix_nano == nanos(sdk.end_time),
        "{id}: end time differs"
    );
    ensure!(
        s.attributes.len() == sdk.attributes.len(),
        "{id}: attribute count differs"
    );
    for kv in &sdk.attributes {
        let other = s.attributes.iter().find(|o| o.key == kv.key.as_str());
        let ok =
            other.is_some_and(|o| same_value(&kv.value, o.value.as_ref().and_then(|v| v.value.as_ref())));
        ensure!(
            ok,
            "{id}: attribute {} differs: {:?} vs {:?}",
            kv.key,
            kv.value,
            other
        );
    }
    let events: Vec<&str> = s.events.iter().map(|e| e.name.as_str()).collect();
    let sdk_events: Vec<&str> = sdk.events.iter().map(|e| e.name.as_ref()).collect();
    ensure!(events == sdk_events, "{id}: events {events:?} != {sdk_events:?}");
    let code = match &sdk.status {
        Status::Unset => 0,
        Status::Ok => 1,
        Status::Error { .. } => 2,
    };
    ensure!(
        s.status.as_ref().map_or(0, |st| st.code) == code,
        "{id}: status differs"
    );
    ensure!(
        found.scope_name == sdk.instrumentation_scope.name(),
        "{id}: scope differs"
    );
    let service_ok = found.resource.iter().any(|kv| {
        kv.key == "service.name"
            && matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()), Some(any_value::Value::StringValue(v)) if v == service)
    });
    ensure!(service_ok, "{id}: resource has no service.name={service}");
    Ok(())
}
