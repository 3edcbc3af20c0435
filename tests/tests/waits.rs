//! Why the span waited, against the real Go service (`-scenario wait`): hotspan scrapes its CPU
//! profiles and goroutine snapshots, takes its spans over OTLP and joins them. Each kind of
//! wait span (a mutex held by another goroutine, a channel, a slow TCP peer, a sleep) carries a
//! mean `profile.wait_ns` within 25% of the wait the service measured around the blocking call,
//! with Go's reason and the blocking function; the span that only burns CPU carries no wait
//! even when a snapshot caught it.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hotspan_proto::otlp::trace::v1::Span;
use hotspan_tests::attrs::{int, strings, text};
use hotspan_tests::goservice::{GoOptions, GoService, Scenario, TruthSpan};
use hotspan_tests::{hex, read_spans, wait_for, Hotspan};

/// The four ways a "wait" request blocks, by span name: (wait reason, wait function).
const WAITS: [(&str, &str, &str); 4] = [
    ("lock inventory", "sync.Mutex.Lock", "main.lockInventory"),
    ("await quote", "chan receive", "main.awaitQuote"),
    ("call warehouse", "IO wait", "main.callWarehouse"),
    ("back off", "sleep", "main.backOff"),
];

/// Snapshots every 100 ms (the least `goroutine_interval` allows) estimate a wait as the
/// snapshots that caught it times the interval, capped at the span's duration. The cap biases
/// waits shorter than the interval low (one caught at all counts at most its own length), so
/// the service blocks 150-450 ms here, a few intervals each.
const INTERVAL_MS: u32 = 100;
const WAIT_MS: (u32, u32) = (150, 450);
const PER_KIND: usize = 30;

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      http: {endpoint: "127.0.0.1:{port:http}"}
  pprof_scrape:
    scrape_interval: 1s
    goroutine_interval: {interval}ms
    profiles: [cpu, goroutine]
    targets: [{endpoint: "http://127.0.0.1:{port:service}", service_name: shop}]
connectors:
  spanprofile: {wait: 4s}
exporters:
  file: {path: "{dir}/spans.jsonl", flush_interval: 50ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces/in: {receivers: [otlp], exporters: [spanprofile]}
    profiles/in: {receivers: [pprof_scrape], exporters: [spanprofile]}
    traces/out: {receivers: [spanprofile], exporters: [file]}
"#;

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    sum / n.max(1) as f64
}

#[test]
fn wait_spans_carry_their_wait_reason_and_blocking_function() -> Result<()> {
    let mut hotspan = Hotspan::start(&CONFIG.replace("{interval}", &INTERVAL_MS.to_string()))?;
    let file = hotspan.path("spans.jsonl");
    let mut service = GoService::start(GoOptions {
        scenario: Scenario::Wait,
        wait_ms: Some(WAIT_MS),
        // Waiting costs no CPU: many workers make many spans quickly.
        workers: 8,
        listen_port: Some(hotspan.port("service")),
        otlp_endpoint: Some(format!("http://127.0.0.1:{}", hotspan.port("http"))),
        ..Default::default()
    })?;
    // Each request has one span of each kind (and a root and "total order": 6 spans).
    wait_for(Duration::from_secs(90), "enough requests out of the join", || {
        let n = read_spans(&file).ok()?.len();
        (n >= PER_KIND * 6).then_some(())
    })
    .with_context(|| hotspan.log())?;
    ensure!(service.stop()?.success(), "goservice exit\n{}", service.log());
    let truth = service.truth()?;
    let spans = wait_for(Duration::from_secs(30), "every span out of the join", || {
        let spans = read_spans(&file).ok()?;
        (spans.len() >= truth.len()).then_some(spans)
    })
    .with_context(|| hotspan.log())?;
    hotspan.terminate()?;
    let by_id: BTreeMap<String, &Span> = spans.values().map(|f| (hex(&f.span.span_id), &f.span)).collect();
    let mut by_name: BTreeMap<&str, Vec<(&TruthSpan, &Span)>> = BTreeMap::new();
    for t in &truth {
        let span = by_id
            .get(&t.span_id)
            .with_context(|| format!("{} never came out", t.name))?;
        // Never more than the span lasted, whatever the snapshots caught.
        for key in ["profile.wait_ns", "profile.wait_ns_total", "profile.runnable_ns"] {
            let ns = int(span, key).unwrap_or(0);
            ensure!(
                (0..=t.duration_ns() as i64).contains(&ns),
                "{} has {key} {ns} in {} ns",
                t.name,
                t.duration_ns()
            );
        }
        by_name.entry(t.name.as_str()).or_default().push((t, span));
    }

    let mut report = Vec::new();
    for (name, reason, function) in WAITS {
        let of_kind = by_name.get(name).map(Vec::as_slice).unwrap_or_default();
        ensure!(of_kind.len() >= PER_KIND, "{} {name} spans", of_kind.len());
        let truth_mean = mean(of_kind.iter().map(|(t, _)| t.wait_ns as f64));
        let got_mean = mean(
            of_kind
                .iter()
                .map(|(_, s)| int(s, "profile.wait_ns").unwrap_or(0) as f64),
        );
        report.push(format!(
            "{name}: mean wait {:.1} ms, truth {:.1} ms ({:.2}) over {} spans",
            got_mean / 1e6,
            truth_mean / 1e6,
            got_mean / truth_mean,
            of_kind.len()
        ));
        ensure!(
            (got_mean - truth_mean).abs() <= 0.25 * truth_mean,
            "{}",
            report.join("\n")
        );
        // Each span that a snapshot caught names the reason and the function it blocked in.
        let mut caught = 0;
        for (t, span) in of_kind {
            ensure!(t.wait_reason == reason && t.wait_function == function, "{t:?}");
            if int(span, "profile.wait_ns").is_none() {
                continue;
            }
            caught += 1;
            let reasons = strings(span, "profile.wait_reasons");
            ensure!(
                reasons
                    .first()
                    .is_some_and(|r| r.starts_with(&format!("{reason} "))),
                "{name}: reasons {reasons:?}, Go says {reason}"
            );
            let path = text(span, "profile.wait_path").unwrap_or_default();
            ensure!(
                path.split(';').any(|f| f == function),
                "{name}: wait path {path} does not pass {function}"
            );
            ensure!(
                text(span, "profile.wait_source") == Some("goroutine"),
                "{name}: source {:?}",
                text(span, "profile.wait_source")
            );
        }
        // A 150 ms wait spans at least one 100 ms interval: every span is caught.
        ensure!(
            caught == of_kind.len(),
            "{name}: {caught} of {} caught",
            of_kind.len()
        );
    }

    // "total order" only burns CPU: snapshots that catch it see it running, never blocked.
    let totals = by_name.get("total order").map(Vec::as_slice).unwrap_or_default();
    let seen_running = totals
        .iter()
        .filter(|(_, s)| int(s, "profile.runnable_ns").is_some())
        .count();
    let waited = totals
        .iter()
        .filter(|(_, s)| int(s, "profile.wait_ns").is_some())
        .count();
    report.push(format!(
        "total order: {seen_running} of {} caught running, {waited} with a wait",
        totals.len()
    ));
    ensure!(seen_running >= 3, "{}", report.join("\n"));
    ensure!(waited * 20 <= totals.len(), "{}", report.join("\n"));
    // The roots' rolled-up wait covers their children's.
    let roots_with_total = by_name
        .get("handle order")
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|(_, s)| int(s, "profile.wait_ns_total").is_some())
        .count();
    ensure!(
        roots_with_total >= PER_KIND,
        "{roots_with_total} roots with wait_ns_total"
    );
    eprintln!("{}", report.join("\n"));
    Ok(())
}
