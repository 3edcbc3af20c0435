//! Jaeger (v1.75, the v2 all-in-one: scripts/peers.sh) as hotspan's trace backend: annotated
//! spans go over OTLP/gRPC into Jaeger, whose query API finds them by their `profile.*` tags
//! and gives every tag back as hotspan wrote it, a hot path of dozens of frames included.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use hotspan_config::Signal;
use hotspan_processors::spanprofile::fixtures::{self, Plant};
use hotspan_proto::otlp::common::v1::any_value;
use hotspan_proto::Encoding;
use hotspan_tests::peers::{start_jaeger, Peer};
use hotspan_tests::{grpc_export, hex, wait_for, wait_for_spans, Hotspan};
use serde_json::Value;

const SERVICE: &str = "checkout";

/// GET on Jaeger's query API, as JSON.
fn query(jaeger: &Peer, path: &str, params: &[(&str, String)]) -> Result<Value> {
    let url = reqwest::Url::parse_with_params(
        &format!("http://127.0.0.1:{}{path}", jaeger.port("query")),
        params,
    )?;
    let response = reqwest::blocking::get(url.clone())?;
    let status = response.status();
    let body = response.text()?;
    ensure!(status.is_success(), "GET {url}: {status} {body}");
    serde_json::from_str(&body).with_context(|| format!("GET {url}: not JSON: {body}"))
}

/// The traces Jaeger finds for `tags` (a JSON object of tag values) in the last hour.
fn find_traces(jaeger: &Peer, tags: &str) -> Result<Vec<Value>> {
    let now_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros();
    let found = query(
        jaeger,
        "/api/traces",
        &[
            ("service", SERVICE.to_string()),
            ("tags", tags.to_string()),
            ("start", (now_us - 3_600_000_000).to_string()),
            ("end", (now_us + 60_000_000).to_string()),
            ("limit", "20".to_string()),
        ],
    )?;
    Ok(found["data"].as_array().cloned().unwrap_or_default())
}

/// A span's tags as Jaeger gives them, by key.
fn tags(span: &Value) -> BTreeMap<String, Value> {
    span["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["key"].as_str()?.to_string(), t["value"].clone())))
        .collect()
}

#[test]
fn jaeger_finds_annotated_spans_by_profile_tags_and_keeps_long_hot_paths() -> Result<()> {
    let jaeger = start_jaeger()?;
    let hotspan = Hotspan::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{{port:grpc}}"}}}}}}
connectors:
  spanprofile: {{wait: 2s, hot_path_frames: 64}}
exporters:
  file: {{path: "{{dir}}/spans.jsonl", flush_interval: 50ms}}
  otlp_grpc: {{endpoint: "127.0.0.1:{}", tls: {{insecure: true}}}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
  pipelines:
    traces/in: {{receivers: [otlp], exporters: [spanprofile]}}
    profiles/in: {{receivers: [otlp], exporters: [spanprofile]}}
    traces/out: {{receivers: [spanprofile], exporters: [file, otlp_grpc]}}
"#,
        jaeger.port("otlp_grpc")
    ))?;

    // Spans of the last second (Jaeger searches by time), a deep stack for `price`.
    let trace = 0x6e0c63257de34c926f9efcd03927272e_u128;
    let (root, price, idle) = (0x51u64, 0x52u64, 0x53u64);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let mut spans = vec![
        fixtures::span_in(trace, root, None, 0, 200),
        fixtures::span_in(trace, price, Some(root), 20, 120),
        fixtures::span_in(trace, idle, Some(root), 130, 190),
    ];
    for s in &mut spans {
        s.start_time_unix_nano = s.start_time_unix_nano - fixtures::T0 + now - 1_000_000_000;
        s.end_time_unix_nano = s.end_time_unix_nano - fixtures::T0 + now - 1_000_000_000;
    }
    // `Plant` takes frame names as `&'static str`: these few live as long as the test process.
    let deep: Vec<&'static str> = (0..48)
        .map(|i| {
            &*Box::leak(
                format!("github.com/acme/checkout/internal/pricing.(*Engine).applyRuleSetLevel{i:02}")
                    .into_boxed_str(),
            )
        })
        .collect();
    let plants = [
        Plant {
            stack: deep.clone(),
            count: 9,
            span: Some(price),
            trace: Some(trace),
            as_labels: true,
            labels: vec![("stage", "pricing")],
            ..Default::default()
        },
        Plant {
            stack: vec!["main.handle", "main.main"],
            count: 2,
            span: Some(root),
            trace: Some(trace),
            as_labels: true,
            ..Default::default()
        },
    ];
    let traces = fixtures::traces(SERVICE, spans);
    let profiles = fixtures::profiles(SERVICE, &plants, false);
    for (signal, body) in [
        (Signal::Traces, traces.encode(Encoding::Protobuf)),
        (Signal::Profiles, profiles.encode(Encoding::Protobuf)),
    ] {
        grpc_export(hotspan.port("grpc"), signal, body)?
            .map_err(|s| anyhow::anyhow!("export refused: {s:?}"))?;
    }

    // What hotspan sent to Jaeger, from its file exporter in the same pipeline.
    let sent = wait_for_spans(&hotspan.path("spans.jsonl"), 3, Duration::from_secs(30))?;
    let price_out = &sent[&price.to_be_bytes().to_vec()].span;
    let hot_path = price_out
        .attributes
        .iter()
        .find(|a| a.key == "profile.hot_path")
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
        .context("price has a hot path")?;
    ensure!(
        hot_path.len() > 2_000 && hot_path.split(';').count() == 48,
        "a hot path of 48 long frames: {} chars, {} frames",
        hot_path.len(),
        hot_path.split(';').count()
    );

    let found = wait_for(
        Duration::from_secs(30),
        "Jaeger to find the annotated trace",
        || {
            find_traces(&jaeger, r#"{"profile.join":"span"}"#)
                .ok()
                .filter(|t| !t.is_empty())
        },
    )
    .with_context(|| {
        format!(
            "--- jaeger log ---\n{}\n--- hotspan log ---\n{}",
            jaeger.log(),
            hotspan.log()
        )
    })?;
    ensure!(found.len() == 1, "one trace matches, got {}", found.len());
    let trace_json = &found[0];
    ensure!(trace_json["traceID"].as_str() == Some(format!("{trace:032x}").as_str()));
    let by_id: BTreeMap<String, &Value> = trace_json["spans"]
        .as_array()
        .context("spans")?
        .iter()
        .filter_map(|s| Some((s["spanID"].as_str()?.to_string(), s)))
        .collect();
    ensure!(
        by_id.len() == 3,
        "Jaeger has {} of the trace's 3 spans",
        by_id.len()
    );

    // Every attribute hotspan wrote on each span, with its value, as a Jaeger tag.
    for (id, found_span) in &sent {
        let jaeger_span = by_id
            .get(&hex(id))
            .with_context(|| format!("span {} not in Jaeger", hex(id)))?;
        let got = tags(jaeger_span);
        for a in &found_span.span.attributes {
            let want = match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => Value::from(s.clone()),
                Some(any_value::Value::IntValue(i)) => Value::from(*i),
                // Jaeger writes a whole float64 as an integer (1.0 as 1): compare as numbers.
                Some(any_value::Value::DoubleValue(d)) => {
                    let value = got.get(&a.key).and_then(Value::as_f64);
                    ensure!(
                        value == Some(*d),
                        "{}: Jaeger has {value:?}, hotspan sent {d}",
                        a.key
                    );
                    continue;
                }
                Some(any_value::Value::BoolValue(b)) => Value::from(*b),
                // Jaeger has no array tags: it keeps an array as its JSON text.
                Some(any_value::Value::ArrayValue(arr)) => {
                    let text = got.get(&a.key).and_then(Value::as_str).unwrap_or_default();
                    for v in &arr.values {
                        if let Some(any_value::Value::StringValue(s)) = &v.value {
                            ensure!(text.contains(s.as_str()), "{}: {} lacks {s:?}", a.key, text);
                        }
                    }
                    continue;
                }
                other => anyhow::bail!("unexpected attribute {}: {other:?}", a.key),
            };
            ensure!(
                got.get(&a.key) == Some(&want),
                "span {} tag {}: Jaeger has {:?}, hotspan sent {want}",
                found_span.span.name,
                a.key,
                got.get(&a.key)
            );
        }
    }
    let price_tags = tags(by_id[&hex(&price.to_be_bytes())]);
    ensure!(price_tags.get("profile.samples") == Some(&Value::from(9)));
    ensure!(price_tags.get("profile.hot_path") == Some(&Value::from(hot_path.clone())));
    ensure!(!tags(by_id[&hex(&idle.to_be_bytes())]).contains_key("profile.samples"));
    // The hot_path span events arrive as logs, their stacks intact too.
    let logged: Vec<String> = by_id[&hex(&price.to_be_bytes())]["logs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["fields"].as_array().cloned().unwrap_or_default())
        .filter(|f| f["key"] == "stack")
        .filter_map(|f| f["value"].as_str().map(str::to_string))
        .collect();
    ensure!(
        logged.contains(&hot_path),
        "the heaviest stack among the logs: {logged:?}"
    );

    // Tags are searched, not ignored: values no span has find nothing, one that only `price`
    // has finds the trace.
    ensure!(find_traces(&jaeger, r#"{"profile.join":"thread"}"#)?.is_empty());
    ensure!(find_traces(&jaeger, r#"{"profile.samples":"7"}"#)?.is_empty());
    ensure!(find_traces(&jaeger, r#"{"profile.samples":"9"}"#)?.len() == 1);
    ensure!(find_traces(&jaeger, r#"{"profile.labels.stage":"pricing"}"#)?.len() == 1);
    Ok(())
}
