//! `tail_sampling` end to end:
//! - the real Go service's spans go through the join and `tail_sampling`; exactly the traces
//!   the policies pick come out, each whole, checked against the service's own record of its
//!   spans (the truth file) and the join's output before sampling;
//! - the same policies run in otelcol v0.165 (contrib's tailsamplingprocessor, built by
//!   scripts/peers.sh) and in hotspan on the same spans, and keep the same traces;
//! - the tail_sampling block commented in config/examples/gateway.yaml validates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hotspan_processors::spanprofile::fixtures::{kv, MS, T0};
use hotspan_proto::otlp::common::v1::any_value::Value;
use hotspan_proto::otlp::resource::v1::Resource;
use hotspan_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use hotspan_proto::{Encoding, TracesBatch};
use hotspan_tests::goservice::{go_binary, GoOptions, GoService, Scenario};
use hotspan_tests::peers::start_otelcol;
use hotspan_tests::{free_port, hex, metric, post, read_spans, scrape, wait_for, Hotspan};

/// FNV-1a over the salt and the trace id, compared with (2^64 - 1) × percentage / 100: the
/// contrib processor's rule, written here from its description, independently of hotspan's.
/// (A float threshold can differ from the exact one by a few thousand out of 2^64: no trace
/// of a test's hundreds lands there.)
fn otelcol_would_sample(salt: &str, trace_id: &[u8], percentage: f64) -> bool {
    let mut h: u64 = 14695981039346656037;
    for b in salt.as_bytes().iter().chain(trace_id) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(1099511628211);
    }
    (h as f64) <= u64::MAX as f64 * (percentage / 100.0)
}

/// Span ids by trace id (hex), from a file exporter's output.
fn traces_in(path: &Path) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, found) in read_spans(path)? {
        out.entry(hex(&found.span.trace_id)).or_default().insert(hex(&id));
    }
    Ok(out)
}

fn sum_of(metrics: &str, prefix: &str, containing: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains(containing))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

const SALT: &str = "hotspan-go";
const PERCENT: f64 = 25.0;
/// 40 ms: the slow path burns 60, about 6 samples at pprof's 100 Hz; the service's other spans
/// burn a few ms each.
const HOT_NS: i64 = 40_000_000;

#[test]
fn go_service_traces_are_kept_whole_by_their_cpu_and_by_probability() -> Result<()> {
    go_binary();
    let otlp = free_port();
    let go_port = free_port();
    // A trace's spans leave the join as they came, the SDK's 200 ms batches apart and more on a
    // loaded machine: the decision waits long enough for the last, or a hot span coming after
    // it would follow a decision already made without it.
    let mut hotspan = Hotspan::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{otlp}"}}}}}}
  pprof_scrape:
    scrape_interval: 1s
    targets: [{{endpoint: "http://127.0.0.1:{go_port}", service_name: shop}}]
connectors:
  spanprofile: {{wait: 4s}}
processors:
  tail_sampling:
    decision_wait: 3s
    policies:
      - {{name: hot, type: numeric_attribute, numeric_attribute: {{key: profile.cpu_ns, min_value: {HOT_NS}}}}}
      - {{name: some, type: probabilistic, probabilistic: {{hash_salt: {SALT}, sampling_percentage: {PERCENT}}}}}
exporters:
  file/all: {{path: "{{dir}}/all.jsonl", flush_interval: 50ms}}
  file/kept: {{path: "{{dir}}/kept.jsonl", flush_interval: 50ms}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
  pipelines:
    traces/in: {{receivers: [otlp], exporters: [spanprofile]}}
    profiles/in: {{receivers: [pprof_scrape], exporters: [spanprofile]}}
    traces/all: {{receivers: [spanprofile], exporters: [file/all]}}
    traces/sampled: {{receivers: [spanprofile], processors: [tail_sampling], exporters: [file/kept]}}
"#
    ))?;
    let metrics_port = hotspan.port("metrics");
    let mut go = GoService::start(GoOptions {
        scenario: Scenario::Slowpath,
        slow_fraction: Some(0.3),
        otlp_endpoint: Some(format!("http://127.0.0.1:{otlp}")),
        listen_port: Some(go_port),
        workers: 2,
        ..Default::default()
    })?;
    let logs = |go: &GoService, hotspan: &Hotspan| {
        format!(
            "--- goservice ---\n{}\n--- hotspan ---\n{}",
            go.log(),
            hotspan.log()
        )
    };
    // Ten 1 s profiles: some 50 requests, most of them inside a profile's window (those before
    // the first scrape have no samples, so no CPU).
    wait_for(Duration::from_secs(60), "ten CPU profiles scraped", || {
        let m = scrape(metrics_port).ok()?;
        (sum_of(&m, "hotspan_scrapes{", "outcome=\"ok\"") >= 10.0).then_some(())
    })
    .with_context(|| logs(&go, &hotspan))?;
    ensure!(go.stop()?.success(), "go service exit\n{}", go.log());
    let truth = go.truth()?;
    let mut truth_traces: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in &truth {
        truth_traces
            .entry(s.trace_id.clone())
            .or_default()
            .insert(s.span_id.clone());
    }

    // Every span leaves the join (after its 4 s wait), and every trace gets decided.
    let all = wait_for(Duration::from_secs(60), "every span out of the join", || {
        let spans = read_spans(&hotspan.path("all.jsonl")).ok()?;
        (spans.len() >= truth.len()).then_some(spans)
    })
    .with_context(|| logs(&go, &hotspan))?;
    let decided = |m: &str| {
        sum_of(
            m,
            "otelcol_processor_tail_sampling_global_count_traces_sampled{",
            "",
        )
    };
    wait_for(Duration::from_secs(30), "every trace decided", || {
        let m = scrape(metrics_port).ok()?;
        (decided(&m) as usize == truth_traces.len()).then_some(())
    })
    .with_context(|| {
        format!(
            "{}\n{}",
            scrape(metrics_port).unwrap_or_default(),
            logs(&go, &hotspan)
        )
    })?;
    let metrics = scrape(metrics_port)?;
    // Read once hotspan has stopped: a decision is counted before its spans reach the file
    // exporter, which writes them up to a flush interval later; stopping flushes it.
    ensure!(hotspan.terminate()?.success(), "hotspan exit\n{}", hotspan.log());
    let kept = traces_in(&hotspan.path("kept.jsonl"))?;

    // The join passed on exactly the service's spans.
    let all_ids: BTreeSet<String> = all.keys().map(|id| hex(id)).collect();
    let truth_ids: BTreeSet<String> = truth.iter().map(|s| s.span_id.clone()).collect();
    ensure!(
        all_ids == truth_ids,
        "the join's output is not the service's spans"
    );

    // The answer: traces with a span that burned 40 ms of CPU itself (`profile.cpu_ns`: the
    // slow path's 60 ms; with descendants, most whole requests burn that much), and those the
    // hash picks.
    let mut hot = BTreeSet::new();
    for found in all.values() {
        let cpu = found
            .span
            .attributes
            .iter()
            .find(|a| a.key == "profile.cpu_ns")
            .and_then(|a| a.value.as_ref()?.value.clone());
        if let Some(Value::IntValue(ns)) = cpu {
            if ns >= HOT_NS {
                hot.insert(hex(&found.span.trace_id));
            }
        }
    }
    let picked: BTreeSet<String> = truth_traces
        .keys()
        .filter(|t| {
            let bytes = hex::decode(t).unwrap_or_default();
            otelcol_would_sample(SALT, &bytes, PERCENT)
        })
        .cloned()
        .collect();
    let expected: BTreeSet<String> = hot.union(&picked).cloned().collect();
    let got: BTreeSet<String> = kept.keys().cloned().collect();
    ensure!(
        got == expected,
        "kept {} traces, expected {}: missing {:?} (hot: {:?}), extra {:?}",
        got.len(),
        expected.len(),
        expected.difference(&got).collect::<Vec<_>>(),
        expected
            .difference(&got)
            .filter(|t| hot.contains(*t))
            .collect::<Vec<_>>(),
        got.difference(&expected).collect::<Vec<_>>()
    );
    // Each kept trace is whole: every span the service finished in it.
    for (trace, spans) in &kept {
        ensure!(
            spans == &truth_traces[trace],
            "trace {trace} came out with {} of its {} spans",
            spans.len(),
            truth_traces[trace].len()
        );
    }
    // The test means something: both policies kept traces the other would not, traces were
    // dropped, and the slow path's 60 ms of CPU is what made traces hot.
    let slow: BTreeSet<String> = truth
        .iter()
        .filter(|s| s.slow_path)
        .map(|s| s.trace_id.clone())
        .collect();
    let counts = format!(
        "{} traces, {} hot, {} picked, {} with the slow path, {} kept",
        truth_traces.len(),
        hot.len(),
        picked.len(),
        slow.len(),
        got.len()
    );
    ensure!(hot.difference(&picked).count() >= 2, "{counts}");
    ensure!(picked.difference(&hot).count() >= 2, "{counts}");
    ensure!(got.len() * 4 < truth_traces.len() * 3, "{counts}");
    println!("{counts}");
    ensure!(
        hot.intersection(&slow).count() >= 2 && hot.intersection(&slow).count() * 2 > hot.len(),
        "{} hot traces, {} with the slow path, {} both",
        hot.len(),
        slow.len(),
        hot.intersection(&slow).count()
    );

    // otelcol's metrics say the same.
    let series = |name: &str, labels: &str| {
        metric(
            &metrics,
            &format!("otelcol_processor_tail_sampling_{name}{{{labels}}}"),
        )
    };
    let p = r#"processor="tail_sampling""#;
    ensure!(
        series(
            "count_traces_sampled",
            &format!(r#"{p},policy="hot",sampled="true",decision="sampled""#)
        ) == Some(hot.len() as f64),
        "{metrics}"
    );
    ensure!(
        series(
            "count_traces_sampled",
            &format!(r#"{p},policy="some",sampled="true",decision="sampled""#)
        ) == Some(picked.len() as f64),
        "{metrics}"
    );
    ensure!(
        series(
            "global_count_traces_sampled",
            &format!(r#"{p},sampled="true",decision="sampled""#)
        ) == Some(expected.len() as f64),
        "{metrics}"
    );
    ensure!(
        series("new_trace_id_received", p) == Some(truth_traces.len() as f64),
        "{metrics}"
    );
    ensure!(
        series("sampling_trace_dropped_too_early", p) == Some(0.0),
        "{metrics}"
    );
    Ok(())
}

// ---- the same spans through otelcol's tail_sampling and hotspan's ----

/// Each policy in its own pipeline, so each is compared on its own.
const POLICIES: &[(&str, &str)] = &[
    ("prob30", "{name: p, type: probabilistic, probabilistic: {hash_salt: hotspan-peer, sampling_percentage: 30}}"),
    ("probdefault", "{name: p, type: probabilistic, probabilistic: {sampling_percentage: 12.5}}"),
    ("slow", "{name: p, type: latency, latency: {threshold_ms: 150}}"),
    ("band", "{name: p, type: latency, latency: {threshold_ms: 50, upper_threshold_ms: 150}}"),
    ("errors", "{name: p, type: status_code, status_code: {status_codes: [ERROR]}}"),
    ("okunset", "{name: p, type: status_code, status_code: {status_codes: [OK, UNSET]}}"),
    ("hot", "{name: p, type: numeric_attribute, numeric_attribute: {key: profile.cpu_ns_total, min_value: 50000000}}"),
    ("coldinv", "{name: p, type: numeric_attribute, numeric_attribute: {key: profile.cpu_ns_total, max_value: 20000000, invert_match: true}}"),
    ("route", "{name: p, type: string_attribute, string_attribute: {key: http.route, values: [/checkout]}}"),
    ("routere", "{name: p, type: string_attribute, string_attribute: {key: http.route, values: ['^/cart', 'health$'], enabled_regex_matching: true}}"),
    ("routeinv", "{name: p, type: string_attribute, string_attribute: {key: http.route, values: [/health], invert_match: true}}"),
    ("env", "{name: p, type: string_attribute, string_attribute: {key: deployment.environment, values: [prod]}}"),
    ("retry", "{name: p, type: boolean_attribute, boolean_attribute: {key: retry, value: true}}"),
    ("count", "{name: p, type: span_count, span_count: {min_spans: 3}}"),
    ("andnot", "{name: p, type: and, and: {and_sub_policy: [{name: s, type: latency, latency: {threshold_ms: 100}}, {name: n, type: not, not: {not_sub_policy: {name: e, type: status_code, status_code: {status_codes: [ERROR]}}}}]}}"),
];
/// A pipeline with two policies: `drop` wins over `always_sample`.
const DROPPER: &str = "[{name: all, type: always_sample}, {name: nohealth, type: drop, drop: {drop_sub_policy: [{name: h, type: string_attribute, string_attribute: {key: http.route, values: [/health]}}]}}]";

/// One config for both collectors: an OTLP/HTTP receiver, a tail_sampling processor and a
/// file per policy.
fn peer_config(decision_wait: &str) -> String {
    let mut processors = String::new();
    let mut exporters = String::new();
    let mut pipelines = String::new();
    let all = POLICIES
        .iter()
        .map(|(n, p)| (*n, format!("[{p}]")))
        .chain([("dropper", DROPPER.to_string())]);
    for (name, policies) in all {
        processors +=
            &format!("  tail_sampling/{name}: {{decision_wait: {decision_wait}, policies: {policies}}}\n");
        exporters += &format!("  file/{name}: {{path: \"{{dir}}/{name}.jsonl\", flush_interval: 50ms}}\n");
        pipelines += &format!(
            "    traces/{name}: {{receivers: [otlp], processors: [tail_sampling/{name}], exporters: [file/{name}]}}\n"
        );
    }
    format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:otlp}}"}}}}}}
processors:
{processors}exporters:
{exporters}extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
{pipelines}"#
    )
}

/// A small deterministic generator (splitmix64), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Requests of spans with the values the policies look at, spread over two resources, some
/// traces split across two requests. Returns the bodies and every trace id (hex).
fn requests(traces: u64) -> (Vec<Vec<u8>>, BTreeSet<String>) {
    let mut rng = Rng(23);
    let mut ids = BTreeSet::new();
    // Per request: the spans of each resource.
    let mut requests: Vec<[Vec<Span>; 2]> = vec![Default::default(); (traces / 40 + 2) as usize];
    for t in 0..traces {
        let trace_id = (u128::from(rng.next()) << 64 | u128::from(rng.next()))
            .to_be_bytes()
            .to_vec();
        ids.insert(hex(&trace_id));
        let n = 1 + rng.below(4);
        let request = (t / 40) as usize;
        for i in 0..n {
            let start = T0 + t * MS + rng.below(50) * MS;
            let mut attributes = Vec::new();
            match rng.below(4) {
                0 => attributes.push(kv(
                    "profile.cpu_ns_total",
                    Value::IntValue((rng.below(100) * MS) as i64),
                )),
                1 => attributes.push(kv(
                    "profile.cpu_ns_total",
                    Value::DoubleValue(rng.below(100) as f64 * 1e6),
                )),
                _ => {}
            }
            let routes = ["/checkout", "/health", "/cart/checkout", "", "/cart"];
            if rng.below(3) > 0 {
                attributes.push(kv(
                    "http.route",
                    Value::StringValue(routes[rng.below(5) as usize].into()),
                ));
            }
            if rng.below(3) == 0 {
                attributes.push(kv("retry", Value::BoolValue(rng.below(2) == 0)));
            }
            let span = Span {
                trace_id: trace_id.clone(),
                span_id: rng.next().max(1).to_be_bytes().to_vec(),
                name: format!("op {i}"),
                start_time_unix_nano: start,
                end_time_unix_nano: start + rng.below(300) * MS + rng.below(MS),
                attributes,
                status: match rng.below(3) {
                    0 => None,
                    code => Some(Status {
                        code: code as i32,
                        ..Default::default()
                    }),
                },
                ..Default::default()
            };
            // A fifth of the traces continue in the next request.
            let r = if i > 0 && t % 5 == 0 { request + 1 } else { request };
            requests[r][rng.below(2) as usize].push(span);
        }
    }
    let resource = |service: &str, env: &str| {
        Some(Resource {
            attributes: vec![
                kv("service.name", Value::StringValue(service.into())),
                kv("deployment.environment", Value::StringValue(env.into())),
            ],
            ..Default::default()
        })
    };
    let bodies = requests
        .into_iter()
        .filter(|r| r.iter().any(|s| !s.is_empty()))
        .map(|[shop, db]| {
            let resource_spans = [(resource("shop", "prod"), shop), (resource("db", "dev"), db)]
                .into_iter()
                .filter(|(_, spans)| !spans.is_empty())
                .map(|(resource, spans)| ResourceSpans {
                    resource,
                    scope_spans: vec![ScopeSpans {
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect();
            TracesBatch::from_resource_spans(resource_spans).encode(Encoding::Protobuf)
        })
        .collect();
    (bodies, ids)
}

#[test]
fn otelcol_and_hotspan_keep_the_same_traces() -> Result<()> {
    let config = peer_config("1s");
    let mut otelcol = start_otelcol(&config)?;
    let mut hotspan = Hotspan::start(&config)?;
    let (bodies, ids) = requests(400);
    for body in &bodies {
        for port in [otelcol.port("otlp"), hotspan.port("otlp")] {
            let answer = post(
                &format!("http://127.0.0.1:{port}/v1/traces"),
                "application/x-protobuf",
                None,
                body.clone(),
            )?;
            ensure!(
                answer.status == 200,
                "port {port}: {} {}",
                answer.status,
                answer.body
            );
        }
    }
    // Both decide whatever still waits when they stop.
    ensure!(otelcol.terminate()?.success(), "otelcol exit\n{}", otelcol.log());
    ensure!(hotspan.terminate()?.success(), "hotspan exit\n{}", hotspan.log());

    let names = POLICIES.iter().map(|(n, _)| *n).chain(["dropper"]);
    let mut report = Vec::new();
    for name in names {
        let file = format!("{name}.jsonl");
        let theirs: BTreeSet<String> = traces_in(&otelcol.path(&file))?.into_keys().collect();
        let ours = traces_in(&hotspan.path(&file))?;
        ensure!(
            ours.keys().cloned().collect::<BTreeSet<_>>() == theirs,
            "{name}: otelcol kept {} traces, hotspan {}; only otelcol: {:?}; only hotspan: {:?}",
            theirs.len(),
            ours.len(),
            theirs
                .difference(&ours.keys().cloned().collect())
                .collect::<Vec<_>>(),
            ours.keys().filter(|t| !theirs.contains(*t)).collect::<Vec<_>>()
        );
        // Each policy tells traces apart: some kept, some not.
        ensure!(
            !theirs.is_empty() && theirs.len() < ids.len(),
            "{name}: kept {} of {}",
            theirs.len(),
            ids.len()
        );
        report.push(format!("{name} {}", theirs.len()));
    }
    println!("kept of {}: {}", ids.len(), report.join(", "));
    Ok(())
}

#[test]
fn the_gateway_examples_tail_sampling_validates() -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples/gateway.yaml");
    let text = std::fs::read_to_string(&path)?;
    ensure!(
        text.contains("  # tail_sampling:"),
        "gateway.yaml has no commented tail_sampling"
    );
    // Uncomment the block and put it in traces/out, as its comment says.
    let enabled: String = text
        .lines()
        .map(|l| match l.strip_prefix("  # ") {
            Some(rest) if rest.starts_with("tail_sampling:") || rest.starts_with("  ") => format!("  {rest}"),
            _ => l.to_string(),
        })
        .map(|l| l.replace("processors: [batch] #", "processors: [tail_sampling, batch] #"))
        .collect::<Vec<_>>()
        .join("\n");
    ensure!(
        enabled.contains("processors: [tail_sampling, batch]"),
        "{enabled}"
    );
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), &enabled)?;
    let out = std::process::Command::new(hotspan_tests::hotspan_bin())
        .args(["validate", "--config"])
        .arg(file.path())
        .output()?;
    ensure!(
        out.status.success(),
        "{}\n{enabled}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

// ---- bounds: num_traces, remembered decisions, late spans, through the binary ----

/// One span of each trace in `ids` (span id: the trace's index times 10, plus `n`).
fn spans_of(ids: &[Vec<u8>], n: u64) -> Vec<u8> {
    let spans = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Span {
            trace_id: id.clone(),
            span_id: (i as u64 * 10 + n + 1).to_be_bytes().to_vec(),
            name: format!("step {n}"),
            start_time_unix_nano: T0 + n * MS,
            end_time_unix_nano: T0 + (n + 1) * MS,
            ..Default::default()
        })
        .collect();
    TracesBatch::from_resource_spans(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", Value::StringValue("shop".into()))],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }])
    .encode(Encoding::Protobuf)
}

#[test]
fn past_num_traces_the_oldest_are_decided_early_and_their_late_spans_follow() -> Result<()> {
    const SALT2: &str = "bounds";
    let mut hotspan = Hotspan::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:otlp}}"}}}}}}
processors:
  tail_sampling:
    decision_wait: 60s
    num_traces: 20
    decision_cache: {{sampled_cache_size: 1000, non_sampled_cache_size: 1000}}
    policies: [{{name: half, type: probabilistic, probabilistic: {{hash_salt: {SALT2}, sampling_percentage: 50}}}}]
exporters:
  file: {{path: "{{dir}}/kept.jsonl", flush_interval: 50ms}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [tail_sampling], exporters: [file]}}
"#
    ))?;
    let url = format!("http://127.0.0.1:{}/v1/traces", hotspan.port("otlp"));
    let metrics_port = hotspan.port("metrics");
    let mut rng = Rng(7);
    let ids: Vec<Vec<u8>> = (0..50)
        .map(|_| {
            (u128::from(rng.next()) << 64 | u128::from(rng.next()))
                .to_be_bytes()
                .to_vec()
        })
        .collect();
    let picked: BTreeSet<String> = ids
        .iter()
        .filter(|id| otelcol_would_sample(SALT2, id, 50.0))
        .map(|id| hex(id))
        .collect();
    let early: BTreeSet<String> = ids[..30].iter().map(|id| hex(id)).collect();
    let picked_early = picked.intersection(&early).count();
    // The seed gives both outcomes among the early and the waiting traces.
    ensure!(
        (2..=28).contains(&picked_early),
        "{picked_early} of the early 30 picked"
    );
    ensure!(
        (2..=18).contains(&(picked.len() - picked_early)),
        "{} picked",
        picked.len()
    );

    // 50 new traces, one span each, in one request: the 30 oldest are decided at once.
    let answer = post(&url, "application/x-protobuf", None, spans_of(&ids, 0))?;
    ensure!(answer.status == 200, "{} {}", answer.status, answer.body);
    let series = |m: &str, name: &str, labels: &str| {
        metric(
            m,
            &format!("otelcol_processor_tail_sampling_{name}{{processor=\"tail_sampling\"{labels}}}"),
        )
    };
    wait_for(
        Duration::from_secs(20),
        "the early decisions' spans written",
        || {
            let spans = read_spans(&hotspan.path("kept.jsonl")).ok()?;
            (spans.len() == picked_early).then_some(())
        },
    )
    .with_context(|| hotspan.log())?;
    let m = scrape(metrics_port)?;
    ensure!(
        series(&m, "sampling_trace_dropped_too_early", "") == Some(30.0),
        "{m}"
    );
    ensure!(series(&m, "new_trace_id_received", "") == Some(50.0), "{m}");
    ensure!(series(&m, "sampling_traces_on_memory", "") == Some(20.0), "{m}");

    // A second span of every trace: those decided follow their decision at once, the others
    // join their waiting trace.
    let answer = post(&url, "application/x-protobuf", None, spans_of(&ids, 1))?;
    ensure!(answer.status == 200, "{} {}", answer.status, answer.body);
    wait_for(
        Duration::from_secs(20),
        "the late spans of sampled traces written",
        || {
            let spans = read_spans(&hotspan.path("kept.jsonl")).ok()?;
            (spans.len() == 2 * picked_early).then_some(())
        },
    )
    .with_context(|| hotspan.log())?;
    let m = scrape(metrics_port)?;
    let late = |sampled: &str| {
        series(
            &m,
            "early_releases_from_cache_decision",
            &format!(",sampled=\"{sampled}\""),
        )
    };
    ensure!(late("true") == Some(picked_early as f64), "{m}");
    ensure!(late("false") == Some((30 - picked_early) as f64), "{m}");
    ensure!(series(&m, "sampling_traces_on_memory", "") == Some(20.0), "{m}");
    ensure!(series(&m, "new_trace_id_received", "") == Some(50.0), "{m}");

    // At shutdown the waiting 20 are decided with both their spans.
    ensure!(hotspan.terminate()?.success(), "hotspan exit\n{}", hotspan.log());
    let kept = traces_in(&hotspan.path("kept.jsonl"))?;
    ensure!(
        kept.keys().cloned().collect::<BTreeSet<_>>() == picked,
        "kept {:?}, picked {picked:?}",
        kept.keys()
    );
    for (trace, spans) in &kept {
        ensure!(
            spans.len() == 2,
            "trace {trace} came out with {} spans",
            spans.len()
        );
    }
    Ok(())
}

#[test]
fn an_unknown_policy_type_is_a_config_error_naming_the_known_ones() -> Result<()> {
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(
        file.path(),
        r#"
receivers:
  otlp: {protocols: {http: {endpoint: "127.0.0.1:4318"}}}
processors:
  tail_sampling:
    policies: [{name: a, type: latency, latency: {threshold_ms: 10}}, {name: b, type: slowest_first}]
exporters:
  debug: {}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [tail_sampling], exporters: [debug]}
"#,
    )?;
    let out = std::process::Command::new(hotspan_tests::hotspan_bin())
        .args(["validate", "--config"])
        .arg(file.path())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "validated: {stderr}");
    ensure!(
        stderr.contains("processors.tail_sampling") && stderr.contains("policies[1]"),
        "{stderr}"
    );
    ensure!(
        stderr.contains("unknown sampling policy type \"slowest_first\""),
        "{stderr}"
    );
    for known in [
        "always_sample",
        "latency",
        "numeric_attribute",
        "probabilistic",
        "status_code",
        "string_attribute",
        "boolean_attribute",
        "span_count",
        "rate_limiting",
        "and",
        "drop",
        "composite",
    ] {
        ensure!(stderr.contains(known), "{known} not listed: {stderr}");
    }
    Ok(())
}
