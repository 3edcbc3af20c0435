//! The `hotspan_ui` extension: a live page of recently annotated spans, served by the running
//! collector. Per span name an aggregate flame graph of every sample in the window, its
//! duration percentiles, CPU per span, latency breakdown and slow-versus-fast differential
//! flame graph; every recent trace as a waterfall; the CPU by sample labels; the hottest and
//! slowest recent spans. Plain HTML, inline CSS and SVG, a few lines of script; nothing is
//! fetched from the network. The views are [`crate::views`]'s, shared with `hotspan report`.
//!
//! Spans reach it through the `hotspan_ui` exporter of the same name, listed in a traces
//! pipeline after the spanprofile connector next to the real exporter: it hands every batch
//! to the extension's [`SpanSink`]: a bounded ring of the last spans (for the lists and the
//! waterfalls) and a [`Window`] of bounded aggregates (for the views per name).

mod pages;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hotspan_config::{bounds, ComponentConfig, FieldError};
use hotspan_proto::TracesBatch;
use serde::Deserialize;
use tracing::info;

use crate::component::{BoxError, BuildContext, BuiltExtension, ComponentType, ExtensionType, Lifecycle};
use crate::net::{bind, serve_http, ServerHandle};
use crate::receivers::otlp::check_endpoint;
use crate::report::{SpanRecord, DEFAULT_PREFIX};
use crate::telemetry::Telemetry;
use crate::views::{Limits, NameKey, Views, Window};

/// Most spans kept: each holds its hot paths and labels (a few KiB), so this is some hundreds
/// of MiB already, for a page that lists 50.
const MAX_CAPACITY: usize = 100_000;

/// Longest `window`: the views are about what is slow now, not over days.
const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HotspanUiConfig {
    pub endpoint: String,
    /// Annotated spans kept; the oldest goes when a new one comes.
    pub capacity: usize,
    /// How far back the views per span name and the label breakdown look.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub window: Duration,
    /// The spanprofile connector's `attribute_prefix`.
    pub attribute_prefix: String,
}

impl Default for HotspanUiConfig {
    fn default() -> Self {
        HotspanUiConfig {
            endpoint: "127.0.0.1:55680".into(),
            capacity: 1000,
            window: Duration::from_secs(300),
            attribute_prefix: DEFAULT_PREFIX.into(),
        }
    }
}

impl ComponentConfig for HotspanUiConfig {
    fn validate(&self, errs: &mut Vec<FieldError>) {
        check_endpoint(&self.endpoint, "endpoint", errs);
        if !(1..=MAX_CAPACITY).contains(&self.capacity) {
            errs.push(FieldError {
                path: "capacity".into(),
                message: format!("must be from 1 to {MAX_CAPACITY}"),
            });
        }
        bounds::check_duration(self.window, Duration::from_nanos(1)..=MAX_WINDOW, "window", errs);
    }
}

/// The last spans, newest at the back, bounded by `capacity`; and the window's aggregates.
pub struct SpanSink {
    capacity: usize,
    prefix: String,
    spans: Mutex<VecDeque<Arc<SpanRecord>>>,
    window: Mutex<Window>,
    /// Spans recorded since start.
    recorded: AtomicU64,
}

impl SpanSink {
    pub fn new(capacity: usize, window: Duration, prefix: &str) -> Self {
        SpanSink {
            capacity: capacity.max(1),
            prefix: prefix.to_string(),
            spans: Mutex::new(VecDeque::new()),
            window: Mutex::new(Window::new(window, Limits::PAGE)),
            recorded: AtomicU64::new(0),
        }
    }

    /// Adds the batch's spans to the window and keeps them, dropping the oldest past capacity.
    pub fn record(&self, batch: &TracesBatch) {
        let fresh = SpanRecord::all(batch, &self.prefix);
        if fresh.is_empty() {
            return;
        }
        self.recorded.fetch_add(fresh.len() as u64, Ordering::Relaxed);
        self.window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add_group(Instant::now(), &fresh);
        let mut spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        // Only the last `capacity` of a large batch would stay.
        let skip = fresh.len().saturating_sub(self.capacity);
        for span in fresh.into_iter().skip(skip) {
            if spans.len() >= self.capacity {
                spans.pop_front();
            }
            spans.push_back(Arc::new(span));
        }
    }

    /// A copy of the kept spans, oldest first.
    pub fn snapshot(&self) -> Vec<Arc<SpanRecord>> {
        let spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        spans.iter().cloned().collect()
    }

    /// The window's aggregates, merged for drawing, with the kept spans of the names `kept`
    /// wants (for slow versus fast).
    pub fn views(&self, kept: &dyn Fn(&NameKey) -> bool) -> Views {
        self.window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .merged(Instant::now(), kept)
    }

    /// Distinct stacks the window holds.
    pub fn stacks_held(&self) -> usize {
        self.window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stacks_held()
    }

    pub fn recorded(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ComponentType for HotspanUi {
    const TYPE_NAME: &'static str = "hotspan_ui";
    type Config = HotspanUiConfig;
}

impl ExtensionType for HotspanUi {
    fn build(ctx: &BuildContext, config: HotspanUiConfig) -> Result<BuiltExtension, BoxError> {
        Ok(BuiltExtension::of(Arc::new(HotspanUi {
            name: ctx.name(),
            sink: Arc::new(SpanSink::new(
                config.capacity,
                config.window,
                &config.attribute_prefix,
            )),
            telemetry: ctx.telemetry.clone(),
            config,
            server: Mutex::new(None),
        })))
    }
}

/// The extension: its sink and the server of its page.
pub struct HotspanUi {
    name: String,
    config: HotspanUiConfig,
    sink: Arc<SpanSink>,
    telemetry: Arc<Telemetry>,
    server: Mutex<Option<ServerHandle>>,
}

impl HotspanUi {
    /// Where exporters put spans.
    pub fn sink(&self) -> Arc<SpanSink> {
        self.sink.clone()
    }
}

#[async_trait]
impl Lifecycle for HotspanUi {
    async fn start(&self) -> Result<(), BoxError> {
        let router = pages::router(pages::Page {
            sink: self.sink.clone(),
            telemetry: self.telemetry.clone(),
            config: Arc::new(self.config.clone()),
        });
        let server = serve_http(
            bind(&self.config.endpoint).await?,
            router,
            tracing::Span::current(),
        )?;
        info!(extension = %self.name, address = %server.addr, "hotspan_ui listening");
        *self.server.lock().unwrap_or_else(|p| p.into_inner()) = Some(server);
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) {
        let server = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(server) = server {
            server.stop(deadline).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotspan_config::ComponentValue;
    use hotspan_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
    use hotspan_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn batch(n: u8) -> TracesBatch {
        let spans = (0..n)
            .map(|i| Span {
                name: format!("s{i}"),
                span_id: vec![i; 8],
                attributes: vec![KeyValue {
                    key: "profile.samples".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::IntValue(i64::from(i))),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        TracesBatch::from_resource_spans(vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    #[test]
    fn sink_keeps_the_last_spans_and_sums_up_all() {
        let sink = SpanSink::new(3, Duration::from_secs(60), DEFAULT_PREFIX);
        sink.record(&batch(6));
        sink.record(&batch(2));
        // Every span, with samples or not: a trace's waterfall needs them all.
        let names: Vec<String> = sink.snapshot().iter().map(|s| s.name.clone()).collect();
        assert_eq!(names, ["s5", "s0", "s1"]);
        let views = sink.views(&|_| false);
        assert_eq!(views.spans, 8);
        assert_eq!(views.names.len(), 6);
        assert_eq!(sink.recorded(), 8);
    }

    #[test]
    fn config_defaults_and_problems() {
        let parse = |text: &str| {
            ComponentValue::from_yaml(text)
                .unwrap()
                .parse::<HotspanUiConfig>()
        };
        let c = parse("{}").unwrap();
        assert_eq!(c.endpoint, "127.0.0.1:55680");
        assert_eq!(c.capacity, 1000);
        assert_eq!(parse("{capacity: 0, window: 0s}").unwrap_err().len(), 2);
        assert!(parse("{capacity: 100000}").is_ok());
        let over = parse("{capacity: 100001, window: 24h0m1s}").unwrap_err();
        let over: Vec<String> = over.iter().map(ToString::to_string).collect();
        assert_eq!(
            over,
            [
                "capacity: must be from 1 to 100000",
                "window: must be greater than 0s and at most 24h0m0s"
            ]
        );
        assert!(parse("{nope: 1}").is_err());
    }
}
