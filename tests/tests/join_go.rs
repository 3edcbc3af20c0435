//! The join end to end with the real Go service: its spans (the OpenTelemetry Go SDK's OTLP
//! exporters, gRPC and HTTP) and its CPU profiles (scraped by hotspan, or pushed by
//! pyroscope-go) go through hotspan's spanprofile connector; every span of each kind carries
//! the hot path and top function of the code that really ran in it, and per-span sample counts
//! equal what `go tool pprof -raw` / `-tagfocus span_id=<id>` reports on the same profiles, for
//! each way of labelling: pprof.Do on every span, otel-profiling-go's default (local roots) and
//! its all-spans scope.

use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use hotspan_proto::otlp::common::v1::{any_value, KeyValue};
use hotspan_proto::otlp::trace::v1::Span;
use hotspan_tests::goservice::{
    go_tool_pprof_raw, go_tool_pprof_raw_with, joined_run_with, JoinSetup, JoinedRun, LabelStyle,
    OtlpProtocol, ProfileSource, TruthSpan,
};
use hotspan_tests::profiles::{read_profiles, resource_values};
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
    /// Go's count of samples per `span_id` label across the payloads.
    go_counts: BTreeMap<String, i64>,
    _hotspan: Hotspan,
}

fn run(label_style: LabelStyle, protocol: OtlpProtocol, profiles: ProfileSource) -> Result<Run> {
    let JoinedRun { hotspan, truth } = joined_run_with(JoinSetup {
        label_style,
        protocol,
        profiles,
    })?;
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
    // Each profile's original pprof bytes, for Go's own tools.
    let mut payloads = Vec::new();
    for (i, batch) in read_profiles(&hotspan.path("profiles.jsonl"))?.iter().enumerate() {
        let rp = &batch.resource_profiles()[0];
        ensure!(
            resource_values(batch, "service.name") == ["shop"],
            "profile {i} is not shop's"
        );
        if profiles == ProfileSource::Push {
            // pyroscope-go's name tags became resource attributes.
            ensure!(
                resource_values(batch, "pyroscope.spy.name") == ["gospy"],
                "profile {i}: {:?}",
                rp.resource
            );
        }
        let first = &rp.scope_profiles[0].profiles[0];
        let path = hotspan.path(&format!("profile-{i}.pb.gz"));
        std::fs::write(&path, &first.original_payload)?;
        payloads.push(path);
    }
    let mut go_counts: BTreeMap<String, i64> = BTreeMap::new();
    for p in &payloads {
        let raw = go_tool_pprof_raw(p)?;
        let i = raw.value_index("samples/count").context("samples/count")?;
        for (value, totals) in raw.labels.get("span_id").cloned().unwrap_or_default() {
            *go_counts.entry(value).or_default() += totals[i];
        }
    }
    ensure!(!go_counts.is_empty(), "the profiles carry no span ids");
    Ok(Run {
        truth,
        spans,
        payloads,
        go_counts,
        _hotspan: hotspan,
    })
}

/// Every span's sample count equals Go's for its span id; the spans that got samples show
/// their own code and labels. With `tagfocus`, a few counts also straight from
/// `go tool pprof -tagfocus span_id=<id>`.
fn every_span_gets_its_own_code_and_go_pprofs_counts(run: &Run, tagfocus: bool) -> Result<()> {
    let mut with_samples = 0;
    let mut right_function = 0;
    for t in &run.truth {
        let span = &run.spans[&hex::decode(&t.span_id).unwrap_or_default()];
        let samples = int_attr(span, "profile.samples");
        let want = run.go_counts.get(&t.span_id).copied().unwrap_or(0);
        ensure!(
            samples == want,
            "{} {}: hotspan {samples} samples, go tool pprof {want}",
            t.name,
            t.span_id
        );
        if samples > 0 {
            with_samples += 1;
            ensure!(str_attr(span, "profile.join") == "span");
            for key in ["stage", "span_name"] {
                let label = t.labels.get(key).cloned().unwrap_or_default();
                ensure!(
                    str_attr(span, &format!("profile.labels.{key}")) == label,
                    "{}: {key} label",
                    t.name
                );
            }
            if top_function(span) == t.hot_function
                && str_attr(span, "profile.hot_path").ends_with(&t.hot_function)
            {
                right_function += 1;
            }
        }
        own_profile_id(span)?;
    }
    ensure!(with_samples >= 10, "only {with_samples} spans got samples");
    // Every sample of a span was taken inside its own function (or the runtime under it), so its
    // top function is its own; allow a rare span whose few samples all landed in runtime frames.
    ensure!(
        right_function * 10 >= with_samples * 9,
        "{right_function} of {with_samples} spans show their own code"
    );
    if !tagfocus {
        return Ok(());
    }
    let mut checked = 0;
    for (id, want) in run.go_counts.iter().take(3) {
        let mut total = 0;
        for p in &run.payloads {
            // Anchored: pprof reads a value of digits only (an id can be) as a numeric range.
            let raw = go_tool_pprof_raw_with(p, &[&format!("-tagfocus=span_id=^{id}$")])?;
            total += raw.total_of("samples/count");
        }
        ensure!(total == *want, "-tagfocus span_id={id}: {total} vs {want}");
        let span = &run.spans[&hex::decode(id).unwrap_or_default()];
        ensure!(int_attr(span, "profile.samples") == total);
        checked += 1;
    }
    ensure!(checked == 3.min(run.go_counts.len()));
    Ok(())
}

/// Only local roots carry span ids: each root gets exactly Go's count for it (its children's
/// CPU included: Go's CPU profiles have no per-sample time to place it deeper), children none.
fn roots_get_everything(run: &Run) -> Result<()> {
    let mut roots_with_samples = 0;
    for t in &run.truth {
        let span = &run.spans[&hex::decode(&t.span_id).unwrap_or_default()];
        if t.name == "checkout" {
            let want = run.go_counts.get(&t.span_id).copied().unwrap_or(0);
            ensure!(
                int_attr(span, "profile.samples") == want,
                "root {}: {want} expected",
                t.span_id
            );
            if want > 0 {
                roots_with_samples += 1;
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
        own_profile_id(span)?;
    }
    ensure!(
        roots_with_samples >= 3,
        "only {roots_with_samples} roots got samples"
    );
    Ok(())
}

/// Every `pyroscope.profile.id` on a span names the span itself (otel-profiling-go sets it on
/// the spans it labels, hotspan on the spans that got samples).
fn own_profile_id(span: &Span) -> Result<()> {
    for a in span.attributes.iter().filter(|a| a.key == "pyroscope.profile.id") {
        let value = match a.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.as_str(),
            _ => "",
        };
        ensure!(
            value == hex(&span.span_id),
            "span {} has pyroscope.profile.id {value:?}",
            hex(&span.span_id)
        );
    }
    Ok(())
}

fn profile_ids(span: &Span) -> Vec<&KeyValue> {
    span.attributes
        .iter()
        .filter(|a| a.key == "pyroscope.profile.id")
        .collect()
}

#[test]
fn every_span_labelled_over_otlp_http() -> Result<()> {
    let run = run(LabelStyle::All, OtlpProtocol::HttpProtobuf, ProfileSource::Scrape)?;
    every_span_gets_its_own_code_and_go_pprofs_counts(&run, true)
}

#[test]
fn every_span_labelled_over_otlp_grpc() -> Result<()> {
    let run = run(LabelStyle::All, OtlpProtocol::Grpc, ProfileSource::Scrape)?;
    every_span_gets_its_own_code_and_go_pprofs_counts(&run, false)
}

#[test]
fn otel_profiling_go_roots_over_otlp_http_roll_everything_into_the_root() -> Result<()> {
    let run = run(
        LabelStyle::Root,
        OtlpProtocol::HttpProtobuf,
        ProfileSource::Scrape,
    )?;
    roots_get_everything(&run)
}

#[test]
fn otel_profiling_go_roots_over_otlp_grpc_roll_everything_into_the_root() -> Result<()> {
    let run = run(LabelStyle::Root, OtlpProtocol::Grpc, ProfileSource::Scrape)?;
    roots_get_everything(&run)
}

#[test]
fn otel_profiling_go_all_spans_scope_gives_each_span_its_own_code() -> Result<()> {
    let run = run(LabelStyle::OtelprofAll, OtlpProtocol::Grpc, ProfileSource::Scrape)?;
    every_span_gets_its_own_code_and_go_pprofs_counts(&run, false)
}

#[test]
fn pyroscope_go_pushes_every_span_labelled() -> Result<()> {
    let run = run(LabelStyle::All, OtlpProtocol::Grpc, ProfileSource::Push)?;
    every_span_gets_its_own_code_and_go_pprofs_counts(&run, true)
}

#[test]
fn pyroscope_go_pushes_with_otel_profiling_go_roots_over_otlp_json() -> Result<()> {
    let run = run(LabelStyle::Root, OtlpProtocol::HttpJson, ProfileSource::Push)?;
    roots_get_everything(&run)
}

#[allow(dead_code)]
fn show(span: &Span) -> String {
    format!("{} {:?}", hex(&span.span_id), span.attributes)
}

/// otel-profiling-go already sets `pyroscope.profile.id` on the spans it labels; hotspan adds
/// its own only to spans that have none, so the key appears once (OTLP wants keys unique).
#[test]
fn otel_profiling_go_spans_keep_one_pyroscope_profile_id() -> Result<()> {
    let run = run(LabelStyle::Root, OtlpProtocol::Grpc, ProfileSource::Scrape)?;
    let mut roots_with_samples = 0;
    for t in run.truth.iter().filter(|t| t.name == "checkout") {
        let span = &run.spans[&hex::decode(&t.span_id).unwrap_or_default()];
        roots_with_samples += usize::from(int_attr(span, "profile.samples") > 0);
        let ids = profile_ids(span);
        ensure!(
            ids.len() == 1,
            "root {} has pyroscope.profile.id {} times",
            t.span_id,
            ids.len()
        );
    }
    ensure!(roots_with_samples > 0, "no root got samples: nothing shown");
    Ok(())
}
