//! The report as one self-contained HTML page: inline CSS and SVG, no network, no script
//! needed (a little for folding sections).

use std::fmt::Write;

use super::aggregate::Summary;
use super::flame::{self, duration, escape, leaf_frames};
use super::read::ReadStats;

/// Page CSS, shared with the live page.
pub const CSS: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:.5em 0}th,td{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}code{font-size:.9em}\
section{margin:1.5em 0}h2{font-size:1.1em;margin-bottom:.2em}svg{max-width:100%;height:auto}\
.muted{color:#777}a{color:#0645ad}";

const FLAME_WIDTH: usize = 1200;

pub fn render(summary: &Summary, stats: &ReadStats, files: usize) -> String {
    let names = summary.names();
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>hotspan report</title><style>{CSS}</style></head><body>"
    );
    let _ = write!(
        out,
        "<h1>hotspan report</h1><p class=\"muted\">{} spans from {files} file(s); {} traces lines, {} profiles lines skipped, {} bad lines</p>",
        summary.spans, stats.trace_lines, stats.profile_lines, stats.bad_lines
    );
    out.push_str("<table><tr><th>span name</th><th>count</th><th>p50</th><th>p99</th><th>CPU util</th><th>CPU share</th><th>hot path</th><th>top functions</th></tr>");
    for (i, n) in names.iter().enumerate() {
        let hot = n
            .hot_path()
            .map(|(p, s)| format!("{:.1}% <code>{}</code>", 100.0 * s, escape(&leaf_frames(p, 3))))
            .unwrap_or_default();
        let top: Vec<String> = n
            .functions
            .iter()
            .take(3)
            .map(|(f, s)| format!("<code>{}</code> {:.1}%", escape(f), 100.0 * s))
            .collect();
        let _ = write!(
            out,
            "<tr><td><a href=\"#name-{i}\">{}</a></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1}%</td><td class=\"n\">{:.1}%</td><td>{hot}</td><td>{}</td></tr>",
            escape(&n.name),
            n.count,
            duration(n.p50_ns),
            duration(n.p99_ns),
            100.0 * n.mean_utilization,
            100.0 * n.weight as f64 / summary.total_weight.max(1) as f64,
            top.join(", ")
        );
    }
    out.push_str("</table>");
    let groups = summary.label_groups();
    if !groups.is_empty() {
        out.push_str("<h2>By labels</h2><table><tr><th>labels</th><th>spans</th><th>CPU share</th><th>top function</th></tr>");
        for g in &groups {
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
    }
    for (i, n) in names.iter().enumerate() {
        let _ = write!(
            out,
            "<section id=\"name-{i}\" data-span-name=\"{}\"><h2>{}</h2>",
            escape(&n.name),
            escape(&n.name)
        );
        let stacks: Vec<(&str, u64)> = n.stacks.iter().map(|(s, w)| (s.as_str(), *w)).collect();
        let unit = if n.cpu_ns > 0 { "ns" } else { "samples" };
        match flame::svg(&n.name, unit, &stacks, FLAME_WIDTH) {
            Some(svg) => out.push_str(&svg),
            None => out.push_str("<p class=\"muted\">no samples joined to these spans</p>"),
        }
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
