use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use hotspan_config::{parse_yaml, yaml_errors};
use hotspan_proto::otlp::metrics::v1::{metric, number_data_point, AggregationTemporality, Metric};

use super::fs::{
    memory_limit, parse_cfs, parse_cpu_max, parse_flat_keyed, parse_mountinfo, parse_proc_cgroup,
    resolve_path, resolve_pid,
};
use super::*;

/// A directory of planted files, removed on drop.
struct Planted(PathBuf);

impl Planted {
    fn new(name: &str) -> Planted {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hotspan-cgroup-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Planted(dir)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
        path
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---- config

#[test]
fn config_defaults_and_sources() {
    let cfg: CgroupConfig = parse_yaml(
        "{targets: [{pid: 1234, service_name: shop}, {pid_file: /run/shop.pid, service_name: shop}, \
         {path: /sys/fs/cgroup/x, service_name: shop, attributes: {service.instance.id: a}, \
          go_debug_vars: 'http://127.0.0.1:6060/debug/vars'}]}",
    )
    .expect("parses");
    assert_eq!(cfg.collection_interval, Duration::from_millis(100));
    let sources: Vec<Option<Source>> = cfg.targets.iter().map(Target::source).collect();
    assert_eq!(
        sources,
        [
            Some(Source::Pid(1234)),
            Some(Source::PidFile("/run/shop.pid".into())),
            Some(Source::Path("/sys/fs/cgroup/x".into()))
        ]
    );
    let labels: Vec<String> = cfg.targets.iter().map(Target::label).collect();
    assert_eq!(
        labels,
        ["pid:1234", "pid_file:/run/shop.pid", "path:/sys/fs/cgroup/x"]
    );
    assert_eq!(cfg.targets[2].attributes["service.instance.id"], "a");
}

#[test]
fn config_problems_are_all_reported() {
    let errs = yaml_errors::<CgroupConfig>(
        "{collection_interval: 5ms, targets: [{pid: 1, path: /x, service_name: s}, {service_name: s}, \
         {pid: 0}, {path: relative/dir, service_name: s, go_debug_vars: '127.0.0.1:6060'}]}",
    );
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "collection_interval",
            "targets[0]",
            "targets[1]",
            "targets[2].pid",
            "targets[2].service_name",
            "targets[3].path",
            "targets[3].go_debug_vars"
        ],
        "{errs:?}"
    );
    assert_eq!(yaml_errors::<CgroupConfig>("{}").len(), 1, "no targets");
    let unknown = yaml_errors::<CgroupConfig>("{targets: [{pid: 1, service_name: s, container: x}]}");
    assert_eq!(unknown.len(), 1, "{unknown:?}");
}

// ---- mountinfo and /proc/<pid>/cgroup

/// A hybrid host: v1 controllers each mounted alone, cgroup2 at .../unified, and a
/// non-cgroup mount that must be skipped.
const HYBRID_MOUNTINFO: &str = "\
23 1 0:21 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:9 - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

#[test]
fn mountinfo_keeps_cgroup_mounts() {
    let mounts = parse_mountinfo(HYBRID_MOUNTINFO);
    let seen: Vec<(&str, &str, &str)> = mounts
        .iter()
        .map(|m| {
            (
                m.mount_point.to_str().unwrap_or(""),
                m.fs_type.as_str(),
                m.root.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("/sys/fs/cgroup/cpu", "cgroup", "/"),
            ("/sys/fs/cgroup/cpuacct", "cgroup", "/"),
            ("/sys/fs/cgroup/systemd", "cgroup", "/"),
            ("/sys/fs/cgroup/unified", "cgroup2", "/")
        ]
    );
    // Optional fields (shared:9) do not shift the super options.
    assert_eq!(mounts[2].super_options, ["rw", "xattr", "name=systemd"]);
    // A path with a space comes escaped; a bind mount of a subtree has a deeper root.
    let odd = parse_mountinfo(
        "50 23 0:29 /kubepods/pod\\0401 /host/cgroup\\040cpu rw - cgroup cgroup rw,cpu,cpuacct\nnot a mountinfo line\n",
    );
    assert_eq!(odd.len(), 1);
    assert_eq!(odd[0].root, "/kubepods/pod 1");
    assert_eq!(odd[0].mount_point, PathBuf::from("/host/cgroup cpu"));
    assert_eq!(odd[0].super_options, ["rw", "cpu", "cpuacct"]);
}

#[test]
fn proc_cgroup_lines() {
    let lines =
        parse_proc_cgroup("4:cpu,cpuacct:/docker/abc\n1:name=systemd:/user.slice\n0::/odd:path\nbad\n");
    assert_eq!(lines.len(), 3);
    assert_eq!(
        (
            lines[0].hierarchy,
            lines[0].controllers.clone(),
            lines[0].path.as_str()
        ),
        (4, vec!["cpu".to_owned(), "cpuacct".to_owned()], "/docker/abc")
    );
    assert_eq!(lines[1].controllers, ["name=systemd"]);
    assert_eq!(
        (
            lines[2].hierarchy,
            lines[2].controllers.len(),
            lines[2].path.as_str()
        ),
        (0, 0, "/odd:path")
    );
}

#[test]
fn pid_on_a_hybrid_host_uses_the_v1_cpu_hierarchy() {
    let mounts = parse_mountinfo(HYBRID_MOUNTINFO);
    let proc = "9:name=systemd:/\n2:cpuacct:/shop\n1:cpu:/shop\n0::/other\n";
    let cg = resolve_pid(7, proc, &mounts).expect("resolves");
    assert_eq!(cg.version, Version::V1);
    assert_eq!(cg.dir, PathBuf::from("/sys/fs/cgroup/cpu/shop"));
    assert_eq!(cg.cpuacct, Some(PathBuf::from("/sys/fs/cgroup/cpuacct/shop")));
}

#[test]
fn pid_with_combined_cpu_cpuacct() {
    let mounts =
        parse_mountinfo("32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n");
    let cg = resolve_pid(7, "3:cpu,cpuacct:/docker/abc\n", &mounts).expect("resolves");
    assert_eq!(cg.dir, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/docker/abc"));
    assert_eq!(cg.cpuacct.as_deref(), Some(cg.dir.as_path()));
}

#[test]
fn pid_on_a_v2_host() {
    let mounts = parse_mountinfo("30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
    let cg = resolve_pid(7, "0::/kubepods.slice/pod1.slice/cri-abc.scope\n", &mounts).expect("resolves");
    assert_eq!(cg.version, Version::V2);
    assert_eq!(
        cg.dir,
        PathBuf::from("/sys/fs/cgroup/kubepods.slice/pod1.slice/cri-abc.scope")
    );
    assert_eq!(cg.cpuacct, None);
    // A v1 cpu line whose hierarchy is not mounted here falls back to v2.
    let cg = resolve_pid(7, "1:cpu:/x\n0::/y\n", &mounts).expect("falls back");
    assert_eq!(
        (cg.version, cg.dir),
        (Version::V2, PathBuf::from("/sys/fs/cgroup/y"))
    );
}

#[test]
fn pid_under_a_bind_mounted_subtree() {
    // A DaemonSet with only the pods' subtree mounted, and hotspan in its own cgroup
    // namespace (paths of others climb out with ..).
    let mounts = parse_mountinfo(
        "60 50 0:26 /kubepods /host/cgroup rw - cgroup2 cgroup2 rw\n61 50 0:26 /../.. /host/all rw - cgroup2 cgroup2 rw\n",
    );
    let cg = resolve_pid(7, "0::/kubepods/pod1/ctr\n", &mounts).expect("resolves");
    assert_eq!(cg.dir, PathBuf::from("/host/cgroup/pod1/ctr"));
    let cg = resolve_pid(7, "0::/../../system.slice/shop.service\n", &mounts).expect("resolves");
    assert_eq!(cg.dir, PathBuf::from("/host/all/system.slice/shop.service"));
    let err = resolve_pid(7, "0::/system.slice/x\n", &mounts[..1]).expect_err("not under the mount");
    let text = err.to_string();
    assert!(
        text.contains("process 7") && text.contains("/system.slice/x") && text.contains("/host/cgroup"),
        "{text}"
    );
    let err = resolve_pid(7, "1:name=systemd:/\n", &mounts).expect_err("no cpu");
    assert!(err.to_string().contains("no cpu controller"), "{err}");
}

/// The memory limit of a process's own cgroup, v2 or v1 (a systemd service's `MemoryMax=`),
/// for memory_limiter's percentages; "no limit" in either spelling is none.
#[test]
fn memory_limit_of_a_process_cgroup() {
    let root = Planted::new("memory");
    let v2 = root.path("v2");
    let v1 = root.path("v1");
    let mounts = parse_mountinfo(&format!(
        "30 23 0:26 / {} rw - cgroup2 cgroup2 rw\n35 31 0:32 / {} rw - cgroup cgroup rw,memory\n",
        v2.display(),
        v1.display()
    ));
    root.write("v2/system.slice/hotspan.service/memory.max", "536870912\n");
    root.write("v2/system.slice/other.service/memory.max", "max\n");
    let v2_only = &mounts[..1];
    assert_eq!(
        memory_limit("0::/system.slice/hotspan.service\n", v2_only),
        Some(536870912)
    );
    assert_eq!(memory_limit("0::/system.slice/other.service\n", v2_only), None);
    assert_eq!(memory_limit("0::/system.slice/gone.service\n", v2_only), None);
    // A hybrid host: the memory controller's v1 hierarchy wins over the v2 line.
    root.write("v1/docker/abc/memory.limit_in_bytes", "268435456\n");
    root.write("v1/docker/free/memory.limit_in_bytes", "9223372036854771712\n");
    assert_eq!(
        memory_limit(
            "4:memory:/docker/abc\n0::/system.slice/hotspan.service\n",
            &mounts
        ),
        Some(268435456)
    );
    assert_eq!(memory_limit("4:memory:/docker/free\n0::/\n", &mounts), None);
}

// ---- the files

#[test]
fn cpu_stat_max_and_cfs() {
    let p = Path::new("cpu.stat");
    let v1 = parse_flat_keyed(
        p,
        "nr_periods 10\nnr_throttled 4\nthrottled_time 123456789\nnr_bursts 0\n",
    )
    .expect("v1");
    assert_eq!(
        (v1["nr_periods"], v1["nr_throttled"], v1["throttled_time"]),
        (10, 4, 123_456_789)
    );
    assert!(parse_flat_keyed(p, "nr_periods ten\n")
        .expect_err("not a number")
        .to_string()
        .contains("nr_periods"));
    assert!(parse_flat_keyed(p, "nr_periods 1 2\n").is_err());

    let m = Path::new("cpu.max");
    assert_eq!(parse_cpu_max(m, "max 100000\n"), Ok(None));
    assert_eq!(parse_cpu_max(m, "max\n"), Ok(None));
    assert_eq!(parse_cpu_max(m, "50000 100000\n"), Ok(Some(0.5)));
    assert_eq!(parse_cpu_max(m, "150000 50000\n"), Ok(Some(3.0)));
    for bad in ["", "lots 100000", "50000 0", "50000 x", "1 2 3"] {
        assert!(parse_cpu_max(m, bad).is_err(), "{bad:?}");
    }

    let (q, pp) = (Path::new("cpu.cfs_quota_us"), Path::new("cpu.cfs_period_us"));
    assert_eq!(parse_cfs(q, "-1\n", pp, "100000\n"), Ok(None));
    assert_eq!(parse_cfs(q, "20000\n", pp, "100000\n"), Ok(Some(0.2)));
    assert!(parse_cfs(q, "x", pp, "100000").is_err());
    assert!(parse_cfs(q, "20000", pp, "0").is_err());
}

#[test]
fn reads_a_v1_cgroup() {
    let root = Planted::new("v1");
    root.write(
        "cpu/shop/cpu.stat",
        "nr_periods 50\nnr_throttled 20\nthrottled_time 1500000000\nnr_bursts 0\nburst_time 0\n",
    );
    root.write("cpu/shop/cpu.cfs_quota_us", "20000\n");
    root.write("cpu/shop/cpu.cfs_period_us", "100000\n");
    root.write("cpuacct/shop/cpuacct.usage", "987654321\n");
    let mut cg = CpuCgroup {
        version: Version::V1,
        dir: root.path("cpu/shop"),
        cpuacct: Some(root.path("cpuacct/shop")),
    };
    let reading = cg.read().expect("reads");
    assert_eq!(
        reading,
        CpuReading {
            usage_ns: Some(987_654_321),
            throttling: Some(Throttling {
                periods: 50,
                throttled_periods: 20,
                throttled_ns: 1_500_000_000
            }),
            limit_cores: Some(0.2),
        }
    );
    root.write("cpu/shop/cpu.cfs_quota_us", "-1\n");
    cg.cpuacct = None;
    let reading = cg.read().expect("reads");
    assert_eq!((reading.limit_cores, reading.usage_ns), (None, None));
    std::fs::remove_file(root.path("cpu/shop/cpu.stat")).expect("rm");
    assert!(matches!(cg.read(), Err(CgroupError::Read { .. })));
}

#[test]
fn reads_a_v2_cgroup() {
    let root = Planted::new("v2");
    root.write(
        "shop/cpu.stat",
        "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 30\nnr_throttled 12\nthrottled_usec 400000\nnr_bursts 0\nburst_usec 0\n",
    );
    root.write("shop/cpu.max", "50000 100000\n");
    root.write("shop/cgroup.controllers", "cpu memory\n");
    let cg = resolve_path(&root.path("shop"), &[]).expect("v2");
    assert_eq!(cg.version, Version::V2);
    assert_eq!(
        cg.read().expect("reads"),
        CpuReading {
            usage_ns: Some(2_000_000),
            throttling: Some(Throttling {
                periods: 30,
                throttled_periods: 12,
                throttled_ns: 400_000_000
            }),
            limit_cores: Some(0.5),
        }
    );
    // Without the cpu controller: usage only, no cpu.max.
    root.write("plain/cpu.stat", "usage_usec 7\nuser_usec 5\nsystem_usec 2\n");
    root.write("plain/cgroup.controllers", "");
    let reading = resolve_path(&root.path("plain"), &[])
        .expect("v2")
        .read()
        .expect("reads");
    assert_eq!(
        reading,
        CpuReading {
            usage_ns: Some(7000),
            throttling: None,
            limit_cores: None
        }
    );
    root.write("broken/cpu.stat", "user_usec 5\n");
    root.write("broken/cgroup.controllers", "");
    let err = resolve_path(&root.path("broken"), &[])
        .expect("v2")
        .read()
        .expect_err("no usage");
    assert!(err.to_string().contains("usage_usec"), "{err}");
}

#[test]
fn a_v1_path_finds_its_cpuacct_sibling() {
    let root = Planted::new("sibling");
    root.write(
        "cpu/a/b/cpu.stat",
        "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
    );
    root.write("cpuacct/a/b/cpuacct.usage", "5\n");
    let mounts = vec![
        Mount {
            root: "/".into(),
            mount_point: root.path("cpu"),
            fs_type: "cgroup".into(),
            super_options: vec!["rw".into(), "cpu".into()],
        },
        Mount {
            root: "/".into(),
            mount_point: root.path("cpuacct"),
            fs_type: "cgroup".into(),
            super_options: vec!["rw".into(), "cpuacct".into()],
        },
    ];
    let cg = resolve_path(&root.path("cpu/a/b"), &mounts).expect("v1");
    assert_eq!(cg.version, Version::V1);
    assert_eq!(cg.cpuacct, Some(root.path("cpuacct/a/b")));
    let err = resolve_path(&root.path("cpu/none"), &mounts).expect_err("missing");
    assert!(matches!(err, CgroupError::Read { .. }), "{err:?}");
    std::fs::create_dir_all(root.path("empty")).expect("mkdir");
    let err = resolve_path(&root.path("empty"), &mounts).expect_err("not a cgroup");
    assert!(err.to_string().contains("not a cgroup v2 directory"), "{err}");
}

// ---- metrics

fn int_point(m: &Metric) -> (i64, u64, u64, bool, i32) {
    let Some(metric::Data::Sum(sum)) = &m.data else {
        panic!("{} is not a Sum", m.name)
    };
    assert_eq!(sum.data_points.len(), 1, "one point per poll");
    let p = &sum.data_points[0];
    let Some(number_data_point::Value::AsInt(v)) = p.value else {
        panic!("{} is not an int", m.name)
    };
    (
        v,
        p.start_time_unix_nano,
        p.time_unix_nano,
        sum.is_monotonic,
        sum.aggregation_temporality,
    )
}

#[test]
fn metrics_of_a_reading() {
    let reading = CpuReading {
        usage_ns: Some(9_000),
        throttling: Some(Throttling {
            periods: 10,
            throttled_periods: 3,
            throttled_ns: 77_000,
        }),
        limit_cores: Some(0.2),
    };
    let rm = otlp::resource_metrics(vec![string_attribute("service.name", "shop")], &reading, 100, 200);
    let scope = &rm.scope_metrics[0];
    assert_eq!(
        scope.scope.as_ref().map(|s| s.name.as_str()),
        Some("hotspan/cgroup")
    );
    let by_name: Vec<(&str, &str)> = scope
        .metrics
        .iter()
        .map(|m| (m.name.as_str(), m.unit.as_str()))
        .collect();
    assert_eq!(
        by_name,
        [
            ("container.cpu.usage.total", "ns"),
            ("container.cpu.throttling_data.periods", "{periods}"),
            ("container.cpu.throttling_data.throttled_periods", "{periods}"),
            ("container.cpu.throttling_data.throttled_time", "ns"),
            ("container.cpu.limit", "{cpus}")
        ]
    );
    let cumulative = AggregationTemporality::Cumulative as i32;
    let values: Vec<_> = scope.metrics[..4].iter().map(int_point).collect();
    assert_eq!(
        values,
        [
            (9_000, 100, 200, true, cumulative),
            (10, 100, 200, true, cumulative),
            (3, 100, 200, true, cumulative),
            (77_000, 100, 200, true, cumulative)
        ]
    );
    let Some(metric::Data::Gauge(g)) = &scope.metrics[4].data else {
        panic!("limit is a Gauge")
    };
    assert_eq!(g.data_points.len(), 1);
    assert_eq!(
        g.data_points[0].value,
        Some(number_data_point::Value::AsDouble(0.2))
    );
    assert_eq!(g.data_points[0].time_unix_nano, 200);

    // No limit, no throttling, no usage: no such metrics.
    let rm = otlp::resource_metrics(Vec::new(), &CpuReading::default(), 1, 2);
    assert!(rm.scope_metrics[0].metrics.is_empty());
}

// ---- the poller over a planted /proc and cgroup tree

fn planted_poller(root: &Planted, targets: Vec<Target>) -> Poller {
    let telemetry = Telemetry::default();
    Poller {
        env: PollEnv {
            receiver: "cgroup".into(),
            proc_root: root.path("proc"),
            started: 1_000,
        },
        targets: targets
            .into_iter()
            .map(|target| {
                let label = target.label();
                Watched {
                    outcomes: Outcomes::new(&telemetry, "cgroup", &label),
                    target,
                    label,
                    stream: None,
                    valid: false,
                    last_error: None,
                    limit: watch::channel(None).0,
                }
            })
            .collect(),
    }
}

fn attr(rm: &ResourceMetrics, key: &str) -> Option<any_value::Value> {
    rm.resource
        .as_ref()?
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .clone()
}

fn start_of(rm: &ResourceMetrics) -> u64 {
    int_point(&rm.scope_metrics[0].metrics[0]).1
}

fn plant_v1(root: &Planted, name: &str, throttled_ns: u64) {
    root.write(
        &format!("fs/cpu/{name}/cpu.stat"),
        &format!("nr_periods 9\nnr_throttled 4\nthrottled_time {throttled_ns}\n"),
    );
    root.write(&format!("fs/cpu/{name}/cpu.cfs_quota_us"), "20000\n");
    root.write(&format!("fs/cpu/{name}/cpu.cfs_period_us"), "100000\n");
}

#[test]
fn poller_follows_a_pid_and_reports_failures_once() {
    let root = Planted::new("poller");
    root.write(
        "proc/self/mountinfo",
        &format!(
            "32 31 0:29 / {} rw - cgroup cgroup rw,cpu\n41 31 0:38 / {} rw - cgroup2 cgroup2 rw\n",
            root.path("fs/cpu").display(),
            root.path("fs/unified").display()
        ),
    );
    root.write("proc/42/cgroup", "1:cpu:/a\n0::/\n");
    plant_v1(&root, "a", 5_000);
    plant_v1(&root, "b", 8_000);
    root.write("run/shop.pid", "42\n");
    let target = |pid: Option<u32>, pid_file: Option<PathBuf>| Target {
        pid,
        pid_file,
        service_name: "shop".into(),
        attributes: [
            ("service.instance.id".to_owned(), "i1".to_owned()),
            ("service.name".to_owned(), "ignored".to_owned()),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let mut poller = planted_poller(
        &root,
        vec![
            target(Some(42), None),
            target(None, Some(root.path("run/shop.pid"))),
        ],
    );

    let first = poller.poll_all();
    assert_eq!(first.len(), 2);
    let (_, rm) = &first[0];
    assert_eq!(
        attr(rm, "service.name"),
        Some(any_value::Value::StringValue("shop".into()))
    );
    assert_eq!(
        attr(rm, "service.instance.id"),
        Some(any_value::Value::StringValue("i1".into()))
    );
    assert_eq!(attr(rm, "process.pid"), Some(any_value::Value::IntValue(42)));
    assert_eq!(
        attr(rm, CGROUP_PATH),
        Some(any_value::Value::StringValue(
            root.path("fs/cpu/a").display().to_string()
        ))
    );
    assert_eq!(
        rm.resource.as_ref().map(|r| r.attributes.len()),
        Some(4),
        "service.name once"
    );
    assert_eq!(start_of(rm), 1_000, "the first stream starts with the receiver");

    // The process moves to another cgroup: a new stream, starting now.
    root.write("proc/42/cgroup", "1:cpu:/b\n0::/\n");
    let moved = poller.poll_all();
    let (_, rm) = &moved[0];
    assert_eq!(
        attr(rm, CGROUP_PATH),
        Some(any_value::Value::StringValue(
            root.path("fs/cpu/b").display().to_string()
        ))
    );
    assert!(start_of(rm) > 1_000);
    let values: Vec<i64> = rm.scope_metrics[0].metrics[..3]
        .iter()
        .map(|m| int_point(m).0)
        .collect();
    assert_eq!(values, [9, 4, 8_000]);

    // The process goes away: counted every poll, logged once, and polling goes on.
    std::fs::remove_dir_all(root.path("proc/42")).expect("rm");
    for _ in 0..3 {
        assert!(poller.poll_all().is_empty());
    }
    for t in &poller.targets {
        assert_eq!(t.outcomes.failed.get(), 3);
    }
    assert_eq!(
        poller.targets[0].last_error.as_deref(),
        Some(
            format!(
                "process 42 is gone ({} cannot be read)",
                root.path("proc/42/cgroup").display()
            )
            .as_str()
        )
    );

    // Restarted with a new pid: only the pid_file target follows it.
    root.write("proc/43/cgroup", "1:cpu:/a\n0::/\n");
    root.write("run/shop.pid", "43\n");
    let after = poller.poll_all();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].0, 1);
    assert_eq!(
        attr(&after[0].1, "process.pid"),
        Some(any_value::Value::IntValue(43))
    );
    assert_eq!(poller.targets[1].last_error, None, "recovered");
    assert!(poller.targets[0].last_error.is_some());

    // A pid file with no number in it says so.
    root.write("run/shop.pid", "shop\n");
    assert!(poller.poll_all().is_empty());
    let err = poller.targets[1].last_error.clone().unwrap_or_default();
    assert!(err.contains("is not a process id"), "{err}");
}

#[test]
fn poller_reads_a_path_target_and_reports_the_limit() {
    let root = Planted::new("path");
    root.write("proc/self/mountinfo", "");
    root.write("fs/svc/cgroup.controllers", "cpu\n");
    root.write(
        "fs/svc/cpu.stat",
        "usage_usec 10\nnr_periods 2\nnr_throttled 1\nthrottled_usec 3\n",
    );
    root.write("fs/svc/cpu.max", "max 100000\n");
    let mut poller = planted_poller(
        &root,
        vec![Target {
            path: Some(root.path("fs/svc")),
            service_name: "svc".into(),
            ..Default::default()
        }],
    );
    let mut seen = poller.targets[0].limit.subscribe();
    let rm = poller.poll_all().pop().expect("read").1;
    assert_eq!(attr(&rm, "process.pid"), None);
    let names: Vec<&str> = rm.scope_metrics[0]
        .metrics
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert!(!names.contains(&"container.cpu.limit"), "{names:?}");
    assert_eq!(*seen.borrow_and_update(), Some(None));
    root.write("fs/svc/cpu.max", "250000 100000\n");
    let rm = poller.poll_all().pop().expect("read").1;
    assert!(rm.scope_metrics[0]
        .metrics
        .iter()
        .any(|m| m.name == "container.cpu.limit"));
    assert!(seen.has_changed().unwrap_or(false));
    assert_eq!(*seen.borrow_and_update(), Some(Some(2.5)));
}

// ---- GOMAXPROCS

#[test]
fn gomaxprocs_from_expvar_and_prometheus() {
    assert_eq!(
        gomaxprocs::parse(br#"{"cmdline": ["x"], "gomaxprocs": 4, "memstats": {}}"#),
        Ok(4)
    );
    assert_eq!(gomaxprocs::parse(br#"{"/sched/gomaxprocs:threads": 8}"#), Ok(8));
    let prom = "# HELP go_sched_gomaxprocs_threads The current runtime.GOMAXPROCS setting.\n\
                # TYPE go_sched_gomaxprocs_threads gauge\ngo_sched_gomaxprocs_threads 6\ngo_threads 12\n";
    assert_eq!(gomaxprocs::parse(prom.as_bytes()), Ok(6));
    assert_eq!(
        gomaxprocs::parse(b"go_sched_gomaxprocs_threads{job=\"x\"} 3 1700000000\n"),
        Ok(3)
    );
    for bad in [
        &br#"{"cmdline": []}"#[..],
        br#"{"gomaxprocs": 0}"#,
        br#"{"gomaxprocs": 2.5}"#,
        b"go_sched_gomaxprocs_threadsx 3\n",
        b"\xff\xfe",
        b"{not json",
    ] {
        assert!(
            gomaxprocs::parse(bad).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert!(gomaxprocs::over_quota(2, Some(0.2)));
    assert!(!gomaxprocs::over_quota(1, Some(0.2)));
    assert!(!gomaxprocs::over_quota(2, Some(1.5)));
    assert!(gomaxprocs::over_quota(3, Some(2.0)));
    assert!(!gomaxprocs::over_quota(64, None));
}
