//! The `cgroup` receiver against real cgroups (as root): the Go test service runs inside a v1
//! cpu cgroup with a 20 ms / 100 ms quota and is throttled; hotspan polls it by pid and what it
//! writes is compared with the cgroup's own cpu.stat. A second service runs in a cgroup without
//! a quota (v1) and in a v2 cgroup, polled by pid and by path. hotspan itself runs in a v1
//! memory cgroup, whose limit its memory_limiter's percentages are of.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hotspan_tests::cgroup::{
    read_keyed, read_number, read_points, require_root, series, unix_nanos, v1_mount, v2_mount, write, Point,
    TestCgroups,
};
use hotspan_tests::goservice::{GoOptions, GoService, Scenario};
use hotspan_tests::{metric, scrape, signal, wait_for, Hotspan};

const USAGE: &str = "container.cpu.usage.total";
const PERIODS: &str = "container.cpu.throttling_data.periods";
const THROTTLED_PERIODS: &str = "container.cpu.throttling_data.throttled_periods";
const THROTTLED_TIME: &str = "container.cpu.throttling_data.throttled_time";
const LIMIT: &str = "container.cpu.limit";

/// The v1 cgroup of one controller pair: `cpu`, and `cpuacct` (the same directory when the
/// two are mounted together).
struct V1 {
    cpu: PathBuf,
    cpuacct: PathBuf,
}

impl V1 {
    fn make(cgroups: &mut TestCgroups, name: &str) -> Result<V1> {
        let (cpu_mount, acct_mount) = (v1_mount("cpu")?, v1_mount("cpuacct")?);
        let cpu = cgroups.make(&cpu_mount, name)?;
        let cpuacct = if acct_mount == cpu_mount {
            cpu.clone()
        } else {
            cgroups.make(&acct_mount, name)?
        };
        Ok(V1 { cpu, cpuacct })
    }

    fn procs(&self) -> Vec<PathBuf> {
        let mut procs = vec![self.cpu.join("cgroup.procs")];
        if self.cpuacct != self.cpu {
            procs.push(self.cpuacct.join("cgroup.procs"));
        }
        procs
    }

    /// (nr_periods, nr_throttled, throttled_time, cpuacct.usage), read now.
    fn counters(&self) -> Result<[i64; 4]> {
        let stat = read_keyed(&self.cpu.join("cpu.stat"))?;
        let get = |k: &str| {
            stat.get(k)
                .copied()
                .with_context(|| format!("cpu.stat has no {k}"))
        };
        Ok([
            get("nr_periods")? as i64,
            get("nr_throttled")? as i64,
            get("throttled_time")? as i64,
            read_number(&self.cpuacct.join("cpuacct.usage"))? as i64,
        ])
    }
}

fn last_int(points: &[Point], instance: &str, name: &str) -> Option<i64> {
    series(points, instance, name).last().and_then(|p| p.int)
}

/// The first and last value of an int series, and how many points it has.
fn growth(points: &[Point], instance: &str, name: &str) -> Result<(i64, i64, usize)> {
    let s = series(points, instance, name);
    let first = s
        .first()
        .and_then(|p| p.int)
        .with_context(|| format!("no {name} for {instance}"))?;
    let last = s.last().and_then(|p| p.int).unwrap_or(first);
    Ok((first, last, s.len()))
}

/// The cgroup's own counter read at an instant lies between hotspan's points around it: the
/// last one stamped before, and the first stamped 50 ms after (a point's time is taken just
/// after its read; the slack covers a poll thread delayed between the two).
fn bracketed(
    points: &[Point],
    instance: &str,
    name: &str,
    before: u64,
    after: u64,
    own: i64,
) -> Result<(i64, i64)> {
    let s = series(points, instance, name);
    let low = s.iter().rev().find(|p| p.time <= before).and_then(|p| p.int);
    let high = s
        .iter()
        .find(|p| p.time >= after + 50_000_000)
        .and_then(|p| p.int);
    let (Some(low), Some(high)) = (low, high) else {
        anyhow::bail!("{instance} {name}: no points around the test's own read");
    };
    ensure!(
        low <= own && own <= high,
        "{instance} {name}: the cgroup said {own}, hotspan's points around that read say {low}..{high}"
    );
    Ok((low, high))
}

fn config(limited: &GoService, free: &GoService, v2_dir: &Path) -> String {
    format!(
        r#"
receivers:
  cgroup:
    collection_interval: 100ms
    targets:
      - {{pid: {p1}, service_name: shop, attributes: {{service.instance.id: limited}}, go_debug_vars: "{vars1}"}}
      - {{pid: {p2}, service_name: shop, attributes: {{service.instance.id: free}}, go_debug_vars: "{vars2}"}}
      - {{path: "{v2}", service_name: shop, attributes: {{service.instance.id: free-v2}}}}
exporters:
  file: {{path: "{{dir}}/metrics.jsonl", flush_interval: 50ms}}
  debug: {{verbosity: basic}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    metrics/in: {{receivers: [cgroup], exporters: [file, debug]}}
"#,
        p1 = limited.pid(),
        p2 = free.pid(),
        vars1 = limited.url("/debug/vars"),
        vars2 = free.url("/debug/vars"),
        v2 = v2_dir.display(),
    )
}

#[test]
fn throttling_of_a_go_service_under_a_cpu_quota() -> Result<()> {
    require_root()?;
    let name = format!("hotspan-test-{}", std::process::id());
    // Declared first, dropped last: the services below die before their cgroups go.
    let mut cgroups = TestCgroups::default();

    let limited_cg = V1::make(&mut cgroups, &format!("{name}-limited"))?;
    write(&limited_cg.cpu.join("cpu.cfs_period_us"), "100000")?;
    write(&limited_cg.cpu.join("cpu.cfs_quota_us"), "20000")?;
    let free_cg = V1::make(&mut cgroups, &format!("{name}-free"))?;
    write(&free_cg.cpu.join("cpu.cfs_quota_us"), "-1")?;
    let unified = v2_mount()?.context("no cgroup2 hierarchy is mounted")?;
    let free_v2 = cgroups.make(&unified, &format!("{name}-free"))?;
    // On a hybrid host the cpu controller is bound to v1 and a v2 cgroup has only usage.
    let v2_has_cpu = std::fs::read_to_string(free_v2.join("cgroup.controllers"))?
        .split_whitespace()
        .any(|c| c == "cpu");

    let limited = GoService::start(GoOptions {
        scenario: Scenario::Sleep,
        workers: 2,
        truth: false,
        cgroup_procs: limited_cg.procs(),
        ..Default::default()
    })?;
    let mut procs = free_cg.procs();
    procs.push(free_v2.join("cgroup.procs"));
    let mut free = GoService::start(GoOptions {
        scenario: Scenario::Sleep,
        workers: 1,
        truth: false,
        cgroup_procs: procs,
        ..Default::default()
    })?;
    // Where the kernel says they are, before hotspan is asked.
    let in_cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", limited.pid()))?;
    ensure!(in_cgroup.contains(&format!("{name}-limited")), "{in_cgroup}");

    let mut hotspan = Hotspan::start(&config(&limited, &free, &free_v2))?;
    let file = hotspan.path("metrics.jsonl");

    // Running: throttled periods pile up at the limited target.
    let first_throttled = wait_for(Duration::from_secs(30), "throttling in hotspan's output", || {
        let points = read_points(&file).ok()?;
        let (first, last, n) = growth(&points, "limited", THROTTLED_PERIODS).ok()?;
        (n >= 20 && last - first >= 5).then_some(first)
    })
    .with_context(|| hotspan.log())?;

    // The cgroups' own counters, read by the test while both services run, lie between
    // hotspan's points around the read.
    let before = unix_nanos();
    let own_limited = limited_cg.counters()?;
    let own_v2_usage = read_keyed(&free_v2.join("cpu.stat"))?["usage_usec"] as i64 * 1000;
    let after = unix_nanos();
    let points = wait_for(Duration::from_secs(10), "points after the test's read", || {
        let points = read_points(&file).ok()?;
        let late = |instance, name| {
            series(&points, instance, name)
                .last()
                .is_some_and(|p| p.time >= after + 50_000_000)
        };
        (late("limited", THROTTLED_TIME) && late("free-v2", USAGE)).then_some(points)
    })?;
    for (name, own) in [PERIODS, THROTTLED_PERIODS, THROTTLED_TIME, USAGE]
        .into_iter()
        .zip(own_limited)
    {
        bracketed(&points, "limited", name, before, after, own)?;
    }
    let (low, high) = bracketed(&points, "free-v2", USAGE, before, after, own_v2_usage)?;
    eprintln!("v2 usage: cgroup {own_v2_usage} ns, hotspan {low}..{high} ns around it");

    // GOMAXPROCS: what the service says, and whether hotspan calls it above ceil(0.2) = 1.
    let vars: serde_json::Value =
        serde_json::from_str(&reqwest::blocking::get(limited.url("/debug/vars"))?.text()?)?;
    let gomaxprocs = vars["gomaxprocs"]
        .as_f64()
        .context("no gomaxprocs in /debug/vars")?;
    let metrics_port = hotspan.port("metrics");
    let series_of = |name: &str, pid: u32| format!(r#"{name}{{receiver="cgroup",target="pid:{pid}"}}"#);
    let (limited_pid, free_pid) = (limited.pid(), free.pid());
    let text = wait_for(Duration::from_secs(10), "the GOMAXPROCS check", || {
        let text = scrape(metrics_port).ok()?;
        let read = |pid| metric(&text, &series_of("hotspan_cgroup_gomaxprocs", pid));
        (read(limited_pid).is_some_and(|v| v > 0.0) && read(free_pid).is_some_and(|v| v > 0.0))
            .then_some(text)
    })?;
    ensure!(metric(&text, &series_of("hotspan_cgroup_gomaxprocs", limited_pid)) == Some(gomaxprocs));
    let over = if gomaxprocs > 1.0 { 1.0 } else { 0.0 };
    ensure!(
        metric(
            &text,
            &series_of("hotspan_cgroup_gomaxprocs_over_quota", limited_pid)
        ) == Some(over),
        "GOMAXPROCS {gomaxprocs} against a 0.2-core quota:\n{text}"
    );
    ensure!(
        metric(
            &text,
            &series_of("hotspan_cgroup_gomaxprocs_over_quota", free_pid)
        ) == Some(0.0)
    );
    let warnings = hotspan.log().matches("GOMAXPROCS is above the CPU quota").count();
    ensure!(
        warnings == over as usize,
        "{warnings} GOMAXPROCS warnings:\n{}",
        hotspan.log()
    );

    // Stopped, the limited service's counters freeze: hotspan's latest point must then equal
    // the cgroup's cpu.stat exactly.
    signal(limited.pid(), "STOP")?;
    // A throttled thread handles the signal only when it next runs: wait until every thread
    // is stopped and the counters have stood still for three periods.
    let task_dir = PathBuf::from(format!("/proc/{}/task", limited.pid()));
    wait_for(
        Duration::from_secs(10),
        "every thread of the service to stop",
        || {
            let states: Vec<String> = std::fs::read_dir(&task_dir)
                .ok()?
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
                .collect();
            // The state follows the parenthesised command name.
            let stopped = |stat: &String| {
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('T'))
            };
            (!states.is_empty() && states.iter().all(stopped)).then_some(())
        },
    )?;
    let (settled, settled_at) = wait_for(
        Duration::from_secs(10),
        "the stopped service's counters to settle",
        || {
            let a = limited_cg.counters().ok()?;
            std::thread::sleep(Duration::from_millis(300));
            let b = limited_cg.counters().ok()?;
            (a == b).then(|| (b, unix_nanos()))
        },
    )?;
    let frozen = wait_for(
        Duration::from_secs(10),
        "hotspan to report the frozen counters",
        || {
            let points = read_points(&file).ok()?;
            let after_settling = series(&points, "limited", THROTTLED_TIME)
                .last()
                .is_some_and(|p| p.time > settled_at);
            let seen =
                [PERIODS, THROTTLED_PERIODS, THROTTLED_TIME, USAGE].map(|n| last_int(&points, "limited", n));
            (after_settling && seen == settled.map(Some)).then_some(settled)
        },
    );
    let frozen = match frozen {
        Ok(own) => own,
        Err(e) => {
            let points = read_points(&file)?;
            let seen =
                [PERIODS, THROTTLED_PERIODS, THROTTLED_TIME, USAGE].map(|n| last_int(&points, "limited", n));
            anyhow::bail!(
                "{e}: cgroup says {:?}, hotspan's latest {seen:?}",
                limited_cg.counters()?
            );
        }
    };

    // The free service's process goes away: counted every poll, logged once, and the other
    // targets are still read.
    let killed_at = unix_nanos();
    free.child.kill()?;
    free.wait_exit(Duration::from_secs(10))?;
    let failed =
        format!(r#"hotspan_cgroup_polls{{receiver="cgroup",target="pid:{free_pid}",outcome="failed"}}"#);
    wait_for(
        Duration::from_secs(10),
        "failed polls of the gone process",
        || {
            let text = scrape(metrics_port).ok()?;
            (metric(&text, &failed)? >= 5.0).then_some(())
        },
    )?;
    let gone = hotspan
        .log()
        .lines()
        .filter(|l| l.contains(&format!("pid:{free_pid}")) && l.contains("cannot read the target's cgroup"))
        .count();
    ensure!(
        gone == 1,
        "the gone process was logged {gone} times:\n{}",
        hotspan.log()
    );
    let text = scrape(metrics_port)?;
    let ok = |target: &str| {
        metric(
            &text,
            &format!(r#"hotspan_cgroup_polls{{receiver="cgroup",target="{target}",outcome="ok"}}"#),
        )
    };
    let limited_ok = ok(&format!("pid:{limited_pid}")).unwrap_or(0.0);
    wait_for(
        Duration::from_secs(5),
        "polls of the limited target to go on",
        || {
            let text = scrape(metrics_port).ok()?;
            let now = metric(
                &text,
                &format!(
                    r#"hotspan_cgroup_polls{{receiver="cgroup",target="pid:{limited_pid}",outcome="ok"}}"#
                ),
            )?;
            (now >= limited_ok + 3.0).then_some(())
        },
    )?;

    let status = hotspan.terminate()?;
    ensure!(status.success(), "hotspan exited with {status}");
    // Once the free service is gone its pid may be another process's on a busy machine (and
    // hotspan rightly follows it): its points from then on are not the free service's.
    let points: Vec<Point> = read_points(&file)?
        .into_iter()
        .filter(|p| {
            !(p.resource.get("service.instance.id").map(String::as_str) == Some("free") && p.time > killed_at)
        })
        .collect();
    check_shapes(&points, &limited_cg, &free_v2, limited_pid, free_pid)?;

    // The limited service was throttled, and hotspan's final figures are the cgroup's own.
    let (p0, p1, n) = growth(&points, "limited", THROTTLED_PERIODS)?;
    let (t0, t1, _) = growth(&points, "limited", THROTTLED_TIME)?;
    let (u0, u1, _) = growth(&points, "limited", USAGE)?;
    ensure!(
        p1 > p0 && t1 > t0,
        "no throttling growth: periods {p0}->{p1}, time {t0}->{t1}"
    );
    ensure!(
        [
            last_int(&points, "limited", PERIODS),
            Some(p1),
            Some(t1),
            Some(u1)
        ] == frozen.map(Some),
        "final values {:?} differ from the cgroup's: {frozen:?}",
        [
            last_int(&points, "limited", PERIODS),
            Some(p1),
            Some(t1),
            Some(u1)
        ]
    );
    eprintln!(
        "limited (quota 0.2 cores): {n} points; throttled periods {p0} -> {p1} (+{}, first seen while running: {first_throttled}), \
         throttled time {t0} -> {t1} ns (+{:.3} s), CPU {u0} -> {u1} ns (+{:.3} s); the cgroup's own cpu.stat at the end: \
         nr_periods {}, nr_throttled {}, throttled_time {} ns, cpuacct.usage {} ns",
        p1 - p0,
        (t1 - t0) as f64 / 1e9,
        (u1 - u0) as f64 / 1e9,
        frozen[0],
        frozen[1],
        frozen[2],
        frozen[3]
    );

    // No quota: no limit gauge, no throttling, yet it burned CPU.
    ensure!(
        series(&points, "free", LIMIT).is_empty(),
        "a limit on the free target"
    );
    let (f0, f1, _) = growth(&points, "free", THROTTLED_PERIODS)?;
    let (ft0, ft1, _) = growth(&points, "free", THROTTLED_TIME)?;
    ensure!(
        f0 == f1 && ft0 == ft1,
        "throttling without a quota: {f0}->{f1}, {ft0}->{ft1}"
    );
    let (fu0, fu1, _) = growth(&points, "free", USAGE)?;
    ensure!(fu1 > fu0, "the free service used no CPU: {fu0}->{fu1}");
    eprintln!("free (no quota): throttled periods {f0} -> {f1}, throttled time {ft0} -> {ft1} ns, CPU {fu0} -> {fu1} ns");

    // v2: usage always; throttling and a limit only where the cpu controller is in v2.
    let (vu0, vu1, _) = growth(&points, "free-v2", USAGE)?;
    ensure!(vu1 > vu0, "v2 usage did not grow: {vu0}->{vu1}");
    let v2_throttling = !series(&points, "free-v2", THROTTLED_PERIODS).is_empty();
    ensure!(
        v2_throttling == v2_has_cpu && series(&points, "free-v2", LIMIT).is_empty(),
        "v2 target: throttling metrics {v2_throttling}, cpu controller in v2 {v2_has_cpu}"
    );
    eprintln!("free-v2: CPU {vu0} -> {vu1} ns; cpu controller in v2: {v2_has_cpu}");
    drop(limited);
    drop(free);
    drop(cgroups);
    Ok(())
}

/// Every point is what the README promises: names, units, kinds, times and resources.
fn check_shapes(
    points: &[Point],
    limited_cg: &V1,
    free_v2: &Path,
    limited_pid: u32,
    free_pid: u32,
) -> Result<()> {
    ensure!(!points.is_empty(), "no points");
    let start = points[0].start;
    for p in points {
        ensure!(p.scope == "hotspan/cgroup", "{p:?}");
        ensure!(
            p.resource.get("service.name").map(String::as_str) == Some("shop"),
            "{p:?}"
        );
        match p.name.as_str() {
            LIMIT => ensure!(
                p.kind == "gauge" && p.unit == "{cpus}" && p.double.is_some(),
                "{p:?}"
            ),
            name => {
                let unit = if name == USAGE || name == THROTTLED_TIME {
                    "ns"
                } else {
                    "{periods}"
                };
                ensure!(
                    p.kind == "sum" && p.monotonic && p.temporality == 2 && p.unit == unit && p.int.is_some(),
                    "{p:?}"
                );
                ensure!(p.start == start && p.time > p.start, "start {start}: {p:?}");
            }
        }
    }
    let limited = series(points, "limited", THROTTLED_TIME);
    let resource = &limited[0].resource;
    ensure!(
        resource.get("process.pid") == Some(&limited_pid.to_string()),
        "{resource:?}"
    );
    ensure!(
        resource.get("cgroup.path") == Some(&limited_cg.cpu.display().to_string()),
        "{resource:?}"
    );
    let free = series(points, "free", USAGE);
    ensure!(free[0].resource.get("process.pid") == Some(&free_pid.to_string()));
    let v2 = series(points, "free-v2", USAGE);
    ensure!(v2[0].resource.get("cgroup.path") == Some(&free_v2.display().to_string()));
    ensure!(!v2[0].resource.contains_key("process.pid"));
    // One point per metric per poll, about 100 ms apart.
    let limits = series(points, "limited", LIMIT);
    ensure!(
        limits.len() == limited.len(),
        "{} limits, {} polls",
        limits.len(),
        limited.len()
    );
    ensure!(
        limits.iter().all(|p| p.double == Some(0.2)),
        "the quota is 0.2 cores"
    );
    let mut gaps: Vec<u64> = limited.windows(2).map(|w| w[1].time - w[0].time).collect();
    gaps.sort_unstable();
    let median = gaps[gaps.len() / 2];
    ensure!(
        (80_000_000..=150_000_000).contains(&median),
        "median gap between polls {median} ns"
    );
    Ok(())
}

/// memory_limiter's `limit_percentage` is of the memory limit of hotspan's own cgroup (here a
/// v1 memory cgroup of 256 MiB, as a container runtime or systemd's `MemoryMax=` sets one), not
/// of the machine's memory. It once read only `memory.max` at the root of a v2 hierarchy, so on
/// this host (v1 memory controller) and under systemd a limiter at 50% took half the machine,
/// and the kernel killed hotspan at its cgroup's limit before the limiter ever refused.
#[test]
fn memory_limiter_percentages_are_of_hotspans_own_cgroup() -> Result<()> {
    require_root()?;
    let limit: u64 = 256 << 20;
    let mut cgroups = TestCgroups::default();
    let dir = cgroups.make(
        &v1_mount("memory")?,
        &format!("hotspan-test-memory-{}", std::process::id()),
    )?;
    write(&dir.join("memory.limit_in_bytes"), &limit.to_string())?;
    let hotspan = Hotspan::start_in(
        r#"
receivers:
  otlp: {protocols: {http: {endpoint: "127.0.0.1:{port:http}"}}}
processors:
  memory_limiter: {check_interval: 1s, limit_percentage: 50, spike_limit_percentage: 10}
exporters:
  debug: {}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], processors: [memory_limiter], exporters: [debug]}
"#,
        &[dir.join("cgroup.procs")],
    )?;
    let log = hotspan.log();
    let bytes = |field: &str| -> Option<u64> {
        let at = log.find(&format!("{field}="))? + field.len() + 1;
        log[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let (hard, of) = (bytes("hard_bytes"), bytes("of_bytes"));
    ensure!(
        of == Some(limit),
        "limits taken of {of:?}, not the cgroup's {limit}:\n{log}"
    );
    let half = hard.context("no hard limit logged")? as f64 / limit as f64;
    ensure!(
        (0.49..=0.51).contains(&half),
        "hard limit {hard:?} is {half} of the cgroup's"
    );
    Ok(())
}
