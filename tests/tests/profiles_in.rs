//! Profiles in: OTLP profiles over gRPC and HTTP, pprof pushed Pyroscope-style, pprof scraped;
//! what comes out of the file exporter has the same samples with their Links. Bad input is
//! refused and counted, and the next good input still works.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Result};
use hotspan_config::Signal;
use hotspan_proto::pprof::{self, ConvertOptions};
use hotspan_proto::{otlp_json, Encoding, ProfilesBatch};
use hotspan_tests::profiles::{
    flatten, read_profiles, resource_values, synthetic_pprof, FakeTarget, FlatSample, TargetMode,
};
use hotspan_tests::{free_port, grpc_export, gzip, metric, post, scrape, wait_for, Hotspan};

const TRACE: u128 = 0x4bf92f3577b34da6a3ce929d0e0e4736;

/// validateCart and chargeCard in two spans, with a shared caller.
fn known_pprof() -> Vec<u8> {
    synthetic_pprof(
        &[
            (&["main.validateCart", "main.handle", "main.main"], 7, 0x1111),
            (&["main.chargeCard", "main.handle", "main.main"], 5, 0x2222),
            (&["main.chargeCard", "main.handle", "main.main"], 2, 0x1111),
        ],
        TRACE,
    )
}

fn sorted(mut v: Vec<FlatSample>) -> Vec<FlatSample> {
    v.sort();
    v
}

fn all_samples(path: &std::path::Path, at_least: usize) -> Result<Vec<FlatSample>> {
    wait_for(
        Duration::from_secs(15),
        &format!("{at_least} samples in {}", path.display()),
        || {
            let batches = read_profiles(path).ok()?;
            let samples: Vec<FlatSample> = batches.iter().flat_map(flatten).collect();
            (samples.len() >= at_least).then_some(samples)
        },
    )
}

const OTLP: &str = r#"
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:{port:grpc}"}
      http: {endpoint: "127.0.0.1:{port:http}"}
exporters:
  file: {path: "{dir}/profiles.jsonl", flush_interval: 20ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    profiles: {receivers: [otlp], exporters: [file]}
"#;

#[test]
fn otlp_profiles_over_grpc_and_http_keep_samples_and_links() -> Result<()> {
    let hotspan = Hotspan::start(OTLP)?;
    let request = pprof::to_otlp(&known_pprof(), &ConvertOptions::default())?;
    let batch = ProfilesBatch::from_request(request);
    let expected = sorted(flatten(&batch));
    ensure!(
        expected.len() == 6,
        "3 samples x 2 sample types, got {}",
        expected.len()
    );
    ensure!(
        expected.iter().all(|s| s.trace_id == format!("{TRACE:032x}")),
        "links carry the trace id"
    );

    // gRPC, protobuf over HTTP, JSON over HTTP: three copies.
    let body = batch.encode(Encoding::Protobuf);
    grpc_export(hotspan.port("grpc"), Signal::Profiles, body.clone())?
        .map_err(|s| anyhow::anyhow!("gRPC export refused: {s:?}"))?;
    let url = format!("http://127.0.0.1:{}/v1development/profiles", hotspan.port("http"));
    let answer = post(&url, "application/x-protobuf", None, body)?;
    ensure!(answer.status == 200, "{}", answer.body);
    let answer = post(&url, "application/json", None, otlp_json::encode(batch.request()))?;
    ensure!(answer.status == 200, "{}", answer.body);

    let got = sorted(all_samples(&hotspan.path("profiles.jsonl"), 18)?);
    let mut want: Vec<FlatSample> = Vec::new();
    for _ in 0..3 {
        want.extend(expected.iter().cloned());
    }
    ensure!(got == sorted(want), "samples differ:\n{got:#?}");
    Ok(())
}

/// OTLP/JSON for profiles as the spec writes it, by hand: hex link ids, int64 as strings.
#[test]
fn hand_written_otlp_json_profile() -> Result<()> {
    let hotspan = Hotspan::start(OTLP)?;
    let body = r#"{
      "resourceProfiles": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
        "scopeProfiles": [{"profiles": [{
          "sampleType": {"typeStrindex": 1, "unitStrindex": 2},
          "timeUnixNano": "1700000000000000000", "durationNano": "10000000000",
          "samples": [{"stackIndex": 1, "linkIndex": 1, "values": ["3"], "timestampsUnixNano": ["1700000000500000000"]}]
        }]}]}],
      "dictionary": {
        "stringTable": ["", "cpu", "nanoseconds", "main.chargeCard"],
        "functionTable": [{}, {"nameStrindex": 3}],
        "locationTable": [{}, {"lines": [{"functionIndex": 1, "line": "42"}]}],
        "stackTable": [{}, {"locationIndices": [1]}],
        "linkTable": [{}, {"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7"}]
      }
    }"#;
    let url = format!("http://127.0.0.1:{}/v1development/profiles", hotspan.port("http"));
    let answer = post(&url, "application/json", None, body.as_bytes().to_vec())?;
    ensure!(answer.status == 200, "{}", answer.body);
    let got = all_samples(&hotspan.path("profiles.jsonl"), 1)?;
    ensure!(got.len() == 1);
    ensure!(
        got[0].stack == ["main.chargeCard"] && got[0].value == 3,
        "{got:?}"
    );
    ensure!(
        got[0].span_id == "00f067aa0ba902b7" && got[0].trace_id == format!("{TRACE:032x}"),
        "{got:?}"
    );
    // A dangling index is refused as a partial success naming the profile.
    let bad = body.replace(r#""stackIndex": 1"#, r#""stackIndex": 9"#);
    let answer = post(&url, "application/json", None, bad.into_bytes())?;
    let json: serde_json::Value = serde_json::from_str(&answer.body)?;
    ensure!(
        answer.status == 200 && json["partialSuccess"]["rejectedProfiles"] == "1",
        "{json}"
    );
    Ok(())
}

const PUSH: &str = r#"
receivers:
  pprof:
    endpoint: "127.0.0.1:{port:pprof}"
    max_request_body_size: 4194304
    resource_attributes: {deployment.environment: test}
exporters:
  file: {path: "{dir}/profiles.jsonl", flush_interval: 20ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  telemetry: {metrics: {address: "127.0.0.1:{port:metrics}"}}
  pipelines:
    profiles: {receivers: [pprof], exporters: [file]}
"#;

/// The samples `known_pprof` must become, per sample type.
fn known_samples() -> Vec<FlatSample> {
    let mut out = Vec::new();
    for (stack, count, span) in [
        (
            vec!["main.validateCart", "main.handle", "main.main"],
            7,
            "0000000000001111",
        ),
        (
            vec!["main.chargeCard", "main.handle", "main.main"],
            5,
            "0000000000002222",
        ),
        (
            vec!["main.chargeCard", "main.handle", "main.main"],
            2,
            "0000000000001111",
        ),
    ] {
        for (sample_type, value) in [("samples/count", count), ("cpu/nanoseconds", count * 10_000_000)] {
            out.push(FlatSample {
                sample_type: sample_type.into(),
                stack: stack.iter().map(|s| s.to_string()).collect(),
                value,
                span_id: span.into(),
                trace_id: format!("{TRACE:032x}"),
                attributes: BTreeMap::from([("stage".to_string(), format!("stage-{}", stack[0]))]),
            });
        }
    }
    sorted(out)
}

fn multipart(profile: &[u8]) -> (String, Vec<u8>) {
    let boundary = "hotspan-test-boundary";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(profile);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn pprof_push_to_ingest_and_v1_pprof() -> Result<()> {
    let hotspan = Hotspan::start(PUSH)?;
    let base = format!("http://127.0.0.1:{}", hotspan.port("pprof"));
    let ingest = format!("{base}/ingest?name=shop.cpu%7Benv%3Dtest%2Cregion%3Deu%7D&from=1700000000&until=1700000010&format=pprof&sampleRate=100&spyName=gospy");
    let raw = post(&ingest, "application/octet-stream", None, known_pprof())?;
    ensure!(raw.status == 200, "raw ingest: {} {}", raw.status, raw.body);
    let (ct, body) = multipart(&known_pprof());
    let multi = post(&ingest, &ct, None, body)?;
    ensure!(
        multi.status == 200,
        "multipart ingest: {} {}",
        multi.status,
        multi.body
    );
    let v1 = post(
        &format!("{base}/v1/pprof?service_name=shop"),
        "application/octet-stream",
        None,
        known_pprof(),
    )?;
    ensure!(v1.status == 200, "/v1/pprof: {} {}", v1.status, v1.body);

    let unsupported = post(
        &format!("{base}/ingest?name=shop.cpu&format=folded"),
        "text/plain",
        None,
        b"a;b 1".to_vec(),
    )?;
    ensure!(
        unsupported.status == 415 && unsupported.body.contains("folded"),
        "{} {}",
        unsupported.status,
        unsupported.body
    );
    let nameless = post(
        &format!("{base}/ingest?format=pprof"),
        "application/octet-stream",
        None,
        known_pprof(),
    )?;
    ensure!(
        nameless.status == 400 && nameless.body.contains("name"),
        "{} {}",
        nameless.status,
        nameless.body
    );

    let batches = wait_for(Duration::from_secs(15), "three pushed profiles", || {
        let b = read_profiles(&hotspan.path("profiles.jsonl")).ok()?;
        (b.len() >= 3).then_some(b)
    })?;
    ensure!(batches.len() == 3);
    for batch in &batches {
        ensure!(
            sorted(flatten(batch)) == known_samples(),
            "samples differ: {:#?}",
            flatten(batch)
        );
        ensure!(resource_values(batch, "service.name") == ["shop"], "service.name");
        ensure!(
            resource_values(batch, "deployment.environment") == ["test"],
            "configured attribute"
        );
    }
    ensure!(
        resource_values(&batches[0], "env") == ["test"] && resource_values(&batches[0], "region") == ["eu"]
    );
    ensure!(resource_values(&batches[0], "pyroscope.spy.name") == ["gospy"]);
    Ok(())
}

#[test]
fn bad_pprof_is_refused_and_counted() -> Result<()> {
    let hotspan = Hotspan::start(PUSH)?;
    let url = format!(
        "http://127.0.0.1:{}/ingest?name=shop.cpu&format=pprof",
        hotspan.port("pprof")
    );
    let good = known_pprof();
    let raw_good = {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&good[..]).read_to_end(&mut out)?;
        out
    };
    let huge_strings = {
        use prost::Message;
        let p = hotspan_proto::pprof::pb::Profile {
            string_table: std::iter::once(String::new())
                .chain((0..1_000_001).map(|i| (i % 10).to_string()))
                .collect(),
            ..Default::default()
        };
        gzip(&p.encode_to_vec())
    };
    let dangling = {
        use prost::Message;
        let mut p = hotspan_proto::pprof::decode(&good, &Default::default())?;
        p.sample[0].location_id.push(999);
        p.encode_to_vec()
    };
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("truncated pprof", raw_good[..raw_good.len() / 2].to_vec(), 400),
        (
            "gzip magic then garbage",
            b"\x1f\x8b\x08\x00garbage".to_vec(),
            400,
        ),
        ("gzip bomb", gzip(&vec![0u8; 100 * 1024 * 1024]), 400),
        ("huge string table", huge_strings, 400),
        ("location id out of range", dangling, 400),
        ("over the body limit", vec![0u8; 5 * 1024 * 1024], 413),
    ];
    let bad = cases.len();
    for (what, body, want) in cases {
        let answer = post(&url, "application/octet-stream", None, body)?;
        ensure!(answer.status == want, "{what}: {} {}", answer.status, answer.body);
        ensure!(!answer.body.is_empty(), "{what}: no error message");
        let ok = post(&url, "application/octet-stream", None, good.clone())?;
        ensure!(ok.status == 200, "good after {what}: {} {}", ok.status, ok.body);
    }
    let metrics = scrape(hotspan.port("metrics"))?;
    let counted = metric(
        &metrics,
        r#"hotspan_receiver_bad_requests{receiver="pprof",transport="http"}"#,
    );
    ensure!(
        counted == Some(bad as f64),
        "bad requests counted {counted:?}, sent {bad}"
    );
    let samples = all_samples(&hotspan.path("profiles.jsonl"), bad * 6)?;
    ensure!(
        samples.len() == bad * 6,
        "every good push arrived once: {}",
        samples.len()
    );
    Ok(())
}

/// A target that is down, comes up, then answers HTML and errors: each outcome is counted,
/// scraping recovers when the target does, and good scrapes arrive with the target's resource.
#[test]
fn scrape_counts_outcomes_and_recovers() -> Result<()> {
    let port = free_port();
    let hotspan = Hotspan::start(&format!(
        r#"
receivers:
  pprof_scrape:
    scrape_interval: 1s
    scrape_timeout: 2s
    profiles: [cpu, goroutine]
    targets:
      - endpoint: "http://127.0.0.1:{port}"
        service_name: shop
        attributes: {{service.instance.id: shop-1}}
exporters:
  file: {{path: "{{dir}}/profiles.jsonl", flush_interval: 20ms}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
  pipelines:
    profiles: {{receivers: [pprof_scrape], exporters: [file]}}
"#
    ))?;
    let series = |profile: &str, outcome: &str| {
        format!(
            r#"hotspan_scrapes{{receiver="pprof_scrape",target="http://127.0.0.1:{port}",profile="{profile}",outcome="{outcome}"}}"#
        )
    };
    let count = |profile: &str, outcome: &str| -> f64 {
        scrape(hotspan.port("metrics"))
            .ok()
            .and_then(|m| metric(&m, &series(profile, outcome)))
            .unwrap_or(0.0)
    };
    wait_for(
        Duration::from_secs(20),
        "a failed scrape of a target that is down",
        || (count("profile", "failed") >= 1.0).then_some(()),
    )?;
    let target = FakeTarget::start(port, known_pprof())?;
    wait_for(Duration::from_secs(30), "scrapes to recover", || {
        (count("profile", "ok") >= 1.0 && count("goroutine", "ok") >= 1.0).then_some(())
    })?;
    let batches = read_profiles(&hotspan.path("profiles.jsonl"))?;
    ensure!(!batches.is_empty());
    for b in &batches {
        ensure!(sorted(flatten(b)) == known_samples(), "scraped samples differ");
        ensure!(
            resource_values(b, "service.name") == ["shop"]
                && resource_values(b, "service.instance.id") == ["shop-1"]
        );
    }
    target.set_mode(TargetMode::Html);
    wait_for(
        Duration::from_secs(20),
        "an HTML answer counted as bad data",
        || (count("goroutine", "bad_data") >= 1.0).then_some(()),
    )?;
    target.set_mode(TargetMode::Error);
    let failed_before = count("goroutine", "failed");
    wait_for(Duration::from_secs(20), "an HTTP 500 counted as failed", || {
        (count("goroutine", "failed") > failed_before).then_some(())
    })?;
    Ok(())
}

/// Profiles forwarded by the otlp_grpc and otlp_http exporters to another hotspan arrive with
/// the same samples and Links.
#[test]
fn profiles_forwarded_over_otlp_grpc_and_http() -> Result<()> {
    let downstream = Hotspan::start(OTLP)?;
    let mut upstream = Hotspan::start(&format!(
        r#"
receivers:
  pprof: {{endpoint: "127.0.0.1:{{port:pprof}}"}}
exporters:
  otlp: {{endpoint: "127.0.0.1:{}", tls: {{insecure: true}}}}
  otlphttp: {{endpoint: "http://127.0.0.1:{}"}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    profiles: {{receivers: [pprof], exporters: [otlp, otlphttp]}}
"#,
        downstream.port("grpc"),
        downstream.port("http")
    ))?;
    let url = format!(
        "http://127.0.0.1:{}/ingest?name=shop.cpu&format=pprof",
        upstream.port("pprof")
    );
    ensure!(post(&url, "application/octet-stream", None, known_pprof())?.status == 200);
    ensure!(
        upstream.terminate()?.success(),
        "upstream drains its queues on SIGTERM"
    );
    let got = sorted(all_samples(&downstream.path("profiles.jsonl"), 12)?);
    let mut want = known_samples();
    want.extend(known_samples());
    ensure!(got == sorted(want), "forwarded samples differ");
    Ok(())
}
