//! Reading file-exporter output: one OTLP/JSON export request per line. Traces lines are
//! decoded; profiles, metrics and logs lines are recognised and skipped; anything else is a
//! bad line, counted and shown, never fatal.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use hotspan_proto::{Encoding, TracesBatch};

use super::span::SpanRecord;

/// Inputs larger than this get a progress line on a terminal's stderr.
const PROGRESS_BYTES: u64 = 16 << 20;
/// Bad lines quoted in the summary; the rest are only counted.
const BAD_LINES_SHOWN: usize = 5;

/// What reading found, line by line.
#[derive(Debug, Default)]
pub struct ReadStats {
    pub trace_lines: usize,
    pub profile_lines: usize,
    /// Metrics and logs lines, and empty requests.
    pub other_lines: usize,
    pub bad_lines: usize,
    /// The first few bad lines: `file:line: why`.
    pub bad_examples: Vec<String>,
}

/// Why a file could not be read at all.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct ReadError {
    pub path: String,
    pub source: std::io::Error,
}

/// Counts bytes read, for progress.
struct Counting<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// A stderr line now and then while a large input is read on a terminal.
struct Progress {
    total: u64,
    done_before: u64,
    last: Instant,
    shown: bool,
}

impl Progress {
    fn new(total: u64) -> Option<Progress> {
        (total >= PROGRESS_BYTES && std::io::stderr().is_terminal()).then(|| Progress {
            total,
            done_before: 0,
            last: Instant::now(),
            shown: false,
        })
    }

    fn tick(&mut self, in_file: u64) {
        if self.last.elapsed() < Duration::from_millis(250) {
            return;
        }
        self.last = Instant::now();
        self.shown = true;
        let done = self.done_before + in_file;
        eprint!(
            "\rreading: {} / {} MiB ({:.0}%)",
            done >> 20,
            self.total >> 20,
            100.0 * done as f64 / self.total.max(1) as f64
        );
    }

    fn finish(&self) {
        if self.shown {
            eprintln!();
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Reads every file, calling `each` with the spans of every export request (line) found.
pub fn read_files(
    paths: &[impl AsRef<Path>],
    prefix: &str,
    mut each: impl FnMut(Vec<SpanRecord>),
) -> Result<ReadStats, ReadError> {
    let err = |p: &Path| {
        let path = p.display().to_string();
        move |source| ReadError { path, source }
    };
    let mut total = 0;
    for p in paths {
        let p = p.as_ref();
        total += std::fs::metadata(p).map_err(err(p))?.len();
    }
    let mut progress = Progress::new(total);
    let mut stats = ReadStats::default();
    let mut line = Vec::new();
    for p in paths {
        let p = p.as_ref();
        let file = File::open(p).map_err(err(p))?;
        let mut reader = BufReader::new(Counting { inner: file, read: 0 });
        let mut number = 0;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).map_err(err(p))? == 0 {
                break;
            }
            number += 1;
            if let Some(progress) = progress.as_mut() {
                progress.tick(reader.get_ref().read);
            }
            let text = line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            match TracesBatch::decode(text, Encoding::Json) {
                Ok(batch) if batch.span_count() > 0 => {
                    stats.trace_lines += 1;
                    each(SpanRecord::all(&batch, prefix));
                }
                _ if contains(text, b"\"resourceProfiles\"") => stats.profile_lines += 1,
                Ok(_) => stats.other_lines += 1,
                Err(e) => {
                    stats.bad_lines += 1;
                    if stats.bad_examples.len() < BAD_LINES_SHOWN {
                        stats.bad_examples.push(format!("{}:{number}: {e}", p.display()));
                    }
                }
            }
        }
        if let Some(progress) = progress.as_mut() {
            progress.done_before += reader.get_ref().read;
        }
    }
    if let Some(progress) = &progress {
        progress.finish();
    }
    Ok(stats)
}
