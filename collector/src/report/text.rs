//! The report as a terminal table.

use std::fmt::Write;

use super::aggregate::Summary;
use super::flame::{duration, leaf_frames};
use super::read::ReadStats;

/// Frames of a hot path shown in the table (leaf-most).
const PATH_FRAMES: usize = 4;
/// Functions listed per span name.
const FUNCTIONS: usize = 3;

pub fn render(summary: &Summary, stats: &ReadStats, files: usize) -> String {
    let mut out = String::new();
    let names = summary.names();
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
        "{:<width$}  {:>7}  {:>10}  {:>10}  {:>8}  {:>6}",
        "SPAN NAME", "COUNT", "P50", "P99", "CPU UTIL", "CPU%"
    );
    for n in &names {
        let _ = writeln!(
            out,
            "{:<width$}  {:>7}  {:>10}  {:>10}  {:>7.1}%  {:>5.1}%",
            n.name,
            n.count,
            duration(n.p50_ns),
            duration(n.p99_ns),
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
    if stats.bad_lines > 0 {
        let _ = writeln!(out, "\n{} bad line(s) skipped:", stats.bad_lines);
        for e in &stats.bad_examples {
            let _ = writeln!(out, "  {e}");
        }
    }
    out
}
