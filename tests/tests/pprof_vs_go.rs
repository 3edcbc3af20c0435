//! hotspan's pprof -> OTLP conversion checked against Go's own reader: for CPU profiles the Go
//! runtime wrote, totals per function and per label value equal what `go tool pprof -raw`
//! reports for the same file.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Result};
use hotspan_proto::pprof::{self, ConvertOptions};
use hotspan_proto::ProfilesBatch;
use hotspan_tests::goservice::{go_tool_pprof_raw, GoOptions, GoService, LabelStyle};
use hotspan_tests::profiles::flatten;

fn check(style: LabelStyle) -> Result<()> {
    let mut service = GoService::start(GoOptions {
        label_style: style,
        workers: 2,
        duration: Some(Duration::from_secs(3)),
        cpu_profile_seconds: Some(2),
        ..Default::default()
    })?;
    let status = service.wait_exit(Duration::from_secs(30))?;
    ensure!(status.success(), "go service exit {status}");
    let path = service.cpu_profile_path();
    let raw = go_tool_pprof_raw(&path)?;
    let bytes = std::fs::read(&path)?;
    let batch = ProfilesBatch::from_request(pprof::to_otlp(&bytes, &ConvertOptions::default())?);
    let samples = flatten(&batch);

    for sample_type in ["samples/count", "cpu/nanoseconds"] {
        let ours: Vec<_> = samples.iter().filter(|s| s.sample_type == sample_type).collect();
        let total: i64 = ours.iter().map(|s| s.value).sum();
        ensure!(
            total == raw.total_of(sample_type),
            "{sample_type}: total {total} vs go {}",
            raw.total_of(sample_type)
        );
        ensure!(total > 0, "{sample_type}: an empty profile proves nothing");

        // Per function, counted once per sample wherever it is on the stack ("cum").
        let mut cum: BTreeMap<&str, i64> = BTreeMap::new();
        for s in &ours {
            let mut seen: Vec<&str> = s.stack.iter().map(String::as_str).collect();
            seen.sort_unstable();
            seen.dedup();
            for f in seen {
                *cum.entry(f).or_default() += s.value;
            }
        }
        ensure!(
            cum.len() == raw.functions.len(),
            "{sample_type}: {} functions vs go {}",
            cum.len(),
            raw.functions.len()
        );
        for (f, v) in &cum {
            ensure!(
                *v == raw.cum(f, sample_type),
                "{sample_type}: {f} cum {v} vs go {}",
                raw.cum(f, sample_type)
            );
        }
        for f in [
            "main.validateCart",
            "main.computePrices",
            "main.applyDiscounts",
            "main.chargeCard",
        ] {
            ensure!(cum.get(f).copied().unwrap_or(0) > 0, "{f} never sampled");
        }

        // Per label value: span_id went into the Link; the others stayed attributes.
        let mut by_label: BTreeMap<(String, String), i64> = BTreeMap::new();
        for s in &ours {
            if !s.span_id.is_empty() {
                *by_label.entry(("span_id".into(), s.span_id.clone())).or_default() += s.value;
            }
            if !s.trace_id.is_empty() {
                *by_label
                    .entry(("trace_id".into(), s.trace_id.clone()))
                    .or_default() += s.value;
            }
            for (k, v) in &s.attributes {
                *by_label.entry((k.clone(), v.clone())).or_default() += s.value;
            }
        }
        let go_labels: usize = raw.labels.values().map(BTreeMap::len).sum();
        ensure!(
            by_label.len() == go_labels,
            "{sample_type}: {} label values vs go {go_labels}",
            by_label.len()
        );
        for ((k, v), total) in &by_label {
            let go = raw.label(k, v, sample_type);
            ensure!(*total == go, "{sample_type}: {k}={v}: {total} vs go {go}");
        }
        ensure!(by_label.keys().any(|(k, _)| k == "span_id"), "no span ids at all");
    }
    Ok(())
}

#[test]
fn every_span_labelled() -> Result<()> {
    check(LabelStyle::All)
}

#[test]
fn only_the_local_root_labelled() -> Result<()> {
    check(LabelStyle::Root)
}

#[test]
fn otel_profiling_go_all_spans_scope() -> Result<()> {
    check(LabelStyle::OtelprofAll)
}
