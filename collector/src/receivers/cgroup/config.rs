use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use hotspan_config::{bounds, ComponentConfig, FieldError};
use serde::Deserialize;

/// The shortest poll: cpu.stat is cheap, but below this the reads are noise, not signal
/// (the kernel's CFS period is 100 ms by default).
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Longest `collection_interval`: each reading is matched to the spans it overlaps, so its
/// throttling is spread over at most this long.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// The largest pid Linux gives (PID_MAX_LIMIT, 2^22 on 64-bit): above it no process exists.
pub const PID_MAX_LIMIT: u32 = 1 << 22;

/// One cgroup to watch, named by exactly one of `pid`, `pid_file` or `path`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Target {
    /// A process: its cgroup is found from `/proc/<pid>/cgroup` (and followed if it moves).
    pub pid: Option<u32>,
    /// A file holding the pid, re-read every poll, so a restarted service is followed.
    pub pid_file: Option<PathBuf>,
    /// A cgroup directory, e.g. `/sys/fs/cgroup/kubepods.slice/...` (v2) or
    /// `/sys/fs/cgroup/cpu/docker/<id>` (v1).
    pub path: Option<PathBuf>,
    /// The `service.name` of its metrics; must equal its spans' for the join.
    pub service_name: String,
    /// More resource attributes.
    pub attributes: BTreeMap<String, String>,
    /// Where the Go service says its GOMAXPROCS: expvar's `/debug/vars` with a `gomaxprocs`
    /// var, or a Prometheus page with client_golang's `go_sched_gomaxprocs_threads`.
    pub go_debug_vars: Option<String>,
}

/// How a target names its cgroup.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Pid(u32),
    PidFile(PathBuf),
    Path(PathBuf),
}

impl Target {
    /// Which way the target names its cgroup; `None` when not exactly one (validation says so).
    pub fn source(&self) -> Option<Source> {
        match (&self.pid, &self.pid_file, &self.path) {
            (Some(pid), None, None) => Some(Source::Pid(*pid)),
            (None, Some(file), None) => Some(Source::PidFile(file.clone())),
            (None, None, Some(path)) => Some(Source::Path(path.clone())),
            _ => None,
        }
    }

    /// How logs and self-metrics name the target: `pid:1234`, `pid_file:/run/x.pid`,
    /// `path:/sys/fs/cgroup/...`.
    pub fn label(&self) -> String {
        match self.source() {
            Some(Source::Pid(pid)) => format!("pid:{pid}"),
            Some(Source::PidFile(file)) => format!("pid_file:{}", file.display()),
            Some(Source::Path(path)) => format!("path:{}", path.display()),
            None => self.service_name.clone(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CgroupConfig {
    /// How often cpu.stat is read: each poll is one data point per metric per target.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub collection_interval: Duration,
    pub targets: Vec<Target>,
}

impl Default for CgroupConfig {
    fn default() -> Self {
        CgroupConfig {
            collection_interval: Duration::from_millis(100),
            targets: Vec::new(),
        }
    }
}

impl ComponentConfig for CgroupConfig {
    fn validate(&self, errs: &mut Vec<FieldError>) {
        bounds::check_duration(
            self.collection_interval,
            MIN_INTERVAL..=MAX_INTERVAL,
            "collection_interval",
            errs,
        );
        if self.targets.is_empty() {
            errs.push(FieldError::new("targets", "name at least one target"));
        }
        for (i, t) in self.targets.iter().enumerate() {
            let named = [t.pid.is_some(), t.pid_file.is_some(), t.path.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if named != 1 {
                errs.push(FieldError::new(
                    format!("targets[{i}]"),
                    "set exactly one of pid, pid_file or path",
                ));
            }
            if t.pid.is_some_and(|pid| !(1..=PID_MAX_LIMIT).contains(&pid)) {
                errs.push(FieldError::new(
                    format!("targets[{i}].pid"),
                    format!("must be a process id (1 to {PID_MAX_LIMIT})"),
                ));
            }
            if t.pid_file.as_ref().is_some_and(|f| f.as_os_str().is_empty()) {
                errs.push(FieldError::new(
                    format!("targets[{i}].pid_file"),
                    "must not be empty",
                ));
            }
            if t.path.as_ref().is_some_and(|p| !p.is_absolute()) {
                errs.push(FieldError::new(
                    format!("targets[{i}].path"),
                    "must be an absolute path to a cgroup directory",
                ));
            }
            if t.service_name.is_empty() {
                errs.push(FieldError::new(
                    format!("targets[{i}].service_name"),
                    "is required",
                ));
            }
            if let Some(url) = &t.go_debug_vars {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    errs.push(FieldError::new(
                        format!("targets[{i}].go_debug_vars"),
                        "must be an http:// or https:// URL",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod range_tests {
    use super::*;

    #[test]
    fn pids_are_ones_linux_can_give() {
        let pid = |n: u64| -> Vec<String> {
            hotspan_config::yaml_errors::<CgroupConfig>(&format!("targets: [{{pid: {n}, service_name: s}}]"))
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert!(pid(1).is_empty());
        assert!(pid(u64::from(PID_MAX_LIMIT)).is_empty());
        let refused = ["targets[0].pid: must be a process id (1 to 4194304)"];
        assert_eq!(pid(0), refused);
        assert_eq!(pid(u64::from(PID_MAX_LIMIT) + 1), refused);
        assert_eq!(pid(u64::from(u32::MAX)), refused);
    }

    #[test]
    fn collection_interval_is_from_10ms_to_an_hour() {
        let interval = |d: &str| -> Vec<String> {
            hotspan_config::yaml_errors::<CgroupConfig>(&format!(
                "{{collection_interval: {d}, targets: [{{pid: 1, service_name: s}}]}}"
            ))
            .iter()
            .map(ToString::to_string)
            .collect()
        };
        assert!(interval("10ms").is_empty());
        assert!(interval("1h").is_empty());
        let refused = ["collection_interval: must be from 10ms to 1h0m0s"];
        assert_eq!(interval("9ms"), refused);
        assert_eq!(interval("1h0m0.001s"), refused);
    }
}
