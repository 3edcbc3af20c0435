//! The live page's URLs: `/` (span names, latency breakdown, recent spans, labels, CPU
//! outside spans), `/name?service=S&name=N` (one span name's views; without `name`, the whole
//! service's), `/trace/{trace_id}?span=ID` (a trace's waterfall), `/span/{id}` (one span, its
//! hot paths and flame graph) and `/span/{id}/flame.svg`.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Router;

use super::{HotspanUiConfig, SpanSink};
use crate::report::flame::{self, duration, escape, leaf_frames};
use crate::report::{SpanRecord, CSS};
use crate::telemetry::Telemetry;
use crate::views::html::{self as vh, Links, VIEWS_CSS};
use crate::views::{waterfall, NameKey};

/// Rows in each of the page's span lists.
const LISTED: usize = 25;
const FLAME_WIDTH: usize = 1200;

#[derive(Clone)]
pub struct Page {
    pub sink: Arc<SpanSink>,
    pub telemetry: Arc<Telemetry>,
    pub config: Arc<HotspanUiConfig>,
}

pub fn router(page: Page) -> Router {
    Router::new()
        .route("/", axum::routing::get(index))
        .route("/name", axum::routing::get(name_page))
        .route("/trace/{id}", axum::routing::get(trace_page))
        .route("/span/{id}", axum::routing::get(span_page))
        .route("/span/{id}/flame.svg", axum::routing::get(span_svg))
        .with_state(page)
}

/// The page's own URLs.
struct PageLinks;

fn query(pairs: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.finish()
}

impl Links for PageLinks {
    fn name(&self, key: &NameKey) -> Option<String> {
        Some(format!(
            "/name?{}",
            query(&[("service", &key.0), ("name", &key.1)])
        ))
    }
    fn service(&self, service: &str) -> Option<String> {
        Some(format!("/name?{}", query(&[("service", service)])))
    }
    fn trace(&self, trace_id: &str, span_id: &str) -> Option<String> {
        Some(format!(
            "/trace/{trace_id}?{}#span-{span_id}",
            query(&[("span", span_id)])
        ))
    }
    fn span(&self, span_id: &str) -> Option<String> {
        Some(format!("/span/{span_id}"))
    }
}

fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}{VIEWS_CSS}</style></head><body>",
        escape(title)
    )
}

fn span_row(out: &mut String, s: &SpanRecord) {
    let top = s
        .top_functions
        .first()
        .map(|(f, sh)| format!("{f} {:.0}%", 100.0 * sh));
    out.push_str("<tr><td>");
    let href = PageLinks.trace(&s.trace_id, &s.span_id);
    vh::link(
        out,
        href,
        &s.name,
        &format!("class=\"span\" data-name=\"{}\"", escape(&s.name)),
    );
    let _ = write!(
        out,
        "</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td><code>{}</code></td><td>{}</td></tr>",
        escape(&s.service),
        duration(s.duration_ns),
        duration(s.cpu_ns),
        s.cpu_utilization
            .map(|u| format!("{:.0}%", 100.0 * u))
            .unwrap_or_default(),
        escape(top.as_deref().unwrap_or("")),
        escape(&s.label_key()),
    );
}

fn span_table(out: &mut String, title: &str, id: &str, spans: &[&SpanRecord]) {
    let _ = write!(
        out,
        "<h2>{title}</h2><table id=\"{id}\"><tr><th>span (opens its trace)</th><th>service</th><th>duration</th><th>CPU</th><th>CPU util</th><th>top function</th><th>labels</th></tr>"
    );
    for s in spans.iter().take(LISTED) {
        span_row(out, s);
    }
    out.push_str("</table>");
}

/// The collector's own unjoined and joined sample counts, when a join runs in this process.
fn unjoined(telemetry: &Telemetry) -> Option<(u64, u64)> {
    let m = &telemetry.metrics;
    Some((
        m.counter_total("hotspan_spanprofile_unjoined_samples")?,
        m.counter_total("hotspan_spanprofile_joined_samples").unwrap_or(0),
    ))
}

async fn index(State(page): State<Page>) -> Html<String> {
    let kept = page.sink.snapshot();
    let views = page.sink.views(&|_| false);
    let window = hotspan_config::duration::format(page.config.window);
    let mut out = head("hotspan: why spans are slow");
    let _ = write!(
        out,
        "<h1>hotspan: why spans are slow</h1><p class=\"muted\">{} spans in the last {window} ({} with samples); the last {} spans kept for their traces. \
         <label><input type=\"checkbox\" id=\"live\" checked> refresh every 5 s</label></p>",
        views.spans,
        views.sampled,
        kept.len(),
    );
    if page.sink.recorded() == 0 {
        out.push_str(
            "<p class=\"note\" id=\"empty\">No spans yet. The spanprofile connector holds each span for its <code>wait</code> \
             (20 s unless configured) after it arrives, so that the profile covering it can come in: spans appear here \
             about <code>wait</code> plus one profile interval (a scrape's length) after they end. Spans show up only if \
             the <code>hotspan_ui</code> exporter is in a traces pipeline after the connector.</p>",
        );
    }
    out.push_str("<h2>Span names</h2>");
    vh::names_table(&mut out, &views, &PageLinks);
    vh::dropped_note(&mut out, &views);
    out.push_str("<h2>Latency breakdown per span name (mean span)</h2>");
    vh::breakdown_chart(&mut out, &views, &PageLinks);
    let spans: Vec<&SpanRecord> = kept.iter().rev().map(|s| &**s).collect();
    let mut hottest: Vec<&SpanRecord> = spans.iter().copied().filter(|s| s.has_samples()).collect();
    hottest.sort_by(|a, b| b.cpu_ns.cmp(&a.cpu_ns).then(b.samples.cmp(&a.samples)));
    span_table(&mut out, "Hottest recent spans", "hottest", &hottest);
    let mut slowest = spans.clone();
    slowest.sort_by_key(|s| std::cmp::Reverse(s.duration_ns));
    span_table(&mut out, "Slowest recent spans", "slowest", &slowest);
    let _ = write!(out, "<h2>CPU by labels, last {window}</h2>");
    vh::labels_section(&mut out, &views);
    vh::outside_spans(&mut out, unjoined(&page.telemetry));
    let _ = write!(
        out,
        "<p class=\"muted\">Bounds: {} spans kept (<code>capacity</code>); per slice of the window at most {} span names, {} stacks per name, {} spans per name for slow versus fast; {} distinct stacks held now.</p>",
        page.config.capacity,
        views.limits.names,
        views.limits.stacks_per_name,
        views.limits.kept_per_name,
        page.sink.stacks_held(),
    );
    // Reload while the box is ticked; the choice survives the reload.
    out.push_str(
        "<script>(function(){var b=document.getElementById('live');\
         b.checked=localStorage.getItem('hotspan.live')!=='off';\
         b.onchange=function(){localStorage.setItem('hotspan.live',b.checked?'on':'off')};\
         setInterval(function(){if(b.checked)location.reload()},5000);})();</script></body></html>",
    );
    Html(out)
}

async fn name_page(State(page): State<Page>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(service) = q.get("service") else {
        return (
            StatusCode::BAD_REQUEST,
            Html(format!(
                "{}<p>missing service</p></body></html>",
                head("bad request")
            )),
        )
            .into_response();
    };
    let name = q.get("name");
    let views = page
        .sink
        .views(&|k: &NameKey| &k.0 == service && name.is_none_or(|n| &k.1 == n));
    let (title, agg) = match name {
        Some(name) => (
            name.clone(),
            views.names.get(&(service.clone(), name.clone())).cloned(),
        ),
        None => (format!("all spans of {service}"), views.service(service)),
    };
    let mut out = head(&format!("hotspan: {title}"));
    let _ = write!(
        out,
        "<p><a href=\"/\">&larr; all span names</a></p><h1>{} <span class=\"muted\">({})</span></h1>",
        escape(&title),
        escape(service)
    );
    let Some(agg) = agg else {
        let _ = write!(
            out,
            "<p>no spans of this name in the last {}</p></body></html>",
            hotspan_config::duration::format(page.config.window)
        );
        return (StatusCode::NOT_FOUND, Html(out)).into_response();
    };
    out.push_str("<section class=\"name-section\">");
    vh::name_detail(&mut out, &title, &agg);
    out.push_str("</section><h2>Recent spans of this name (slowest first; each opens its trace)</h2><ul id=\"recent-traces\">");
    let kept = page.sink.snapshot();
    let mut mine: Vec<&SpanRecord> = kept
        .iter()
        .map(|s| &**s)
        .filter(|s| &s.service == service && q.get("name").is_none_or(|n| &s.name == n))
        .collect();
    mine.sort_by_key(|s| std::cmp::Reverse(s.duration_ns));
    for s in mine.iter().take(20) {
        out.push_str("<li>");
        vh::link(
            &mut out,
            PageLinks.trace(&s.trace_id, &s.span_id),
            &format!("{} {}", s.name, duration(s.duration_ns)),
            "class=\"trace-link\"",
        );
        out.push_str("</li>");
    }
    out.push_str("</ul></body></html>");
    Html(out).into_response()
}

fn not_found(what: &str, id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(format!(
            "{}<p>{what} {} is not among the recent spans. <a href=\"/\">back</a></p></body></html>",
            head("not found"),
            escape(id)
        )),
    )
        .into_response()
}

async fn trace_page(
    State(page): State<Page>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let id = id.to_ascii_lowercase();
    let kept = page.sink.snapshot();
    let spans: Vec<&SpanRecord> = kept.iter().map(|s| &**s).filter(|s| s.trace_id == id).collect();
    if spans.is_empty() {
        return not_found("trace", &id);
    }
    let mut out = head("hotspan: trace");
    let _ = write!(
        out,
        "<p><a href=\"/\">&larr; all span names</a></p><h1>trace <code>{}</code></h1>\
         <p class=\"muted\">Each bar: the span's time from its start, split into CPU, waiting, GC pause, throttled and runnable \
         (as far as the span carries them; estimates never drawn past the span's end), the time its child spans cover, and the \
         unexplained rest. Hover a bar for its parts and hot path; a name opens that span name's views.</p>",
        escape(&id)
    );
    waterfall(&mut out, &spans, q.get("span").map(String::as_str), &PageLinks);
    out.push_str("</body></html>");
    Html(out).into_response()
}

fn find(page: &Page, id: &str) -> Option<Arc<SpanRecord>> {
    let id = id.to_ascii_lowercase();
    page.sink.snapshot().into_iter().rev().find(|s| s.span_id == id)
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

async fn span_page(State(page): State<Page>, Path(id): Path<String>) -> Response {
    let Some(s) = find(&page, &id) else {
        return not_found("span", &id);
    };
    let mut out = head(&format!("hotspan: {}", s.name));
    out.push_str("<p><a href=\"/\">&larr; all span names</a> &middot; ");
    vh::link(
        &mut out,
        PageLinks.trace(&s.trace_id, &s.span_id),
        "its trace",
        "",
    );
    out.push_str(" &middot; ");
    vh::link(
        &mut out,
        PageLinks.name(&(s.service.clone(), s.name.clone())),
        "all spans of this name",
        "",
    );
    let _ = write!(
        out,
        "</p><h1>{}</h1><p>service <b>{}</b>, trace <code>{}</code>, span <code>{}</code><br>duration {}, CPU {} ({} samples), utilization {}, join <code>{}</code><br>labels: {}</p>",
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
