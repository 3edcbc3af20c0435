//! `hotspan report FILE...`: what the file exporter wrote, summed up per span name (count,
//! p50/p90/p99 duration, CPU per span, CPU utilization, hot path, top functions, weighted by
//! CPU, where the time goes, slow versus fast) and per set of sample labels; `--html` writes
//! the views of [`crate::views`] as one self-contained page: per span name an aggregate and a
//! differential flame graph, the latency breakdown, example traces as waterfalls, the label
//! breakdown. The live page (`hotspan_ui`) shares the parsing and the views.

mod aggregate;
pub mod flame;
mod html;
mod read;
mod span;
mod text;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::views::{Interner, Limits, Views};

pub use aggregate::{LabelGroup, NameSummary, Summary};
pub use html::CSS;
pub use read::{read_files, ReadError, ReadStats};
pub use span::{HotPath, SpanRecord, DEFAULT_PREFIX};

/// `hotspan report` arguments.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Files the file exporter wrote (OTLP/JSON, one export request per line).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Also write the report as a self-contained HTML page with flame graphs.
    #[arg(long, value_name = "OUT.html")]
    pub html: Option<PathBuf>,
    /// The spanprofile connector's `attribute_prefix`.
    #[arg(long, default_value = DEFAULT_PREFIX)]
    pub prefix: String,
}

/// Example traces drawn per span name, and names that get them.
const TRACES_PER_NAME: usize = 2;
const NAMES_WITH_TRACES: usize = 20;
/// Spans kept for the example traces in all.
const TRACE_SPANS: usize = 50_000;

/// What the report shows.
pub struct Report {
    pub summary: Summary,
    /// Merged, ready to draw.
    pub views: Views,
    pub stats: ReadStats,
    /// Example traces (the slowest span of a name and one near its median), by trace id.
    pub traces: BTreeMap<String, Vec<SpanRecord>>,
}

/// Reads the files and sums them up.
pub fn summarize(args: &ReportArgs) -> Result<(Summary, ReadStats), ReadError> {
    let mut summary = Summary::default();
    let stats = read_files(&args.files, &args.prefix, |spans| {
        spans.iter().for_each(|s| summary.add(s))
    })?;
    Ok((summary, stats))
}

/// Reads the files for the views; with `traces`, reads them again for the spans of the
/// example traces (a trace's spans may be on any line).
pub fn build(args: &ReportArgs, traces: bool) -> Result<Report, ReadError> {
    let mut summary = Summary::default();
    let mut views = Views::new(Limits::REPORT);
    let mut stacks = Interner::new(Limits::REPORT.stacks);
    let stats = read_files(&args.files, &args.prefix, |spans| {
        spans.iter().for_each(|s| summary.add(s));
        views.add_group(&spans, &mut stacks);
    })?;
    let views = views.into_merged();
    let mut wanted = HashSet::new();
    if traces {
        for (_, n) in crate::views::html::sorted_names(&views)
            .into_iter()
            .take(NAMES_WITH_TRACES)
        {
            wanted.extend(example_traces(n));
        }
    }
    let mut out: BTreeMap<String, Vec<SpanRecord>> = BTreeMap::new();
    if !wanted.is_empty() {
        let mut kept = 0;
        read_files(&args.files, &args.prefix, |spans| {
            for s in spans {
                if kept < TRACE_SPANS && wanted.contains(&s.trace_id) {
                    kept += 1;
                    out.entry(s.trace_id.clone()).or_default().push(s);
                }
            }
        })?;
    }
    Ok(Report {
        summary,
        views,
        stats,
        traces: out,
    })
}

/// The trace ids of a name's slowest kept span and of the one nearest its median.
pub fn example_traces(n: &crate::views::NameAgg) -> Vec<String> {
    let mut kept: Vec<_> = n.kept_merged.iter().collect();
    kept.sort_by_key(|k| k.duration_ns);
    let p50 = n.durations.percentile(0.5);
    let mut out = Vec::new();
    if let Some(slowest) = kept.last() {
        out.push(slowest.trace_id.clone());
    }
    if let Some(median) = kept.iter().min_by_key(|k| k.duration_ns.abs_diff(p50)) {
        if !out.contains(&median.trace_id) {
            out.push(median.trace_id.clone());
        }
    }
    out.truncate(TRACES_PER_NAME);
    out
}

/// Runs the subcommand: the table on stdout, the page to `--html`; exits non-zero only when a
/// file cannot be read or written (bad lines are counted, not fatal).
pub fn main(args: &ReportArgs) -> ExitCode {
    let report = match build(args, args.html.is_some()) {
        Ok(done) => done,
        Err(e) => {
            eprintln!("hotspan report: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stats = &report.stats;
    print!(
        "{}",
        text::render(&report.summary, &report.views, stats, args.files.len())
    );
    if stats.bad_lines > 0 {
        eprintln!(
            "hotspan report: {} bad line(s) skipped (not OTLP/JSON export requests)",
            stats.bad_lines
        );
    }
    if let Some(out) = &args.html {
        let page = html::render(&report, args.files.len());
        if let Err(e) = std::fs::write(out, page) {
            eprintln!("hotspan report: {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
        eprintln!("hotspan report: wrote {}", out.display());
    }
    ExitCode::SUCCESS
}
