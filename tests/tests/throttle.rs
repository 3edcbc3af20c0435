//! CPU throttling on the spans it slowed: the Go test service (`-scenario sleep`: each job
//! step sleeps 10 ms, then burns 5-30 ms of CPU) runs in a cgroup v1 with a 0.2-core quota,
//! and the same service runs again in a cgroup with no quota. hotspan takes both services'
//! spans and the `cgroup` receiver's readings into the join. The limited service's spans
//! carry the throttling that overlapped them, whose sum over its back-to-back requests follows
//! the cgroup's own counter (read by this test, not by hotspan); its steps take far longer
//! than the free service's; the free service's spans carry nothing about throttling.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hotspan_proto::otlp::trace::v1::Span;
use hotspan_tests::attrs::{double, int};
use hotspan_tests::cgroup::{read_keyed, require_root, unix_nanos, v1_mount, write, TestCgroups};
use hotspan_tests::goservice::{GoOptions, GoService, Scenario, TruthSpan};
use hotspan_tests::{read_spans, wait_for, Hotspan};

/// The cgroup's cumulative throttled time at `t`, from readings the test took, linearly
/// between the two around it.
fn throttled_at(readings: &[(u64, u64)], t: u64) -> Option<f64> {
    let after = readings.iter().position(|r| r.0 >= t)?;
    let (t1, v1) = readings[after];
    if after == 0 {
        return (t1 == t).then_some(v1 as f64);
    }
    let (t0, v0) = readings[after - 1];
    Some(v0 as f64 + (v1 - v0) as f64 * (t - t0) as f64 / (t1 - t0).max(1) as f64)
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      http: {endpoint: "127.0.0.1:{port:http}"}
  cgroup:
    collection_interval: 100ms
    targets:
      - {path: "{limited_cg}", service_name: shop-limited}
      - {path: "{free_cg}", service_name: shop-free}
connectors:
  spanprofile: {wait: 3s}
exporters:
  file: {path: "{dir}/spans.jsonl", flush_interval: 50ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces/in: {receivers: [otlp], exporters: [spanprofile]}
    metrics/in: {receivers: [cgroup], exporters: [spanprofile]}
    traces/out: {receivers: [spanprofile], exporters: [file]}
"#;

#[test]
fn throttling_goes_on_the_spans_it_slowed() -> Result<()> {
    require_root()?;
    let name = format!("hotspan-throttle-{}", std::process::id());
    // Declared first, dropped last: the services die before their cgroups go.
    let mut cgroups = TestCgroups::default();
    let (cpu_mount, acct_mount) = (v1_mount("cpu")?, v1_mount("cpuacct")?);
    let limited_cg = cgroups.make(&cpu_mount, &format!("{name}-limited"))?;
    write(&limited_cg.join("cpu.cfs_period_us"), "100000")?;
    write(&limited_cg.join("cpu.cfs_quota_us"), "20000")?;
    let free_cg = cgroups.make(&cpu_mount, &format!("{name}-free"))?;
    write(&free_cg.join("cpu.cfs_quota_us"), "-1")?;
    let mut procs = |cg: &PathBuf, suffix: &str| -> Result<Vec<PathBuf>> {
        let mut procs = vec![cg.join("cgroup.procs")];
        if acct_mount != cpu_mount {
            procs.push(
                cgroups
                    .make(&acct_mount, &format!("{name}-{suffix}"))?
                    .join("cgroup.procs"),
            );
        }
        Ok(procs)
    };
    let (limited_procs, free_procs) = (procs(&limited_cg, "limited")?, procs(&free_cg, "free")?);

    // hotspan first, so the services' first spans find it; it reads the cgroups by path.
    let config = CONFIG
        .replace("{limited_cg}", &limited_cg.display().to_string())
        .replace("{free_cg}", &free_cg.display().to_string());
    let mut hotspan = Hotspan::start(&config)?;
    let file = hotspan.path("spans.jsonl");
    let http = hotspan.port("http");
    let service = |service_name: &str, cgroup_procs: Vec<PathBuf>| {
        GoService::start(GoOptions {
            scenario: Scenario::Sleep,
            // One worker: its requests run back to back, so their throttling adds up to the
            // cgroup's over the same time.
            workers: 1,
            otlp_endpoint: Some(format!("http://127.0.0.1:{http}")),
            service_name: service_name.into(),
            cgroup_procs,
            ..Default::default()
        })
    };
    // The test's own readings of the limited cgroup, every 20 ms, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let stat = limited_cg.join("cpu.stat");
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || -> Result<Vec<(u64, u64)>> {
            let mut readings = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                readings.push((unix_nanos(), read_keyed(&stat)?["throttled_time"]));
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(readings)
        })
    };
    let mut limited = service("shop-limited", limited_procs)?;
    let mut free = service("shop-free", free_procs)?;

    // Enough requests of each: the free service runs many more in the same time.
    wait_for(
        Duration::from_secs(60),
        "40 requests of the limited service",
        || {
            let n = read_spans(&file).ok()?.len();
            (n >= 40 * 4).then_some(())
        },
    )
    .with_context(|| hotspan.log())?;
    limited.stop()?;
    free.stop()?;
    stop.store(true, Ordering::Relaxed);
    let readings = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader panicked"))??;
    let (limited_truth, free_truth) = (limited.truth()?, free.truth()?);
    let all = limited_truth.len() + free_truth.len();
    let mut seen = 0;
    let spans = wait_for(Duration::from_secs(30), "every span out of the join", || {
        let spans = read_spans(&file).ok()?;
        seen = spans.len();
        (spans.len() >= all).then_some(spans)
    })
    .with_context(|| format!("{seen} of {all} spans"))?;
    hotspan.terminate()?;
    let by_id: BTreeMap<String, &Span> = spans
        .values()
        .map(|f| (hotspan_tests::hex(&f.span.span_id), &f.span))
        .collect();
    let span_of = |t: &TruthSpan| by_id.get(&t.span_id).copied().context("a span the service made");

    // The limited service: throttling on its spans, never beyond their duration, with the
    // quota; its roots' throttling adds up to the cgroup's growth over the time they covered.
    let mut throttled_spans = 0;
    let mut roots_sum = 0.0;
    let roots: Vec<&TruthSpan> = limited_truth
        .iter()
        .filter(|t| t.parent_span_id.is_empty())
        .collect();
    for t in &limited_truth {
        let span = span_of(t)?;
        let Some(ns) = int(span, "profile.cpu.throttled_ns") else {
            continue;
        };
        throttled_spans += 1;
        let duration = t.end_unix_nano - t.start_unix_nano;
        ensure!(
            ns as u64 <= duration,
            "{} throttled {ns} ns in {duration}",
            t.name
        );
        ensure!(
            double(span, "profile.cpu.quota").is_some_and(|q| (q - 0.2).abs() < 1e-9),
            "quota: {:?}",
            double(span, "profile.cpu.quota")
        );
        if t.parent_span_id.is_empty() {
            roots_sum += ns as f64;
        }
    }
    ensure!(
        throttled_spans * 2 >= limited_truth.len(),
        "only {throttled_spans} of {} spans throttled",
        limited_truth.len()
    );
    let first = roots.iter().map(|t| t.start_unix_nano).min().context("roots")?;
    let last = roots.iter().map(|t| t.end_unix_nano).max().context("roots")?;
    let growth = throttled_at(&readings, last).context("a reading after the last root")?
        - throttled_at(&readings, first).context("a reading around the first root")?;
    let ratio = roots_sum / growth;
    eprintln!(
        "limited: {} roots, throttling on them {:.1} ms, the cgroup's over their time {:.1} ms ({ratio:.3})",
        roots.len(),
        roots_sum / 1e6,
        growth / 1e6
    );
    ensure!(growth > 0.0, "the cgroup was never throttled");
    // Roots cover the worker's time but the gaps between requests; prorating within 100 ms
    // polls makes each root's share an estimate.
    ensure!(
        (0.8..=1.1).contains(&ratio),
        "sum over roots / cgroup growth = {ratio:.3}"
    );

    // A 10 ms sleep then a little CPU: under the quota a step waits for the next period.
    let steps = |truth: &[TruthSpan]| -> Vec<u64> {
        truth
            .iter()
            .filter(|t| t.name == "job step")
            .map(|t| t.end_unix_nano - t.start_unix_nano)
            .collect()
    };
    let (slow, fast) = (median(steps(&limited_truth)), median(steps(&free_truth)));
    eprintln!(
        "median job step: {:.1} ms under the quota, {:.1} ms without",
        slow as f64 / 1e6,
        fast as f64 / 1e6
    );
    ensure!(
        slow >= 2 * fast,
        "a step took {slow} ns under the quota, {fast} ns without"
    );

    // The free service: nothing about throttling.
    for t in &free_truth {
        let span = span_of(t)?;
        ensure!(
            span.attributes.iter().all(|a| !a.key.starts_with("profile.cpu.")),
            "{} of the free service: {:?}",
            t.name,
            span.attributes
        );
    }
    Ok(())
}
