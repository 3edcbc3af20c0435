//! The join end to end with the real Go service: its spans (OTLP/HTTP JSON) and its CPU
//! profiles (scraped) go through hotspan's spanprofile connector; every span of each kind
//! carries the hot path and top function of the code that really ran in it, and per-span
//! sample counts equal what `go tool pprof -tagfocus span_id=<id>` reports on the same
//! scraped profiles.

use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use hotspan_proto::otlp::common::v1::any_value;
use hotspan_proto::otlp::trace::v1::Span;
use hotspan_tests::goservice::{
    go_tool_pprof_raw, go_tool_pprof_raw_with, joined_run, JoinedRun, LabelStyle, TruthSpan,
};
use hotspan_tests::profiles::read_profiles;
use hotspan_tests::{hex, read_spans, Hotspan};

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn int_attr(span: &Span, key: &str) -> i64 {
    match attr(span, key) {
        Some(any_value::Value::IntValue(i)) => *i,
        _ => 0,
    }
}

fn str_attr(span: &Span, key: &str) -> String {
    match attr(span, key) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        _ => String::new(),
    }
}

fn top_function(span: &Span) -> String {
    match attr(span, "profile.top_functions") {
        Some(any_value::Value::ArrayValue(a)) => match a.values.first().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => {
                s.rsplit_once(' ').map(|(f, _)| f.to_string()).unwrap_or_default()
            }
            _ => String::new(),
        },
        _ => String::new(),
    }
}

struct Run {
    truth: Vec<TruthSpan>,
    spans: BTreeMap<Vec<u8>, Span>,
    payloads: Vec<std::path::PathBuf>,
    _hotspan: Hotspan,
}

fn run(style: LabelStyle) -> Result<Run> {
    let JoinedRun { hotspan, truth } = joined_run(style)?;
    let spans: BTreeMap<Vec<u8>, Span> = read_spans(&hotspan.path("traces.jsonl"))?
        .into_iter()
        .map(|(id, f)| (id, f.span))
        .collect();
    ensure!(
        spans.len() == truth.len(),
        "{} spans out, the service made {}",
        spans.len(),
        truth.len()
    );
    // Each scraped profile's original pprof bytes, for Go's own tools.
    let mut payloads = Vec::new();
    for (i, batch) in read_profiles(&hotspan.path("profiles.jsonl"))?.iter().enumerate() {
        let first = &batch.resource_profiles()[0].scope_profiles[0].profiles[0];
        let path = hotspan.path(&format!("scrape-{i}.pb.gz"));
        std::fs::write(&path, &first.original_payload)?;
        payloads.push(path);
    }
    Ok(Run {
        truth,
        spans,
        payloads,
        _hotspan: hotspan,
    })
}

#[test]
fn every_span_labelled_gets_its_own_code_and_go_pprofs_counts() -> Result<()> {
    let run = run(LabelStyle::All)?;
    // Go's count of samples per span id across the scraped profiles.
    let mut go_counts: BTreeMap<String, i64> = BTreeMap::new();
    for p in &run.payloads {
        let raw = go_tool_pprof_raw(p)?;
        for (value, totals) in raw.labels.get("span_id").cloned().unwrap_or_default() {
            let i = raw.value_index("samples/count").context("samples/count")?;
            *go_counts.entry(value).or_default() += totals[i];
        }
    }
    ensure!(!go_counts.is_empty(), "the scraped profiles carry no span ids");
    let mut with_samples = 0;
    let mut right_function = 0;
    for t in &run.truth {
        let span = &run.spans[&hex_to_bytes(&t.span_id)];
        let samples = int_attr(span, "profile.samples");
        let want = go_counts.get(&t.span_id).copied().unwrap_or(0);
        ensure!(
            samples == want,
            "{} {}: hotspan {samples} samples, go tool pprof {want}",
            t.name,
            t.span_id
        );
        if samples > 0 {
            with_samples += 1;
            ensure!(str_attr(span, "profile.join") == "span");
            let stage = t.labels.get("stage").cloned().unwrap_or_default();
            ensure!(
                str_attr(span, "profile.labels.stage") == stage,
                "{}: stage label",
                t.name
            );
            if top_function(span) == t.hot_function
                && str_attr(span, "profile.hot_path").ends_with(&t.hot_function)
            {
                right_function += 1;
            }
        }
    }
    ensure!(with_samples >= 10, "only {with_samples} spans got samples");
    // Every sample of a span was taken inside its own function (or the runtime under it), so its
    // top function is its own; allow a rare span whose few samples all landed in runtime frames.
    ensure!(
        right_function * 10 >= with_samples * 9,
        "{right_function} of {with_samples} spans show their own code"
    );

    // The same numbers straight from -tagfocus for a few spans.
    let mut checked = 0;
    for (id, want) in go_counts.iter().take(3) {
        let mut total = 0;
        for p in &run.payloads {
            let raw = go_tool_pprof_raw_with(p, &[&format!("-tagfocus=span_id={id}")])?;
            total += raw.total_of("samples/count");
        }
        ensure!(total == *want, "-tagfocus span_id={id}: {total} vs {want}");
        let span = &run.spans[&hex_to_bytes(id)];
        ensure!(int_attr(span, "profile.samples") == total);
        checked += 1;
    }
    ensure!(checked == 3.min(go_counts.len()));
    Ok(())
}

#[test]
fn only_roots_labelled_roll_everything_into_the_root() -> Result<()> {
    let run = run(LabelStyle::Root)?;
    let mut go_counts: BTreeMap<String, i64> = BTreeMap::new();
    for p in &run.payloads {
        let raw = go_tool_pprof_raw(p)?;
        let i = raw.value_index("samples/count").context("samples/count")?;
        for (value, totals) in raw.labels.get("span_id").cloned().unwrap_or_default() {
            *go_counts.entry(value).or_default() += totals[i];
        }
    }
    let mut roots_with_samples = 0;
    for t in &run.truth {
        let span = &run.spans[&hex_to_bytes(&t.span_id)];
        if t.name == "checkout" {
            let want = go_counts.get(&t.span_id).copied().unwrap_or(0);
            ensure!(
                int_attr(span, "profile.samples") == want,
                "root {}: {want} expected",
                t.span_id
            );
            if want > 0 {
                roots_with_samples += 1;
                // Go's CPU profiles carry no per-sample time: the root keeps them all (span rule).
                ensure!(str_attr(span, "profile.join") == "span");
                ensure!(int_attr(span, "profile.cpu_ns_total") >= int_attr(span, "profile.cpu_ns"));
            }
        } else {
            ensure!(
                int_attr(span, "profile.samples") == 0,
                "child {} got samples",
                t.name
            );
        }
    }
    ensure!(
        roots_with_samples >= 3,
        "only {roots_with_samples} roots got samples"
    );
    Ok(())
}

fn hex_to_bytes(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&h[i..i + 2], 16).ok())
        .collect()
}

#[allow(dead_code)]
fn show(span: &Span) -> String {
    format!("{} {:?}", hex(&span.span_id), span.attributes)
}
