//! hotspan and the OpenTelemetry Collector (v0.165, contrib's kafka exporter and receiver) on
//! one Kafka broker: otelcol's messages read by hotspan's `kafka` receiver, hotspan's read by
//! otelcol's, in OTLP protobuf and OTLP/JSON, spans and profiles; and hotspan picks the
//! partitions otelcol picks for a trace, so sidecars of both kinds feed one gateway group.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hotspan_processors::spanprofile::fixtures::{self, Plant};
use hotspan_proto::{Encoding, ProfilesBatch, TracesBatch};
use hotspan_tests::kafka::{Kafka, KafkaOptions, Record};
use hotspan_tests::peers::start_otelcol;
use hotspan_tests::profiles::{flatten, read_profiles, FlatSample};
use hotspan_tests::{hex, post, read_spans, wait_for, Hotspan};

/// Traces of three spans with samples linked to two of them (by Link and by labels).
fn input(traces: u64, first: u64) -> (TracesBatch, ProfilesBatch) {
    let (mut spans, mut plants) = (Vec::new(), Vec::new());
    for t in first..first + traces {
        let trace = 0x7a3c_0000_0000_0001_u128 << 64 | u128::from(t.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let root = t * 10 + 1;
        spans.push(fixtures::span_in(trace, root, None, 0, 100));
        spans.push(fixtures::span_in(trace, root + 1, Some(root), 10, 40));
        spans.push(fixtures::span_in(trace, root + 2, Some(root), 50, 90));
        for (span, labels) in [(root + 1, false), (root + 2, true)] {
            plants.push(Plant {
                stack: vec!["main.work", "main.handle"],
                count: t % 3 + 1,
                span: Some(span),
                trace: Some(trace),
                as_labels: labels,
                ..Default::default()
            });
        }
    }
    (
        fixtures::traces("shop", spans),
        fixtures::profiles("shop", &plants, false),
    )
}

fn span_ids(batch: &TracesBatch) -> Vec<String> {
    let mut ids: Vec<String> = batch
        .resource_spans()
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| hex(&s.span_id))
        .collect();
    ids.sort();
    ids
}

fn samples(batches: &[ProfilesBatch]) -> Vec<FlatSample> {
    let mut all: Vec<FlatSample> = batches.iter().flat_map(flatten).collect();
    all.sort();
    all
}

fn send(port: u16, path: &str, body: Vec<u8>) -> Result<()> {
    let answer = post(
        &format!("http://127.0.0.1:{port}{path}"),
        "application/x-protobuf",
        None,
        body,
    )?;
    ensure!(
        answer.status == 200,
        "POST {path}: {} {}",
        answer.status,
        answer.body
    );
    Ok(())
}

/// Waits until the file exporter at `path` wrote `spans` spans and the one at `profiles_path`
/// `samples` samples, then checks they are exactly what went in.
fn check_output(
    what: &str,
    spans_path: &std::path::Path,
    profiles_path: &std::path::Path,
    want_spans: &[String],
    want_samples: &[FlatSample],
    logs: &dyn Fn() -> String,
) -> Result<()> {
    wait_for(
        Duration::from_secs(60),
        &format!("{what}: everything through Kafka"),
        || {
            let spans = read_spans(spans_path).ok()?.len();
            let got = read_profiles(profiles_path).ok()?;
            (spans >= want_spans.len() && samples(&got).len() >= want_samples.len()).then_some(())
        },
    )
    .with_context(logs)?;
    let mut got: Vec<String> = read_spans(spans_path)?.keys().map(|id| hex(id)).collect();
    got.sort();
    ensure!(got == want_spans, "{what}: span ids differ");
    let got = samples(&read_profiles(profiles_path)?);
    ensure!(
        got == want_samples,
        "{what}: samples differ:\n{got:?}\nwant\n{want_samples:?}"
    );
    Ok(())
}

#[test]
fn otelcols_kafka_exporter_feeds_hotspans_kafka_receiver_in_proto_and_json() -> Result<()> {
    let kafka = Kafka::start(KafkaOptions::default())?;
    kafka.create_topics(&[
        ("ot_spans", 3),
        ("ot_profiles", 3),
        ("ot_spans_json", 1),
        ("ot_profiles_json", 1),
    ])?;
    let boot = kafka.bootstrap();
    let hotspan = Hotspan::start(&format!(
        r#"
receivers:
  kafka/proto:
    brokers: ["{boot}"]
    group_id: hotspan
    initial_offset: earliest
    traces: {{topics: [ot_spans]}}
    profiles: {{topics: [ot_profiles]}}
  kafka/json:
    brokers: ["{boot}"]
    group_id: hotspan
    initial_offset: earliest
    traces: {{topics: [ot_spans_json], encoding: otlp_json}}
    profiles: {{topics: [ot_profiles_json], encoding: otlp_json}}
exporters:
  file/spans: {{path: "{{dir}}/spans.jsonl", flush_interval: 50ms}}
  file/profiles: {{path: "{{dir}}/profiles.jsonl", flush_interval: 50ms}}
  file/spans_json: {{path: "{{dir}}/spans_json.jsonl", flush_interval: 50ms}}
  file/profiles_json: {{path: "{{dir}}/profiles_json.jsonl", flush_interval: 50ms}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces/proto: {{receivers: [kafka/proto], exporters: [file/spans]}}
    profiles/proto: {{receivers: [kafka/proto], exporters: [file/profiles]}}
    traces/json: {{receivers: [kafka/json], exporters: [file/spans_json]}}
    profiles/json: {{receivers: [kafka/json], exporters: [file/profiles_json]}}
"#
    ))?;
    let otelcol = start_otelcol(&format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:http}}"}}}}}}
exporters:
  kafka:
    brokers: ["{boot}"]
    partition_traces_by_id: true
    traces: {{topic: ot_spans}}
    profiles: {{topic: ot_profiles}}
  kafka/json:
    brokers: ["{boot}"]
    traces: {{topic: ot_spans_json, encoding: otlp_json}}
    profiles: {{topic: ot_profiles_json, encoding: otlp_json}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [kafka, kafka/json]}}
    profiles: {{receivers: [otlp], exporters: [kafka, kafka/json]}}
"#
    ))?;
    let (spans, profiles) = input(20, 1);
    send(
        otelcol.port("http"),
        "/v1/traces",
        spans.encode(Encoding::Protobuf),
    )?;
    send(
        otelcol.port("http"),
        "/v1development/profiles",
        profiles.encode(Encoding::Protobuf),
    )?;
    let (want_spans, want_samples) = (span_ids(&spans), samples(&[profiles]));
    let logs = || {
        format!(
            "--- otelcol ---\n{}\n--- hotspan ---\n{}",
            otelcol.log(),
            hotspan.log()
        )
    };
    for (what, s, p) in [
        ("otlp_proto", "spans.jsonl", "profiles.jsonl"),
        ("otlp_json", "spans_json.jsonl", "profiles_json.jsonl"),
    ] {
        check_output(
            what,
            &hotspan.path(s),
            &hotspan.path(p),
            &want_spans,
            &want_samples,
            &logs,
        )?;
    }
    // otelcol keyed each trace's message with its id in hex.
    for Record { key, payload, .. } in kafka.read_all("ot_spans")? {
        let batch = TracesBatch::decode(&payload, Encoding::Protobuf)?;
        let traces: Vec<String> = batch
            .resource_spans()
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| hex(&s.trace_id))
            .collect();
        ensure!(
            traces.iter().all(|t| Some(t.as_bytes()) == key.as_deref()),
            "otelcol's key is not its trace id"
        );
    }
    Ok(())
}

#[test]
fn hotspans_kafka_exporter_feeds_otelcols_kafka_receiver_in_proto_and_json() -> Result<()> {
    let kafka = Kafka::start(KafkaOptions::default())?;
    kafka.create_topics(&[
        ("hs_spans", 3),
        ("hs_profiles", 3),
        ("hs_spans_json", 1),
        ("hs_profiles_json", 1),
    ])?;
    let boot = kafka.bootstrap();
    let otelcol = start_otelcol(&format!(
        r#"
receivers:
  kafka:
    brokers: ["{boot}"]
    group_id: otelcol
    initial_offset: earliest
    traces: {{topics: [hs_spans]}}
    profiles: {{topics: [hs_profiles]}}
  kafka/json:
    brokers: ["{boot}"]
    group_id: otelcol-json
    initial_offset: earliest
    traces: {{topics: [hs_spans_json], encoding: otlp_json}}
    profiles: {{topics: [hs_profiles_json], encoding: otlp_json}}
exporters:
  file/spans: {{path: "{{dir}}/spans.jsonl", flush_interval: 100ms}}
  file/profiles: {{path: "{{dir}}/profiles.jsonl", flush_interval: 100ms}}
  file/spans_json: {{path: "{{dir}}/spans_json.jsonl", flush_interval: 100ms}}
  file/profiles_json: {{path: "{{dir}}/profiles_json.jsonl", flush_interval: 100ms}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [kafka], exporters: [file/spans]}}
    profiles: {{receivers: [kafka], exporters: [file/profiles]}}
    traces/json: {{receivers: [kafka/json], exporters: [file/spans_json]}}
    profiles/json: {{receivers: [kafka/json], exporters: [file/profiles_json]}}
"#
    ))?;
    let hotspan = Hotspan::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:http}}"}}}}}}
exporters:
  kafka:
    brokers: ["{boot}"]
    partition_traces_by_id: true
    partition_profiles_by_id: true
    traces: {{topic: hs_spans}}
    profiles: {{topic: hs_profiles}}
  kafka/json:
    brokers: ["{boot}"]
    producer: {{compression: zstd}}
    traces: {{topic: hs_spans_json, encoding: otlp_json}}
    profiles: {{topic: hs_profiles_json, encoding: otlp_json}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [kafka, kafka/json]}}
    profiles: {{receivers: [otlp], exporters: [kafka, kafka/json]}}
"#
    ))?;
    let (spans, profiles) = input(20, 100);
    send(
        hotspan.port("http"),
        "/v1/traces",
        spans.encode(Encoding::Protobuf),
    )?;
    send(
        hotspan.port("http"),
        "/v1development/profiles",
        profiles.encode(Encoding::Protobuf),
    )?;
    let (want_spans, want_samples) = (span_ids(&spans), samples(&[profiles]));
    let logs = || {
        format!(
            "--- hotspan ---\n{}\n--- otelcol ---\n{}",
            hotspan.log(),
            otelcol.log()
        )
    };
    for (what, s, p) in [
        ("otlp_proto", "spans.jsonl", "profiles.jsonl"),
        ("otlp_json", "spans_json.jsonl", "profiles_json.jsonl"),
    ] {
        check_output(
            what,
            &otelcol.path(s),
            &otelcol.path(p),
            &want_spans,
            &want_samples,
            &logs,
        )?;
    }
    Ok(())
}

/// The partition of each trace in `topic`, from its messages' contents.
fn partitions_of_traces(kafka: &Kafka, topic: &str) -> Result<BTreeMap<String, i32>> {
    let mut out = BTreeMap::new();
    for Record {
        partition, payload, ..
    } in kafka.read_all(topic)?
    {
        let traces: Vec<String> = if topic.contains("profiles") {
            flatten(&ProfilesBatch::decode(&payload, Encoding::Protobuf)?)
                .into_iter()
                .map(|s| {
                    if s.trace_id.is_empty() {
                        s.attributes.get("trace_id").cloned().unwrap_or_default()
                    } else {
                        s.trace_id
                    }
                })
                .collect()
        } else {
            let batch = TracesBatch::decode(&payload, Encoding::Protobuf)?;
            batch
                .resource_spans()
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans)
                .map(|s| hex(&s.trace_id))
                .collect()
        };
        for t in traces {
            let before = out.insert(t.clone(), partition);
            ensure!(
                before.is_none_or(|p| p == partition),
                "trace {t} is in two partitions of {topic}"
            );
        }
    }
    Ok(out)
}

#[test]
fn hotspan_puts_a_traces_spans_and_samples_where_otelcol_puts_its_spans() -> Result<()> {
    let kafka = Kafka::start(KafkaOptions::default())?;
    let topics = [("ot_spans", 5), ("hs_spans", 5), ("hs_profiles", 5)];
    kafka.create_topics(&topics)?;
    let boot = kafka.bootstrap();
    let otelcol = start_otelcol(&format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:http}}"}}}}}}
exporters:
  kafka: {{brokers: ["{boot}"], partition_traces_by_id: true, traces: {{topic: ot_spans}}}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [kafka]}}
"#
    ))?;
    let hotspan = Hotspan::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:http}}"}}}}}}
exporters:
  kafka:
    brokers: ["{boot}"]
    partition_traces_by_id: true
    partition_profiles_by_id: true
    traces: {{topic: hs_spans}}
    profiles: {{topic: hs_profiles}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [kafka]}}
    profiles: {{receivers: [otlp], exporters: [kafka]}}
"#
    ))?;
    let (spans, profiles) = input(60, 500);
    send(
        otelcol.port("http"),
        "/v1/traces",
        spans.encode(Encoding::Protobuf),
    )?;
    send(
        hotspan.port("http"),
        "/v1/traces",
        spans.encode(Encoding::Protobuf),
    )?;
    send(
        hotspan.port("http"),
        "/v1development/profiles",
        profiles.encode(Encoding::Protobuf),
    )?;
    let metrics = || hotspan_tests::scrape(hotspan.port("metrics")).unwrap_or_default();
    wait_for(Duration::from_secs(30), "hotspan to send everything", || {
        let m = metrics();
        (hotspan_tests::metric(&m, r#"otelcol_exporter_sent_spans{exporter="kafka"}"#) == Some(180.0)
            && hotspan_tests::metric(&m, r#"otelcol_exporter_sent_samples{exporter="kafka"}"#) == Some(240.0))
        .then_some(())
    })?;
    let otelcol_spans = wait_for(Duration::from_secs(30), "otelcol's 60 traces in Kafka", || {
        partitions_of_traces(&kafka, "ot_spans")
            .ok()
            .filter(|m| m.len() == 60)
    })?;
    let used: std::collections::BTreeSet<i32> = otelcol_spans.values().copied().collect();
    ensure!(used.len() > 2, "60 traces hashed to only {used:?}");
    for topic in ["hs_spans", "hs_profiles"] {
        let ours = partitions_of_traces(&kafka, topic)?;
        ensure!(
            ours == otelcol_spans,
            "{topic}: hotspan's partitions differ from otelcol's"
        );
    }
    Ok(())
}
