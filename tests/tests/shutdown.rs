//! SIGTERM while clients are sending: hotspan stops taking requests, drains what it took
//! through the batch processor and exporters, and exits 0. Every span a client saw
//! acknowledged is in the output.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use hotspan_tests::{json_span_id, json_spans, post, read_spans, wait_for, Hotspan};

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      http: {endpoint: "127.0.0.1:{port:http}"}
processors:
  # Large and slow so that spans are still held in the batch when the signal comes.
  batch: {timeout: 5s, send_batch_size: 100000}
exporters:
  file: {path: "{dir}/out.jsonl", flush_interval: 10s}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [file]}
"#;

#[test]
fn sigterm_drains_everything_acknowledged() -> Result<()> {
    let mut hotspan = Hotspan::start(CONFIG)?;
    let url = format!("http://127.0.0.1:{}/v1/traces", hotspan.port("http"));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let next_id = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    const PER_REQUEST: u64 = 25;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (url, acked, next_id, stop) = (url.clone(), acked.clone(), next_id.clone(), stop.clone());
            std::thread::spawn(move || {
                // Bounded: stops when told, when hotspan stops answering, or after 30 s.
                let give_up = Instant::now() + Duration::from_secs(30);
                while !stop.load(Ordering::Relaxed) && Instant::now() < give_up {
                    let first = next_id.fetch_add(PER_REQUEST, Ordering::Relaxed);
                    match post(
                        &url,
                        "application/json",
                        None,
                        json_spans("drain", first, PER_REQUEST).into_bytes(),
                    ) {
                        Ok(a) if a.status == 200 => {
                            acked
                                .lock()
                                .expect("lock")
                                .extend((first..first + PER_REQUEST).map(json_span_id));
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    wait_for(
        Duration::from_secs(20),
        "clients to get 2000 spans acknowledged",
        || (acked.lock().expect("lock").len() >= 2000).then_some(()),
    )?;
    let status = hotspan.terminate()?;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    ensure!(status.success(), "exit status {status}\n{}", hotspan.log());
    let acked = acked.lock().expect("lock").clone();
    let stored = read_spans(&hotspan.path("out.jsonl"))?;
    let missing: Vec<_> = acked.iter().filter(|id| !stored.contains_key(*id)).collect();
    ensure!(
        missing.is_empty(),
        "{} of {} acknowledged spans missing after shutdown",
        missing.len(),
        acked.len()
    );
    ensure!(hotspan.log().contains("shutting down"), "no shutdown log line");
    Ok(())
}
