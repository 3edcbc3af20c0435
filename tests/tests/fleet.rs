//! A gateway fleet on loopback: routing instances with the `load_balancing` exporter in front
//! of three gateways that join with `spanprofile`. The fleet's annotations equal a single
//! instance's on the same input (the real Go service's spans and scraped CPU profiles), and a
//! gateway killed mid-run loses nothing the routing tier acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hotspan_proto::otlp::common::v1::any_value;
use hotspan_proto::otlp::trace::v1::Span;
use hotspan_tests::goservice::{GoOptions, GoService, LabelStyle};
use hotspan_tests::profiles::read_profiles;
use hotspan_tests::{
    free_port, hex, json_span_id, json_spans, metric, post, read_spans, scrape, wait_for, Hotspan,
};

/// A gateway (and the single reference instance): OTLP/gRPC in, the join, spans to a file;
/// with `profiles`, the joined profiles to a file too.
fn gateway_config(port: u16, profiles: bool) -> String {
    let (exporter, pipeline) = if profiles {
        (
            r#"  file/profiles: {path: "{dir}/profiles.jsonl", flush_interval: 50ms}"#,
            "    profiles/out: {receivers: [spanprofile], exporters: [file/profiles]}",
        )
    } else {
        ("", "")
    };
    format!(
        r#"
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{port}"}}}}}}
connectors:
  spanprofile: {{wait: 4s}}
exporters:
  file/traces: {{path: "{{dir}}/traces.jsonl", flush_interval: 50ms}}
{exporter}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces/in: {{receivers: [otlp], exporters: [spanprofile]}}
    profiles/in: {{receivers: [otlp], exporters: [spanprofile]}}
    traces/out: {{receivers: [spanprofile], exporters: [file/traces]}}
{pipeline}
"#
    )
}

/// The `load_balancing` exporter over `gateways`, retrying quickly and never giving up.
fn load_balancing(gateways: &[u16]) -> String {
    let hostnames: Vec<String> = gateways.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    format!(
        r#"  load_balancing:
    routing_key: traceID
    resolver: {{static: {{hostnames: [{}]}}}}
    protocol:
      otlp:
        tls: {{insecure: true}}
        timeout: 2s
        retry_on_failure: {{initial_interval: 50ms, max_interval: 300ms, max_elapsed_time: 0s}}"#,
        hostnames.join(", ")
    )
}

fn routing_config(receivers: &str, signal: &str, gateways: &[u16], single: Option<u16>) -> String {
    let (single_exporter, single_name) = match single {
        Some(p) => (
            format!(
                r#"  otlp/single:
    endpoint: "127.0.0.1:{p}"
    tls: {{insecure: true}}
    retry_on_failure: {{initial_interval: 50ms, max_interval: 300ms, max_elapsed_time: 0s}}"#
            ),
            ", otlp/single",
        ),
        None => (String::new(), ""),
    };
    format!(
        r#"
receivers:
{receivers}
exporters:
{lb}
{single_exporter}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
  pipelines:
    {signal}: {{receivers: [{first}], exporters: [load_balancing{single_name}]}}
"#,
        lb = load_balancing(gateways),
        first = receivers.trim_start().split(':').next().unwrap_or_default(),
    )
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// The join's answer for a span: (profile.samples, profile.cpu_ns, profile.hot_path).
fn annotation(span: &Span) -> (i64, i64, String) {
    let int = |k| match attr(span, k) {
        Some(any_value::Value::IntValue(i)) => *i,
        _ => 0,
    };
    let hot_path = match attr(span, "profile.hot_path") {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        _ => String::new(),
    };
    (int("profile.samples"), int("profile.cpu_ns"), hot_path)
}

#[test]
fn a_fleet_behind_two_routing_instances_joins_exactly_as_one_instance_does() -> Result<()> {
    let gateway_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let single_port = free_port();
    let mut gateways = gateway_ports
        .iter()
        .map(|p| Hotspan::start(&gateway_config(*p, false)))
        .collect::<Result<Vec<_>>>()?;
    let mut single = Hotspan::start(&gateway_config(single_port, true))?;
    let http = free_port();
    let go_port = free_port();
    let mut spans_in = Hotspan::start(&routing_config(
        &format!(r#"  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{http}"}}}}}}"#),
        "traces",
        &gateway_ports,
        Some(single_port),
    ))?;
    let mut profiles_in = Hotspan::start(&routing_config(
        &format!(
            r#"  pprof_scrape:
    scrape_interval: 1s
    include_original_payload: true
    targets: [{{endpoint: "http://127.0.0.1:{go_port}", service_name: shop}}]"#
        ),
        "profiles",
        &gateway_ports,
        Some(single_port),
    ))?;
    let mut go = GoService::start(GoOptions {
        otlp_endpoint: Some(format!("http://127.0.0.1:{http}/v1/traces")),
        label_style: LabelStyle::All,
        workers: 2,
        listen_port: Some(go_port),
        ..Default::default()
    })?;
    // Three scrapes that saw the service at work, joined by the single instance.
    wait_for(Duration::from_secs(40), "three scraped profiles", || {
        (read_profiles(&single.path("profiles.jsonl")).ok()?.len() >= 3).then_some(())
    })?;
    ensure!(go.stop()?.success(), "go service exit");
    // The last scrape in flight may still land. Then the routing tier drains into the fleet and
    // the single instance alike, and graceful stops flush every held span.
    std::thread::sleep(Duration::from_millis(1500));
    for routing in [&mut spans_in, &mut profiles_in] {
        ensure!(routing.terminate()?.success(), "routing exit\n{}", routing.log());
    }
    for h in gateways.iter_mut().chain([&mut single]) {
        ensure!(h.terminate()?.success(), "exit\n{}", h.log());
    }

    let truth = go.truth()?;
    let want: BTreeMap<Vec<u8>, Span> = read_spans(&single.path("traces.jsonl"))?
        .into_iter()
        .map(|(id, f)| (id, f.span))
        .collect();
    ensure!(
        want.len() == truth.len(),
        "single instance: {} spans, the service made {}",
        want.len(),
        truth.len()
    );
    let mut fleet: BTreeMap<Vec<u8>, Span> = BTreeMap::new();
    let mut traces_per_gateway = Vec::new();
    for g in &gateways {
        let spans = read_spans(&g.path("traces.jsonl"))?;
        let traces: BTreeSet<Vec<u8>> = spans.values().map(|f| f.span.trace_id.clone()).collect();
        traces_per_gateway.push(traces);
        for (id, f) in spans {
            ensure!(
                fleet.insert(id.clone(), f.span).is_none(),
                "span {} reached two gateways",
                hex(&id)
            );
        }
    }
    for (i, a) in traces_per_gateway.iter().enumerate() {
        ensure!(!a.is_empty(), "gateway {i} got no traces: no load spread");
        for b in &traces_per_gateway[i + 1..] {
            ensure!(a.is_disjoint(b), "a trace was split across gateways");
        }
    }
    ensure!(
        fleet.keys().eq(want.keys()),
        "fleet output {} spans, single {}",
        fleet.len(),
        want.len()
    );
    let mut with_samples = 0;
    for (id, single_span) in &want {
        let expected = annotation(single_span);
        let got = annotation(&fleet[id]);
        ensure!(
            got == expected,
            "span {} ({}): fleet {got:?}, single instance {expected:?}",
            hex(id),
            single_span.name
        );
        if expected.0 > 0 {
            with_samples += 1;
        }
    }
    ensure!(with_samples >= 10, "only {with_samples} spans got samples");
    Ok(())
}

/// Span ids a gateway logged through its `debug` exporter: that happens before the gateway
/// answers, and stderr is unbuffered, so it holds everything the gateway acknowledged even
/// after a SIGKILL (its file exporter's buffer would not).
fn logged_span_ids(h: &Hotspan) -> Vec<Vec<u8>> {
    let log = h.log();
    log.match_indices("span_id=")
        .filter_map(|(at, m)| log.get(at + m.len()..at + m.len() + 16))
        .filter_map(|h| u64::from_str_radix(h, 16).ok())
        .map(|id| id.to_be_bytes().to_vec())
        .collect()
}

#[test]
fn a_gateway_killed_mid_run_loses_nothing_the_routing_tier_acknowledged() -> Result<()> {
    let gateway_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut gateways = gateway_ports
        .iter()
        .map(|p| {
            Hotspan::start(&format!(
                r#"
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{p}"}}}}}}
exporters:
  debug: {{verbosity: normal}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [debug]}}
"#
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let routing = Hotspan::start(&routing_config(
        r#"  otlp: {protocols: {http: {endpoint: "127.0.0.1:{port:http}"}}}"#,
        "traces",
        &gateway_ports,
        None,
    ))?;
    let url = format!("http://127.0.0.1:{}/v1/traces", routing.port("http"));

    // One trace of four spans per request; the third gateway dies a third of the way in.
    let (requests, per_request) = (300u64, 4u64);
    let mut acked = BTreeSet::new();
    for r in 0..requests {
        if r == requests / 3 {
            wait_for(Duration::from_secs(10), "the doomed gateway to get spans", || {
                (!logged_span_ids(&gateways[2]).is_empty()).then_some(())
            })?;
            gateways[2].kill()?;
        }
        let body = json_spans("shop", r * per_request, per_request).into_bytes();
        let answer = post(&url, "application/json", None, body)?;
        if answer.status == 200 {
            acked.extend((r * per_request..(r + 1) * per_request).map(json_span_id));
        }
    }
    ensure!(
        acked.len() as u64 == requests * per_request,
        "the routing tier refused some: {} of {} acknowledged",
        acked.len(),
        requests * per_request
    );

    let mut missing = 0;
    let mut counts: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    wait_for(
        Duration::from_secs(20),
        "every acknowledged span at a gateway",
        || {
            counts.clear();
            for g in &gateways {
                for id in logged_span_ids(g) {
                    *counts.entry(id).or_default() += 1;
                }
            }
            missing = acked.iter().filter(|id| !counts.contains_key(*id)).count();
            (missing == 0).then_some(())
        },
    )
    .with_context(|| format!("{missing} acknowledged spans never arrived\n{}", routing.log()))?;
    let duplicates = counts.values().filter(|&&n| n > 1).count();
    let killed = logged_span_ids(&gateways[2]).len();
    let survivors: usize = gateways[..2].iter().map(|g| logged_span_ids(g).len()).sum();
    eprintln!("killed gateway took {killed} spans, survivors {survivors}, {duplicates} duplicated");
    ensure!(killed > 0 && survivors > 0);
    let failed = metric(
        &scrape(routing.port("metrics"))?,
        r#"otelcol_exporter_send_failed_spans{exporter="load_balancing"}"#,
    )
    .unwrap_or(0.0);
    ensure!(failed == 0.0, "the routing tier dropped {failed} spans");
    ensure!(
        routing.log().contains("routing its data to the others"),
        "the dead gateway was never marked down"
    );
    Ok(())
}
