//! Finding a cgroup's CPU files and reading them, for cgroup v1 and v2. Everything takes its
//! inputs (file text, a proc root, mount tables) as arguments so the tests can plant files.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum CgroupError {
    #[error("reading {path}: {kind}")]
    Read { path: PathBuf, kind: io::ErrorKind },
    #[error("{path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("process {pid} is gone ({path} cannot be read)")]
    PidGone { pid: u32, path: PathBuf },
    #[error("pid file {path}: {detail}")]
    PidFile { path: PathBuf, detail: String },
    #[error("process {pid}: {detail}")]
    NoCgroup { pid: u32, detail: String },
    #[error("the target names no pid, pid_file or path")]
    Unnamed,
}

fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|e| CgroupError::Read {
        path: path.to_owned(),
        kind: e.kind(),
    })
}

/// A cgroup filesystem mount from `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq)]
pub struct Mount {
    /// The directory of the hierarchy mounted here, as the hierarchy (and our cgroup
    /// namespace) names it: `/` for a whole hierarchy, more for a bind mount of a subtree.
    pub root: String,
    pub mount_point: PathBuf,
    /// `cgroup2`, or `cgroup` (v1).
    pub fs_type: String,
    /// v1: the controllers of the hierarchy (`cpu`, `cpuacct`, `name=systemd`, ...), among
    /// the other super options.
    pub super_options: Vec<String>,
}

impl Mount {
    fn is_v2(&self) -> bool {
        self.fs_type == "cgroup2"
    }

    fn has_controller(&self, controller: &str) -> bool {
        self.fs_type == "cgroup" && self.super_options.iter().any(|o| o == controller)
    }

    /// Where the hierarchy's cgroup `path` is under this mount, if it is visible here.
    fn dir_of(&self, path: &str) -> Option<PathBuf> {
        let rel = strip_components(path, &self.root)?;
        let mut dir = self.mount_point.clone();
        dir.extend(rel);
        Some(dir)
    }
}

/// The components of `path` below `root`, or `None` when `path` is not under it. Lexical, so
/// the `..` that a foreign cgroup namespace shows match the same `..` in a mount's root.
fn strip_components<'a>(path: &'a str, root: &str) -> Option<Vec<&'a str>> {
    let parts = |s: &'a str| {
        s.split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect::<Vec<_>>()
    };
    let path = parts(path);
    let root: Vec<&str> = root.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    if path.len() < root.len() || path[..root.len()] != root[..] {
        return None;
    }
    let rest = path[root.len()..].to_vec();
    // A path that climbs out of the mount would name a directory it does not hold.
    if rest.contains(&"..") {
        return None;
    }
    Some(rest)
}

/// mountinfo escapes space, tab, newline and backslash in paths as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let (b'\\', Some(digits)) = (bytes[i], octal) {
            let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
            if let Ok(b) = u8::try_from(value) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup mounts in a mountinfo file (`proc(5)`): `id parent major:minor root mount_point
/// options [optional fields...] - fs_type source super_options`. Other lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if sep < 6 || fields.len() < sep + 4 {
            continue;
        }
        let fs_type = fields[sep + 1];
        if fs_type != "cgroup" && fs_type != "cgroup2" {
            continue;
        }
        mounts.push(Mount {
            root: unescape(fields[3]),
            mount_point: PathBuf::from(unescape(fields[4])),
            fs_type: fs_type.to_owned(),
            super_options: fields[sep + 3].split(',').map(str::to_owned).collect(),
        });
    }
    mounts
}

/// One line of `/proc/<pid>/cgroup`: `hierarchy-id:controllers:path`; v2's is `0::path`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcCgroup {
    pub hierarchy: u32,
    pub controllers: Vec<String>,
    pub path: String,
}

pub fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroup> {
    text.lines()
        .filter_map(|line| {
            // The path may itself hold ':'.
            let mut parts = line.splitn(3, ':');
            let hierarchy = parts.next()?.parse().ok()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(ProcCgroup {
                hierarchy,
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
                path: path.to_owned(),
            })
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// Where one cgroup's CPU figures are.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuCgroup {
    pub version: Version,
    /// v2: the cgroup's directory; v1: its directory in the `cpu` hierarchy.
    pub dir: PathBuf,
    /// v1: its directory in the `cpuacct` hierarchy (the same one when they are mounted
    /// together), for `cpuacct.usage`; none when that hierarchy is not mounted.
    pub cpuacct: Option<PathBuf>,
}

/// The mount that shows hierarchy path `path` with the deepest root (the most specific bind
/// mount), among those `pick` accepts.
fn find_dir(mounts: &[Mount], path: &str, pick: impl Fn(&Mount) -> bool) -> Option<PathBuf> {
    mounts
        .iter()
        .filter(|m| pick(m))
        .filter_map(|m| Some((m.root.len(), m.dir_of(path)?)))
        .max_by_key(|(depth, _)| *depth)
        .map(|(_, dir)| dir)
}

/// The line of `/proc/<pid>/cgroup` for the v1 hierarchy holding `controller`.
fn v1_line<'a>(lines: &'a [ProcCgroup], controller: &str) -> Option<&'a ProcCgroup> {
    lines
        .iter()
        .find(|l| l.hierarchy != 0 && l.controllers.iter().any(|c| c == controller))
}

/// A process's cgroup directory for `controller`: under v1 (also on hybrid hosts, where the
/// controller lives in a v1 hierarchy and v2 has none) the line listing it; else the v2 line
/// `0::path`.
fn controller_dir(lines: &[ProcCgroup], mounts: &[Mount], controller: &str) -> Option<(Version, PathBuf)> {
    let v1 =
        v1_line(lines, controller).and_then(|l| find_dir(mounts, &l.path, |m| m.has_controller(controller)));
    if let Some(dir) = v1 {
        return Some((Version::V1, dir));
    }
    let v2 = lines
        .iter()
        .find(|l| l.hierarchy == 0 && l.controllers.is_empty())?;
    find_dir(mounts, &v2.path, Mount::is_v2).map(|dir| (Version::V2, dir))
}

/// The memory limit of the cgroup `proc_cgroup` (a `/proc/<pid>/cgroup`) names: v2
/// `memory.max`, v1 `memory.limit_in_bytes`; none when it sets none (`max`, or v1's
/// page-rounded `i64::MAX`) or cannot be read.
pub fn memory_limit(proc_cgroup: &str, mounts: &[Mount]) -> Option<u64> {
    let (version, dir) = controller_dir(&parse_proc_cgroup(proc_cgroup), mounts, "memory")?;
    let file = match version {
        Version::V1 => "memory.limit_in_bytes",
        Version::V2 => "memory.max",
    };
    let limit = std::fs::read_to_string(dir.join(file))
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    (limit < i64::MAX as u64 / 2).then_some(limit)
}

/// The cgroup holding a process's CPU controller ([`controller_dir`] for `cpu`), with its
/// `cpuacct` directory under v1.
pub fn resolve_pid(pid: u32, proc_cgroup: &str, mounts: &[Mount]) -> Result<CpuCgroup, CgroupError> {
    let lines = parse_proc_cgroup(proc_cgroup);
    match controller_dir(&lines, mounts, "cpu") {
        Some((Version::V1, dir)) => {
            let cpuacct = v1_line(&lines, "cpuacct")
                .and_then(|l| find_dir(mounts, &l.path, |m| m.has_controller("cpuacct")));
            return Ok(CpuCgroup {
                version: Version::V1,
                dir,
                cpuacct,
            });
        }
        Some((Version::V2, dir)) => {
            return Ok(CpuCgroup {
                version: Version::V2,
                dir,
                cpuacct: None,
            })
        }
        None => {}
    }
    let v2 = lines
        .iter()
        .find(|l| l.hierarchy == 0 && l.controllers.is_empty());
    let shown: Vec<String> = mounts
        .iter()
        .map(|m| format!("{} ({} {})", m.mount_point.display(), m.fs_type, m.root))
        .collect();
    let detail = match (v1_line(&lines, "cpu"), v2) {
        (None, None) => "its /proc/<pid>/cgroup names no cpu controller and no cgroup v2 path".to_owned(),
        (cpu, v2) => format!(
            "no cgroup mount shows its cgroup (cpu: {}, v2: {}); cgroup mounts: [{}]",
            cpu.map_or("-", |l| l.path.as_str()),
            v2.map_or("-", |l| l.path.as_str()),
            shown.join(", ")
        ),
    };
    Err(CgroupError::NoCgroup { pid, detail })
}

/// A cgroup named by its directory: v2 when it has `cgroup.controllers`, else v1, whose
/// `cpuacct` directory is the same one when mounted together, or found at the same place in
/// the mounted `cpuacct` hierarchy.
pub fn resolve_path(dir: &Path, mounts: &[Mount]) -> Result<CpuCgroup, CgroupError> {
    if dir.join("cgroup.controllers").exists() {
        return Ok(CpuCgroup {
            version: Version::V2,
            dir: dir.to_owned(),
            cpuacct: None,
        });
    }
    if !dir.join("cpu.stat").exists() {
        let path = dir.join("cpu.stat");
        return Err(match std::fs::metadata(dir) {
            Err(e) => CgroupError::Read {
                path: dir.to_owned(),
                kind: e.kind(),
            },
            Ok(_) => CgroupError::Parse {
                path,
                detail: "missing: not a cgroup v2 directory nor a v1 cpu controller directory".into(),
            },
        });
    }
    let cpuacct = if dir.join("cpuacct.usage").exists() {
        Some(dir.to_owned())
    } else {
        sibling_cpuacct(dir, mounts)
    };
    Ok(CpuCgroup {
        version: Version::V1,
        dir: dir.to_owned(),
        cpuacct,
    })
}

/// The `cpuacct` directory of the same cgroup as `dir` in the `cpu` hierarchy.
fn sibling_cpuacct(dir: &Path, mounts: &[Mount]) -> Option<PathBuf> {
    let cpu = mounts
        .iter()
        .filter(|m| m.has_controller("cpu") && dir.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.components().count())?;
    let rel = dir.strip_prefix(&cpu.mount_point).ok()?;
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let path = format!("{}/{}", cpu.root.trim_end_matches('/'), rel.display());
    let found = find_dir(mounts, &path, |m| m.has_controller("cpuacct"))?;
    found.join("cpuacct.usage").exists().then_some(found)
}

/// What one read of a cgroup gives.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuReading {
    /// CPU time used by the cgroup since it was made; none when not exposed (v1 without a
    /// mounted cpuacct).
    pub usage_ns: Option<u64>,
    /// None when the cgroup has no CPU bandwidth control (v2 without the cpu controller).
    pub throttling: Option<Throttling>,
    /// The quota in cores (quota / period); none when unlimited.
    pub limit_cores: Option<f64>,
}

/// The CFS bandwidth counters, cumulative since the cgroup was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Throttling {
    /// Enforcement periods in which the cgroup had runnable tasks.
    pub periods: u64,
    /// Periods in which it used up its quota and was stopped.
    pub throttled_periods: u64,
    pub throttled_ns: u64,
}

/// `key value` lines, as cpu.stat has.
pub fn parse_flat_keyed(path: &Path, text: &str) -> Result<BTreeMap<String, u64>, CgroupError> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.split_whitespace();
        let (Some(key), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CgroupError::Parse {
                path: path.to_owned(),
                detail: format!("expected `key value`, found {line:?}"),
            });
        };
        let value = value.parse().map_err(|_| CgroupError::Parse {
            path: path.to_owned(),
            detail: format!("{key}: {value:?} is not a counter"),
        })?;
        out.insert(key.to_owned(), value);
    }
    Ok(out)
}

fn required(path: &Path, stat: &BTreeMap<String, u64>, key: &str) -> Result<u64, CgroupError> {
    stat.get(key).copied().ok_or_else(|| CgroupError::Parse {
        path: path.to_owned(),
        detail: format!("has no {key}"),
    })
}

/// v2 `cpu.max`: `max PERIOD` (unlimited) or `QUOTA PERIOD`, in µs.
pub fn parse_cpu_max(path: &Path, text: &str) -> Result<Option<f64>, CgroupError> {
    let bad = |detail: &str| CgroupError::Parse {
        path: path.to_owned(),
        detail: format!("{detail}, found {:?}", text.trim()),
    };
    let mut parts = text.split_whitespace();
    let (Some(quota), period, None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("expected `max PERIOD` or `QUOTA PERIOD`"));
    };
    // The period may be left out when written, but the kernel always shows it; 100 ms is
    // its default.
    let period: u64 = match period {
        Some(p) => p.parse().map_err(|_| bad("the period is not a number"))?,
        None => 100_000,
    };
    if quota == "max" {
        return Ok(None);
    }
    let quota: u64 = quota.parse().map_err(|_| bad("the quota is not a number"))?;
    if period == 0 {
        return Err(bad("the period is 0"));
    }
    Ok(Some(quota as f64 / period as f64))
}

/// v1 `cpu.cfs_quota_us` (`-1`: unlimited) over `cpu.cfs_period_us`.
pub fn parse_cfs(
    quota_path: &Path,
    quota: &str,
    period_path: &Path,
    period: &str,
) -> Result<Option<f64>, CgroupError> {
    let quota: i64 = quota.trim().parse().map_err(|_| CgroupError::Parse {
        path: quota_path.to_owned(),
        detail: format!("{:?} is not a number", quota.trim()),
    })?;
    if quota < 0 {
        return Ok(None);
    }
    let period: u64 = match period.trim().parse() {
        Ok(p) if p > 0 => p,
        _ => {
            return Err(CgroupError::Parse {
                path: period_path.to_owned(),
                detail: format!("{:?} is not a period", period.trim()),
            })
        }
    };
    Ok(Some(quota as f64 / period as f64))
}

fn optional(path: &Path) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CgroupError::Read {
            path: path.to_owned(),
            kind: e.kind(),
        }),
    }
}

impl CpuCgroup {
    /// Reads the counters and the quota once.
    pub fn read(&self) -> Result<CpuReading, CgroupError> {
        let stat_path = self.dir.join("cpu.stat");
        let stat = parse_flat_keyed(&stat_path, &read(&stat_path)?)?;
        match self.version {
            Version::V2 => {
                let usage_ns = Some(required(&stat_path, &stat, "usage_usec")?.saturating_mul(1000));
                // Without the cpu controller, cpu.stat has only the usage and cpu.max is absent.
                let throttling = match stat.get("nr_periods") {
                    None => None,
                    Some(&periods) => Some(Throttling {
                        periods,
                        throttled_periods: required(&stat_path, &stat, "nr_throttled")?,
                        throttled_ns: required(&stat_path, &stat, "throttled_usec")?.saturating_mul(1000),
                    }),
                };
                let max_path = self.dir.join("cpu.max");
                let limit_cores = match optional(&max_path)? {
                    Some(text) => parse_cpu_max(&max_path, &text)?,
                    None => None,
                };
                Ok(CpuReading {
                    usage_ns,
                    throttling,
                    limit_cores,
                })
            }
            Version::V1 => {
                let throttling = Throttling {
                    periods: required(&stat_path, &stat, "nr_periods")?,
                    throttled_periods: required(&stat_path, &stat, "nr_throttled")?,
                    throttled_ns: required(&stat_path, &stat, "throttled_time")?,
                };
                let quota_path = self.dir.join("cpu.cfs_quota_us");
                let period_path = self.dir.join("cpu.cfs_period_us");
                let limit_cores = parse_cfs(
                    &quota_path,
                    &read(&quota_path)?,
                    &period_path,
                    &read(&period_path)?,
                )?;
                let usage_ns = match &self.cpuacct {
                    Some(dir) => {
                        let path = dir.join("cpuacct.usage");
                        let text = read(&path)?;
                        Some(text.trim().parse().map_err(|_| CgroupError::Parse {
                            path,
                            detail: format!("{:?} is not a counter", text.trim()),
                        })?)
                    }
                    None => None,
                };
                Ok(CpuReading {
                    usage_ns,
                    throttling: Some(throttling),
                    limit_cores,
                })
            }
        }
    }
}

/// The text of `/proc/<pid>/cgroup` under `proc_root`; a pid that is gone says so.
pub fn read_proc_cgroup(proc_root: &Path, pid: u32) -> Result<String, CgroupError> {
    let path = proc_root.join(pid.to_string()).join("cgroup");
    std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => CgroupError::PidGone { pid, path },
        kind => CgroupError::Read { path, kind },
    })
}

/// The pid in a pid file: the first line, a positive decimal number.
pub fn read_pid_file(path: &Path) -> Result<u32, CgroupError> {
    let text = std::fs::read_to_string(path).map_err(|e| CgroupError::PidFile {
        path: path.to_owned(),
        detail: e.kind().to_string(),
    })?;
    let first = text.lines().next().unwrap_or("").trim();
    match first.parse::<u32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(CgroupError::PidFile {
            path: path.to_owned(),
            detail: format!("{first:?} is not a process id"),
        }),
    }
}

/// The cgroup mounts this process sees.
pub fn read_mounts(proc_root: &Path) -> Result<Vec<Mount>, CgroupError> {
    Ok(parse_mountinfo(&read(&proc_root.join("self/mountinfo"))?))
}
