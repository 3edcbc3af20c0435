//! The report as a terminal table.

use std::fmt::Write;

use std::collections::HashMap;

use super::aggregate::Summary;
use super::flame::{duration, leaf_frames};
use super::read::ReadStats;
use crate::views::html::COLUMNS_EXPLAINED;
use crate::views::{slow_fast, NameAgg, Views};

/// Frames of a hot path shown in the table (leaf-most).
const PATH_FRAMES: usize = 4;
/// Functions listed per span name.
const FUNCTIONS: usize = 3;

/// The views' aggregates by span name alone (services summed), as the table is.
fn by_name(views: &Views) -> HashMap<&str, NameAgg> {
    let mut out: HashMap<&str, NameAgg> = HashMap::new();
    for ((_, name), n) in &views.names {
        out.entry(name.as_str()).or_default().merge(n);
    }
    out
}

/// Words into lines of at most `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines
}

/// `CPU 20%, waiting 50% (sleep 40%, ...), in child spans 10%, unexplained 20%`.
fn time_line(n: &NameAgg) -> String {
    let segs = n.parts.mean_segments();
    let total: u64 = segs.iter().map(|s| s.ns).sum();
    let pct = |ns: u64| 100.0 * ns as f64 / total.max(1) as f64;
    let mut parts: Vec<String> = Vec::new();
    for s in &segs {
        parts.push(format!("{} {:.0}%", s.label, pct(s.ns)));
    }
    parts.join(", ")
}

pub fn render(summary: &Summary, views: &Views, stats: &ReadStats, files: usize) -> String {
    let mut out = String::new();
    let names = summary.names();
    let aggs = by_name(views);
    let sampled: usize = names.iter().map(|n| n.with_samples).sum();
    let _ = writeln!(
        out,
        "hotspan report: {} spans ({sampled} with samples) from {files} file(s); {} traces lines, {} profiles lines skipped, {} bad lines",
        summary.spans, stats.trace_lines, stats.profile_lines, stats.bad_lines
    );
    out.push('\n');
    let width = names
        .iter()
        .map(|n| n.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(9);
    let _ = writeln!(
        out,
        "{:<width$}  {:>7}  {:>10}  {:>10}  {:>10}  {:>10}  {:>8}  {:>6}",
        "SPAN NAME", "COUNT", "P50", "P90", "P99", "CPU/SPAN", "CPU UTIL", "CPU%"
    );
    for n in &names {
        let _ = writeln!(
            out,
            "{:<width$}  {:>7}  {:>10}  {:>10}  {:>10}  {:>10}  {:>7.1}%  {:>5.1}%",
            n.name,
            n.count,
            duration(n.p50_ns),
            duration(n.p90_ns),
            duration(n.p99_ns),
            duration(n.cpu_ns / n.count.max(1) as u64),
            100.0 * n.mean_utilization,
            100.0 * n.weight as f64 / summary.total_weight.max(1) as f64,
        );
        if let Some((path, share)) = n.hot_path() {
            let _ = writeln!(
                out,
                "    hot path {:.1}%: {}",
                100.0 * share,
                leaf_frames(path, PATH_FRAMES)
            );
        }
        if !n.functions.is_empty() {
            let top: Vec<String> = n
                .functions
                .iter()
                .take(FUNCTIONS)
                .map(|(f, s)| format!("{f} {:.1}%", 100.0 * s))
                .collect();
            let _ = writeln!(out, "    top: {}", top.join(", "));
        }
        if let Some(agg) = aggs.get(n.name.as_str()) {
            let _ = writeln!(out, "    time: {}", time_line(agg));
            if let Some(sf) = slow_fast(&agg.kept_merged) {
                if let Some((f, b, s)) = sf.grew() {
                    let _ = writeln!(
                        out,
                        "    slowest 10% vs middle: {f} +{} CPU per span ({} -> {})",
                        duration((s - b) as u64),
                        duration(*b as u64),
                        duration(*s as u64)
                    );
                }
            }
        }
    }
    let groups = summary.label_groups();
    if !groups.is_empty() {
        out.push_str("\nby labels:\n");
        for g in &groups {
            let _ = write!(out, "  {}: {:.0}% of CPU", g.labels, 100.0 * g.share);
            if let Some(f) = &g.top_function {
                let _ = write!(out, ", top: {f}");
            }
            out.push('\n');
        }
    }
    out.push('\n');
    for line in wrap(COLUMNS_EXPLAINED, 100) {
        let _ = writeln!(out, "{line}");
    }
    out.push_str(
        "CPU outside spans (background goroutines, the runtime, GC workers) is on no span and not in this report;\n\
         the collector counts those samples as hotspan_spanprofile_unjoined_samples.\n",
    );
    if stats.bad_lines > 0 {
        let _ = writeln!(out, "\n{} bad line(s) skipped:", stats.bad_lines);
        for e in &stats.bad_examples {
            let _ = writeln!(out, "  {e}");
        }
    }
    out
}
