//! Traces and profiles through a real Kafka broker (Apache Kafka 4, KRaft): a sidecar's `kafka`
//! exporter partitions spans and linked samples by trace id, and a consumer group of gateways
//! with the `kafka` receiver joins exactly what a single instance joins. A gateway killed
//! mid-run, a pipeline that refuses, and a broker restarted mid-run lose nothing the sidecar
//! acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hotspan_processors::spanprofile::fixtures::{self, Plant, MS};
use hotspan_proto::otlp::common::v1::any_value;
use hotspan_proto::otlp::trace::v1::Span;
use hotspan_proto::{Encoding, ProfilesBatch, TracesBatch};
use hotspan_tests::kafka::{Kafka, KafkaOptions};
use hotspan_tests::restart::count_spans;
use hotspan_tests::wire::count_spans as count_spans_in;
use hotspan_tests::{
    hex, json_span_id, json_spans, metric, post, read_spans, scrape, wait_for, Hotspan, Served,
};

/// A sidecar: OTLP/HTTP in, spans and samples to Kafka partitioned by trace id, every replica's
/// acknowledgement, retrying quickly and never giving up.
fn sidecar(kafka: &Kafka) -> Result<Hotspan> {
    Hotspan::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:http}}"}}}}}}
exporters:
  kafka:
    brokers: ["{}"]
    partition_traces_by_id: true
    partition_profiles_by_id: true
    producer: {{required_acks: all}}
    retry_on_failure: {{initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 0s}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [kafka]}}
    profiles: {{receivers: [otlp], exporters: [kafka]}}
"#,
        kafka.bootstrap()
    ))
}

/// A gateway of consumer group `group`: the `kafka` receiver (read from the start, a dead
/// member noticed within 6 s) into `pipelines`, with `exporters` and `connectors`. Its
/// receiver has keys otelcol configs carry: a protocol version, `message_marking`, and
/// `max_fetch_size: 0` (no limit).
fn gateway(
    kafka: &Kafka,
    group: &str,
    connectors: &str,
    exporters: &str,
    pipelines: &str,
) -> Result<Hotspan> {
    Hotspan::start(&format!(
        r#"
receivers:
  kafka:
    brokers: ["{}"]
    group_id: {group}
    protocol_version: 2.1.0
    message_marking: {{after: true}}
    max_fetch_size: 0
    initial_offset: earliest
    session_timeout: 6s
    heartbeat_interval: 1s
{connectors}
exporters:
{exporters}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
  pipelines:
{pipelines}
"#,
        kafka.bootstrap()
    ))
}

/// A gateway that joins and writes annotated spans to `traces.jsonl`.
fn joining_gateway(kafka: &Kafka, group: &str) -> Result<Hotspan> {
    gateway(
        kafka,
        group,
        "connectors:\n  spanprofile: {wait: 3s}",
        r#"  file: {path: "{dir}/traces.jsonl", flush_interval: 50ms}"#,
        "    traces/in: {receivers: [kafka], exporters: [spanprofile]}
    profiles/in: {receivers: [kafka], exporters: [spanprofile]}
    traces/out: {receivers: [spanprofile], exporters: [file]}",
    )
}

fn value(h: &Hotspan, series: &str) -> f64 {
    scrape(h.port("metrics"))
        .ok()
        .and_then(|m| metric(&m, series))
        .unwrap_or(0.0)
}

fn partitions(h: &Hotspan) -> f64 {
    value(h, r#"hotspan_kafka_receiver_partitions{receiver="kafka"}"#)
}

fn accepted(h: &Hotspan, unit: &str) -> f64 {
    value(
        h,
        &format!(r#"otelcol_receiver_accepted_{unit}{{receiver="kafka",transport="kafka"}}"#),
    )
}

/// `n` traces of a root and two children; samples planted for the children by span id, by
/// Link for even traces and by labels for odd ones, 1 to 5 of them. Spans and profiles come
/// in requests of 25 traces; the answer is each child's sample count.
fn planted(n: u64) -> (Vec<TracesBatch>, Vec<ProfilesBatch>, BTreeMap<u64, i64>) {
    let mut answer = BTreeMap::new();
    let (mut spans, mut profiles) = (Vec::new(), Vec::new());
    for chunk in (0..n).collect::<Vec<_>>().chunks(25) {
        let (mut span_list, mut plants) = (Vec::new(), Vec::new());
        for &t in chunk {
            // Trace ids far apart, so their hashes spread over the partitions.
            let trace = 0x4bf9_2f35_77b3_4da6_u128 << 64 | u128::from(t.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let (root, a, b) = (t * 10 + 1, t * 10 + 2, t * 10 + 3);
            span_list.push(fixtures::span_in(trace, root, None, 0, 100));
            span_list.push(fixtures::span_in(trace, a, Some(root), 10, 40));
            span_list.push(fixtures::span_in(trace, b, Some(root), 50, 90));
            for (span, count, stack) in [
                (a, t % 5 + 1, "main.validate"),
                (b, (t + 2) % 5 + 1, "main.charge"),
            ] {
                plants.push(Plant {
                    stack: vec![stack, "main.handle"],
                    count,
                    span: Some(span),
                    trace: Some(trace),
                    as_labels: t % 2 == 1,
                    ..Default::default()
                });
                answer.insert(span, count as i64);
            }
        }
        spans.push(fixtures::traces("shop", span_list));
        profiles.push(fixtures::profiles("shop", &plants, false));
    }
    (spans, profiles, answer)
}

fn int_attribute(span: &Span, key: &str) -> Option<i64> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            any_value::Value::IntValue(i) => Some(*i),
            _ => None,
        })
}

fn send(h: &Hotspan, path: &str, body: Vec<u8>) -> Result<()> {
    let url = format!("http://127.0.0.1:{}{path}", h.port("http"));
    let answer = post(&url, "application/x-protobuf", None, body)?;
    ensure!(
        answer.status == 200,
        "POST {path}: {} {}",
        answer.status,
        answer.body
    );
    Ok(())
}

#[test]
fn a_consumer_group_of_gateways_joins_spans_and_samples_from_kafka_as_planted() -> Result<()> {
    let kafka = Kafka::start(KafkaOptions::default())?;
    kafka.create_topics(&[("otlp_spans", 4), ("otlp_profiles", 4)])?;
    let mut gateways = vec![
        joining_gateway(&kafka, "gateways")?,
        joining_gateway(&kafka, "gateways")?,
    ];
    let mut single = joining_gateway(&kafka, "single")?;
    // Both members hold their share (4 of the 8 partitions) before anything is sent, so no
    // rebalance moves a partition mid-run.
    wait_for(Duration::from_secs(60), "the group to settle", || {
        (gateways.iter().all(|g| partitions(g) == 4.0) && partitions(&single) == 8.0).then_some(())
    })?;
    let sidecar = sidecar(&kafka)?;
    let (spans, profiles, answer) = planted(200);
    let span_total = spans.iter().map(TracesBatch::span_count).sum::<usize>() as f64;
    let sample_total = profiles.iter().map(ProfilesBatch::sample_count).sum::<usize>() as f64;
    // Samples of half the traces before their spans, the rest after.
    for (i, (s, p)) in spans.iter().zip(&profiles).enumerate() {
        if i % 2 == 0 {
            send(&sidecar, "/v1development/profiles", p.encode(Encoding::Protobuf))?;
        }
        send(&sidecar, "/v1/traces", s.encode(Encoding::Protobuf))?;
        if i % 2 == 1 {
            send(&sidecar, "/v1development/profiles", p.encode(Encoding::Protobuf))?;
        }
    }
    wait_for(
        Duration::from_secs(60),
        "every span and sample taken from Kafka",
        || {
            let spans: f64 = gateways.iter().map(|g| accepted(g, "spans")).sum();
            let samples: f64 = gateways.iter().map(|g| accepted(g, "samples")).sum();
            (spans == span_total
                && samples == sample_total
                && accepted(&single, "spans") == span_total
                && accepted(&single, "samples") == sample_total)
                .then_some(())
        },
    )
    .with_context(|| format!("sidecar log:\n{}", sidecar.log()))?;
    for g in gateways.iter_mut().chain([&mut single]) {
        ensure!(g.terminate()?.success(), "gateway exit\n{}", g.log());
    }

    let mut fleet: BTreeMap<Vec<u8>, Span> = BTreeMap::new();
    let mut traces_of = Vec::new();
    for g in &gateways {
        let out = read_spans(&g.path("traces.jsonl"))?;
        ensure!(
            !out.is_empty(),
            "a gateway joined nothing: no load spread\n{}",
            g.log()
        );
        traces_of.push(
            out.values()
                .map(|f| f.span.trace_id.clone())
                .collect::<BTreeSet<_>>(),
        );
        for (id, f) in out {
            ensure!(
                fleet.insert(id.clone(), f.span).is_none(),
                "span {} reached both gateways",
                hex(&id)
            );
        }
    }
    ensure!(
        traces_of[0].is_disjoint(&traces_of[1]),
        "a trace was split across gateways"
    );
    let alone = read_spans(&single.path("traces.jsonl"))?;
    ensure!(fleet.len() == span_total as usize && alone.len() == fleet.len());
    let mut joined = 0;
    for (id, span) in &fleet {
        let id_num = u64::from_be_bytes(id.clone().try_into().expect("8 bytes"));
        let want = answer.get(&id_num).copied();
        let got = (
            int_attribute(span, "profile.samples"),
            int_attribute(span, "profile.cpu_ns"),
        );
        ensure!(
            got == (want, want.map(|w| w * 10 * MS as i64)),
            "span {id_num} ({}): profile.samples, cpu_ns = {got:?}, planted {want:?}",
            span.name
        );
        let single_got = int_attribute(&alone[id].span, "profile.samples");
        ensure!(
            single_got == want,
            "single instance: span {id_num} has {single_got:?}, planted {want:?}"
        );
        joined += usize::from(want.is_some());
    }
    ensure!(
        joined == answer.len(),
        "{joined} of {} spans got their samples",
        answer.len()
    );
    Ok(())
}

/// Span ids a gateway logged through its `debug` exporter: that happens before the pipeline
/// answers the receiver, and stderr is unbuffered, so it holds everything the gateway took
/// even after a SIGKILL.
fn logged_span_ids(h: &Hotspan) -> Vec<Vec<u8>> {
    let log = h.log();
    log.match_indices("span_id=")
        .filter_map(|(at, m)| log.get(at + m.len()..at + m.len() + 16))
        .filter_map(|h| u64::from_str_radix(h, 16).ok())
        .map(|id| id.to_be_bytes().to_vec())
        .collect()
}

fn logging_gateway(kafka: &Kafka, group: &str) -> Result<Hotspan> {
    gateway(
        kafka,
        group,
        "",
        "  debug: {verbosity: normal}",
        "    traces: {receivers: [kafka], exporters: [debug]}",
    )
}

/// Posts `requests` traces of `per` spans to the sidecar (calling `during` before each) and
/// returns the span ids it acknowledged.
fn feed(
    sidecar: &Hotspan,
    requests: u64,
    per: u64,
    mut during: impl FnMut(u64) -> Result<()>,
) -> Result<BTreeSet<Vec<u8>>> {
    let url = format!("http://127.0.0.1:{}/v1/traces", sidecar.port("http"));
    let mut acked = BTreeSet::new();
    for r in 0..requests {
        during(r)?;
        let answer = post(
            &url,
            "application/json",
            None,
            json_spans("shop", r * per, per).into_bytes(),
        )?;
        if answer.status == 200 {
            acked.extend((r * per..(r + 1) * per).map(json_span_id));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(acked)
}

#[test]
fn a_gateway_killed_mid_run_loses_nothing_the_sidecar_acknowledged() -> Result<()> {
    let kafka = Kafka::start(KafkaOptions::default())?;
    kafka.create_topics(&[("otlp_spans", 6)])?;
    let mut gateways = (0..3)
        .map(|_| logging_gateway(&kafka, "gateways"))
        .collect::<Result<Vec<_>>>()?;
    wait_for(Duration::from_secs(60), "the group to settle", || {
        gateways.iter().all(|g| partitions(g) == 2.0).then_some(())
    })?;
    let sidecar = sidecar(&kafka)?;
    let acked = feed(&sidecar, 300, 4, |r| {
        if r == 100 {
            wait_for(
                Duration::from_secs(20),
                "the doomed gateway to take spans",
                || (!logged_span_ids(&gateways[2]).is_empty()).then_some(()),
            )?;
            gateways[2].kill()?;
        }
        Ok(())
    })?;
    ensure!(
        acked.len() == 1200,
        "the sidecar refused some: {} of 1200",
        acked.len()
    );
    // The dead member's partitions move to the others, which read on from its last commit.
    wait_for(Duration::from_secs(60), "the survivors to take over", || {
        (partitions(&gateways[0]) + partitions(&gateways[1]) == 6.0).then_some(())
    })?;
    let mut missing = 0;
    wait_for(
        Duration::from_secs(60),
        "every acknowledged span at a gateway",
        || {
            let seen: BTreeSet<Vec<u8>> = gateways.iter().flat_map(logged_span_ids).collect();
            missing = acked.iter().filter(|id| !seen.contains(*id)).count();
            (missing == 0).then_some(())
        },
    )
    .with_context(|| format!("{missing} acknowledged spans never arrived\n{}", sidecar.log()))?;
    let killed = logged_span_ids(&gateways[2]).len();
    let survivors: usize = gateways[..2].iter().map(|g| logged_span_ids(g).len()).sum();
    eprintln!(
        "killed gateway took {killed} spans, survivors {survivors} (duplicates: {})",
        killed + survivors - 1200
    );
    ensure!(killed > 0 && survivors > 0);
    let failed = value(
        &sidecar,
        r#"otelcol_exporter_send_failed_spans{exporter="kafka"}"#,
    );
    ensure!(failed == 0.0, "the sidecar dropped {failed} spans");
    Ok(())
}

#[test]
fn messages_a_pipeline_refuses_are_not_committed_and_the_next_member_reads_them() -> Result<()> {
    let kafka = Kafka::start(KafkaOptions::default())?;
    kafka.create_topics(&[("otlp_spans", 2)])?;
    // Its exporter has no queue and nowhere to send: every batch is refused, retryably.
    let dead = hotspan_tests::free_port();
    let mut refusing = gateway(
        &kafka,
        "gateways",
        "",
        &format!(
            r#"  otlp:
    endpoint: "127.0.0.1:{dead}"
    tls: {{insecure: true}}
    sending_queue: {{enabled: false}}
    retry_on_failure: {{initial_interval: 50ms, max_elapsed_time: 300ms}}"#
        ),
        "    traces: {receivers: [kafka], exporters: [otlp]}",
    )?;
    wait_for(
        Duration::from_secs(60),
        "the member to hold both partitions",
        || (partitions(&refusing) == 2.0).then_some(()),
    )?;
    let sidecar = sidecar(&kafka)?;
    let acked = feed(&sidecar, 40, 5, |_| Ok(()))?;
    ensure!(acked.len() == 200);
    wait_for(
        Duration::from_secs(30),
        "the pipeline to refuse a few times",
        || (value(&refusing, r#"hotspan_kafka_receiver_rewinds{receiver="kafka"}"#) >= 4.0).then_some(()),
    )?;
    // Longer than the commit interval: anything wrongly stored would be committed by now.
    wait_for(Duration::from_secs(10), "sent everything to Kafka", || {
        (value(&sidecar, r#"otelcol_exporter_sent_spans{exporter="kafka"}"#) == 200.0).then_some(())
    })?;
    std::thread::sleep(Duration::from_millis(1500));
    ensure!(
        accepted(&refusing, "spans") == 0.0,
        "the refusing pipeline took spans"
    );
    refusing.kill()?;
    let mut next = gateway(
        &kafka,
        "gateways",
        "",
        r#"  file: {path: "{dir}/traces.jsonl", flush_interval: 50ms}"#,
        "    traces: {receivers: [kafka], exporters: [file]}",
    )?;
    wait_for(
        Duration::from_secs(60),
        "the next member to read everything",
        || (accepted(&next, "spans") >= 200.0).then_some(()),
    )
    .with_context(|| next.log())?;
    ensure!(next.terminate()?.success());
    let got = count_spans(&next.path("traces.jsonl"))?;
    let missing: Vec<String> = acked
        .iter()
        .filter(|id| !got.contains_key(*id))
        .map(|id| hex(id))
        .collect();
    ensure!(
        missing.is_empty(),
        "{} acknowledged spans were lost: {missing:?}",
        missing.len()
    );
    Ok(())
}

#[test]
fn a_broker_restarted_mid_run_loses_nothing_the_sidecar_acknowledged() -> Result<()> {
    let mut kafka = Kafka::start(KafkaOptions::default())?;
    kafka.create_topics(&[("otlp_spans", 3)])?;
    let mut gw = gateway(
        &kafka,
        "gateways",
        "",
        r#"  file: {path: "{dir}/traces.jsonl", flush_interval: 50ms}"#,
        "    traces: {receivers: [kafka], exporters: [file]}",
    )?;
    wait_for(
        Duration::from_secs(60),
        "the member to hold its partitions",
        || (partitions(&gw) == 3.0).then_some(()),
    )?;
    let sidecar = sidecar(&kafka)?;
    let acked = feed(&sidecar, 240, 5, |r| {
        if r == 80 {
            wait_for(Duration::from_secs(20), "spans through Kafka", || {
                (accepted(&gw, "spans") > 0.0).then_some(())
            })?;
            kafka.kill()?;
        }
        if r == 140 {
            // Sixty requests went to the sidecar's queue while the broker was down.
            kafka.restart()?;
        }
        Ok(())
    })?;
    ensure!(
        acked.len() == 1200,
        "the sidecar refused some: {} of 1200",
        acked.len()
    );
    let mut missing = 0;
    wait_for(
        Duration::from_secs(90),
        "every acknowledged span through the restart",
        || {
            let got = count_spans(&gw.path("traces.jsonl")).ok()?;
            missing = acked.iter().filter(|id| !got.contains_key(*id)).count();
            (missing == 0).then_some(())
        },
    )
    .with_context(|| {
        format!(
            "{missing} acknowledged spans never arrived\n{}\n{}",
            sidecar.log(),
            gw.log()
        )
    })?;
    let failed = value(
        &sidecar,
        r#"otelcol_exporter_send_failed_spans{exporter="kafka"}"#,
    );
    ensure!(failed == 0.0, "the sidecar dropped {failed} spans");
    ensure!(
        sidecar.log().contains("export failed, will retry"),
        "the sidecar never noticed the broker was gone"
    );
    ensure!(gw.terminate()?.success());
    Ok(())
}

/// A receiver whose topic does not exist reads nothing and says why at warn, naming its
/// topics (it was logged at debug only, every 200 ms, so such a receiver looked idle).
#[test]
fn a_receiver_whose_topic_is_missing_says_so() -> Result<()> {
    let kafka = Kafka::start(KafkaOptions::default())?;
    let gw = gateway(
        &kafka,
        "lonely",
        "",
        r#"  file: {path: "{dir}/traces.jsonl", flush_interval: 50ms}"#,
        "    traces: {receivers: [kafka], exporters: [file]}",
    )?;
    wait_for(
        Duration::from_secs(60),
        "a warning that otlp_spans is missing",
        || {
            gw.log()
                .lines()
                .any(|l| {
                    l.contains("WARN")
                        && l.contains("kafka: cannot consume")
                        && l.contains("UnknownTopicOrPartition")
                        && l.contains("otlp_spans")
                })
                .then_some(())
        },
    )
    .with_context(|| gw.log())?;
    Ok(())
}

/// An OTLP/HTTP backend that takes `delay` to answer each request 200, and counts the
/// requests and spans that reached it.
struct SlowSink {
    served: Served,
    requests: Arc<AtomicUsize>,
    spans: Arc<AtomicUsize>,
}

impl SlowSink {
    fn start(delay: Duration) -> Result<SlowSink> {
        let (requests, spans) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let counts = (requests.clone(), spans.clone());
        let answer = move |body: axum::body::Bytes| {
            let (requests, spans) = counts.clone();
            async move {
                requests.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                spans.fetch_add(count_spans_in(&body).unwrap_or(0), Ordering::SeqCst);
                ([("content-type", "application/x-protobuf")], Vec::new())
            }
        };
        let app = axum::Router::new().route("/v1/traces", axum::routing::post(answer));
        Ok(SlowSink {
            served: Served::start(app)?,
            requests,
            spans,
        })
    }
}

/// A backend that takes longer than the OTLP receivers' 5 s pipeline wait, behind an exporter
/// with no queue: each message is delivered once, as otelcol's receiver delivers it. The
/// receiver gave the pipeline 5 s, then read the message again, so the backend saw it again
/// and again and the partition never moved on.
#[test]
fn a_slow_backend_gets_each_message_once() -> Result<()> {
    let kafka = Kafka::start(KafkaOptions::default())?;
    kafka.create_topics(&[("otlp_spans", 1)])?;
    let sink = SlowSink::start(Duration::from_secs(6))?;
    let gw = gateway(
        &kafka,
        "patient",
        "",
        &format!(
            r#"  otlp_http:
    endpoint: "http://127.0.0.1:{}"
    compression: none
    sending_queue: {{enabled: false}}
    timeout: 20s"#,
            sink.served.port
        ),
        "    traces: {receivers: [kafka], exporters: [otlp_http]}",
    )?;
    wait_for(
        Duration::from_secs(60),
        "the member to hold its partition",
        || (partitions(&gw) == 1.0).then_some(()),
    )?;
    let sidecar = sidecar(&kafka)?;
    // Two traces: two messages.
    let acked = feed(&sidecar, 2, 5, |_| Ok(()))?;
    ensure!(acked.len() == 10, "the sidecar refused some: {}", acked.len());
    wait_for(
        Duration::from_secs(40),
        "both messages through the slow backend",
        || (sink.spans.load(Ordering::SeqCst) >= 10).then_some(()),
    )
    .with_context(|| {
        let requests = sink.requests.load(Ordering::SeqCst);
        format!("the backend got {requests} requests\n{}", gw.log())
    })?;
    let requests = sink.requests.load(Ordering::SeqCst);
    let rewinds = value(&gw, r#"hotspan_kafka_receiver_rewinds{receiver="kafka"}"#);
    ensure!(
        requests == 2 && rewinds == 0.0,
        "the backend got {requests} requests for 2 messages; {rewinds} rewinds"
    );
    ensure!(accepted(&gw, "spans") == 10.0);
    Ok(())
}

/// One span too big for `max_message_bytes` even alone is the only item dropped and counted
/// failed: the rest of its batch is written and counted sent (the whole batch was counted
/// failed, though it was in Kafka).
#[test]
fn an_oversize_span_fails_alone() -> Result<()> {
    let kafka = Kafka::start(KafkaOptions::default())?;
    kafka.create_topics(&[("otlp_spans", 1)])?;
    let gw = gateway(
        &kafka,
        "readers",
        "",
        r#"  file: {path: "{dir}/traces.jsonl", flush_interval: 50ms}"#,
        "    traces: {receivers: [kafka], exporters: [file]}",
    )?;
    let sidecar = sidecar(&kafka)?;
    let big = format!(
        r#"{{"resource":{{}},"scopeSpans":[{{"spans":[{{"traceId":"{:032x}","spanId":"{:016x}","name":"big","startTimeUnixNano":"1","endTimeUnixNano":"2","attributes":[{{"key":"blob","value":{{"stringValue":"{}"}}}}]}}]}}]}}"#,
        0xb16u64,
        0xb16u64,
        "x".repeat(2_000_000)
    );
    let body = json_spans("shop", 0, 100).replacen(
        r#"{"resourceSpans":["#,
        &format!(r#"{{"resourceSpans":[{big},"#),
        1,
    );
    let url = format!("http://127.0.0.1:{}/v1/traces", sidecar.port("http"));
    let answer = post(&url, "application/json", None, body.into_bytes())?;
    ensure!(answer.status == 200, "{} {}", answer.status, answer.body);
    let exporter = |what: &str| {
        value(
            &sidecar,
            &format!(r#"otelcol_exporter_{what}_spans{{exporter="kafka"}}"#),
        )
    };
    wait_for(Duration::from_secs(30), "the sidecar's verdict", || {
        (exporter("sent") + exporter("send_failed") > 0.0).then_some(())
    })?;
    let (sent, failed) = (exporter("sent"), exporter("send_failed"));
    ensure!(
        sent == 100.0 && failed == 1.0,
        "sent {sent}, failed {failed}; expected 100 and 1\n{}",
        sidecar.log()
    );
    wait_for(Duration::from_secs(60), "the 100 spans in Kafka", || {
        (accepted(&gw, "spans") >= 100.0).then_some(())
    })?;
    let got = count_spans(&gw.path("traces.jsonl"))?;
    ensure!(got.len() == 100, "{} spans read back from Kafka", got.len());
    Ok(())
}
