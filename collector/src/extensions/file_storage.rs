//! The `file_storage` extension: a directory where components keep data across restarts (an
//! exporter's persistent sending queue). Each component gets its own subdirectory.
//!
//! Durability: what a component writes here is written to the OS before the component says it
//! has it, so a crash or `kill -9` of hotspan loses nothing. With `fsync: false` (otelcol's
//! default) the OS may still hold it in memory: a power loss or kernel crash can lose the last
//! seconds of acknowledged data. `fsync: true` syncs every write and its directory entry to disk
//! before acknowledging, at the cost of a disk flush per batch.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hotspan_config::{bounds, ComponentConfig, FieldError, Kind};
use serde::Deserialize;

use crate::component::{BoxError, BuildContext, BuiltExtension, ComponentType, ExtensionType, Lifecycle};

/// otelcol's `file_storage` keys (the ones that apply to files hotspan writes itself).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FileStorageConfig {
    /// Where component subdirectories go. Required: a default under /var/lib would need root.
    pub directory: String,
    /// How long one write may take before the sender is told to retry, so a stuck disk (a
    /// hung network mount) does not hang receivers. otelcol uses it for its file lock wait.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub timeout: Duration,
    /// Create `directory` when it is missing, instead of refusing to start.
    pub create_directory: bool,
    /// Sync every write to disk before acknowledging it: survives power loss, not only crashes.
    pub fsync: bool,
}

impl Default for FileStorageConfig {
    fn default() -> Self {
        FileStorageConfig {
            directory: String::new(),
            timeout: Duration::from_secs(1),
            create_directory: false,
            fsync: false,
        }
    }
}

impl ComponentConfig for FileStorageConfig {
    fn validate(&self, errs: &mut Vec<FieldError>) {
        if self.directory.is_empty() {
            errs.push(FieldError {
                path: "directory".into(),
                message: "is required".into(),
            });
        }
        // The wait for another process's lock, at start: longer than an hour is a start that hangs.
        let hour = Duration::from_secs(3600);
        bounds::check_duration(self.timeout, Duration::from_nanos(1)..=hour, "timeout", errs);
    }
}

impl ComponentType for FileStorage {
    const TYPE_NAME: &'static str = "file_storage";
    type Config = FileStorageConfig;
}

impl ExtensionType for FileStorage {
    fn build(_ctx: &BuildContext, config: FileStorageConfig) -> Result<BuiltExtension, BoxError> {
        Ok(BuiltExtension::of(Arc::new(FileStorage::open(config)?)))
    }
}

/// What the extension offers other components, found with `Extensions::get::<FileStorage>`.
pub struct FileStorage {
    directory: PathBuf,
    timeout: Duration,
    fsync: bool,
}

impl FileStorage {
    /// Checks (or creates) the directory; I/O belongs here, at build, not in validation.
    pub fn open(config: FileStorageConfig) -> Result<FileStorage, BoxError> {
        let directory = PathBuf::from(&config.directory);
        match std::fs::metadata(&directory) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("directory {} is not a directory", directory.display()).into()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && config.create_directory => {
                std::fs::create_dir_all(&directory)
                    .map_err(|e| format!("creating directory {}: {e}", directory.display()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "directory {} does not exist (create it, or set create_directory: true)",
                    directory.display()
                )
                .into())
            }
            Err(e) => return Err(format!("directory {}: {e}", directory.display()).into()),
        }
        Ok(FileStorage {
            directory,
            timeout: config.timeout,
            fsync: config.fsync,
        })
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn fsync(&self) -> bool {
        self.fsync
    }

    /// The subdirectory for one component, created if missing: `<directory>/<kind>_<id>`, the
    /// id escaped so that distinct ids never map to one name (`otlp/a` -> `exporter_otlp~2Fa`).
    /// Two queues can never share one: the queue locks its directory while open (and a
    /// reloaded exporter of the same id takes over its predecessor's).
    pub fn component_dir(&self, kind: Kind, id: &str) -> Result<PathBuf, BoxError> {
        let dir = self.directory.join(format!("{}_{}", kind.as_str(), sanitize(id)));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        Ok(dir)
    }
}

/// Nothing runs: the directory is used by the components that asked for it.
#[async_trait]
impl Lifecycle for FileStorage {}

/// Keeps `[A-Za-z0-9._-]`, writes every other byte as `~XX` (and `~` itself, so the mapping is
/// one to one), as otelcol's file_storage does for its file names.
fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("~{b:02X}"));
        }
    }
    // "." and ".." are not names of their own.
    if out.chars().all(|c| c == '.') {
        out = out.replace('.', "~2E");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_validation() {
        let c: FileStorageConfig = hotspan_config::parse_yaml(
            "directory: /tmp/x
fsync: true",
        )
        .unwrap();
        assert_eq!(c.timeout, Duration::from_secs(1));
        assert!(c.fsync && !c.create_directory);
        assert!(hotspan_config::yaml_errors::<FileStorageConfig>("directory: /x").is_empty());
        let errs = hotspan_config::yaml_errors::<FileStorageConfig>("timeout: 0s");
        let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["directory", "timeout"]);
        let errs = hotspan_config::yaml_errors::<FileStorageConfig>("directry: /x");
        assert_eq!(errs.len(), 1, "unknown keys are refused: {errs:?}");
    }

    #[test]
    fn sanitize_is_one_to_one_and_safe() {
        assert_eq!(sanitize("otlp_grpc"), "otlp_grpc");
        assert_eq!(sanitize("otlp/a b"), "otlp~2Fa~20b");
        assert_ne!(sanitize("a/b"), sanitize("a~2Fb"));
        assert_eq!(sanitize(".."), "~2E~2E");
        assert!(!sanitize("../../etc").contains('/'));
    }

    #[test]
    fn directory_must_exist_unless_created() {
        let base = std::env::temp_dir().join(format!("hotspan-fs-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let config = |create| FileStorageConfig {
            directory: base.join("store").display().to_string(),
            create_directory: create,
            ..Default::default()
        };
        let err = FileStorage::open(config(false)).err().map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("does not exist"));
        let storage = FileStorage::open(config(true)).unwrap();
        let dir = storage.component_dir(Kind::Exporter, "otlp/a").unwrap();
        assert!(dir.ends_with("exporter_otlp~2Fa") && dir.is_dir());
        // The same component again (a reloaded exporter): the same directory.
        assert_eq!(storage.component_dir(Kind::Exporter, "otlp/a").unwrap(), dir);
        let _ = std::fs::remove_dir_all(&base);
    }
}
