//! The OpenTelemetry eBPF profiler's payloads, as it really sends them: a request captured
//! from the profiler (v0.0.202618) running on this kind of machine while a Go workload ran
//! spans under `pprof.Do` labels, with the workload's own log of its spans (tests/data/ebpf/).
//! The profiler names processes, not services (no `service.name`), puts Go labels on samples
//! as `process.context.label.*`, sends no values (each timestamp is one 50 ms period) and
//! sometimes merges one event into another's sample under the wrong labels.
//!
//! The answer is checked against the workload's log, not against hotspan: a span gets exactly
//! the events its labels name that were taken while it ran; an event taken while another span
//! ran is nobody's (its labels are wrong); and matching by process, not by service, is what
//! lets the trace rule find the spans at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hotspan_config::Signal;
use hotspan_proto::otlp::collector::profiles::v1development::ExportProfilesServiceRequest;
use hotspan_proto::otlp::collector::trace::v1::ExportTraceServiceRequest;
use hotspan_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use hotspan_proto::otlp::resource::v1::Resource;
use hotspan_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
use hotspan_tests::{grpc_export, hex, metric, scrape, wait_for, wait_for_spans, Hotspan};
use prost::Message;
use serde::Deserialize;

/// The workload's process, as the profiler saw it.
const PID: i64 = 18872;
/// The profiler's CPU period (20 Hz).
const PERIOD_NS: i64 = 50_000_000;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/ebpf").join(name)
}

/// One span of the workload's log.
#[derive(Deserialize)]
struct Logged {
    pid: i64,
    trace_id: String,
    span_id: String,
    start_unix_nano: u64,
    end_unix_nano: u64,
}

fn logged() -> Result<Vec<Logged>> {
    let text = std::fs::read_to_string(data("cpu-request.spans.jsonl"))?;
    text.lines()
        .map(|l| serde_json::from_str(l).context("a logged span"))
        .collect()
}

/// The workload's spans as its SDK would export them, on a resource with `pid`.
fn spans_request(spans: &[Logged], pid: i64) -> Result<Vec<u8>> {
    let kv = |k: &str, v: any_value::Value| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    let spans = spans
        .iter()
        .map(|l| {
            Ok(Span {
                trace_id: hex::decode(&l.trace_id).context("trace id as hex")?,
                span_id: hex::decode(&l.span_id).context("span id as hex")?,
                name: "GET /work".into(),
                kind: 2,
                start_time_unix_nano: l.start_unix_nano,
                end_time_unix_nano: l.end_unix_nano,
                ..Default::default()
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", any_value::Value::StringValue("labelled".into())),
                    kv("process.pid", any_value::Value::IntValue(pid)),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec())
}

/// Every CPU event of the workload's process in the captured request: (span id and trace id
/// its labels name, when it was taken).
fn events(request: &ExportProfilesServiceRequest) -> Result<Vec<(String, String, u64)>> {
    let dict = request.dictionary.as_ref().context("a dictionary")?;
    let string = |i: i32| dict.string_table.get(i as usize).cloned().unwrap_or_default();
    let mut out = Vec::new();
    for rp in &request.resource_profiles {
        let pid = rp.resource.iter().flat_map(|r| &r.attributes).find_map(|kv| {
            match (kv.key.as_str(), kv.value.as_ref()?.value.as_ref()?) {
                ("process.pid", any_value::Value::IntValue(p)) => Some(*p),
                _ => None,
            }
        });
        if pid != Some(PID) {
            continue;
        }
        for p in rp.scope_profiles.iter().flat_map(|s| &s.profiles) {
            ensure!(p.period == PERIOD_NS, "period {}", p.period);
            for sample in &p.samples {
                ensure!(sample.values.is_empty(), "the profiler sends no values");
                let label = |name: &str| {
                    sample.attribute_indices.iter().find_map(|a| {
                        let kv = dict.attribute_table.get(*a as usize)?;
                        (string(kv.key_strindex) == name).then(|| {
                            match kv.value.as_ref()?.value.as_ref()? {
                                any_value::Value::StringValue(s) => Some(s.clone()),
                                _ => None,
                            }
                        })?
                    })
                };
                let span = label("process.context.label.span_id").unwrap_or_default();
                let trace = label("process.context.label.trace_id").unwrap_or_default();
                for t in &sample.timestamps_unix_nano {
                    out.push((span.clone(), trace.clone(), *t));
                }
            }
        }
    }
    Ok(out)
}

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:{port:grpc}"}
connectors:
  spanprofile:
    wait: 2s
    {labels}
exporters:
  file: {path: "{dir}/spans.jsonl", flush_interval: 20ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces/in: {receivers: [otlp], exporters: [spanprofile]}
    profiles/in: {receivers: [otlp], exporters: [spanprofile]}
    traces/out: {receivers: [spanprofile], exporters: [file]}
"#;

/// Runs the captured request and the logged spans (on a resource with `pid`) through a join
/// configured with `labels`; returns each span's `profile.samples` by span id, and the
/// join's metrics.
fn joined(labels: &str, pid: i64) -> Result<(BTreeMap<String, i64>, String)> {
    let spans = logged()?;
    let mut h = Hotspan::start(&CONFIG.replace("{labels}", labels))?;
    let port = h.port("grpc");
    grpc_export(port, Signal::Traces, spans_request(&spans, pid)?)?.context("spans refused")?;
    let capture = std::fs::read(data("cpu-request.binpb"))?;
    grpc_export(port, Signal::Profiles, capture)?.context("the captured request refused")?;
    let out = wait_for_spans(&h.path("spans.jsonl"), spans.len(), Duration::from_secs(30))?;
    let metrics_port = h.port("metrics");
    // Samples whose span never came expire after the wait, a tick after the spans leave.
    let metrics = wait_for(Duration::from_secs(15), "the join's counters to settle", || {
        let text = scrape(metrics_port).ok()?;
        let pending = metric(
            &text,
            "hotspan_spanprofile_pending_samples{connector=\"spanprofile\"}",
        )?;
        (pending == 0.0).then_some(text)
    })?;
    h.terminate()?;
    let samples = out
        .values()
        .map(|f| {
            let n = f
                .span
                .attributes
                .iter()
                .find(|a| a.key == "profile.samples")
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    any_value::Value::IntValue(i) => Some(*i),
                    _ => None,
                })
                .unwrap_or(0);
            (hex(&f.span.span_id), n)
        })
        .collect();
    Ok((samples, metrics))
}

#[test]
fn the_profilers_real_samples_join_the_spans_that_ran_them() -> Result<()> {
    let spans = logged()?;
    ensure!(spans.iter().all(|s| s.pid == PID), "the log is the workload's");
    let request = ExportProfilesServiceRequest::decode(std::fs::read(data("cpu-request.binpb"))?.as_slice())?;
    let events = events(&request)?;
    ensure!(events.len() >= 15, "only {} events of the workload", events.len());
    // The answer from the workload's own log: an event belongs to the span its labels name
    // only if it was taken while that span ran (50 ms slack, the join's clock_skew).
    let ran = |span: &str, t: u64| {
        spans.iter().any(|s| {
            s.span_id == span && s.start_unix_nano <= t + 50_000_000 && t <= s.end_unix_nano + 50_000_000
        })
    };
    let mut expected: BTreeMap<String, i64> = spans.iter().map(|s| (s.span_id.clone(), 0)).collect();
    let mut mislabelled = 0;
    for (span, _, t) in &events {
        if ran(span, *t) {
            *expected.entry(span.clone()).or_default() += 1;
        } else {
            mislabelled += 1;
        }
    }
    let given: i64 = expected.values().sum();
    ensure!(given > 0, "no event ran in its span");
    eprintln!(
        "{} events of the workload: {given} in the span their labels name, {mislabelled} mislabelled",
        events.len()
    );

    // Span ids as labels (the default `process.context.label.span_id`).
    let (by_span, metrics) = joined("", PID)?;
    ensure!(
        by_span == expected,
        "span rule:\n got {by_span:?}\nwant {expected:?}"
    );
    let misfits = metric(
        &metrics,
        "hotspan_spanprofile_misfit_samples{connector=\"spanprofile\"}",
    )
    .unwrap_or(-1.0);
    ensure!(
        misfits == mislabelled as f64,
        "{misfits} misfits counted, {mislabelled} events mislabelled"
    );

    // Trace ids only: the trace rule places each event by time within its trace, among spans
    // of a matching resource. The profile names no service: only the process can match it.
    let trace_only = "span_id_labels: []";
    let (by_trace, _) = joined(trace_only, PID)?;
    ensure!(
        by_trace == expected,
        "trace rule:\n got {by_trace:?}\nwant {expected:?}"
    );
    let (other_process, metrics) = joined(trace_only, PID + 1)?;
    ensure!(
        other_process.values().all(|n| *n == 0),
        "spans of another process got samples: {other_process:?}"
    );
    let unjoined = metric(
        &metrics,
        "hotspan_spanprofile_unjoined_samples{connector=\"spanprofile\"}",
    )
    .unwrap_or(0.0);
    ensure!(unjoined >= given as f64, "{unjoined} unjoined of {given}");
    Ok(())
}
