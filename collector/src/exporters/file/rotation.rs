//! `rotation` as otelcol's file exporter has it (its timberjack writer): before a record would
//! take the file past `max_megabytes`, the file is renamed `NAME-<UTC time>-size.EXT` and a
//! new one begun; only the newest `max_backups` backups are kept, and none older than
//! `max_days`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hotspan_config::FieldError;
use serde::Deserialize;
use tracing::warn;

use crate::exporters::ExportError;

/// timberjack's size when none is given.
const DEFAULT_MAX_MEGABYTES: u32 = 100;
/// A backup's time, as timberjack writes it (Go's layout `2006-01-02T15-04-05.000`).
const STAMP_LEN: usize = "2006-01-02T15-04-05.000".len();
/// Names tried for backups rotated in the same millisecond (`size`, `size_1`, ...).
const MAX_NAME_ATTEMPTS: u32 = 1000;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Rotation {
    /// 0 means timberjack's 100.
    pub max_megabytes: u32,
    /// 0: backups are not removed for their age.
    pub max_days: u32,
    /// 0: every backup is kept.
    pub max_backups: u32,
    pub localtime: bool,
}

impl Default for Rotation {
    fn default() -> Self {
        // otelcol's defaults once `rotation` is given.
        Rotation {
            max_megabytes: DEFAULT_MAX_MEGABYTES,
            max_days: 0,
            max_backups: 100,
            localtime: false,
        }
    }
}

impl Rotation {
    pub(super) fn validate(&self, errs: &mut Vec<FieldError>) {
        if self.localtime {
            errs.push(FieldError {
                path: "rotation.localtime".into(),
                message: "is not supported: backups are named in UTC, otelcol's default".into(),
            });
        }
    }

    fn max_bytes(&self) -> u64 {
        let megabytes = match self.max_megabytes {
            0 => DEFAULT_MAX_MEGABYTES,
            n => n,
        };
        u64::from(megabytes) << 20
    }
}

/// The file records go to, and with rotation, its size so far.
pub(super) struct Output {
    file: BufWriter<File>,
    path: PathBuf,
    size: u64,
    rotation: Option<Rotation>,
}

impl Output {
    pub(super) fn new(file: File, path: &Path, rotation: Option<Rotation>) -> io::Result<Output> {
        let size = file.metadata()?.len();
        if let Some(r) = &rotation {
            prune(path, r, SystemTime::now());
        }
        Ok(Output {
            file: BufWriter::new(file),
            path: path.to_owned(),
            size,
            rotation,
        })
    }

    pub(super) fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    /// Writes one record whole, rotating first if it would take the file past its size.
    pub(super) fn write(&mut self, record: &[u8]) -> Result<(), ExportError> {
        let len = record.len() as u64;
        if let Some(max) = self.rotation.as_ref().map(Rotation::max_bytes) {
            if len > max {
                return Err(ExportError::Permanent(format!(
                    "a {len} byte record is past rotation.max_megabytes"
                )));
            }
            if self.size + len > max {
                self.rotate()
                    .map_err(|e| ExportError::retryable(format!("rotating {}: {e}", self.path.display())))?;
            }
        }
        self.file
            .write_all(record)
            .map_err(|e| ExportError::retryable(format!("writing to file: {e}")))?;
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let now = SystemTime::now();
        std::fs::rename(&self.path, unique_backup(&self.path, now)?)?;
        let file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.file = BufWriter::new(file);
        self.size = 0;
        if let Some(r) = &self.rotation {
            prune(&self.path, r, now);
        }
        Ok(())
    }
}

/// `path` split as Go's filepath.Ext splits it: (directory, name before the extension,
/// extension with its dot).
fn parts(path: &Path) -> (PathBuf, String, String) {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match base.rfind('.') {
        Some(dot) => (dir, base[..dot].to_owned(), base[dot..].to_owned()),
        None => (dir, base, String::new()),
    }
}

/// A backup's name for a rotation at `now` that no file has yet.
fn unique_backup(path: &Path, now: SystemTime) -> io::Result<PathBuf> {
    let (dir, prefix, ext) = parts(path);
    let stamp = utc_stamp(now);
    let named = |reason: &str| dir.join(format!("{prefix}-{stamp}-{reason}{ext}"));
    std::iter::once(named("size"))
        .chain((1..=MAX_NAME_ATTEMPTS).map(|i| named(&format!("size_{i}"))))
        .find(|candidate| !candidate.exists())
        .ok_or_else(|| io::Error::other(format!("no free backup name for {}", path.display())))
}

/// Removes the backups of `path` past `max_backups` (the newest kept) and older than
/// `max_days`. A failure is logged: the next rotation tries again.
fn prune(path: &Path, rotation: &Rotation, now: SystemTime) {
    let (dir, prefix, ext) = parts(path);
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) => return warn!(error = %e, dir = %dir.display(), "file exporter: cannot list backups"),
    };
    let head = format!("{prefix}-");
    let mut backups: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stamp = name.strip_prefix(&head)?.strip_suffix(&ext)?.get(..STAMP_LEN)?;
            is_stamp(stamp).then(|| (stamp.to_owned(), entry.path()))
        })
        .collect();
    // Newest first; the stamp's layout sorts as time does.
    backups.sort_by(|a, b| b.0.cmp(&a.0));
    let mut stamps_kept = 0;
    let mut last_stamp = None;
    let oldest = (rotation.max_days > 0)
        .then(|| utc_stamp(now - Duration::from_secs(u64::from(rotation.max_days) * 86_400)));
    for (stamp, backup) in backups {
        // As timberjack, backups of one time count once.
        if last_stamp.as_ref() != Some(&stamp) {
            stamps_kept += 1;
            last_stamp = Some(stamp.clone());
        }
        let too_many = rotation.max_backups > 0 && stamps_kept > rotation.max_backups;
        let too_old = oldest.as_ref().is_some_and(|oldest| &stamp < oldest);
        if too_many || too_old {
            if let Err(e) = std::fs::remove_file(&backup) {
                warn!(error = %e, backup = %backup.display(), "file exporter: cannot remove a backup");
            }
        }
    }
}

/// Whether `s` has the layout `2006-01-02T15-04-05.000`.
fn is_stamp(s: &str) -> bool {
    s.len() == STAMP_LEN
        && s.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 | 13 | 16 => b == b'-',
            10 => b == b'T',
            19 => b == b'.',
            _ => b.is_ascii_digit(),
        })
}

/// `t` in UTC as `2006-01-02T15-04-05.000`.
fn utc_stamp(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}-{:02}-{:02}.{:03}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since.subsec_millis()
    )
}

/// The date `days` after 1970-01-01 (Howard Hinnant's civil_from_days, for days >= 0).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_timberjacks_in_utc() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(utc_stamp(at), "2023-11-14T22-13-20.123");
        assert_eq!(utc_stamp(UNIX_EPOCH), "1970-01-01T00-00-00.000");
        // A leap day.
        let leap = UNIX_EPOCH + Duration::from_secs(1_709_208_000);
        assert_eq!(utc_stamp(leap), "2024-02-29T12-00-00.000");
        assert!(is_stamp("2023-11-14T22-13-20.123"));
        assert!(!is_stamp("2023-11-14T22:13:20.123"));
    }

    #[test]
    fn backups_are_named_and_pruned_as_timberjack_does() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("spans.jsonl");
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let day = Duration::from_secs(86_400);
        for age in [0, 1, 2, 3, 10] {
            let at = now - day * age;
            std::fs::write(unique_backup(&path, at).expect("name"), "x").expect("backup");
        }
        // A second rotation in the same millisecond gets the next name.
        let again = unique_backup(&path, now).expect("name");
        assert!(
            again.ends_with("spans-2023-11-14T22-13-20.000-size_1.jsonl"),
            "{again:?}"
        );
        std::fs::write(dir.path().join("other-2023-11-14T22-13-20.000-size.jsonl"), "x").expect("other");

        let rotation = Rotation {
            max_backups: 3,
            max_days: 5,
            ..Rotation::default()
        };
        prune(&path, &rotation, now);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "other-2023-11-14T22-13-20.000-size.jsonl",
                "spans-2023-11-12T22-13-20.000-size.jsonl",
                "spans-2023-11-13T22-13-20.000-size.jsonl",
                "spans-2023-11-14T22-13-20.000-size.jsonl",
            ]
        );
        // By age alone: six days old goes, however few backups there are.
        let old = unique_backup(&path, now - day * 6).expect("name");
        std::fs::write(&old, "x").expect("backup");
        let by_age = Rotation {
            max_backups: 0,
            max_days: 5,
            ..Rotation::default()
        };
        prune(&path, &by_age, now);
        assert!(
            !old.exists()
                && dir
                    .path()
                    .join("spans-2023-11-12T22-13-20.000-size.jsonl")
                    .exists()
        );
    }
}
