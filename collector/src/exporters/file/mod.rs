//! The `file` exporter, as otelcol's (contrib) writes: each export request as a line of
//! OTLP/JSON, or with `format: proto` as protobuf behind its length (4 bytes, big-endian); the
//! file truncated when hotspan starts unless `append` or `rotation` (rotation.rs).

mod rotation;

use std::collections::BTreeSet;
use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
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
use rotation::{Output, Rotation};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub path: String,
    /// How often buffered lines reach the file.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub flush_interval: Duration,
    /// `json` or `proto`.
    pub format: String,
    /// Add to the file instead of truncating it at start.
    pub append: bool,
    /// Make the file's directory, and those above it, if missing.
    pub create_directory: bool,
    /// Octal mode for the directories made (less the umask), as otelcol takes it.
    pub directory_permissions: String,
    /// Set: a new file past a size, as otelcol's; the file is then appended to at start.
    pub rotation: Option<Rotation>,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            path: String::new(),
            flush_interval: Duration::from_secs(1),
            format: "json".into(),
            append: false,
            create_directory: false,
            directory_permissions: String::new(),
            rotation: None,
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
        if self.format != "json" && self.format != "proto" {
            errs.push(FieldError {
                path: "format".into(),
                message: format!("\"{}\" is not supported; use json or proto", self.format),
            });
        }
        if let Some(rotation) = &self.rotation {
            if self.append {
                errs.push(FieldError {
                    path: "append".into(),
                    message: "cannot be set with rotation, as in otelcol".into(),
                });
            }
            rotation.validate(errs);
        }
        if !self.directory_permissions.is_empty() {
            if !self.create_directory {
                errs.push(FieldError {
                    path: "directory_permissions".into(),
                    message: "takes create_directory: true, as in otelcol".into(),
                });
            }
            if directory_mode(&self.directory_permissions).is_none() {
                errs.push(FieldError {
                    path: "directory_permissions".into(),
                    message: format!(
                        "\"{}\" is not an octal mode of at most 0777",
                        self.directory_permissions
                    ),
                });
            }
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
        let parent = Path::new(&config.path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty());
        if let (true, Some(dir)) = (config.create_directory, parent) {
            // Go's 0777 less the umask when no mode is given, as os.MkdirAll.
            let mode = directory_mode(&config.directory_permissions).unwrap_or(0o777);
            DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        // Always in append mode: a reload's exporter and the one it replaces, draining, may
        // write the same file at once, and only appends keep both whole.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.path)
            .map_err(|e| format!("cannot open {}: {e}", config.path))?;
        // With rotation, timberjack appends to the file it finds.
        if !config.append && config.rotation.is_none() && first_opening(&config.path) {
            file.set_len(0)
                .map_err(|e| format!("cannot truncate {}: {e}", config.path))?;
        }
        Ok(BuiltExporter::direct(FileExporter {
            writer: Arc::new(Mutex::new(
                Output::new(file, Path::new(&config.path), config.rotation)
                    .map_err(|e| format!("cannot open {}: {e}", config.path))?,
            )),
            proto: config.format == "proto",
            flush_interval: config.flush_interval,
            stop: CancellationToken::new(),
        }))
    }
}

pub struct FileExporter {
    /// Lines are written whole under the lock, so concurrent exports never interleave.
    writer: Arc<Mutex<Output>>,
    /// Length-prefixed protobuf rather than JSON lines.
    proto: bool,
    flush_interval: Duration,
    stop: CancellationToken,
}

/// Whether this process has not opened `path` before: otelcol truncates when it starts, and
/// so does hotspan, but not on a reload, which would lose what the old pipelines wrote.
fn first_opening(path: &str) -> bool {
    static OPENED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
    OPENED.lock().unwrap_or_else(|p| p.into_inner()).insert(key)
}

/// `directory_permissions` as a mode: octal, at most 0777.
fn directory_mode(text: &str) -> Option<u32> {
    u32::from_str_radix(text, 8).ok().filter(|&mode| mode <= 0o777)
}

fn flush(writer: &Mutex<Output>) {
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
        let record = if self.proto {
            let message = batch.encode(Encoding::Protobuf);
            let len = u32::try_from(message.len()).map_err(|_| {
                ExportError::Permanent(format!(
                    "a {} byte request does not fit the file's 4-byte length",
                    message.len()
                ))
            })?;
            [&len.to_be_bytes()[..], &message].concat()
        } else {
            let mut line = batch.encode(Encoding::Json);
            line.push(b'\n');
            line
        };
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write(&record)
    }

    async fn shutdown(&self) {
        self.stop.cancel();
        flush(&self.writer);
    }
}
