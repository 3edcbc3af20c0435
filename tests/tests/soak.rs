//! The soak: realistic spans and profile samples linked to them, at a steady rate, through a
//! sidecar (OTLP/HTTP in, a persistent queue, OTLP/gRPC out) and a gateway (the join, a
//! persistent queue) into a backend, while the backend goes away and comes back, each collector
//! gets a SIGHUP every few seconds (a changed exporter; on the gateway every other time a
//! changed join as well), and the sidecar is killed -9 once and started again.
//!
//! What it holds to: every span the sidecar acknowledged reaches the backend; every span there
//! is annotated, or counted by the gateway's join as one that left before its samples could
//! come (drained by a reload, or early); the gateway's resident memory does not grow; and the
//! client only ever hears "ok" or a retryable answer, but for connections refused while the
//! sidecar is dead.
//!
//! `HOTSPAN_SOAK_SECS` sets the length: 60 by default (CI); by hand,
//! `HOTSPAN_SOAK_SECS=1200 cargo test -p hotspan-tests --test soak -- --nocapture`.
//! The figures are printed either way.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use hotspan_proto::synthetic::{linked_profiles, service_name, Rng, Shape, Template};
use hotspan_tests::load::rss_kib;
use hotspan_tests::restart::{each_span, file_backend};
use hotspan_tests::{attrs, free_port, metric, post, scrape, signal, unix_nanos, wait_for, Hotspan};
use prost::Message;

/// Spans per request (two realistic traces) and requests a second: 320 spans/s.
const SPANS: usize = 16;
const TICK: Duration = Duration::from_millis(50);

fn soak_length() -> Result<Duration> {
    let secs = match std::env::var("HOTSPAN_SOAK_SECS") {
        Ok(v) => v.parse().context("HOTSPAN_SOAK_SECS: whole seconds")?,
        Err(_) => 60,
    };
    ensure!(
        secs >= 30,
        "HOTSPAN_SOAK_SECS: at least 30 (reloads, a kill and flaps must fit)"
    );
    Ok(Duration::from_secs(secs))
}

/// What the sidecar and the gateway share: an `otlp` exporter to `next` with a persistent
/// queue and retries that never give up, and their extensions.
fn exporter_and_extensions(next: u16, timeout: &str) -> String {
    format!(
        r#"exporters:
  otlp:
    endpoint: "127.0.0.1:{next}"
    tls: {{insecure: true}}
    timeout: {timeout}
    sending_queue: {{storage: file_storage, queue_size: 100000}}
    retry_on_failure: {{initial_interval: 50ms, max_interval: 500ms, max_elapsed_time: 0s}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
  file_storage: {{directory: "{{dir}}/queue", create_directory: true}}
service:
  extensions: [health_check, file_storage]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
"#
    )
}

/// The sidecar; `timeout` is what reloads change.
fn sidecar(gateway: u16, timeout: &str) -> String {
    format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:http}}"}}}}}}
{}  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp]}}
    profiles: {{receivers: [otlp], exporters: [otlp]}}
"#,
        exporter_and_extensions(gateway, timeout)
    )
}

/// The gateway: the join between its receiver and a persistent queue to the backend.
fn gateway(port: u16, backend: u16, timeout: &str, wait: &str) -> String {
    format!(
        r#"
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{port}"}}}}}}
connectors:
  spanprofile: {{wait: {wait}}}
{}  pipelines:
    traces/in: {{receivers: [otlp], exporters: [spanprofile]}}
    profiles/in: {{receivers: [otlp], exporters: [spanprofile]}}
    traces/out: {{receivers: [spanprofile], exporters: [otlp]}}
"#,
        exporter_and_extensions(backend, timeout)
    )
}

/// What the client saw.
#[derive(Default)]
struct Client {
    sent: AtomicU64,
    /// Span ids the sidecar answered 200 for.
    acked: Mutex<BTreeSet<u64>>,
    /// Answers asking for a retry (429, 502, 503, 504), each retried.
    retryable: AtomicU64,
    /// Connections refused or reset while the sidecar was dead, each retried.
    while_dead: AtomicU64,
    /// Anything else: a non-retryable status, or a transport error while the sidecar ran.
    failures: Mutex<Vec<String>>,
}

impl Client {
    /// Posts until the sidecar takes it or `give_up` passes; true once taken.
    fn deliver(&self, url: &str, body: &[u8], dead: &AtomicBool, give_up: Instant) -> bool {
        while Instant::now() < give_up {
            let dead_before = dead.load(Ordering::SeqCst);
            match post(url, "application/x-protobuf", None, body.to_vec()) {
                Ok(a) if a.status == 200 => return true,
                Ok(a) if matches!(a.status, 429 | 502 | 503 | 504) => {
                    self.retryable.fetch_add(1, Ordering::Relaxed);
                }
                Ok(a) => {
                    self.record(format!("{url}: {} {}", a.status, a.body));
                    return false;
                }
                // The kill may land while the request is in flight: dead before or after.
                Err(_) if dead_before || dead.load(Ordering::SeqCst) => {
                    self.while_dead.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => self.record(format!("{url}: {e:#}")),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.record(format!("{url}: not taken before the deadline"));
        false
    }

    fn record(&self, failure: String) {
        if let Ok(mut f) = self.failures.lock() {
            f.push(failure);
        }
    }
}

/// Each delivered span id: how many copies came, and whether any came annotated.
fn delivered(path: &std::path::Path) -> Result<BTreeMap<u64, (usize, bool)>> {
    let mut out = BTreeMap::new();
    each_span(path, |span| {
        let id = u64::from_be_bytes(span.span_id.as_slice().try_into().context("span id")?);
        let entry = out.entry(id).or_insert((0, false));
        entry.0 += 1;
        entry.1 |= attrs::int(span, "profile.samples").is_some_and(|n| n > 0);
        Ok(())
    })?;
    Ok(out)
}

#[test]
fn soak_through_reloads_a_kill_and_a_flapping_backend_loses_nothing_acknowledged() -> Result<()> {
    let length = soak_length()?;
    let (backend_port, gateway_port) = (free_port(), free_port());
    let mut sink = Hotspan::start(&file_backend(backend_port))?;
    let out = sink.path("out.jsonl");
    let mut gw = Hotspan::start(&gateway(gateway_port, backend_port, "5s", "2s"))?;
    let mut side = Hotspan::start(&sidecar(gateway_port, "5s"))?;
    let base = format!("http://127.0.0.1:{}", side.port("http"));

    let client = Arc::new(Client::default());
    let dead = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (client, dead, stop) = (client.clone(), dead.clone(), stop.clone());
        std::thread::spawn(move || -> Result<()> {
            let service = service_name(Shape::Realistic, 0);
            let templates = (0..4)
                .map(|seed| Template::new(Shape::Realistic, 0, SPANS, seed))
                .collect::<Result<Vec<_>, _>>()?;
            let mut rng = Rng::new(11);
            let mut next = Instant::now();
            for seq in 0u64.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                // Requests not taken within a minute of the end count as failures.
                let give_up = Instant::now() + Duration::from_secs(60);
                let template = &templates[seq as usize % templates.len()];
                let (body, ids) = template.fill(&mut rng, seq, unix_nanos());
                client.sent.fetch_add(ids.len() as u64, Ordering::Relaxed);
                if client.deliver(&format!("{base}/v1/traces"), &body, &dead, give_up) {
                    if let Ok(mut acked) = client.acked.lock() {
                        acked.extend(ids.iter().map(|&(_, span)| span));
                    }
                }
                let profiles = linked_profiles(service, &ids, ids.len(), unix_nanos()).encode_to_vec();
                client.deliver(
                    &format!("{base}/v1development/profiles"),
                    &profiles,
                    &dead,
                    give_up,
                );
                next += TICK;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            Ok(())
        })
    };

    // The schedule: a reload every 4 s, alternating sidecar and gateway; the backend away for
    // 3 s of every 10; the sidecar killed 45% of the way in.
    let started = Instant::now();
    let (mut reloads_side, mut reloads_gw, mut flaps, mut kills) = (0u32, 0u32, 0u32, 0u32);
    let mut next_reload = started + Duration::from_secs(4);
    let mut next_flap = started + Duration::from_secs(7);
    let mut backend_back: Option<Instant> = None;
    let kill_at = started + length * 45 / 100;
    let mut rss_gw: Vec<(Duration, u64)> = Vec::new();
    let mut rss_side: Vec<(Duration, u64)> = Vec::new();
    let mut next_rss = started;
    let mut queued_at_kill = 0.0;
    while started.elapsed() < length {
        let now = Instant::now();
        if now >= next_rss {
            rss_gw.push((started.elapsed(), rss_kib(gw.child.id())?));
            if kills == 1 || now < kill_at {
                rss_side.push((started.elapsed(), rss_kib(side.child.id())?));
            }
            next_rss += Duration::from_secs(1);
        }
        if kills == 0 && now >= kill_at {
            // The gateway stops answering (SIGSTOP) so the sidecar's queue fills, then the
            // sidecar dies with it full and comes back to send it.
            signal(gw.child.id(), "STOP")?;
            queued_at_kill = wait_for(Duration::from_secs(10), "the sidecar to queue", || {
                let m = scrape(side.port("metrics")).ok()?;
                metric(&m, r#"otelcol_exporter_queue_size{exporter="otlp"}"#).filter(|&n| n >= 20.0)
            })?;
            dead.store(true, Ordering::SeqCst);
            side.kill()?;
            side.restart()?;
            dead.store(false, Ordering::SeqCst);
            signal(gw.child.id(), "CONT")?;
            kills += 1;
        }
        if let Some(back) = backend_back {
            if now >= back {
                sink.restart()?;
                backend_back = None;
            }
        } else if now >= next_flap {
            ensure!(sink.terminate()?.success(), "backend exit\n{}", sink.log());
            flaps += 1;
            backend_back = Some(now + Duration::from_secs(3));
            next_flap = now + Duration::from_secs(10);
        }
        if now >= next_reload {
            let timeout = if (reloads_side + reloads_gw) % 4 < 2 {
                "6s"
            } else {
                "5s"
            };
            if (reloads_side + reloads_gw) % 2 == 0 {
                side.reload(&sidecar(gateway_port, timeout))?;
                reloads_side += 1;
            } else {
                // The join's wait changes at every other gateway reload: the others carry the join over.
                let wait = if reloads_gw % 4 < 2 { "3s" } else { "2s" };
                gw.reload(&gateway(gateway_port, backend_port, timeout, wait))?;
                reloads_gw += 1;
            }
            next_reload = Instant::now() + Duration::from_secs(4);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    if backend_back.is_some() {
        sink.restart()?;
    }
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("the sender panicked"))??;
    let sending = started.elapsed();

    let failures = client.failures.lock().map(|f| f.clone()).unwrap_or_default();
    ensure!(
        failures.is_empty(),
        "{} answers neither ok nor retryable, first: {:?}",
        failures.len(),
        failures.first()
    );
    let acked = client.acked.lock().map(|a| a.clone()).unwrap_or_default();
    let sent = client.sent.load(Ordering::Relaxed);
    ensure!(
        acked.len() as u64 == sent,
        "{} of {sent} spans acknowledged",
        acked.len()
    );

    // Everything acknowledged arrives: the gateway's join holds spans `wait`, queues drain.
    let mut got = BTreeMap::new();
    let mut lost = acked.len();
    wait_for(
        Duration::from_secs(120),
        "every acknowledged span at the backend",
        || {
            got = delivered(&out).ok()?;
            lost = acked.iter().filter(|id| !got.contains_key(*id)).count();
            (lost == 0).then_some(())
        },
    )
    .with_context(|| {
        format!(
            "{lost} of {} acknowledged spans lost\n--- sidecar ---\n{}\n--- gateway ---\n{}",
            acked.len(),
            side.log(),
            gw.log()
        )
    })?;
    let duplicates = got.values().filter(|(n, _)| *n > 1).count();
    let annotated = got.values().filter(|(_, a)| *a).count();
    let unannotated = got.len() - annotated;

    let metrics = scrape(gw.port("metrics"))?;
    let count =
        |name: &str| metric(&metrics, &format!(r#"{name}{{connector="spanprofile"}}"#)).unwrap_or(0.0);
    let drained = count("hotspan_spanprofile_spans_drained");
    let early = count("hotspan_spanprofile_spans_released_early");
    let gw_end = rss_kib(gw.child.id())?;
    ensure!(side.terminate()?.success(), "sidecar exit\n{}", side.log());
    ensure!(gw.terminate()?.success(), "gateway exit\n{}", gw.log());
    ensure!(sink.terminate()?.success(), "backend exit");

    // Resident memory: the gateway's largest in the second half against the first's, after a
    // warm-up of a sixth of the run.
    let half = sending / 2;
    let max_in = |from: Duration, to: Duration| {
        rss_gw
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(0)
    };
    let (first, second) = (max_in(sending / 6, half), max_in(half, sending));
    let side_after = rss_side
        .iter()
        .filter(|(t, _)| *t >= kill_at - started)
        .collect::<Vec<_>>();
    eprintln!(
        "soak {:.0} s: sent {sent} spans, acknowledged {}, delivered {} ({duplicates} twice or more), lost {lost}; \
         annotated {annotated}, unannotated {unannotated} (the join drained {drained} at reloads, released {early} early); \
         reloads {reloads_side} sidecar + {reloads_gw} gateway, kills {kills} ({queued_at_kill} batches queued), backend flaps {flaps}; \
         retryable answers {}, refused while dead {}; gateway RSS {} MiB at start, {} MiB max first half, {} MiB max second half, {} MiB at end; \
         sidecar RSS {} MiB before the kill, {} MiB at end",
        sending.as_secs_f64(),
        acked.len(),
        got.len(),
        client.retryable.load(Ordering::Relaxed),
        client.while_dead.load(Ordering::Relaxed),
        rss_gw.first().map_or(0, |r| r.1) / 1024,
        first / 1024,
        second / 1024,
        gw_end / 1024,
        rss_side.iter().rev().find(|(t, _)| *t < kill_at - started).map_or(0, |r| r.1) / 1024,
        side_after.last().map_or(0, |r| r.1) / 1024,
    );
    ensure!(kills == 1 && reloads_side >= 3 && reloads_gw >= 3 && flaps >= 3);
    ensure!(
        unannotated as f64 <= drained + early,
        "{unannotated} spans came without samples, but the join counted only {drained} drained and {early} early"
    );
    ensure!(
        annotated * 2 >= got.len(),
        "only {annotated} of {} spans annotated",
        got.len()
    );
    ensure!(
        second <= first + first / 4 + 16 * 1024,
        "the gateway grew from {first} KiB to {second} KiB"
    );
    Ok(())
}
