//! Real cgroups for the `cgroup` receiver's tests: made under names of the test's own, removed
//! on drop (also when the test fails), and read the way the kernel writes them, independently
//! of hotspan's own parsers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use hotspan_proto::otlp::common::v1::any_value;
use hotspan_proto::otlp::metrics::v1::{metric, number_data_point, NumberDataPoint};
use hotspan_proto::{Encoding, MetricsBatch};

/// Fails unless the test runs as root: making cgroups and moving processes needs it.
pub fn require_root() -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .context("no effective Uid in /proc/self/status")?;
    ensure!(
        uid == "0",
        "this test makes cgroups and moves processes into them: run it as root (effective uid is {uid})"
    );
    Ok(())
}

/// Where the v1 hierarchy holding `controller` is mounted (from /proc/self/mountinfo).
pub fn v1_mount(controller: &str) -> Result<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    for line in mountinfo.lines() {
        let Some((head, tail)) = line.split_once(" - ") else {
            continue;
        };
        let tail: Vec<&str> = tail.split(' ').collect();
        let head: Vec<&str> = head.split(' ').collect();
        if tail.first() == Some(&"cgroup")
            && tail.get(2).is_some_and(|o| o.split(',').any(|c| c == controller))
            && head.get(3) == Some(&"/")
        {
            return Ok(PathBuf::from(head[4]));
        }
    }
    bail!("no cgroup v1 hierarchy with the {controller} controller is mounted (see /proc/self/mountinfo)")
}

/// Where the cgroup2 hierarchy is mounted, if it is.
pub fn v2_mount() -> Result<Option<PathBuf>> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(mountinfo.lines().find_map(|line| {
        let (head, tail) = line.split_once(" - ")?;
        let head: Vec<&str> = head.split(' ').collect();
        (tail.starts_with("cgroup2 ") && head.get(3) == Some(&"/")).then(|| PathBuf::from(head[4]))
    }))
}

/// Writes `value` to a cgroup file; the error says which file, what, and the kernel's answer.
pub fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).with_context(|| format!("writing {value:?} to {}", path.display()))
}

/// A cgroup's flat-keyed file (`cpu.stat`) as the kernel wrote it.
pub fn read_keyed(path: &Path) -> Result<BTreeMap<String, u64>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l
                .split_once(' ')
                .with_context(|| format!("{}: line {l:?}", path.display()))?;
            Ok((k.to_owned(), v.trim().parse()?))
        })
        .collect()
}

/// One number in a file (`cpuacct.usage`).
pub fn read_number(path: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{}: {text:?}", path.display()))
}

/// Cgroups made by one test, removed in reverse order when dropped.
#[derive(Default)]
pub struct TestCgroups {
    dirs: Vec<PathBuf>,
}

impl TestCgroups {
    /// Makes `<mount>/<name>`; the error is the kernel's.
    pub fn make(&mut self, mount: &Path, name: &str) -> Result<PathBuf> {
        let dir = mount.join(name);
        std::fs::create_dir(&dir).with_context(|| format!("making cgroup {}", dir.display()))?;
        self.dirs.push(dir.clone());
        Ok(dir)
    }
}

impl Drop for TestCgroups {
    fn drop(&mut self) {
        for dir in self.dirs.iter().rev() {
            // A killed process leaves its cgroup a moment after it is reaped: retry briefly.
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if Instant::now() > deadline => {
                        eprintln!("could not remove test cgroup {}: {e}", dir.display());
                        break;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }
}

/// One data point from a file exporter's metrics output, with its metric and resource.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Resource attributes, values as text (`process.pid` = "1234").
    pub resource: BTreeMap<String, String>,
    pub scope: String,
    pub name: String,
    pub unit: String,
    /// `sum` or `gauge`.
    pub kind: &'static str,
    pub monotonic: bool,
    /// 2 is cumulative; 0 for gauges.
    pub temporality: i32,
    pub start: u64,
    pub time: u64,
    /// The integer value, for int points.
    pub int: Option<i64>,
    pub double: Option<f64>,
}

fn text_of(value: &Option<any_value::Value>) -> String {
    match value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// Every data point in a file exporter's output (one OTLP/JSON metrics request per line).
pub fn read_points(path: &Path) -> Result<Vec<Point>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    // The last line may be half written while hotspan runs.
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let batch = MetricsBatch::decode(line.trim_end().as_bytes(), Encoding::Json)
            .with_context(|| format!("a file exporter line: {line}"))?;
        for rm in batch.resources() {
            let resource: BTreeMap<String, String> = rm
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .map(|kv| {
                    (
                        kv.key.clone(),
                        text_of(&kv.value.as_ref().and_then(|v| v.value.clone())),
                    )
                })
                .collect();
            for sm in &rm.scope_metrics {
                let scope = sm.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default();
                for m in &sm.metrics {
                    let (kind, monotonic, temporality, points): (_, _, _, &Vec<NumberDataPoint>) =
                        match &m.data {
                            Some(metric::Data::Sum(s)) => {
                                ("sum", s.is_monotonic, s.aggregation_temporality, &s.data_points)
                            }
                            Some(metric::Data::Gauge(g)) => ("gauge", false, 0, &g.data_points),
                            other => bail!("{}: unexpected data {other:?}", m.name),
                        };
                    for p in points {
                        out.push(Point {
                            resource: resource.clone(),
                            scope: scope.clone(),
                            name: m.name.clone(),
                            unit: m.unit.clone(),
                            kind,
                            monotonic,
                            temporality,
                            start: p.start_time_unix_nano,
                            time: p.time_unix_nano,
                            int: match p.value {
                                Some(number_data_point::Value::AsInt(i)) => Some(i),
                                _ => None,
                            },
                            double: match p.value {
                                Some(number_data_point::Value::AsDouble(d)) => Some(d),
                                _ => None,
                            },
                        });
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The points of metric `name` whose resource has `service.instance.id` = `instance`, in time
/// order.
pub fn series<'a>(points: &'a [Point], instance: &str, name: &str) -> Vec<&'a Point> {
    let mut out: Vec<&Point> = points
        .iter()
        .filter(|p| {
            p.name == name && p.resource.get("service.instance.id").map(String::as_str) == Some(instance)
        })
        .collect();
    out.sort_by_key(|p| p.time);
    out
}

pub use crate::unix_nanos;
