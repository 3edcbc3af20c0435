//! The `hotspan_ui` extension: a live page of recently enriched spans, served by the running
//! collector. The hottest and slowest spans first; a span's page shows its hot paths and a
//! flame graph of its own samples (rendered here, from its `profile.hot_path` events); and
//! the CPU by sample labels over the last minutes. Plain HTML, inline CSS and SVG, a few
//! lines of script; nothing is fetched from the network.
//!
//! Spans reach it through the `hotspan_ui` exporter of the same name, listed in a traces
//! pipeline after the spanprofile connector next to the real exporter: it hands every batch
//! to the extension's [`SpanSink`], a bounded ring of the last annotated spans.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use hotspan_config::{ComponentConfig, FieldError};
use hotspan_proto::TracesBatch;
use serde::Deserialize;
use tracing::info;

use crate::component::{BoxError, BuildContext, BuiltExtension, ComponentType, ExtensionType, Lifecycle};
use crate::net::{bind, serve_http, ServerHandle};
use crate::receivers::otlp::check_endpoint;
use crate::report::flame::{self, duration, escape, leaf_frames};
use crate::report::{SpanRecord, Summary, CSS, DEFAULT_PREFIX};

/// Rows in each of the page's lists.
const LISTED: usize = 50;
const FLAME_WIDTH: usize = 1200;

/// Most spans kept: each holds its hot paths and labels (a few KiB), so this is some hundreds
/// of MiB already, for a page that lists 50.
const MAX_CAPACITY: usize = 100_000;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HotspanUiConfig {
    pub endpoint: String,
    /// Annotated spans kept; the oldest goes when a new one comes.
    pub capacity: usize,
    /// How far back the label breakdown looks.
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
        if self.window.is_zero() {
            errs.push(FieldError {
                path: "window".into(),
                message: "must be greater than 0".into(),
            });
        }
    }
}

/// The last annotated spans, newest at the back; bounded by `capacity`.
pub struct SpanSink {
    capacity: usize,
    prefix: String,
    spans: Mutex<VecDeque<(Instant, Arc<SpanRecord>)>>,
}

impl SpanSink {
    pub fn new(capacity: usize, prefix: &str) -> Self {
        SpanSink {
            capacity: capacity.max(1),
            prefix: prefix.to_string(),
            spans: Mutex::new(VecDeque::new()),
        }
    }

    /// Keeps the batch's spans that got samples, dropping the oldest past capacity.
    pub fn record(&self, batch: &TracesBatch) {
        let now = Instant::now();
        let fresh: Vec<_> = SpanRecord::all(batch, &self.prefix)
            .into_iter()
            .filter(SpanRecord::has_samples)
            .collect();
        if fresh.is_empty() {
            return;
        }
        let mut spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        for span in fresh {
            if spans.len() >= self.capacity {
                spans.pop_front();
            }
            spans.push_back((now, Arc::new(span)));
        }
    }

    /// A copy of what is kept, oldest first.
    pub fn snapshot(&self) -> Vec<(Instant, Arc<SpanRecord>)> {
        let spans = self.spans.lock().unwrap_or_else(|p| p.into_inner());
        spans.iter().cloned().collect()
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
            sink: Arc::new(SpanSink::new(config.capacity, &config.attribute_prefix)),
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
    server: Mutex<Option<ServerHandle>>,
}

impl HotspanUi {
    /// Where exporters put spans.
    pub fn sink(&self) -> Arc<SpanSink> {
        self.sink.clone()
    }
}

#[derive(Clone)]
struct Page {
    sink: Arc<SpanSink>,
    window: Duration,
}

#[async_trait]
impl Lifecycle for HotspanUi {
    async fn start(&self) -> Result<(), BoxError> {
        let page = Page {
            sink: self.sink.clone(),
            window: self.config.window,
        };
        let router = axum::Router::new()
            .route("/", axum::routing::get(index))
            .route("/span/{id}", axum::routing::get(span_page))
            .route("/span/{id}/flame.svg", axum::routing::get(span_svg))
            .with_state(page);
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

fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head><body>",
        escape(title)
    )
}

fn span_row(out: &mut String, s: &SpanRecord) {
    let top = s
        .top_functions
        .first()
        .map(|(f, sh)| format!("{f} {:.0}%", 100.0 * sh));
    let _ = write!(
        out,
        "<tr><td><a class=\"span\" href=\"/span/{id}\" data-name=\"{name}\">{name}</a></td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td><code>{}</code></td><td>{}</td></tr>",
        escape(&s.service),
        duration(s.duration_ns),
        duration(s.cpu_ns),
        s.cpu_utilization
            .map(|u| format!("{:.0}%", 100.0 * u))
            .unwrap_or_default(),
        escape(top.as_deref().unwrap_or("")),
        escape(&s.label_key()),
        id = escape(&s.span_id),
        name = escape(&s.name),
    );
}

fn span_table(out: &mut String, title: &str, spans: &[&SpanRecord]) {
    let _ = write!(
        out,
        "<h2>{title}</h2><table><tr><th>span</th><th>service</th><th>duration</th><th>CPU</th><th>CPU util</th><th>top function</th><th>labels</th></tr>"
    );
    for s in spans.iter().take(LISTED) {
        span_row(out, s);
    }
    out.push_str("</table>");
}

async fn index(State(page): State<Page>) -> Html<String> {
    let kept = page.sink.snapshot();
    let spans: Vec<&SpanRecord> = kept.iter().rev().map(|(_, s)| &**s).collect();
    let mut out = head("hotspan: hot spans");
    let _ = write!(
        out,
        "<h1>hotspan: hot spans</h1><p class=\"muted\">{} recent spans with samples. <label><input type=\"checkbox\" id=\"live\" checked> refresh every 5 s</label></p>",
        spans.len()
    );
    let mut hottest = spans.clone();
    hottest.sort_by(|a, b| b.cpu_ns.cmp(&a.cpu_ns).then(b.samples.cmp(&a.samples)));
    span_table(&mut out, "Hottest", &hottest);
    let mut slowest = spans.clone();
    slowest.sort_by_key(|s| std::cmp::Reverse(s.duration_ns));
    span_table(&mut out, "Slowest", &slowest);

    let mut summary = Summary::default();
    let now = Instant::now();
    for (at, s) in &kept {
        if now.saturating_duration_since(*at) <= page.window {
            summary.add(s);
        }
    }
    let _ = write!(
        out,
        "<h2>By labels, last {}</h2><table><tr><th>labels</th><th>spans</th><th>CPU share</th><th>top function</th></tr>",
        hotspan_config::duration::format(page.window)
    );
    for g in summary.label_groups() {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{:.0}%</td><td><code>{}</code></td></tr>",
            escape(&g.labels),
            g.spans,
            100.0 * g.share,
            escape(g.top_function.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</table>");
    // Reload while the box is ticked; the choice survives the reload.
    out.push_str(
        "<script>(function(){var b=document.getElementById('live');\
         b.checked=localStorage.getItem('hotspan.live')!=='off';\
         b.onchange=function(){localStorage.setItem('hotspan.live',b.checked?'on':'off')};\
         setInterval(function(){if(b.checked)location.reload()},5000);})();</script></body></html>",
    );
    Html(out)
}

fn find(page: &Page, id: &str) -> Option<Arc<SpanRecord>> {
    let id = id.to_ascii_lowercase();
    page.sink
        .snapshot()
        .into_iter()
        .rev()
        .find(|(_, s)| s.span_id == id)
        .map(|(_, s)| s)
}

fn flame_of(s: &SpanRecord) -> Option<String> {
    let unit = if s.by_cpu() { "ns" } else { "samples" };
    flame::svg(
        &format!("{} {}", s.name, s.span_id),
        unit,
        &s.stack_weights(),
        FLAME_WIDTH,
    )
}

fn not_found(id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(format!(
            "{}<p>span {} is not among the recent spans. <a href=\"/\">back</a></p></body></html>",
            head("not found"),
            escape(id)
        )),
    )
        .into_response()
}

async fn span_page(State(page): State<Page>, Path(id): Path<String>) -> Response {
    let Some(s) = find(&page, &id) else {
        return not_found(&id);
    };
    let mut out = head(&format!("hotspan: {}", s.name));
    let _ = write!(
        out,
        "<p><a href=\"/\">&larr; recent spans</a></p><h1>{}</h1><p>service <b>{}</b>, trace <code>{}</code>, span <code>{}</code><br>duration {}, CPU {} ({} samples), utilization {}, join <code>{}</code><br>labels: {}</p>",
        escape(&s.name),
        escape(&s.service),
        escape(&s.trace_id),
        escape(&s.span_id),
        duration(s.duration_ns),
        duration(s.cpu_ns),
        s.samples,
        s.cpu_utilization
            .map(|u| format!("{:.1}%", 100.0 * u))
            .unwrap_or_else(|| "-".into()),
        escape(s.join.as_deref().unwrap_or("-")),
        escape(&s.label_key()),
    );
    out.push_str("<h2>Hot paths</h2><table><tr><th>share</th><th>samples</th><th>CPU</th><th>stack (leaf last)</th></tr>");
    for h in &s.hot_paths {
        let _ = write!(
            out,
            "<tr><td class=\"n\">{:.1}%</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td><code title=\"{}\">{}</code></td></tr>",
            100.0 * h.share,
            h.samples,
            duration(h.cpu_ns),
            escape(&h.stack),
            escape(&leaf_frames(&h.stack, 6))
        );
    }
    out.push_str("</table><h2>Top functions</h2><ul>");
    for (f, sh) in &s.top_functions {
        let _ = write!(out, "<li><code>{}</code> {:.1}%</li>", escape(f), 100.0 * sh);
    }
    out.push_str("</ul><h2>Flame graph</h2>");
    match flame_of(&s) {
        Some(svg) => out.push_str(&svg),
        None => out.push_str("<p class=\"muted\">no hot-path events on this span</p>"),
    }
    out.push_str("</body></html>");
    Html(out).into_response()
}

async fn span_svg(State(page): State<Page>, Path(id): Path<String>) -> Response {
    match find(&page, &id).as_deref().and_then(flame_of) {
        Some(svg) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
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
    fn sink_keeps_the_last_annotated_spans() {
        let sink = SpanSink::new(3, DEFAULT_PREFIX);
        sink.record(&batch(6));
        // s0 has no samples; s1..s5 do; the ring keeps the last three.
        let names: Vec<String> = sink.snapshot().iter().map(|(_, s)| s.name.clone()).collect();
        assert_eq!(names, ["s3", "s4", "s5"]);
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
        let over = parse("{capacity: 100001}").unwrap_err();
        assert_eq!(over[0].to_string(), "capacity: must be from 1 to 100000");
        assert!(parse("{nope: 1}").is_err());
    }
}
