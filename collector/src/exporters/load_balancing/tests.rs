use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};

use hotspan_config::ComponentConfig;
use hotspan_proto::otlp::collector::profiles::v1development::ExportProfilesServiceRequest;
use hotspan_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use hotspan_proto::otlp::profiles::v1development::{
    KeyValueAndUnit, Link, Profile, ProfilesDictionary, ResourceProfiles, Sample, ScopeProfiles,
};
use hotspan_proto::otlp::resource::v1::Resource;
use hotspan_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
use hotspan_proto::{ProfilesBatch, TracesBatch};

use super::*;

fn backends(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("10.0.0.{i}:4317")).collect()
}

fn trace(i: u128) -> Vec<u8> {
    (i * 0x9e37_79b9_7f4a_7c15 + 1).to_be_bytes().to_vec()
}

fn owner_name(ring: &Ring, key: &[u8]) -> String {
    ring.backends()[ring.owner(key).expect("owner")].clone()
}

#[test]
fn the_ring_spreads_keys_and_a_leaving_backend_moves_only_its_own() {
    let full = Ring::new(backends(4));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..20_000 {
        *counts.entry(owner_name(&full, &trace(i))).or_default() += 1;
    }
    assert_eq!(counts.len(), 4);
    for (b, n) in &counts {
        assert!((3_000..7_000).contains(n), "{b} owns {n} of 20000");
    }
    // Listed in another order: same owners.
    let mut reversed = backends(4);
    reversed.reverse();
    let same = Ring::new(reversed);
    let mut without = backends(4);
    without.remove(2);
    let smaller = Ring::new(without);
    for i in 0..20_000 {
        let key = trace(i);
        let before = owner_name(&full, &key);
        assert_eq!(owner_name(&same, &key), before);
        if before != "10.0.0.2:4317" {
            assert_eq!(owner_name(&smaller, &key), before, "a key moved needlessly");
        }
    }
    assert_eq!(Ring::new(vec![]).owner(b"x"), None);
}

fn span(trace_id: &[u8], id: u64) -> Span {
    Span {
        trace_id: trace_id.to_vec(),
        span_id: id.to_be_bytes().to_vec(),
        name: format!("op {id}"),
        ..Default::default()
    }
}

fn service(name: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(name.into())),
            }),
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn spans_of(batch: &Batch) -> Vec<Span> {
    match batch {
        Batch::Traces(t) => t
            .resource_spans()
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| ss.spans.clone())
            .collect(),
        _ => Vec::new(),
    }
}

#[test]
fn spans_go_to_the_owner_of_their_trace_and_none_is_lost() {
    let ring = Ring::new(backends(3));
    let spans: Vec<Span> = (0..300).map(|i| span(&trace(i as u128 / 3), i)).collect();
    let batch = Batch::Traces(TracesBatch::from_resource_spans(vec![ResourceSpans {
        resource: service("shop"),
        scope_spans: vec![ScopeSpans {
            spans: spans.clone(),
            ..Default::default()
        }],
        ..Default::default()
    }]));
    let parts = split::split(&batch, RoutingKey::TraceId, &ring);
    assert_eq!(parts.len(), 3);
    let mut seen = 0;
    for (b, part) in &parts {
        for s in spans_of(part) {
            assert_eq!(ring.owner(&s.trace_id), Some(*b));
            seen += 1;
        }
        assert_eq!(part.item_count(), spans_of(part).len());
    }
    assert_eq!(seen, 300);

    let by_service = split::split(&batch, RoutingKey::Service, &ring);
    assert_eq!(by_service.len(), 1);
    assert_eq!(by_service[0].0, ring.service_owner("shop").expect("owner"));
    assert_eq!(by_service[0].1, batch);
}

fn attr(d: &mut ProfilesDictionary, key: &str, value: &str) -> i32 {
    d.string_table.push(key.into());
    d.attribute_table.push(KeyValueAndUnit {
        key_strindex: d.string_table.len() as i32 - 1,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    });
    d.attribute_table.len() as i32 - 1
}

#[test]
fn samples_go_by_their_link_or_trace_id_label_and_the_rest_by_service() {
    let ring = Ring::new(backends(3));
    let mut dict = ProfilesDictionary {
        string_table: vec![String::new()],
        link_table: vec![Link::default()],
        ..Default::default()
    };
    let mut samples = Vec::new();
    let mut want = Vec::new();
    for i in 0..60u128 {
        let t = trace(i);
        let mut s = Sample {
            values: vec![i as i64 + 1],
            ..Default::default()
        };
        if i % 2 == 0 {
            dict.link_table.push(Link {
                trace_id: t.clone(),
                span_id: 1u64.to_be_bytes().to_vec(),
            });
            s.link_index = dict.link_table.len() as i32 - 1;
        } else {
            let hex = hex::encode(&t);
            s.attribute_indices.push(attr(&mut dict, "trace_id", &hex));
        }
        want.push((i as i64 + 1, ring.owner(&t)));
        samples.push(s);
    }
    // No trace id: by service.
    samples.push(Sample {
        values: vec![1000],
        ..Default::default()
    });
    want.push((1000, ring.service_owner("shop")));
    let batch = Batch::Profiles(ProfilesBatch::from_request(ExportProfilesServiceRequest {
        resource_profiles: vec![ResourceProfiles {
            resource: service("shop"),
            scope_profiles: vec![ScopeProfiles {
                profiles: vec![Profile {
                    samples,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
        dictionary: Some(dict),
    }));
    let parts = split::split(&batch, RoutingKey::TraceId, &ring);
    assert_eq!(parts.len(), 3);
    let mut got = BTreeSet::new();
    for (b, part) in &parts {
        let Batch::Profiles(p) = part else {
            panic!("profiles")
        };
        assert_eq!(p.dictionary(), batch_dict(&batch));
        for s in p
            .resource_profiles()
            .iter()
            .flat_map(|rp| &rp.scope_profiles)
            .flat_map(|sp| &sp.profiles)
            .flat_map(|p| &p.samples)
        {
            got.insert((s.values[0], Some(*b)));
        }
    }
    assert_eq!(got, want.into_iter().collect());
}

fn batch_dict(b: &Batch) -> Option<&ProfilesDictionary> {
    match b {
        Batch::Profiles(p) => p.dictionary(),
        _ => None,
    }
}

fn config(yaml: &str) -> Result<LoadBalancingConfig, Vec<hotspan_config::FieldError>> {
    hotspan_config::parse_yaml(yaml)
}

#[test]
fn config_takes_otelcols_keys_with_defaults_and_reports_problems_by_path() {
    let c = config(
        r#"
routing_key: traceID
resolver: {dns: {hostname: gateways.local}}
protocol:
  otlp: {tls: {insecure: true}, timeout: 2s, sending_queue: {queue_size: 10}}
"#,
    )
    .expect("valid");
    let dns = c.resolver.dns.as_ref().expect("dns");
    assert_eq!(
        (dns.port, dns.interval, dns.timeout),
        (4317, Duration::from_secs(5), Duration::from_secs(1))
    );
    assert_eq!(c.protocol.otlp.timeout, Duration::from_secs(2));
    assert_eq!(c.backend("a:1").endpoint, "a:1");

    let c =
        config("routing_key: service\nresolver: {static: {hostnames: [\"a:1\", \"b:2\"]}}").expect("valid");
    assert_eq!(c.routing_key, RoutingKey::Service);

    let paths = |yaml: &str| -> Vec<String> {
        config(yaml)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.path)
            .collect()
    };
    assert_eq!(paths("{}"), ["resolver"]);
    assert_eq!(
        paths("routing_key: spanID\nresolver: {static: {hostnames: [\"a:1\"]}}"),
        ["routing_key"]
    );
    assert_eq!(
        paths("resolver: {static: {hostnames: []}, dns: {hostname: x}}"),
        ["resolver", "resolver.static.hostnames"]
    );
    assert_eq!(
        paths("resolver: {static: {hostnames: [\"a:1\"]}}\nprotocol: {otlp: {endpoint: \"x:1\", retry_on_failure: {multiplier: 0.5}}}"),
        ["protocol.otlp.endpoint", "protocol.otlp.retry_on_failure.multiplier"]
    );
    assert_eq!(
        paths("resolver: {dns: {hostname: \"\", interval: 0s}}"),
        ["resolver.dns.hostname", "resolver.dns.interval"]
    );
    assert_eq!(
        paths("resolver: {dns: {hostname: x, interval: 1h0m1s, timeout: 2562047h}}"),
        ["resolver.dns.interval", "resolver.dns.timeout"]
    );
    assert_eq!(
        paths("resolver: {dns: {hostname: x, port: 0}}\nprotocol: {otlp: {timeout: 0s, sending_queue: {num_consumers: 1001}}}"),
        ["resolver.dns.port", "protocol.otlp.timeout", "protocol.otlp.sending_queue.num_consumers"]
    );
}

/// A backend that records span ids, or fails retryably while `down`.
struct Fake {
    down: AtomicBool,
    got: Mutex<Vec<Vec<u8>>>,
}

#[async_trait]
impl Exporter for Arc<Fake> {
    async fn export(&self, batch: &Batch) -> Result<(), ExportError> {
        if self.down.load(Ordering::Relaxed) {
            return Err(ExportError::retryable("connection refused"));
        }
        let mut got = self.got.lock().unwrap_or_else(|p| p.into_inner());
        got.extend(spans_of(batch).into_iter().map(|s| s.span_id));
        Ok(())
    }
}

#[test]
fn a_static_hostname_without_a_port_is_on_4317() {
    let config =
        config("resolver: {static: {hostnames: [a, \"b:1\", \"[::1]\", \"10.0.0.1\"]}}").expect("valid");
    let hostnames = config
        .resolver
        .static_list
        .map(|s| s.hostnames)
        .unwrap_or_default();
    let dialled: Vec<String> = hostnames.iter().map(|h| config::dial_address(h)).collect();
    assert_eq!(dialled, ["a:4317", "b:1", "[::1]:4317", "10.0.0.1:4317"]);
    // The ring names them as written, as otelcol's does: "a", not "a:4317".
    let ring = Ring::new(hostnames.clone());
    let mut written = hostnames;
    written.sort();
    assert_eq!(ring.backends(), written.as_slice());
}

fn balancer(fakes: &[Arc<Fake>]) -> LoadBalancer {
    let config = config("resolver: {static: {hostnames: [\"unused:1\"]}}").expect("valid");
    let lb = LoadBalancer {
        name: "load_balancing".into(),
        routing_key: RoutingKey::TraceId,
        retry: RetryConfig {
            initial_interval: Duration::from_millis(5),
            max_elapsed_time: Duration::from_secs(2),
            ..Default::default()
        },
        auth: None,
        dns: None,
        members: Mutex::new(Members::default()),
        stop: CancellationToken::new(),
        shutdown: std::sync::OnceLock::new(),
        shutting_down: CancellationToken::new(),
        config,
    };
    {
        let mut members = lb.members.lock().expect("lock");
        for (i, f) in fakes.iter().enumerate() {
            let endpoint = backends(fakes.len())[i].clone();
            members.backends.insert(
                endpoint.clone(),
                Arc::new(Backend {
                    endpoint,
                    exporter: Arc::new(f.clone()),
                    down_until: Mutex::new(None),
                }),
            );
        }
    }
    lb
}

fn many_traces(n: u64) -> Batch {
    let spans: Vec<Span> = (0..n).map(|i| span(&trace(i as u128), i + 1)).collect();
    Batch::Traces(TracesBatch::from_resource_spans(vec![ResourceSpans {
        resource: service("shop"),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }]))
}

#[tokio::test]
async fn a_failing_backends_share_is_rerouted_to_the_others_and_nothing_is_lost() {
    let fakes: Vec<Arc<Fake>> = (0..3)
        .map(|_| {
            Arc::new(Fake {
                down: AtomicBool::new(false),
                got: Mutex::new(Vec::new()),
            })
        })
        .collect();
    let lb = balancer(&fakes);
    lb.export(&many_traces(90)).await.expect("sent");
    assert!(
        fakes.iter().all(|f| !f.got.lock().expect("lock").is_empty()),
        "all three get a share"
    );

    fakes[1].down.store(true, Ordering::Relaxed);
    for f in &fakes {
        f.got.lock().expect("lock").clear();
    }
    lb.export(&many_traces(90)).await.expect("re-routed");
    let total: usize = fakes.iter().map(|f| f.got.lock().expect("lock").len()).sum();
    assert_eq!(total, 90, "every span once, none to the down backend");
    assert!(fakes[1].got.lock().expect("lock").is_empty());
    assert_eq!(
        lb.view().backends.len(),
        2,
        "the failed backend is out of the ring"
    );

    // All down: retried with backoff until retry time runs out, then a retryable error.
    for f in &fakes {
        f.down.store(true, Ordering::Relaxed);
    }
    let err = lb.export(&many_traces(9)).await.expect_err("nobody up");
    assert!(matches!(err, ExportError::Retryable { .. }), "{err}");
}

#[tokio::test]
async fn data_waits_while_every_backend_is_down_and_goes_when_one_returns() {
    let fakes: Vec<Arc<Fake>> = (0..2)
        .map(|_| {
            Arc::new(Fake {
                down: AtomicBool::new(true),
                got: Mutex::new(Vec::new()),
            })
        })
        .collect();
    let lb = Arc::new(balancer(&fakes));
    let sending = tokio::spawn({
        let lb = lb.clone();
        async move { lb.export(&many_traces(20)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    fakes[0].down.store(false, Ordering::Relaxed);
    sending
        .await
        .expect("task")
        .expect("sent once a backend returned");
    assert_eq!(fakes[0].got.lock().expect("lock").len(), 20);
}

/// Shutdown cuts the retrying short, as the runtime's own retry: at once when the runtime
/// keeps the batch, else by the deadline, so no worker is cut off mid-batch at the deadline.
#[tokio::test]
async fn retrying_while_every_backend_is_down_ends_with_shutdown() {
    for keep in [false, true] {
        let fakes = vec![Arc::new(Fake {
            down: AtomicBool::new(true),
            got: Mutex::new(Vec::new()),
        })];
        let lb = Arc::new(LoadBalancingExporter(Arc::new(balancer(&fakes))));
        let sending = tokio::spawn({
            let lb = lb.clone();
            async move { lb.export(&many_traces(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let began = Instant::now();
        let deadline = began + Duration::from_millis(300);
        lb.begin_shutdown(deadline, keep);
        let err = sending.await.expect("task").expect_err("nobody up");
        let took = began.elapsed();
        assert!(matches!(err, ExportError::Retryable { .. }), "{err}");
        // Retrying would otherwise go on for its 2 s; the bounds leave room for a busy machine.
        let bound = if keep {
            Duration::from_millis(900)
        } else {
            Duration::from_millis(1200)
        };
        assert!(took < bound, "keep {keep}: gave up {took:?} after shutdown began");
    }
}

#[test]
fn validate_uses_the_per_backend_checks() {
    let c = LoadBalancingConfig::default();
    let mut errs = Vec::new();
    c.validate(&mut errs);
    assert!(errs.iter().any(|e| e.path == "resolver"));
}

#[tokio::test]
async fn the_dns_resolver_makes_every_address_a_backend_and_follows_changes() {
    let mut lb = balancer(&[]);
    let dns = DnsResolver {
        hostname: "localhost".into(),
        port: 14317,
        ..Default::default()
    };
    lb.dns = Some(dns.clone());
    lb.refresh(&dns).await;
    let first = lb.view().ring.backends().to_vec();
    assert!(first.contains(&"127.0.0.1:14317".to_string()), "{first:?}");
    // A lookup that fails keeps what there was.
    let broken = DnsResolver {
        hostname: "no-such-host.invalid".into(),
        ..dns
    };
    lb.refresh(&broken).await;
    assert_eq!(lb.view().ring.backends(), first.as_slice());
}

/// otelcol's exporters write a profile's resource attributes as string-table references:
/// routing by service must read them as it reads inline ones.
#[test]
fn profiles_go_by_service_whether_it_is_inline_or_a_string_reference() {
    let ring = Ring::new(backends(3));
    let mut dict = ProfilesDictionary {
        string_table: vec![String::new(), "service.name".into()],
        ..Default::default()
    };
    let mut resource_profiles = Vec::new();
    let mut want = BTreeSet::new();
    for i in 0..30i64 {
        let name = format!("svc-{i}");
        let resource = if i % 2 == 0 {
            service(&name)
        } else {
            dict.string_table.push(name.clone());
            Some(Resource {
                attributes: vec![KeyValue {
                    key_strindex: 1,
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValueStrindex(
                            dict.string_table.len() as i32 - 1,
                        )),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            })
        };
        want.insert((i, ring.service_owner(&name).expect("owner")));
        resource_profiles.push(ResourceProfiles {
            resource,
            scope_profiles: vec![ScopeProfiles {
                profiles: vec![Profile {
                    samples: vec![Sample {
                        values: vec![i],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    let batch = Batch::Profiles(ProfilesBatch::from_request(ExportProfilesServiceRequest {
        resource_profiles,
        dictionary: Some(dict),
    }));
    let mut got = BTreeSet::new();
    for (b, part) in split::split(&batch, RoutingKey::Service, &ring) {
        let Batch::Profiles(p) = part else {
            panic!("profiles")
        };
        for s in p
            .resource_profiles()
            .iter()
            .flat_map(|rp| &rp.scope_profiles)
            .flat_map(|sp| &sp.profiles)
            .flat_map(|p| &p.samples)
        {
            got.insert((s.values[0], b));
        }
    }
    assert_eq!(got, want);
}
