//! hotspan's `load_balancing` exporter sends each trace to the backend the OpenTelemetry
//! Collector's own `load_balancing` exporter (opentelemetry-collector-contrib, run by
//! `tests/lbpeer`) sends it to, by trace id and by service: a routing tier that mixes the two
//! (a migration, one instance at a time) must not split a trace between gateways.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hotspan_tests::goservice::build_go_program;
use hotspan_tests::{hex, post, read_spans, wait_for, Hotspan};

const TRACES: u32 = 300;
const BACKENDS: usize = 3;
/// Routing keys, as both exporters name them.
const KEYS: [&str; 2] = ["traceID", "service"];
/// Who routed a span, the first byte of its id.
const HOTSPAN: u8 = 1;
const OTELCOL: u8 = 2;

/// Trace `i`'s id: varied in every byte, as real ids are (splitmix64).
fn trace_id(i: u32) -> [u8; 16] {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let (a, b) = (mix(u64::from(i)), mix(u64::from(i) + (1 << 40)));
    let mut id = [0; 16];
    id[..8].copy_from_slice(&a.to_be_bytes());
    id[8..].copy_from_slice(&b.to_be_bytes());
    id
}

/// Span ids say who routed the span, by which key, for which trace.
fn span_id(router: u8, key: usize, i: u32) -> [u8; 8] {
    let mut id = [router, key as u8, 0, 0, 0, 0, 0, 0];
    id[4..].copy_from_slice(&i.to_be_bytes());
    id
}

fn service(i: u32) -> String {
    format!("svc-{}", i % 40)
}

#[test]
fn hotspan_and_otelcol_route_each_trace_to_the_same_backend() -> Result<()> {
    let lbpeer = build_go_program("lbpeer");
    // The backends: three OTLP/gRPC receivers, each writing its own file.
    let mut backends = String::from("receivers:\n");
    for b in 0..BACKENDS {
        backends +=
            &format!("  otlp/b{b}: {{protocols: {{grpc: {{endpoint: \"127.0.0.1:{{port:b{b}}}\"}}}}}}\n");
    }
    backends += "exporters:\n";
    for b in 0..BACKENDS {
        backends += &format!("  file/b{b}: {{path: \"{{dir}}/b{b}.jsonl\", flush_interval: 50ms}}\n");
    }
    backends += "extensions:\n  health_check: {endpoint: \"127.0.0.1:{port:health}\"}\nservice:\n  extensions: [health_check]\n  pipelines:\n";
    for b in 0..BACKENDS {
        backends += &format!("    traces/b{b}: {{receivers: [otlp/b{b}], exporters: [file/b{b}]}}\n");
    }
    let backends = Hotspan::start(&backends)?;
    let endpoints: Vec<String> = (0..BACKENDS)
        .map(|b| format!("127.0.0.1:{}", backends.port(&format!("b{b}"))))
        .collect();

    // hotspan's routing tier: one receiver and load_balancing exporter per routing key.
    let hostnames = endpoints
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let router = Hotspan::start(&format!(
        r#"
receivers:
  otlp/traceID: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:traceID}}"}}}}}}
  otlp/service: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:service}}"}}}}}}
exporters:
  load_balancing/traceID:
    routing_key: traceID
    resolver: {{static: {{hostnames: [{hostnames}]}}}}
    protocol: {{otlp: {{tls: {{insecure: true}}}}}}
  load_balancing/service:
    routing_key: service
    resolver: {{static: {{hostnames: [{hostnames}]}}}}
    protocol: {{otlp: {{tls: {{insecure: true}}}}}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces/traceID: {{receivers: [otlp/traceID], exporters: [load_balancing/traceID]}}
    traces/service: {{receivers: [otlp/service], exporters: [load_balancing/service]}}
"#
    ))?;

    for (k, key) in KEYS.iter().enumerate() {
        // Through hotspan: every trace in one request, which the exporter splits.
        let resource_spans: Vec<String> = (0..TRACES)
            .map(|i| {
                format!(
                    r#"{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{}"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"{}","spanId":"{}","name":"routed","startTimeUnixNano":"1","endTimeUnixNano":"2"}}]}}]}}"#,
                    service(i),
                    hex(&trace_id(i)),
                    hex(&span_id(HOTSPAN, k, i))
                )
            })
            .collect();
        let body = format!(r#"{{"resourceSpans":[{}]}}"#, resource_spans.join(","));
        let answer = post(
            &format!("http://127.0.0.1:{}/v1/traces", router.port(key)),
            "application/json",
            None,
            body.into_bytes(),
        )?;
        ensure!(answer.status == 200, "{} {}", answer.status, answer.body);

        // Through otelcol's exporter: one request a trace.
        let mut peer = Command::new(&lbpeer)
            .args(["-endpoints", &endpoints.join(","), "-routing-key", key])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running lbpeer")?;
        let mut input = String::new();
        for i in 0..TRACES {
            input += &format!(
                "{} {} {}\n",
                hex(&trace_id(i)),
                hex(&span_id(OTELCOL, k, i)),
                service(i)
            );
        }
        peer.stdin
            .take()
            .context("lbpeer's stdin")?
            .write_all(input.as_bytes())?;
        let output = peer.wait_with_output()?;
        ensure!(
            output.status.success() && String::from_utf8_lossy(&output.stdout).trim() == TRACES.to_string(),
            "lbpeer ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // Where each span arrived: (router, key, trace) -> backend.
    let expected = 2 * KEYS.len() * TRACES as usize;
    let arrived = wait_for(Duration::from_secs(30), "every span at a backend", || {
        let mut arrived: BTreeMap<(u8, u8, u32), usize> = BTreeMap::new();
        for b in 0..BACKENDS {
            for id in read_spans(&backends.path(&format!("b{b}.jsonl")))
                .ok()?
                .into_keys()
            {
                let trace = u32::from_be_bytes([id[4], id[5], id[6], id[7]]);
                arrived.insert((id[0], id[1], trace), b);
            }
        }
        (arrived.len() == expected).then_some(arrived)
    })
    .with_context(|| format!("{}\n{}", router.log(), backends.log()))?;

    for (k, key) in KEYS.iter().enumerate() {
        let mut per_backend = [0usize; BACKENDS];
        for i in 0..TRACES {
            let by_otelcol = arrived[&(OTELCOL, k as u8, i)];
            let by_hotspan = arrived[&(HOTSPAN, k as u8, i)];
            ensure!(
                by_otelcol == by_hotspan,
                "by {key}, trace {} (service {}) went to backend {by_otelcol} from otelcol, {by_hotspan} from hotspan",
                hex(&trace_id(i)),
                service(i)
            );
            per_backend[by_hotspan] += 1;
        }
        // A ring that sent everything to one backend would agree trivially.
        ensure!(
            per_backend.iter().all(|&n| n >= TRACES as usize / 10),
            "by {key}, the backends got {per_backend:?}"
        );
    }
    Ok(())
}
