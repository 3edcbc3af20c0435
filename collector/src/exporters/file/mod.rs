//! The `file` exporter: one OTLP/JSON export request per line, as otelcol's file exporter
//! writes them, appended to `path`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hotspan_config::{bounds, ComponentConfig, FieldError, Signal};
use hotspan_proto::{Batch, Encoding};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::component::{BoxError, BuildContext, BuiltExporter, ComponentType, Exporter, ExporterType};
use crate::exporters::ExportError;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub path: String,
    /// How often buffered lines reach the file.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub flush_interval: Duration,
    /// Only `json` so far.
    pub format: String,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            path: String::new(),
            flush_interval: Duration::from_secs(1),
            format: "json".into(),
        }
    }
}

impl ComponentConfig for FileConfig {
    fn validate(&self, errs: &mut Vec<FieldError>) {
        if self.path.is_empty() {
            errs.push(FieldError {
                path: "path".into(),
                message: "is required".into(),
            });
        }
        if self.format != "json" {
            errs.push(FieldError {
                path: "format".into(),
                message: format!("\"{}\" is not supported; use json", self.format),
            });
        }
        // Past an hour, a crash loses that much of the file.
        let hour = Duration::from_secs(3600);
        bounds::check_duration(
            self.flush_interval,
            Duration::from_nanos(1)..=hour,
            "flush_interval",
            errs,
        );
    }
}

impl ComponentType for FileExporter {
    const TYPE_NAME: &'static str = "file";
    type Config = FileConfig;
}

impl ExporterType for FileExporter {
    const SIGNALS: &'static [Signal] = &Signal::ALL;

    fn build(_ctx: &BuildContext, config: FileConfig) -> Result<BuiltExporter, BoxError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.path)
            .map_err(|e| format!("cannot open {}: {e}", config.path))?;
        Ok(BuiltExporter::direct(FileExporter {
            writer: Arc::new(Mutex::new(BufWriter::new(file))),
            flush_interval: config.flush_interval,
            stop: CancellationToken::new(),
        }))
    }
}

pub struct FileExporter {
    /// Lines are written whole under the lock, so concurrent exports never interleave.
    writer: Arc<Mutex<BufWriter<File>>>,
    flush_interval: Duration,
    stop: CancellationToken,
}

fn flush(writer: &Mutex<BufWriter<File>>) {
    if let Err(e) = writer.lock().unwrap_or_else(|p| p.into_inner()).flush() {
        warn!(error = %e, "file exporter could not flush");
    }
}

#[async_trait]
impl Exporter for FileExporter {
    async fn start(&self) -> Result<(), BoxError> {
        let (writer, stop, every) = (self.writer.clone(), self.stop.clone(), self.flush_interval);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => flush(&writer),
                    _ = stop.cancelled() => break,
                }
            }
        });
        Ok(())
    }

    async fn export(&self, batch: &Batch) -> Result<(), ExportError> {
        let mut line = batch.encode(Encoding::Json);
        line.push(b'\n');
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        writer
            .write_all(&line)
            .map_err(|e| ExportError::retryable(format!("writing to file: {e}")))
    }

    async fn shutdown(&self) {
        self.stop.cancel();
        flush(&self.writer);
    }
}
