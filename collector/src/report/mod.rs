//! `hotspan report FILE...`: what the file exporter wrote, summed up per span name (count,
//! p50/p99 duration, CPU utilization, hot path, top functions, weighted by CPU) and per set of
//! sample labels; `--html` writes the same as one self-contained page with a flame graph per
//! span name. The live page (`hotspan_ui`) reuses the parsing and the flame graphs.

mod aggregate;
pub mod flame;
mod html;
mod read;
mod span;
mod text;

use std::path::PathBuf;
use std::process::ExitCode;

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

/// Reads the files and sums them up.
pub fn summarize(args: &ReportArgs) -> Result<(Summary, ReadStats), ReadError> {
    let mut summary = Summary::default();
    let stats = read_files(&args.files, &args.prefix, |span| summary.add(&span))?;
    Ok((summary, stats))
}

/// Runs the subcommand: the table on stdout, the page to `--html`; exits non-zero only when a
/// file cannot be read or written (bad lines are counted, not fatal).
pub fn main(args: &ReportArgs) -> ExitCode {
    let (summary, stats) = match summarize(args) {
        Ok(done) => done,
        Err(e) => {
            eprintln!("hotspan report: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", text::render(&summary, &stats, args.files.len()));
    if stats.bad_lines > 0 {
        eprintln!(
            "hotspan report: {} bad line(s) skipped (not OTLP/JSON export requests)",
            stats.bad_lines
        );
    }
    if let Some(out) = &args.html {
        let page = html::render(&summary, &stats, args.files.len());
        if let Err(e) = std::fs::write(out, page) {
            eprintln!("hotspan report: {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
        eprintln!("hotspan report: wrote {}", out.display());
    }
    ExitCode::SUCCESS
}
