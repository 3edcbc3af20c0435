//! The join's buffer is bounded: ten times `max_buffered_spans` in flight and resident memory
//! stays flat, the oldest spans leave early, and no span is lost.

use anyhow::{ensure, Result};
use std::time::Duration;

use hotspan_tests::load::{fat_spans, rss_kib};
use hotspan_tests::{metric, post, read_spans, scrape, wait_for, Hotspan};

#[test]
fn ten_times_the_buffer_in_flight_stays_bounded_and_loses_nothing() -> Result<()> {
    let mut hotspan = Hotspan::start(
        r#"
receivers:
  otlp: {protocols: {http: {endpoint: "127.0.0.1:{port:http}"}}}
connectors:
  spanprofile: {wait: 10m, max_buffered_spans: 4000}
exporters:
  file: {path: "{dir}/out.jsonl", flush_interval: 100ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  telemetry: {metrics: {address: "127.0.0.1:{port:metrics}"}}
  pipelines:
    traces/in: {receivers: [otlp], exporters: [spanprofile]}
    traces/out: {receivers: [spanprofile], exporters: [file]}
"#,
    )?;
    let url = format!("http://127.0.0.1:{}/v1/traces", hotspan.port("http"));
    let pid = hotspan.child.id();
    let batch = 500;
    let send = |round: u64| -> Result<()> {
        let a = post(&url, "application/json", None, fat_spans(round * batch, batch))?;
        ensure!(a.status == 200, "{} {}", a.status, a.body);
        Ok(())
    };
    // Fill the buffer once (4000 spans), note the memory, then push 36000 more.
    for round in 0..8 {
        send(round)?;
    }
    // Sharding makes the bound approximate: most of the 4000 places fill.
    let held = || {
        let m = scrape(hotspan.port("metrics")).ok()?;
        metric(&m, r#"hotspan_spanprofile_held_spans{connector="spanprofile"}"#)
    };
    wait_for(Duration::from_secs(10), "the buffer to fill", || {
        held().filter(|h| *h >= 2500.0)
    })?;
    let heap = || -> Result<f64> {
        let m = scrape(hotspan.port("metrics"))?;
        metric(&m, "otelcol_process_runtime_heap_alloc_bytes")
            .ok_or_else(|| anyhow::anyhow!("no heap metric"))
    };
    // Released spans queue for the exporter (a few batches: the backpressure). Memory is read
    // once everything but the buffer's worth has been written, so what it sees is bounded by
    // the buffer, not by how far the exporter lags.
    let written = || {
        let m = scrape(hotspan.port("metrics")).ok()?;
        metric(&m, r#"otelcol_exporter_sent_spans{exporter="file"}"#)
    };
    let (full, full_heap) = (rss_kib(pid)?, heap()?);
    let (mut peak, mut peak_heap) = (full, full_heap);
    for round in 8..80 {
        send(round)?;
        let due = ((round + 1) * batch - 4000) as f64;
        wait_for(Duration::from_secs(10), "the exporter to catch up", || {
            written().filter(|w| *w >= due)
        })?;
        peak = peak.max(rss_kib(pid)?);
        peak_heap = peak_heap.max(heap()?);
    }
    // Unbounded, 36000 more spans of 1 KiB would be held. Bounded, live memory stays level;
    // resident memory also holds what the allocator keeps for reuse (requests come and go),
    // so it gets more room, still well short of the unbounded growth.
    let grown_mib = (peak_heap - full_heap) / (1024.0 * 1024.0);
    eprintln!("heap grew {grown_mib:.1} MiB, rss {full} -> {peak} KiB");
    ensure!(grown_mib < 8.0, "live heap grew by {grown_mib:.1} MiB");
    ensure!(
        peak < full + 20 * 1024,
        "resident memory grew from {full} KiB to {peak} KiB"
    );
    let early = || {
        let m = scrape(hotspan.port("metrics")).ok()?;
        metric(
            &m,
            r#"hotspan_spanprofile_spans_released_early{connector="spanprofile"}"#,
        )
    };
    wait_for(Duration::from_secs(10), "35000 spans to have left early", || {
        early().filter(|e| *e >= 35_000.0)
    })?;
    ensure!(hotspan.terminate()?.success());
    let out = read_spans(&hotspan.path("out.jsonl"))?;
    ensure!(out.len() == 40_000, "{} of 40000 spans came out", out.len());
    Ok(())
}
