//! The sidecar mode against the real Go service: hotspan scrapes its `/debug/pprof/profile`
//! back to back and the profiles come out with Links to the spans the service really ran; its
//! goroutine snapshots come on their own timer, each stamped with its instant.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use hotspan_proto::ProfilesBatch;
use hotspan_tests::goservice::{GoOptions, GoService, Scenario};
use hotspan_tests::profiles::{flatten, read_profiles, resource_values, FlatSample};
use hotspan_tests::{wait_for, Hotspan};

#[test]
fn scraping_the_go_service_links_samples_to_its_spans() -> Result<()> {
    let mut service = GoService::start(GoOptions {
        workers: 2,
        ..Default::default()
    })?;
    let hotspan = Hotspan::start(&format!(
        r#"
receivers:
  pprof_scrape:
    scrape_interval: 1s
    include_original_payload: true
    targets: [{{endpoint: "{}", service_name: shop}}]
exporters:
  file: {{path: "{{dir}}/profiles.jsonl", flush_interval: 20ms}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    profiles: {{receivers: [pprof_scrape], exporters: [file]}}
"#,
        service.url("").trim_end_matches('/')
    ))?;
    let batches = wait_for(Duration::from_secs(30), "two scraped CPU profiles", || {
        let b = read_profiles(&hotspan.path("profiles.jsonl")).ok()?;
        (b.len() >= 2).then_some(b)
    })?;
    ensure!(service.stop()?.success());
    let truth = service.truth()?;
    let span_ids: BTreeSet<&str> = truth.iter().map(|s| s.span_id.as_str()).collect();
    let mut linked = 0;
    for batch in &batches {
        ensure!(resource_values(batch, "service.name") == ["shop"]);
        let first = &batch.resource_profiles()[0].scope_profiles[0].profiles[0];
        ensure!(
            first.original_payload_format == "pprof" && first.original_payload.starts_with(&[0x1f, 0x8b])
        );
        for s in flatten(batch).iter().filter(|s| !s.span_id.is_empty()) {
            ensure!(
                span_ids.contains(s.span_id.as_str()),
                "sample linked to unknown span {}",
                s.span_id
            );
            linked += 1;
        }
    }
    ensure!(linked > 0, "no sample linked to a span");
    // Back to back: each window starts about where the previous one ended.
    let mut windows: Vec<(u64, u64)> = batches
        .iter()
        .map(|b| {
            let p = &b.resource_profiles()[0].scope_profiles[0].profiles[0];
            (p.time_unix_nano, p.duration_nano)
        })
        .collect();
    windows.sort();
    for pair in windows.windows(2) {
        let gap = pair[1].0.saturating_sub(pair[0].0 + pair[0].1);
        ensure!(gap < 500_000_000, "gap of {gap} ns between CPU windows");
    }
    Ok(())
}

/// One scraped profile with its samples, and what flattening drops: the per-sample times.
struct Scraped {
    time: u64,
    duration: u64,
    sample_type: String,
    samples: Vec<(FlatSample, Vec<u64>, usize)>,
}

/// Every profile in the batches, samples resolved (`flatten`'s order is the profiles' order).
fn scraped(batches: &[ProfilesBatch]) -> Vec<Scraped> {
    let mut out = Vec::new();
    for b in batches {
        let mut flat = flatten(b).into_iter();
        for p in b
            .resource_profiles()
            .iter()
            .flat_map(|r| &r.scope_profiles)
            .flat_map(|s| &s.profiles)
        {
            let samples: Vec<_> = p
                .samples
                .iter()
                .filter_map(|s| Some((flat.next()?, s.timestamps_unix_nano.clone(), s.values.len())))
                .collect();
            out.push(Scraped {
                time: p.time_unix_nano,
                duration: p.duration_nano,
                sample_type: samples
                    .first()
                    .map(|(f, _, _)| f.sample_type.clone())
                    .unwrap_or_default(),
                samples,
            });
        }
    }
    out
}

#[test]
fn goroutine_snapshots_come_on_their_own_timer_stamped_with_their_instant() -> Result<()> {
    const IDLE: i64 = 50;
    let mut service = GoService::start(GoOptions {
        scenario: Scenario::Wait,
        idle_goroutines: IDLE as u32,
        ..Default::default()
    })?;
    let before = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let hotspan = Hotspan::start(&format!(
        r#"
receivers:
  pprof_scrape:
    scrape_interval: 1s
    goroutine_interval: 200ms
    profiles: [cpu, goroutine]
    targets: [{{endpoint: "{}", service_name: shop}}]
exporters:
  file: {{path: "{{dir}}/profiles.jsonl", flush_interval: 20ms}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    profiles: {{receivers: [pprof_scrape], exporters: [file]}}
"#,
        service.url("")
    ))?;
    let all = wait_for(Duration::from_secs(60), "three CPU profiles", || {
        let p = scraped(&read_profiles(&hotspan.path("profiles.jsonl")).ok()?);
        let cpu = p.iter().filter(|p| p.sample_type == "samples/count").count();
        (cpu >= 3).then_some(p)
    })?;
    let after = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    ensure!(service.stop()?.success(), "goservice exit\n{}", service.log());
    let truth = service.truth()?;
    let spans: BTreeMap<&str, _> = truth.iter().map(|s| (s.span_id.as_str(), s)).collect();

    let mut snapshots: Vec<&Scraped> = all
        .iter()
        .filter(|p| p.sample_type == "goroutine/count")
        .collect();
    snapshots.sort_by_key(|p| p.time);
    // Three CPU profiles take 3 s; a snapshot every 200 ms is many more than three.
    ensure!(snapshots.len() >= 8, "{} snapshots", snapshots.len());
    let mut gaps: Vec<u64> = snapshots.windows(2).map(|w| w[1].time - w[0].time).collect();
    gaps.sort_unstable();
    let median = gaps[gaps.len() / 2];
    ensure!(
        (150_000_000..400_000_000).contains(&median),
        "snapshots {median} ns apart, goroutine_interval is 200ms"
    );
    let mut labelled = 0;
    for snap in &snapshots {
        ensure!(
            snap.duration == 200_000_000,
            "duration {}: each goroutine stands for the interval",
            snap.duration
        );
        ensure!(
            before <= snap.time && snap.time <= after,
            "snapshot at {}",
            snap.time
        );
        let mut idle = 0;
        for (sample, timestamps, values) in &snap.samples {
            ensure!(
                *timestamps == [snap.time] && *values == 1,
                "a sample of the snapshot at {} has timestamps {timestamps:?} and {values} values",
                snap.time
            );
            if sample.stack.iter().any(|f| f == "main.idle") {
                idle += sample.value;
            }
            if !sample.span_id.is_empty() {
                // A goroutine caught under a span's labels was in that span at that instant
                // (the profile is stamped just after the stacks are taken).
                let span = spans
                    .get(sample.span_id.as_str())
                    .with_context(|| format!("span_id {} names no span", sample.span_id))?;
                ensure!(
                    span.start_unix_nano <= snap.time && snap.time <= span.end_unix_nano + 100_000_000,
                    "snapshot at {} caught {} ({}..{})",
                    snap.time,
                    span.name,
                    span.start_unix_nano,
                    span.end_unix_nano
                );
                labelled += 1;
            }
        }
        ensure!(
            idle == IDLE,
            "{idle} goroutines in main.idle, the service parks {IDLE}"
        );
    }
    ensure!(
        labelled >= snapshots.len(),
        "only {labelled} labelled goroutines caught"
    );
    Ok(())
}
