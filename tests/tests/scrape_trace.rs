//! `pprof_scrape` with `profiles: [trace]`: Go execution traces become `go.stw` and
//! `go.trace.window` log records. Checked against the real Go service under GC pressure (the
//! runtime's own gctrace lines and the goroutine snapshots hotspan takes meanwhile), against
//! Go's own parser's answer for a committed trace, and with traces hotspan must refuse.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use hotspan::receivers::pprof_scrape::align::{align, Alignment, LocalClocks, Method, ScrapeTimes};
use hotspan_gotrace::Limits;
use hotspan_proto::otlp::common::v1::any_value::Value;
use hotspan_proto::otlp::logs::v1::LogRecord;
use hotspan_tests::goservice::{goroot, GoOptions, GoService, Scenario};
use hotspan_tests::profiles::{read_profiles, FakeTarget};
use hotspan_tests::{hotspan_bin, metric, read_logs, scrape, unix_nanos, wait_for, Hotspan};

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// One `go.stw` record.
#[derive(Clone, Debug)]
struct Pause {
    start: u64,
    duration: u64,
    reason: String,
    gc: bool,
    error: u64,
}

impl Pause {
    fn end(&self) -> u64 {
        self.start + self.duration
    }
}

/// One trace: its `go.trace.window` record and its pauses.
#[derive(Debug)]
struct Traced {
    start: u64,
    end: u64,
    version: String,
    gc_cycles: i64,
    stw_pauses: i64,
    alignment: String,
    error: u64,
    pauses: Vec<Pause>,
}

fn attr<'a>(r: &'a LogRecord, key: &str) -> Result<&'a Value> {
    r.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .with_context(|| format!("{} record without {key}: {r:?}", r.event_name))
}

fn int(r: &LogRecord, key: &str) -> Result<i64> {
    match attr(r, key)? {
        Value::IntValue(n) => Ok(*n),
        other => bail!("{key} is {other:?}, not an int"),
    }
}

fn uint(r: &LogRecord, key: &str) -> Result<u64> {
    u64::try_from(int(r, key)?).with_context(|| format!("{key} is negative"))
}

fn string(r: &LogRecord, key: &str) -> Result<String> {
    match attr(r, key)? {
        Value::StringValue(s) => Ok(s.clone()),
        other => bail!("{key} is {other:?}, not a string"),
    }
}

/// The traces a file exporter wrote, each one scope of records, window first: every record
/// checked for the shape it must have.
fn read_traces(path: &Path, service: &str) -> Result<Vec<Traced>> {
    let mut out = Vec::new();
    for batch in read_logs(path)? {
        for rl in batch.resources() {
            let resource = rl.resource.as_ref().context("no resource")?;
            let name = resource
                .attributes
                .iter()
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.clone());
            ensure!(
                name == Some(Value::StringValue(service.into())),
                "resource {resource:?}"
            );
            for sl in &rl.scope_logs {
                let scope = sl.scope.as_ref().map(|s| s.name.as_str());
                ensure!(scope == Some("hotspan/gotrace"), "scope {scope:?}");
                let mut records = sl.log_records.iter();
                let w = records.next().context("an empty scope")?;
                ensure!(w.event_name == "go.trace.window", "first record {w:?}");
                ensure!(w.observed_time_unix_nano >= w.time_unix_nano);
                let mut t = Traced {
                    start: w.time_unix_nano,
                    end: uint(w, "go.trace.window_end_unix_nano")?,
                    version: string(w, "go.trace.version")?,
                    gc_cycles: int(w, "go.trace.gc_cycles")?,
                    stw_pauses: int(w, "go.trace.stw_pauses")?,
                    alignment: string(w, "go.trace.clock_alignment")?,
                    error: uint(w, "go.trace.clock_error_ns")?,
                    pauses: Vec::new(),
                };
                for r in records {
                    ensure!(r.event_name == "go.stw", "{r:?}");
                    ensure!(r.observed_time_unix_nano >= r.time_unix_nano, "{r:?}");
                    ensure!(string(r, "go.trace.clock_alignment")? == t.alignment);
                    let gc = match attr(r, "go.stw.gc")? {
                        Value::BoolValue(b) => *b,
                        other => bail!("go.stw.gc is {other:?}"),
                    };
                    t.pauses.push(Pause {
                        start: r.time_unix_nano,
                        duration: uint(r, "go.stw.duration_ns")?,
                        reason: string(r, "go.stw.reason")?,
                        gc,
                        error: uint(r, "go.trace.clock_error_ns")?,
                    });
                }
                ensure!(t.stw_pauses == t.pauses.len() as i64);
                out.push(t);
            }
        }
    }
    Ok(out)
}

/// One line of `GODEBUG=gctrace=1`: `gc 12 @1.234s 5%: 0.018+1.2+0.003 ms clock, ...`.
#[derive(Debug)]
struct GcLine {
    number: u64,
    /// Sweep termination began this long after the runtime started (printed in whole ms).
    at_ns: u64,
    /// Wall time of the sweep termination pause.
    sweep_ns: u64,
}

fn gctrace(log: &str) -> Result<Vec<GcLine>> {
    let mut out = Vec::new();
    for line in log.lines().filter(|l| l.starts_with("gc ")) {
        let bad = || format!("not a gctrace line: {line:?}");
        let f: Vec<&str> = line.split_whitespace().collect();
        ensure!(f.len() > 6 && f[5] == "ms" && f[6] == "clock,", bad());
        let number = f[1].parse().with_context(bad)?;
        let at = f[2]
            .strip_prefix('@')
            .and_then(|a| a.strip_suffix('s'))
            .with_context(bad)?;
        let (secs, millis) = at.split_once('.').with_context(bad)?;
        ensure!(millis.len() == 3, bad());
        let at_ns = (secs.parse::<u64>()? * 1000 + millis.parse::<u64>()?) * MS;
        let clock: Vec<f64> = f[4]
            .split('+')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(bad)?;
        ensure!(clock.len() == 3, bad());
        out.push(GcLine {
            number,
            at_ns,
            sweep_ns: (clock[0] * MS as f64) as u64,
        });
    }
    out.sort_by_key(|g| g.number);
    Ok(out)
}

/// Where a run of consecutive GCs fits these sweep terminations (sorted Unix times), the
/// offsets (`pause - at`) within `tol` of each other but for one in 50:
/// `(first GC's index, smallest offset of those that fit)`. gctrace times a GC when it
/// starts, before it stops the world; on a loaded machine the thread can be descheduled
/// between the two, so in a window of a few hundred GCs one can stand milliseconds apart.
fn fits(sweeps: &[u64], gcs: &[GcLine], tol: u64) -> Vec<(usize, i128)> {
    let k = sweeps.len();
    let allowed = k / 50;
    (0..(gcs.len() + 1).saturating_sub(k))
        .filter_map(|j0| {
            let mut offsets: Vec<i128> = sweeps
                .iter()
                .zip(&gcs[j0..j0 + k])
                .map(|(&p, g)| p as i128 - g.at_ns as i128)
                .collect();
            offsets.sort_unstable();
            // The most offsets within `tol` of the smallest of them.
            let (lo, n) = offsets
                .iter()
                .enumerate()
                .map(|(a, lo)| (*lo, offsets[a..].partition_point(|o| o - lo <= tol as i128)))
                .max_by_key(|&(_, n)| n)?;
            (n + allowed >= k).then_some((j0, lo))
        })
        .collect()
}

#[test]
fn gc_pauses_of_the_go_service_agree_with_its_gctrace_and_goroutine_snapshots() -> Result<()> {
    let spawned = unix_nanos();
    let mut service = GoService::start(GoOptions {
        scenario: Scenario::Alloc,
        truth: false,
        env: vec![("GODEBUG".into(), "gctrace=1".into())],
        ..GoOptions::default()
    })?;
    let before = unix_nanos();
    let mut hotspan = Hotspan::start(&format!(
        r#"
receivers:
  pprof_scrape:
    profiles: [trace, goroutine]
    trace_duration: 1s
    trace_interval: 2s
    goroutine_interval: 300ms
    targets: [{{endpoint: "{}", service_name: shop}}]
exporters:
  file/logs: {{path: "{{dir}}/logs.jsonl", flush_interval: 20ms}}
  file/profiles: {{path: "{{dir}}/profiles.jsonl", flush_interval: 20ms}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
  pipelines:
    logs: {{receivers: [pprof_scrape], exporters: [file/logs]}}
    profiles: {{receivers: [pprof_scrape], exporters: [file/profiles]}}
"#,
        service.url("")
    ))?;
    let traces = wait_for(Duration::from_secs(90), "three traced windows", || {
        let t = read_traces(&hotspan.path("logs.jsonl"), "shop").ok()?;
        (t.len() >= 3).then_some(t)
    })
    .with_context(|| format!("--- hotspan log ---\n{}", hotspan.log()))?;
    let after = unix_nanos();
    let metrics = scrape(hotspan.port("metrics"))?;
    ensure!(hotspan.terminate()?.success(), "hotspan exit\n{}", hotspan.log());
    ensure!(service.stop()?.success(), "goservice exit\n{}", service.log());
    // The instants of the goroutine snapshots taken meanwhile.
    let mut snapshots = Vec::new();
    for b in read_profiles(&hotspan.path("profiles.jsonl"))? {
        for rp in b.resource_profiles() {
            for p in rp.scope_profiles.iter().flat_map(|s| &s.profiles) {
                snapshots.push(p.time_unix_nano);
            }
        }
    }
    let gcs = gctrace(&service.log())?;
    ensure!(gcs.len() > 100, "only {} gctrace lines", gcs.len());

    // The traces: windows within the test, 1 s long, 2 s start to start, on Go's own clock.
    let series = |name: &str| {
        let target = service.url("");
        metric(
            &metrics,
            &format!(r#"{name}{{receiver="pprof_scrape",target="{target}"}}"#),
        )
    };
    ensure!(series("hotspan_go_traces_parsed") >= Some(3.0), "{metrics}");
    let paused: usize = traces.iter().map(|t| t.pauses.len()).sum();
    ensure!(
        series("hotspan_go_stw_pauses") >= Some(paused as f64),
        "{metrics}"
    );
    for t in &traces {
        ensure!(
            t.version.starts_with("go1.") && t.alignment == "clock_snapshot",
            "{t:?}"
        );
        // A snapshot a second or so away, slewed at most 500 ppm: under a millisecond.
        ensure!(t.error < MS, "clock error bound {} ns", t.error);
        ensure!(
            before <= t.start && t.end <= after,
            "window outside the test: {t:?}"
        );
        let length = t.end - t.start;
        ensure!(
            (S - 50 * MS..S + 500 * MS).contains(&length),
            "a 1 s trace covered {length} ns"
        );
    }
    for pair in traces.windows(2) {
        ensure!(
            pair[1].start >= pair[0].start + 2 * S - 50 * MS,
            "traces {} ns apart start to start, trace_interval is 2s",
            pair[1].start - pair[0].start
        );
    }

    const TOL: u64 = 3 * MS / 2; // gctrace's whole milliseconds, and a little
    let mut offsets = Vec::new();
    let mut checked_snapshots = 0;
    for t in &traces {
        let mut sweeps = Vec::new();
        let mut marks = 0;
        for p in &t.pauses {
            ensure!(p.duration > 0 && p.duration < 100 * MS, "implausible pause {p:?}");
            ensure!(
                p.start + p.error >= t.start && p.start <= t.end + p.error,
                "pause outside its window: {p:?} {t:?}"
            );
            ensure!(p.gc == p.reason.starts_with("GC "), "{p:?}");
            match p.reason.as_str() {
                "GC sweep termination" => sweeps.push(p.start),
                "GC mark termination" => marks += 1,
                _ => {}
            }
        }
        // Every GC cycle stops the world twice.
        let k = sweeps.len();
        // Heavy allocation collects dozens of times a second on an idle machine; a loaded one
        // gives the service less CPU, and fewer cycles.
        ensure!(k >= 4, "{k} GC cycles in a second of heavy allocation");
        ensure!(
            k.abs_diff(marks) <= 1,
            "{k} sweep terminations, {marks} mark terminations"
        );
        ensure!(
            (t.gc_cycles - k as i64).abs() <= 1,
            "window says {} GC cycles, {k} began",
            t.gc_cycles
        );
        // The runtime's own account: consecutive GCs whose start times, shifted by one offset
        // (when the runtime started, on the Unix clock), are these pauses.
        ensure!(sweeps.windows(2).all(|w| w[0] <= w[1]), "pauses out of order");
        let fit = fits(&sweeps, &gcs, TOL);
        ensure!(
            !fit.is_empty(),
            "no run of {k} gctrace GCs fits the pauses of {t:?}"
        );
        offsets.push(fit);
        // Each goroutine snapshot inside the window: just after the pause that ends its
        // collection (the profile is stamped when Go starts writing it, after counting and
        // sorting the stacks: milliseconds, a hundred or more on a loaded machine; snapshots
        // are 300 ms apart).
        for &at in snapshots.iter().filter(|&&s| s > t.start + 100 * MS && s < t.end) {
            let cleanup = t
                .pauses
                .iter()
                .filter(|p| p.reason == "goroutine profile cleanup")
                .find(|p| p.end() <= at + p.error && at <= p.end() + 250 * MS + p.error);
            ensure!(
                cleanup.is_some(),
                "no goroutine profile pause ends just before the snapshot at {at}: {:?}",
                t.pauses
                    .iter()
                    .filter(|p| p.reason.starts_with("goroutine"))
                    .collect::<Vec<_>>()
            );
            checked_snapshots += 1;
        }
    }
    ensure!(
        checked_snapshots >= 3,
        "only {checked_snapshots} snapshots fell in traced windows"
    );

    // One offset for every window: the runtime started once.
    let (first, rest) = offsets.split_first().context("no windows")?;
    let chosen = first
        .iter()
        .find(|(_, c)| {
            rest.iter()
                .all(|fits| fits.iter().any(|(_, d)| (c - d).abs() <= TOL as i128))
        })
        .map(|(_, c)| *c)
        .context("no one runtime start time fits every window")?;
    // On the Unix clock, that is after the test started the service and before it answered.
    ensure!(
        chosen + TOL as i128 >= spawned as i128 && chosen < before as i128,
        "the runtime started at {chosen}, outside [{spawned}, {before}]"
    );
    for (t, fits) in traces.iter().zip(&offsets) {
        let &(j0, _) = fits
            .iter()
            .find(|(_, d)| (chosen - d).abs() <= TOL as i128)
            .context("fit lost")?;
        let k = t
            .pauses
            .iter()
            .filter(|p| p.reason == "GC sweep termination")
            .count();
        // No GC the runtime reports inside the window is missing from it.
        for (j, g) in gcs.iter().enumerate() {
            let at = chosen + g.at_ns as i128;
            if at > (t.start + TOL) as i128 && at < (t.end - TOL) as i128 {
                ensure!(
                    (j0..j0 + k).contains(&j),
                    "gc {} at {at} is in the window [{}, {}] but not among its pauses (gc {} to {} are, first at {:?}, last at {:?}); near: {:?}",
                    g.number, t.start, t.end, gcs[j0].number, gcs[j0 + k - 1].number,
                    t.pauses.iter().find(|p| p.reason == "GC sweep termination"),
                    t.pauses.iter().rev().find(|p| p.reason == "GC sweep termination"),
                    t.pauses.iter().filter(|p| p.start.abs_diff(at as u64) < 20 * MS).collect::<Vec<_>>()
                );
            }
        }
        // The pauses last as long as the runtime says, in total.
        let ours: u64 = t
            .pauses
            .iter()
            .filter(|p| p.reason == "GC sweep termination")
            .map(|p| p.duration)
            .sum();
        let theirs: u64 = gcs[j0..j0 + k].iter().map(|g| g.sweep_ns).sum();
        ensure!(
            ours.abs_diff(theirs) <= theirs / 5 + MS,
            "sweep termination: {ours} ns traced, {theirs} ns by gctrace"
        );
    }
    Ok(())
}

/// A trace server for the refusal tests: Go's own old-format trace, and a real Go 1.26 trace
/// (this repository's fixture) whose pauses Go's parser listed.
#[test]
fn old_and_oversized_traces_are_refused_and_counted_and_a_recorded_one_matches_go() -> Result<()> {
    let old_path = goroot().join("src/internal/trace/internal/tracev1/testdata/http_1_21_good");
    let old =
        std::fs::read(&old_path).with_context(|| format!("Go's old test trace {}", old_path.display()))?;
    let fixture_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../gotrace/testdata");
    let fixture = std::fs::read(fixture_dir.join("pressure.trace"))?;
    ensure!(fixture.len() > 1 << 20);
    let old_target = FakeTarget::start(0, old)?;
    let fixture_target = FakeTarget::start(0, fixture)?;
    let hotspan = Hotspan::start(&format!(
        r#"
receivers:
  pprof_scrape/old:
    profiles: [trace]
    trace_duration: 1s
    targets: [{{endpoint: "{old}", service_name: old}}]
  pprof_scrape/big:
    profiles: [trace]
    trace_duration: 1s
    max_trace_bytes: 1048576
    targets: [{{endpoint: "{fixture}", service_name: big}}]
  pprof_scrape/fixture:
    profiles: [trace]
    trace_duration: 1s
    targets: [{{endpoint: "{fixture}", service_name: fixture}}]
exporters:
  file: {{path: "{{dir}}/logs.jsonl", flush_interval: 20ms}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
  pipelines:
    logs: {{receivers: [pprof_scrape/old, pprof_scrape/big, pprof_scrape/fixture], exporters: [file]}}
"#,
        old = old_target.endpoint(),
        fixture = fixture_target.endpoint(),
    ))?;
    let count = |name: &str, receiver: &str, target: &str, extra: &str| -> f64 {
        scrape(hotspan.port("metrics"))
            .ok()
            .and_then(|m| {
                metric(
                    &m,
                    &format!(r#"{name}{{receiver="{receiver}",target="{target}"{extra}}}"#),
                )
            })
            .unwrap_or(0.0)
    };
    let (old_url, fixture_url) = (old_target.endpoint(), fixture_target.endpoint());
    wait_for(
        Duration::from_secs(60),
        "both refusals and one parsed trace counted",
        || {
            (count(
                "hotspan_go_traces_refused",
                "pprof_scrape/old",
                &old_url,
                r#",reason="unsupported_version""#,
            ) >= 1.0
                && count(
                    "hotspan_go_traces_refused",
                    "pprof_scrape/big",
                    &fixture_url,
                    r#",reason="too_large""#,
                ) >= 1.0
                && count(
                    "hotspan_go_traces_parsed",
                    "pprof_scrape/fixture",
                    &fixture_url,
                    "",
                ) >= 1.0)
                .then_some(())
        },
    )
    .with_context(|| hotspan.log())?;
    for (receiver, target) in [("pprof_scrape/old", &old_url), ("pprof_scrape/big", &fixture_url)] {
        ensure!(
            count(
                "hotspan_scrapes",
                receiver,
                target,
                r#",profile="trace",outcome="bad_data""#
            ) >= 1.0
        );
        ensure!(count("hotspan_go_traces_parsed", receiver, target, "") == 0.0);
    }
    let log = hotspan.log();
    ensure!(
        log.contains("Go execution trace refused")
            && log.contains("unsupported Go execution trace version go 1.21")
            && log.contains("Go 1.22 and newer"),
        "the log does not say why the old trace was refused:\n{log}"
    );
    ensure!(
        log.contains("too_large") && log.contains("over the limit of 1048576"),
        "the log does not say the trace was too large:\n{log}"
    );

    // Only the fixture's records were written, and they are Go's own parser's answer put on
    // the wall clock by the nearest of the trace's clock snapshots.
    let traces = read_traces(&hotspan.path("logs.jsonl"), "fixture")?;
    ensure!(!traces.is_empty());
    let go: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture_dir.join("pressure.go.json"))?)?;
    let n = |v: &serde_json::Value| v.as_u64().context("a number in pressure.go.json");
    let snapshots: Vec<(u64, u64)> = go["clock_snapshots"]
        .as_array()
        .context("clock_snapshots")?
        .iter()
        .map(|s| Ok((n(&s["trace"])?, n(&s["wall"])?)))
        .collect::<Result<_>>()?;
    let unix = |trace_ns: u64| -> u64 {
        let (t, w) = *snapshots
            .iter()
            .min_by_key(|(t, _)| t.abs_diff(trace_ns))
            .expect("snapshots");
        (w as i128 + trace_ns as i128 - t as i128) as u64
    };
    let want: Vec<(u64, u64, String)> = go["stw"]
        .as_array()
        .context("stw")?
        .iter()
        .map(|p| {
            let (start, end) = (n(&p["start"])?, n(&p["end"])?);
            Ok((
                unix(start),
                end - start,
                p["reason"].as_str().context("reason")?.to_string(),
            ))
        })
        .collect::<Result<_>>()?;
    let t = &traces[0];
    let got: Vec<(u64, u64, String)> = t
        .pauses
        .iter()
        .map(|p| (p.start, p.duration, p.reason.clone()))
        .collect();
    ensure!(got == want, "pauses differ from Go's parser");
    // The window: from the pause that switched tracing on to the last event traced before
    // tracing stopped (Go's parser's last, less goroutine statuses and the closing Sync).
    let first = &go["stw"][0];
    ensure!(first["reason"] == "start trace");
    ensure!(n(&go["traced_until"])? < n(&go["end"])?);
    ensure!((t.start, t.end) == (unix(n(&first["start"])?), unix(n(&go["traced_until"])?)));
    ensure!(t.gc_cycles == go["gc"].as_array().context("gc")?.len() as i64);
    ensure!(t.alignment == "clock_snapshot" && t.version == "go1.26");
    Ok(())
}

/// The two alignments old traces get (this host's monotonic clock, the scrape's times), applied
/// to a real trace of the Go service on this host with its clock snapshots taken away, agree
/// with the snapshots within their stated bounds.
#[test]
fn monotonic_and_scrape_alignments_agree_with_the_clock_snapshots() -> Result<()> {
    let mut service = GoService::start(GoOptions {
        scenario: Scenario::Alloc,
        truth: false,
        ..GoOptions::default()
    })?;
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let request_unix_ns = unix_nanos();
    let started = Instant::now();
    let response = client.get(service.url("/debug/pprof/trace?seconds=1")).send()?;
    ensure!(response.status() == 200, "{}", response.status());
    let bytes = response.bytes()?;
    let times = ScrapeTimes {
        request_unix_ns,
        response_end_unix_ns: request_unix_ns + started.elapsed().as_nanos() as u64,
    };
    let local = LocalClocks::read().context("this host's clocks")?;
    ensure!(service.stop()?.success(), "goservice exit\n{}", service.log());

    let summary = hotspan_gotrace::parse(&bytes[..], &Limits::default())?;
    ensure!(
        !summary.clock_snapshots.is_empty(),
        "a Go 1.25+ trace without clock snapshots"
    );
    let snapshots = align(&summary, times, Some(local));
    ensure!(snapshots == Alignment::Snapshots);
    let mut old = summary.clone();
    old.clock_snapshots.clear();
    let monotonic = align(&old, times, Some(local));
    let scrape = align(&old, times, None);
    ensure!(monotonic.method() == Method::Monotonic, "{monotonic:?}");
    ensure!(scrape.method() == Method::Scrape, "{scrape:?}");
    let mut instants = vec![summary.start_ns, summary.end_ns];
    instants.extend(summary.stw.iter().map(|p| p.start_ns));
    ensure!(instants.len() > 10);
    for t in instants {
        let want = snapshots.unix(&summary, t).context("snapshot time")?;
        for other in [&monotonic, &scrape] {
            let got = other.unix(&old, t).context("aligned time")?;
            ensure!(
                got.unix_ns.abs_diff(want.unix_ns) <= got.error_ns + want.error_ns,
                "{:?} puts {t} at {} ± {}, the snapshots at {} ± {}",
                other.method(),
                got.unix_ns,
                got.error_ns,
                want.unix_ns,
                want.error_ns
            );
        }
    }
    // Bounds that mean something: a few microseconds on this host, a scrape's round trip.
    let Alignment::Offset { error_ns, .. } = monotonic else {
        bail!("{monotonic:?}")
    };
    ensure!(error_ns < 100_000, "monotonic error bound {error_ns} ns");
    Ok(())
}

/// Pauses are logs: a scraper told to trace but in no logs pipeline would lose every trace, so
/// hotspan refuses to start, saying what to do.
#[test]
fn trace_without_a_logs_pipeline_is_refused_at_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
receivers:
  pprof_scrape:
    profiles: [cpu, trace]
    targets: [{{endpoint: "http://127.0.0.1:6060", service_name: shop}}]
exporters:
  debug:
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{}"}}}}
  pipelines:
    profiles: {{receivers: [pprof_scrape], exporters: [debug]}}
"#,
            hotspan_tests::free_port()
        ),
    )?;
    let out = std::process::Command::new(hotspan_bin())
        .arg("--config")
        .arg(&config)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "hotspan ran:\n{stderr}");
    ensure!(
        stderr.contains("receivers.pprof_scrape: profiles lists trace")
            && stderr.contains("list pprof_scrape in a logs pipeline's receivers"),
        "{stderr}"
    );
    Ok(())
}

/// The join end to end: the Go service allocating heavily (one worker, so its requests run
/// back to back) with `GODEBUG=gctrace=1`, traced back to back in 1 s windows while its spans
/// come over OTLP. Every span inside a traced window carries exactly the stop-the-world time of
/// the traced pauses it overlapped, with one `gc.pause` event per pause (up to the cap), and one
/// that overlapped none carries nothing; none carries more than its duration; the roots, back to
/// back, carry together the pauses in the time they covered; and the traced GC cycles are the
/// runtime's own (gctrace) in number.
#[test]
fn gc_pauses_go_on_the_spans_they_stopped() -> Result<()> {
    use hotspan_proto::otlp::trace::v1::Span;
    use hotspan_tests::attrs;
    use hotspan_tests::{hex, read_spans};
    let mut hotspan = Hotspan::start(
        r#"
receivers:
  otlp:
    protocols:
      http: {endpoint: "127.0.0.1:{port:http}"}
  pprof_scrape:
    profiles: [trace]
    trace_duration: 1s
    trace_interval: 1s
    targets: [{endpoint: "http://127.0.0.1:{port:service}", service_name: shop}]
connectors:
  spanprofile: {wait: 5s}
exporters:
  file/spans: {path: "{dir}/spans.jsonl", flush_interval: 50ms}
  file/logs: {path: "{dir}/logs.jsonl", flush_interval: 20ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces/in: {receivers: [otlp], exporters: [spanprofile]}
    logs/in: {receivers: [pprof_scrape], exporters: [spanprofile, file/logs]}
    traces/out: {receivers: [spanprofile], exporters: [file/spans]}
"#,
    )?;
    let mut service = GoService::start(GoOptions {
        scenario: Scenario::Alloc,
        workers: 1,
        listen_port: Some(hotspan.port("service")),
        otlp_endpoint: Some(format!("http://127.0.0.1:{}", hotspan.port("http"))),
        env: vec![("GODEBUG".into(), "gctrace=1".into())],
        ..GoOptions::default()
    })?;
    wait_for(Duration::from_secs(90), "four traced windows", || {
        let t = read_traces(&hotspan.path("logs.jsonl"), "shop").ok()?;
        (t.len() >= 4).then_some(())
    })
    .with_context(|| hotspan.log())?;
    ensure!(service.stop()?.success(), "goservice exit\n{}", service.log());
    let truth = service.truth()?;
    let spans = wait_for(Duration::from_secs(30), "every span out of the join", || {
        let s = read_spans(&hotspan.path("spans.jsonl")).ok()?;
        (s.len() >= truth.len()).then_some(s)
    })
    .with_context(|| hotspan.log())?;
    ensure!(hotspan.terminate()?.success(), "hotspan exit\n{}", hotspan.log());
    let traces = read_traces(&hotspan.path("logs.jsonl"), "shop")?;
    let by_id: std::collections::BTreeMap<String, &Span> =
        spans.values().map(|f| (hex(&f.span.span_id), &f.span)).collect();

    let pauses: Vec<&Pause> = traces.iter().flat_map(|t| &t.pauses).collect();
    let traced = |start: u64, end: u64| traces.iter().any(|t| t.start <= start && end <= t.end);
    let overlap = |p: &Pause, start: u64, end: u64| p.end().min(end).saturating_sub(p.start.max(start));
    let (mut inside, mut paused, mut roots_got, mut roots_want) = (0, 0, 0u64, 0u64);
    for t in &truth {
        let span = by_id
            .get(&t.span_id)
            .with_context(|| format!("{} never came out", t.name))?;
        let (start, end) = (t.start_unix_nano, t.end_unix_nano);
        let got = attrs::int(span, "profile.gc.pause_ns");
        ensure!(
            got.unwrap_or(0) as u64 <= end - start,
            "{} carries {got:?} ns of pause in {} ns",
            t.name,
            end - start
        );
        if !traced(start, end) {
            continue;
        }
        inside += 1;
        let hit: Vec<&&Pause> = pauses
            .iter()
            .filter(|p| p.start <= end && p.end() >= start && overlap(p, start, end) > 0)
            .collect();
        let want: u64 = hit.iter().map(|p| overlap(p, start, end)).sum();
        if hit.is_empty() {
            ensure!(
                got.is_none(),
                "{} overlapped no pause and carries {got:?}",
                t.name
            );
            continue;
        }
        paused += 1;
        ensure!(
            got == Some(want as i64) && attrs::int(span, "profile.gc.pauses") == Some(hit.len() as i64),
            "{} overlapped {} pauses for {want} ns, carries {got:?} in {:?}",
            t.name,
            hit.len(),
            attrs::int(span, "profile.gc.pauses")
        );
        let events: Vec<_> = span.events.iter().filter(|e| e.name == "gc.pause").collect();
        ensure!(
            !events.is_empty() && events.len() <= hit.len(),
            "{} events for {} pauses",
            events.len(),
            hit.len()
        );
        for e in events {
            ensure!(
                hit.iter().any(|p| p.start == e.time_unix_nano),
                "a gc.pause event at {} that is no pause's start",
                e.time_unix_nano
            );
        }
        if t.parent_span_id.is_empty() {
            roots_got += got.unwrap_or(0) as u64;
            roots_want += pauses
                .iter()
                .map(|p| p.duration.min(overlap(p, start, end)))
                .sum::<u64>();
        }
    }
    ensure!(inside >= 20, "only {inside} spans inside traced windows");
    ensure!(
        paused * 2 >= inside,
        "only {paused} of {inside} spans overlapped a pause"
    );
    ensure!(
        roots_got == roots_want && roots_got > 0,
        "roots carry {roots_got} ns, their pauses last {roots_want} ns"
    );

    // gctrace, the runtime's own account: it saw at least the cycles the windows traced (its
    // agreement pause by pause is the test above), and the service did collect often.
    let gcs = gctrace(&service.log())?;
    let cycles: i64 = traces.iter().map(|t| t.gc_cycles).sum();
    let traced_ns: u64 = traces.iter().map(|t| t.end - t.start).sum();
    ensure!(
        cycles > 0 && cycles as usize <= gcs.len() && cycles as u64 * S >= 10 * traced_ns,
        "{cycles} GC cycles traced in {traced_ns} ns; gctrace has {}",
        gcs.len()
    );
    eprintln!(
        "{inside} spans in traced windows, {paused} paused; roots carry {:.2} ms of {} pauses",
        roots_got as f64 / 1e6,
        pauses.len()
    );
    Ok(())
}
