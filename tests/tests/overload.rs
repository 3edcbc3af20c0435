//! Overload: offered load far past what the backend takes. memory_limiter refuses at
//! admission with a retryable status, resident memory stays under the limit plus a margin,
//! and every span a client saw acknowledged arrives once the backend is back.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use hotspan_tests::load::{fat_spans, rss_kib};
use hotspan_tests::restart::file_backend;
use hotspan_tests::{free_port, json_span_id, metric, post, read_spans, scrape, wait_for, Hotspan};

const LIMIT_MIB: u64 = 96;
/// What the process may hold beyond the limit: the check interval's worth of intake, the
/// allocator's slack, and the binary and runtime themselves.
const MARGIN_MIB: u64 = 48;

#[test]
fn memory_limiter_refuses_at_admission_and_loses_nothing() -> Result<()> {
    let backend_port = free_port();
    let mut front = Hotspan::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:http}}"}}}}}}
processors:
  memory_limiter: {{check_interval: 100ms, limit_mib: {LIMIT_MIB}, spike_limit_mib: 32}}
exporters:
  otlp:
    endpoint: "127.0.0.1:{backend_port}"
    tls: {{insecure: true}}
    sending_queue: {{queue_size: 1000000, sizer: items}}
    retry_on_failure: {{initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 0s}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [memory_limiter], exporters: [otlp]}}
"#
    ))?;
    let url = format!("http://127.0.0.1:{}/v1/traces", front.port("http"));
    let pid = front.child.id();
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let refused = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    const PER: u64 = 400;
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (url, acked, refused, next, stop) = (
                url.clone(),
                acked.clone(),
                refused.clone(),
                next.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let end = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    let first = next.fetch_add(PER, Ordering::Relaxed);
                    match post(&url, "application/json", None, fat_spans(first, PER)) {
                        Ok(a) if a.status == 200 => {
                            acked.lock().expect("lock").extend(first..first + PER);
                        }
                        Ok(a) if a.status == 503 => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Ok(a) => panic!("unexpected status {} {}", a.status, a.body),
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        })
        .collect();
    // Load on, backend away: memory climbs to the limit and refusals start.
    let mut peak = 0;
    let refusing = wait_for(Duration::from_secs(15), "refusals under load", || {
        peak = peak.max(rss_kib(pid).unwrap_or(0));
        (refused.load(Ordering::Relaxed) >= 20).then_some(())
    });
    let sample_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < sample_until {
        peak = peak.max(rss_kib(pid)?);
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    refusing?;
    ensure!(
        peak < (LIMIT_MIB + MARGIN_MIB) * 1024,
        "resident memory peaked at {} MiB",
        peak / 1024
    );
    let metrics = scrape(front.port("metrics"))?;
    let counted = metric(
        &metrics,
        r#"hotspan_receiver_refused_requests{receiver="otlp",transport="http"}"#,
    );
    ensure!(
        counted.is_some_and(|c| c >= 20.0),
        "refusals counted: {counted:?}"
    );

    // The backend comes up; everything acknowledged reaches it.
    let backend = Hotspan::start(&file_backend(backend_port))?;
    let acked = acked.lock().expect("lock").clone();
    ensure!(acked.len() >= 10_000, "only {} spans acknowledged", acked.len());
    eprintln!(
        "overload: peak RSS {} MiB (limit {LIMIT_MIB} MiB), {} spans acknowledged, {} requests refused",
        peak / 1024,
        acked.len(),
        refused.load(Ordering::Relaxed)
    );
    let found = wait_for(
        Duration::from_secs(60),
        "every acknowledged span at the backend",
        || {
            let spans = read_spans(&backend.path("out.jsonl")).ok()?;
            acked
                .iter()
                .all(|id| spans.contains_key(&json_span_id(*id)))
                .then_some(spans)
        },
    )?;
    ensure!(found.len() >= acked.len());
    ensure!(front.terminate()?.success());
    Ok(())
}
