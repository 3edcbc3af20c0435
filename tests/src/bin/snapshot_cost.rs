//! What goroutine snapshots cost the service they are taken from, two ways, each against a
//! baseline measured in the same run:
//! - throughput: the Go test service (checkout: CPU-bound requests, plus 1,000 goroutines
//!   parked as a real service's connections and timers would be) on one core; short windows
//!   alternate between no snapshots and `GET /debug/pprof/goroutine?debug=0` (the request
//!   `pprof_scrape` makes on `goroutine_interval`) every interval, the fetcher on the other
//!   core; the loss is the median over pairs of neighbouring windows, which cancels the drift
//!   of a shared machine;
//! - CPU per snapshot: the same service mostly idle (`sleep` scenario), its own CPU time with
//!   and without snapshots: the cost each snapshot adds, from which the loss of a service
//!   saturating N cores at interval I is cost / (I x N).
//!
//!   cargo run --release -p hotspan-tests --bin snapshot_cost -- [PAIRS [WINDOW_MS [INTERVALS_MS]]]
//!   cargo run --release -p hotspan-tests --bin snapshot_cost -- 10 2000 100,1000

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use hotspan_tests::goservice::{GoOptions, GoService, Scenario};

const GOROUTINES: u32 = 1000;

fn pin(pid: u32, core: u32) -> Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-c", "-p", &core.to_string(), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("taskset (util-linux) pins the processes")?;
    ensure!(status.success(), "taskset failed for pid {pid}");
    Ok(())
}

/// Fetches a goroutine snapshot every `interval` (none if `None`) for `window`: how many.
fn snapshots_for(service: &GoService, window: Duration, interval: Option<Duration>) -> Result<u32> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = service.url("/debug/pprof/goroutine?debug=0");
    let start = Instant::now();
    let end = start + window;
    let Some(every) = interval else {
        std::thread::sleep(window);
        return Ok(0);
    };
    let mut n = 0;
    while Instant::now() < end {
        let body = client.get(&url).send()?.bytes()?;
        ensure!(!body.is_empty(), "an empty goroutine profile");
        n += 1;
        std::thread::sleep((start + every * n).saturating_duration_since(Instant::now()));
    }
    Ok(n)
}

/// The service's CPU seconds so far (user + system, all threads).
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("a /proc stat line")?
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 =
        fields.get(11).context("utime")?.parse::<f64>()? + fields.get(12).context("stime")?.parse::<f64>()?;
    Ok(ticks / 100.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn start_pinned(opts: GoOptions) -> Result<GoService> {
    let service = GoService::start(GoOptions {
        idle_goroutines: GOROUTINES,
        truth: false,
        env: vec![("GOMAXPROCS".into(), "1".into())],
        ..opts
    })?;
    pin(service.pid(), 1)?;
    Ok(service)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pairs: u32 = args.first().map_or(Ok(10), |s| s.parse())?;
    let window = Duration::from_millis(args.get(1).map_or(Ok(2000), |s| s.parse())?);
    let intervals: Vec<Duration> = args
        .get(2)
        .map_or("100,1000", String::as_str)
        .split(',')
        .map(|ms| Ok(Duration::from_millis(ms.trim().parse()?)))
        .collect::<Result<_>>()?;
    pin(std::process::id(), 0)?;
    println!(
        "goroutine snapshots of the Go service on core 1 (GOMAXPROCS=1, {GOROUTINES} parked goroutines)"
    );

    let mut busy = start_pinned(GoOptions {
        workers: 2,
        ..Default::default()
    })?;
    for every in &intervals {
        let mut losses = Vec::new();
        for _ in 0..pairs {
            let rate = |interval| -> Result<f64> {
                let before = busy.stats()?.spans;
                let t = Instant::now();
                snapshots_for(&busy, window, interval)?;
                Ok((busy.stats()?.spans - before) as f64 / t.elapsed().as_secs_f64())
            };
            let (off, on) = (rate(None)?, rate(Some(*every))?);
            losses.push(1.0 - on / off);
        }
        println!(
            "busy, every {} ms: throughput loss {:.2}% (median of {pairs} pairs of {} ms windows)",
            every.as_millis(),
            100.0 * median(losses),
            window.as_millis()
        );
    }
    ensure!(busy.stop()?.success(), "goservice exit\n{}", busy.log());

    let mut idle = start_pinned(GoOptions {
        scenario: Scenario::Sleep,
        workers: 1,
        ..Default::default()
    })?;
    let every = Duration::from_millis(100);
    let mut costs = Vec::new();
    for _ in 0..pairs {
        let cpu = |interval| -> Result<(f64, u32)> {
            let before = cpu_seconds(idle.pid())?;
            let n = snapshots_for(&idle, window, interval)?;
            Ok((cpu_seconds(idle.pid())? - before, n))
        };
        let ((off, _), (on, n)) = (cpu(None)?, cpu(Some(every))?);
        costs.push((on - off) / f64::from(n.max(1)));
    }
    let cost = median(costs);
    println!(
        "idle: {:.2} ms of CPU per snapshot (median of {pairs} pairs): at 1 s, {:.2}% of one core",
        cost * 1e3,
        100.0 * cost
    );
    ensure!(idle.stop()?.success(), "goservice exit\n{}", idle.log());
    Ok(())
}
