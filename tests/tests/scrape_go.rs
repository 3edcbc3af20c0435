//! The sidecar mode against the real Go service: hotspan scrapes its `/debug/pprof/profile`
//! back to back and the profiles come out with Links to the spans the service really ran.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Result};
use hotspan_tests::goservice::{GoOptions, GoService};
use hotspan_tests::profiles::{flatten, read_profiles, resource_values};
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
