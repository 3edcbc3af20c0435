//! The report as one self-contained HTML page: inline CSS and SVG, no network, a few lines of
//! plain script (the label filter). The views are [`crate::views`]'s, linked to the page's own
//! sections.

use std::collections::HashMap;
use std::fmt::Write;

use super::flame::escape;
use super::{example_traces, Report};
use crate::views::html::{self as vh, Links, VIEWS_CSS};
use crate::views::{waterfall, NameKey};

/// Page CSS, shared with the live page.
pub const CSS: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:.5em 0}th,td{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}code{font-size:.9em}\
section{margin:1.5em 0}h2{font-size:1.1em;margin-bottom:.2em}h3{font-size:1em;margin:.8em 0 .2em}svg{max-width:100%;height:auto}\
.muted{color:#777}a{color:#0645ad}";

/// Links to the report's own sections.
struct Anchors {
    names: HashMap<NameKey, usize>,
    services: HashMap<String, usize>,
    traces: HashMap<String, usize>,
}

impl Links for Anchors {
    fn name(&self, key: &NameKey) -> Option<String> {
        self.names.get(key).map(|i| format!("#name-{i}"))
    }
    fn service(&self, service: &str) -> Option<String> {
        self.services.get(service).map(|i| format!("#service-{i}"))
    }
    fn trace(&self, trace_id: &str, _span_id: &str) -> Option<String> {
        self.traces.get(trace_id).map(|i| format!("#trace-{i}"))
    }
    fn span(&self, _: &str) -> Option<String> {
        None
    }
}

pub fn render(report: &Report, files: usize) -> String {
    let views = &report.views;
    let stats = &report.stats;
    let names = vh::sorted_names(views);
    let services = views.services();
    let anchors = Anchors {
        names: names
            .iter()
            .enumerate()
            .map(|(i, (k, _))| ((*k).clone(), i))
            .collect(),
        services: services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.0.clone(), i))
            .collect(),
        traces: report
            .traces
            .keys()
            .enumerate()
            .map(|(i, t)| (t.clone(), i))
            .collect(),
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>hotspan report</title><style>{CSS}{VIEWS_CSS}</style></head><body>"
    );
    let _ = write!(
        out,
        "<h1>hotspan report</h1><p class=\"muted\">{} spans ({} with samples) from {files} file(s); {} traces lines, {} profiles lines skipped, {} bad lines</p>",
        views.spans, views.sampled, stats.trace_lines, stats.profile_lines, stats.bad_lines
    );
    out.push_str("<p><a href=\"#breakdown-section\">latency breakdown</a> &middot; <a href=\"#labels-section\">labels</a> &middot; <a href=\"#outside\">outside spans</a></p>");
    out.push_str("<h2>Span names</h2>");
    vh::names_table(&mut out, views, &anchors);
    vh::dropped_note(&mut out, views);
    out.push_str("<section id=\"breakdown-section\"><h2>Latency breakdown per span name (mean span)</h2>");
    vh::breakdown_chart(&mut out, views, &anchors);
    out.push_str("</section><section id=\"labels-section\"><h2>CPU by labels</h2>");
    vh::labels_section(&mut out, views);
    out.push_str("</section>");
    vh::outside_spans(&mut out, None);
    for (i, (key, n)) in names.iter().enumerate() {
        let _ = write!(
            out,
            "<section id=\"name-{i}\" class=\"name-section\" data-service=\"{}\" data-span-name=\"{}\"><h2>{} <span class=\"muted\">({})</span></h2>",
            escape(&key.0),
            escape(&key.1),
            escape(&key.1),
            escape(&key.0)
        );
        vh::name_detail(&mut out, &key.1, n);
        let examples: Vec<String> = example_traces(n)
            .into_iter()
            .filter(|t| report.traces.contains_key(t))
            .collect();
        if !examples.is_empty() {
            out.push_str("<h3>Example traces</h3><p>");
            for (j, t) in examples.iter().enumerate() {
                let what = if j == 0 {
                    "the slowest span's trace"
                } else {
                    "a median span's trace"
                };
                let span = n
                    .kept_merged
                    .iter()
                    .find(|k| &k.trace_id == t)
                    .map(|k| k.span_id.as_str())
                    .unwrap_or("");
                vh::link(&mut out, anchors.trace(t, span), what, "class=\"trace-link\"");
                out.push(' ');
            }
            out.push_str("</p>");
        }
        out.push_str("</section>");
    }
    for (i, (service, _, _)) in services.iter().enumerate() {
        if let Some(agg) = views.service(service) {
            let _ = write!(
                out,
                "<section id=\"service-{i}\" class=\"service-section\" data-service=\"{}\"><h2>All spans of {}</h2>",
                escape(service),
                escape(service)
            );
            vh::name_detail(&mut out, service, &agg);
            out.push_str("</section>");
        }
    }
    if !report.traces.is_empty() {
        out.push_str("<h2>Traces</h2>");
    }
    for (i, (trace_id, spans)) in report.traces.iter().enumerate() {
        let _ = write!(
            out,
            "<section id=\"trace-{i}\" class=\"trace-section\"><h3>trace <code>{}</code></h3>",
            escape(trace_id)
        );
        let refs: Vec<_> = spans.iter().collect();
        waterfall(&mut out, &refs, None, &anchors);
        out.push_str("</section>");
    }
    if !stats.bad_examples.is_empty() {
        out.push_str("<h2>Bad lines</h2><ul>");
        for e in &stats.bad_examples {
            let _ = write!(out, "<li><code>{}</code></li>", escape(e));
        }
        out.push_str("</ul>");
    }
    out.push_str("</body></html>\n");
    out
}
