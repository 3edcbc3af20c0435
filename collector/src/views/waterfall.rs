//! A trace as a waterfall: one row per span, indented under its parent, its bar placed at its
//! start offset and as long as its duration, split into the parts of its time (CPU, waiting,
//! GC pause, throttled, runnable, in child spans, unexplained); the hot path and the parts in
//! the bar's title.

use std::collections::HashMap;
use std::fmt::Write;

use super::breakdown::{bar_html, covered, legend_html, Parts};
use super::html::{link, short_path, Links};
use crate::report::flame::{duration, escape};
use crate::report::SpanRecord;

/// Rows drawn per trace; the rest are counted.
pub const MAX_ROWS: usize = 2000;

/// The spans in drawing order (depth first, children by start), with their depth.
fn order<'a>(spans: &[&'a SpanRecord]) -> Vec<(&'a SpanRecord, usize)> {
    let ids: HashMap<&str, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id.as_str(), i))
        .collect();
    let mut kids: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    let mut roots = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        match ids.get(s.parent_span_id.as_str()) {
            Some(&p) if p != i && !s.parent_span_id.is_empty() => kids[p].push(i),
            _ => roots.push(i),
        }
    }
    let by_start = |v: &mut Vec<usize>| {
        v.sort_by_key(|&i| (spans[i].start_unix_nano, std::cmp::Reverse(spans[i].duration_ns)))
    };
    by_start(&mut roots);
    kids.iter_mut().for_each(by_start);
    let mut out = Vec::with_capacity(spans.len());
    let mut seen = vec![false; spans.len()];
    let mut stack: Vec<(usize, usize)> = roots.into_iter().rev().map(|i| (i, 0)).collect();
    while let Some((i, depth)) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue; // a cycle in bad input
        }
        out.push((spans[i], depth));
        stack.extend(kids[i].iter().rev().map(|&k| (k, depth + 1)));
    }
    // Spans only reachable through a cycle.
    for (i, s) in spans.iter().enumerate() {
        if !seen[i] {
            out.push((s, 0));
        }
    }
    out
}

/// The parts of each span, its children among `spans` covering what they cover.
pub fn parts_in_trace(spans: &[&SpanRecord]) -> HashMap<String, Parts> {
    let mut kids: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
    for s in spans {
        if !s.parent_span_id.is_empty() {
            kids.entry(&s.parent_span_id)
                .or_default()
                .push((s.start_unix_nano, s.end_unix_nano()));
        }
    }
    spans
        .iter()
        .map(|s| {
            let children = kids.remove(s.span_id.as_str()).unwrap_or_default();
            let c = covered(s.start_unix_nano, s.end_unix_nano(), children);
            (s.span_id.clone(), Parts::of(s, c))
        })
        .collect()
}

/// Draws the trace of `spans` (one trace's spans, any order); `highlight` marks one span.
pub fn waterfall(out: &mut String, spans: &[&SpanRecord], highlight: Option<&str>, links: &dyn Links) {
    let Some(t0) = spans.iter().map(|s| s.start_unix_nano).min() else {
        out.push_str("<p class=\"muted\">no spans</p>");
        return;
    };
    let t1 = spans.iter().map(|s| s.end_unix_nano()).max().unwrap_or(t0);
    let width = (t1 - t0).max(1) as f64;
    let parts = parts_in_trace(spans);
    let trace_id = spans.first().map(|s| s.trace_id.as_str()).unwrap_or("");
    let _ = write!(
        out,
        "<div class=\"waterfall\" data-trace-id=\"{}\" data-span-count=\"{}\"><p class=\"muted\">{} spans over {}</p>",
        escape(trace_id),
        spans.len(),
        spans.len(),
        duration(t1 - t0)
    );
    let mut all_segments = Vec::new();
    let ordered = order(spans);
    for (s, depth) in ordered.iter().take(MAX_ROWS) {
        let p = &parts[&s.span_id];
        let segs = p.segments();
        let offset = s.start_unix_nano - t0;
        let hl = if highlight == Some(s.span_id.as_str()) {
            " hl"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<div class=\"wf-row{hl}\" id=\"span-{id}\" data-span-id=\"{id}\"><span class=\"name\" style=\"padding-left:{}em\">",
            depth.min(&20),
            id = escape(&s.span_id),
        );
        link(
            out,
            links.name(&(s.service.clone(), s.name.clone())),
            &s.name,
            "class=\"name-link\"",
        );
        if let Some(href) = links.span(&s.span_id) {
            let _ = write!(out, " <a class=\"muted\" href=\"{}\">span</a>", escape(&href));
        }
        let _ = write!(
            out,
            "</span><div class=\"wf-track\"><div style=\"position:absolute;left:{:.3}%;width:{:.3}%;min-width:2px\">",
            100.0 * offset as f64 / width,
            100.0 * s.duration_ns as f64 / width,
        );
        let mut title = format!(
            "{} ({}), starts at +{}, lasts {}",
            s.name,
            s.service,
            duration(offset),
            duration(s.duration_ns)
        );
        for seg in &segs {
            let _ = write!(title, "\n{}: {}", seg.label, duration(seg.ns));
        }
        if let Some(f) = p.scaled {
            let _ = write!(title, "\n(estimates scaled by {f:.2} to fit the span)");
        }
        match s
            .hot_paths
            .first()
            .map(|h| h.stack.as_str())
            .or(s.hot_path.as_deref())
        {
            Some(path) => {
                let _ = write!(title, "\nhot path: {}", short_path(path));
            }
            None => title.push_str("\nno CPU samples"),
        }
        let attrs = format!(
            "data-duration-ns=\"{}\" data-start-offset-ns=\"{offset}\" data-name=\"{}\"",
            s.duration_ns,
            escape(&s.name)
        );
        bar_html(out, &segs, &attrs, &title);
        let _ = write!(
            out,
            "</div></div><span class=\"n\">{}</span></div>",
            duration(s.duration_ns)
        );
        all_segments.extend(segs);
    }
    if ordered.len() > MAX_ROWS {
        let _ = write!(
            out,
            "<p class=\"muted\">{} more spans not drawn</p>",
            ordered.len() - MAX_ROWS
        );
    }
    legend_html(out, &all_segments);
    out.push_str("</div>");
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoLinks;
    impl Links for NoLinks {
        fn name(&self, _: &(String, String)) -> Option<String> {
            None
        }
        fn service(&self, _: &str) -> Option<String> {
            None
        }
        fn trace(&self, _: &str, _: &str) -> Option<String> {
            None
        }
        fn span(&self, _: &str) -> Option<String> {
            None
        }
    }

    fn span(id: &str, parent: &str, start: u64, d: u64) -> SpanRecord {
        SpanRecord {
            name: format!("n{id}"),
            trace_id: "t".into(),
            span_id: id.into(),
            parent_span_id: parent.into(),
            start_unix_nano: start,
            duration_ns: d,
            ..Default::default()
        }
    }

    #[test]
    fn depth_first_children_by_start_and_cycles_survive() {
        let spans = [
            span("c2", "r", 50, 10),
            span("r", "", 0, 100),
            span("c1", "r", 10, 10),
            span("g", "c1", 12, 2),
            span("x", "y", 5, 1),
            span("y", "x", 6, 1),
        ];
        let refs: Vec<&SpanRecord> = spans.iter().collect();
        let got: Vec<(&str, usize)> = order(&refs)
            .iter()
            .map(|(s, d)| (s.span_id.as_str(), *d))
            .collect();
        assert_eq!(
            got,
            [("r", 0), ("c1", 1), ("g", 2), ("c2", 1), ("x", 0), ("y", 0)]
        );
        let mut html = String::new();
        waterfall(&mut html, &refs, Some("c1"), &NoLinks);
        assert_eq!(html.matches("class=\"wf-row").count(), 6);
        assert!(html.contains("wf-row hl\" id=\"span-c1\""));
        // The root: 20 of its 100 ns in child spans, the rest unexplained.
        assert!(
            html.contains("data-part=\"children\" data-label=\"in child spans\" data-ns=\"20\""),
            "{html}"
        );
    }
}
