use std::time::{Duration, Instant};

use hotspan_config::{parse_yaml, yaml_errors};
use hotspan_proto::otlp::common::v1::any_value::Value;
use hotspan_proto::otlp::resource::v1::Resource;
use hotspan_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use hotspan_proto::{Batch, TracesBatch};

use super::*;
use crate::spanprofile::fixtures::{kv, s, span_in, spans_by_id};

/// A processor from YAML; `decision_wait` 1s unless the text sets it.
fn processor(yaml: &str) -> TailSamplingProcessor {
    let text = if yaml.contains("decision_wait") {
        yaml.to_string()
    } else {
        format!("decision_wait: 1s\n{yaml}")
    };
    let config: TailSamplingConfig = parse_yaml(&text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
    TailSamplingProcessor::new(&config).unwrap()
}

/// One span of `trace` (ids derived from it), `ms` long, with span attributes.
fn span(trace: u128, n: u64, ms: u64, attrs: Vec<(&str, Value)>) -> Span {
    let mut s = span_in(
        trace,
        (trace as u64).wrapping_mul(100).wrapping_add(n),
        None,
        0,
        ms,
    );
    s.attributes = attrs.into_iter().map(|(k, v)| kv(k, v)).collect();
    s
}

fn batch_with(resource: Vec<(&str, Value)>, spans: Vec<Span>) -> Batch {
    Batch::Traces(TracesBatch::from_resource_spans(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: resource.into_iter().map(|(k, v)| kv(k, v)).collect(),
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }]))
}

fn batch(spans: Vec<Span>) -> Batch {
    batch_with(vec![("service.name", s("shop"))], spans)
}

/// Trace ids in `out`, sorted, each with its span count.
fn kept(out: &[Batch]) -> Vec<(u128, usize)> {
    let mut counts = std::collections::BTreeMap::new();
    for b in out {
        let Batch::Traces(t) = b else { panic!("not traces") };
        for r in t.raw() {
            for sc in r.scopes() {
                for sp in sc.spans() {
                    *counts.entry(sp.index.trace_id).or_insert(0) += 1;
                }
            }
        }
    }
    counts.into_iter().collect()
}

/// Feeds `batches` at `t0`, then decides everything at `t0 + 1s`: the trace ids kept.
fn run(p: &mut TailSamplingProcessor, batches: Vec<Batch>) -> Vec<u128> {
    let t0 = Instant::now();
    let mut out = Vec::new();
    for b in batches {
        p.process_at(b, t0, &mut out);
    }
    assert!(out.is_empty(), "nothing leaves before its decision");
    p.on_deadline(t0 + Duration::from_secs(1), &mut out);
    kept(&out).into_iter().map(|(id, _)| id).collect()
}

#[test]
fn probabilistic_matches_otelcols_hash_and_threshold() {
    // Computed by otelcol v0.165's own code path (Go's hash/fnv and math/big, as in
    // calculateThreshold and hashTraceID): percentage -> threshold.
    let thresholds: [(f64, u64); 13] = [
        (0.0, 0),
        (0.001, 184467440737095),
        (1.0, 184467440737095519),
        (10.0, 1844674407370955263),
        (12.5, 2305843009213693951),
        (25.0, 4611686018427387903),
        (33.333, 6148853202089604095),
        (50.0, 9223372036854775807),
        (66.6, 12285531553090559999),
        (99.99, 18444899399302178815),
        (100.0, u64::MAX),
        (150.0, u64::MAX),
        (1e-300, 0),
    ];
    for (percent, want) in thresholds {
        assert_eq!(probabilistic::threshold(percent / 100.0), want, "{percent}%");
    }
    let id = |i: u8| -> [u8; 16] { std::array::from_fn(|j| i * 37 + j as u8 * 11 + 1) };
    let hashes = [
        ("default-hash-seed", 0, 6566297655744022269u64),
        ("default-hash-seed", 1, 1401896135286499085),
        ("default-hash-seed", 2, 11334519226201433629),
        ("hotspan", 0, 14330360684109106572),
        ("hotspan", 1, 17407644002136437708),
        ("hotspan", 2, 14747979223362557292),
    ];
    for (salt, i, want) in hashes {
        assert_eq!(probabilistic::hash(salt.as_bytes(), &id(i)), want, "{salt} {i}");
    }
}

#[test]
fn probabilistic_keeps_about_its_share_and_agrees_across_instances() {
    let config =
        "policies: [{name: p, type: probabilistic, probabilistic: {sampling_percentage: 25, hash_salt: s}}]";
    let traces: Vec<Batch> = (1..=2000u128)
        .map(|t| {
            batch(vec![span(
                t.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834),
                1,
                1,
                vec![],
            )])
        })
        .collect();
    let a = run(&mut processor(config), traces.clone());
    let b = run(&mut processor(config), traces);
    assert_eq!(a, b);
    assert!((400..600).contains(&a.len()), "kept {} of 2000 at 25%", a.len());
}

#[test]
fn latency_with_and_without_upper_bound() {
    let traces = || {
        vec![
            batch(vec![span(1, 1, 50, vec![])]),
            batch(vec![span(2, 1, 150, vec![])]),
            batch(vec![span(3, 1, 400, vec![])]),
        ]
    };
    let mut p = processor("policies: [{name: slow, type: latency, latency: {threshold_ms: 100}}]");
    assert_eq!(run(&mut p, traces()), vec![2, 3]);
    let mut p = processor(
        "policies: [{name: mid, type: latency, latency: {threshold_ms: 100, upper_threshold_ms: 200}}]",
    );
    assert_eq!(run(&mut p, traces()), vec![2]);
}

#[test]
fn latency_decides_as_otelcol_walks_the_spans() {
    // A trace whose first span alone is in (100, 200] ms is sampled, though the whole trace
    // spans 400 ms: otelcol stops at the first span that satisfies the bounds.
    let first = span_in(7, 1, None, 0, 150);
    let second = span_in(7, 2, Some(1), 0, 400);
    let mut p = processor(
        "policies: [{name: mid, type: latency, latency: {threshold_ms: 100, upper_threshold_ms: 200}}]",
    );
    assert_eq!(
        run(&mut p, vec![batch(vec![first.clone(), second.clone()])]),
        vec![7]
    );
    let mut p = processor(
        "policies: [{name: mid, type: latency, latency: {threshold_ms: 100, upper_threshold_ms: 200}}]",
    );
    assert_eq!(run(&mut p, vec![batch(vec![second, first])]), Vec::<u128>::new());
}

#[test]
fn numeric_attribute_reads_spans_and_resources_as_otelcol() {
    let cpu = |t: u128, v: Value| batch(vec![span(t, 1, 1, vec![("profile.cpu_ns_total", v)])]);
    let traces = vec![
        cpu(1, Value::IntValue(80_000_000)),
        cpu(2, Value::IntValue(10_000_000)),
        // otelcol reads a non-int as 0: out of this range.
        cpu(3, Value::DoubleValue(9e9)),
        batch_with(
            vec![("profile.cpu_ns_total", Value::IntValue(60_000_000))],
            vec![span(4, 1, 1, vec![])],
        ),
        batch(vec![span(5, 1, 1, vec![])]),
    ];
    let yaml = "policies: [{name: hot, type: numeric_attribute, numeric_attribute: {key: profile.cpu_ns_total, min_value: 50000000}}]";
    assert_eq!(run(&mut processor(yaml), traces.clone()), vec![1, 4]);
    // Inverted: sampled unless some value is in range; no attribute at all samples.
    let yaml = "policies: [{name: cold, type: numeric_attribute, numeric_attribute: {key: profile.cpu_ns_total, min_value: 50000000, invert_match: true}}]";
    assert_eq!(run(&mut processor(yaml), traces), vec![2, 3, 5]);
    // 0 as the value read from a double is in a range that contains 0.
    let yaml = "policies: [{name: low, type: numeric_attribute, numeric_attribute: {key: profile.cpu_ns_total, min_value: -1, max_value: 5}}]";
    assert_eq!(
        run(&mut processor(yaml), vec![cpu(3, Value::DoubleValue(9e9))]),
        vec![3]
    );
}

#[test]
fn string_attribute_exact_regex_and_inverted() {
    let route = |t: u128, v: &str| batch(vec![span(t, 1, 1, vec![("http.route", s(v))])]);
    let traces = || {
        vec![
            route(1, "/checkout"),
            route(2, "/health"),
            route(3, "/checkout/v2"),
            route(4, ""),
        ]
    };
    let yaml = "policies: [{name: r, type: string_attribute, string_attribute: {key: http.route, values: [/checkout]}}]";
    assert_eq!(run(&mut processor(yaml), traces()), vec![1]);
    // Unanchored, as Go's MatchString.
    let yaml = "policies: [{name: r, type: string_attribute, string_attribute: {key: http.route, values: [checkout], enabled_regex_matching: true, cache_max_size: 1}}]";
    assert_eq!(run(&mut processor(yaml), traces()), vec![1, 3]);
    let yaml = "policies: [{name: r, type: string_attribute, string_attribute: {key: http.route, values: [/health], invert_match: true}}]";
    assert_eq!(run(&mut processor(yaml), traces()), vec![1, 3, 4]);
    // A resource attribute counts too.
    let yaml = "policies: [{name: svc, type: string_attribute, string_attribute: {key: service.name, values: [shop]}}]";
    assert_eq!(run(&mut processor(yaml), traces()), vec![1, 2, 3, 4]);
}

#[test]
fn boolean_attribute_status_code_and_span_count() {
    let flag = |t: u128, v: Value| batch(vec![span(t, 1, 1, vec![("retry", v)])]);
    let yaml = "policies: [{name: b, type: boolean_attribute, boolean_attribute: {key: retry, value: true}}]";
    assert_eq!(
        run(
            &mut processor(yaml),
            vec![
                flag(1, Value::BoolValue(true)),
                flag(2, Value::BoolValue(false)),
                flag(3, s("true"))
            ]
        ),
        vec![1]
    );

    let status = |t: u128, code: Option<i32>| {
        let mut sp = span(t, 1, 1, vec![]);
        sp.status = code.map(|code| Status {
            code,
            ..Default::default()
        });
        batch(vec![sp])
    };
    let yaml = "policies: [{name: e, type: status_code, status_code: {status_codes: [ERROR, UNSET]}}]";
    assert_eq!(
        run(
            &mut processor(yaml),
            vec![status(1, Some(2)), status(2, Some(1)), status(3, None)]
        ),
        vec![1, 3]
    );

    let many = |t: u128, n: u64| batch((1..=n).map(|i| span(t, i, 1, vec![])).collect());
    let yaml = "policies: [{name: c, type: span_count, span_count: {min_spans: 2, max_spans: 3}}]";
    assert_eq!(
        run(
            &mut processor(yaml),
            vec![many(1, 1), many(2, 2), many(3, 3), many(4, 4)]
        ),
        vec![2, 3]
    );
    let yaml = "policies: [{name: c, type: span_count, span_count: {min_spans: 3}}]";
    assert_eq!(run(&mut processor(yaml), vec![many(1, 1), many(4, 4)]), vec![4]);
}

#[test]
fn drop_wins_and_and_needs_every_sub_policy() {
    let t = |id: u128, ms: u64, route: &str| batch(vec![span(id, 1, ms, vec![("http.route", s(route))])]);
    let traces = || {
        vec![
            t(1, 500, "/checkout"),
            t(2, 500, "/health"),
            t(3, 10, "/checkout"),
            t(4, 10, "/health"),
        ]
    };
    let yaml = r#"
policies:
  - {name: everything, type: always_sample}
  - name: no-health
    type: drop
    drop: {drop_sub_policy: [{name: h, type: string_attribute, string_attribute: {key: http.route, values: [/health]}}]}
"#;
    assert_eq!(run(&mut processor(yaml), traces()), vec![1, 3]);
    let yaml = r#"
policies:
  - name: slow-checkout
    type: and
    and:
      and_sub_policy:
        - {name: slow, type: latency, latency: {threshold_ms: 100}}
        - name: not-health
          type: not
          not: {not_sub_policy: {name: h, type: string_attribute, string_attribute: {key: http.route, values: [/health]}}}
"#;
    assert_eq!(run(&mut processor(yaml), traces()), vec![1]);
}

#[test]
fn per_policy_and_final_decisions_are_counted() {
    let yaml = r#"
policies:
  - {name: slow, type: latency, latency: {threshold_ms: 100}}
  - {name: all, type: always_sample}
  - name: no-fast
    type: drop
    drop: {drop_sub_policy: [{name: f, type: latency, latency: {threshold_ms: 0, upper_threshold_ms: 5}}]}
"#;
    let mut p = processor(yaml);
    let kept = run(
        &mut p,
        vec![
            batch(vec![span(1, 1, 500, vec![]), span(1, 2, 1, vec![])]),
            batch(vec![span(2, 1, 3, vec![])]),
        ],
    );
    assert_eq!(kept, vec![1]);
    let st = p.stats();
    // The drop policy is evaluated first and stops trace 2 before the others see it.
    let names: Vec<_> = st.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["no-fast", "slow", "all"]);
    assert_eq!(st.policies[0].traces, [0, 1, 1]);
    assert_eq!(st.policies[1].traces, [1, 0, 0]);
    assert_eq!(st.policies[1].spans, [2, 0, 0]);
    assert_eq!(st.policies[2].traces, [1, 0, 0]);
    assert_eq!(st.traces, [1, 0, 1]);
    assert_eq!(st.new_traces, 2);
}

#[test]
fn sample_on_first_match_stops_at_the_first_sampler() {
    let yaml = "sample_on_first_match: true\npolicies: [{name: a, type: always_sample}, {name: b, type: always_sample}]";
    let mut p = processor(yaml);
    assert_eq!(run(&mut p, vec![batch(vec![span(1, 1, 1, vec![])])]), vec![1]);
    assert_eq!(p.stats().policies[1].traces, [0, 0, 0]);
}

#[test]
fn rate_limiting_and_composite_budgets() {
    let many = |t: u128, n: u64| batch((1..=n).map(|i| span(t, i, 1, vec![])).collect());
    // Burst 2 × 10: traces of 8 spans, two pass in the same instant.
    let yaml = "policies: [{name: r, type: rate_limiting, rate_limiting: {spans_per_second: 10}}]";
    assert_eq!(
        run(&mut processor(yaml), (1..=4).map(|t| many(t, 8)).collect()),
        vec![1, 2]
    );
    // A trace larger than the burst never passes.
    let yaml = "policies: [{name: r, type: rate_limiting, rate_limiting: {spans_per_second: 10, burst_capacity: 5}}]";
    assert_eq!(run(&mut processor(yaml), vec![many(1, 6), many(2, 5)]), vec![2]);
    // composite: 20 spans a second, 25% (5) to the first sub-policy, the rest shared equally.
    let yaml = r#"
policies:
  - name: c
    type: composite
    composite:
      max_total_spans_per_second: 20
      policy_order: [slow, all]
      composite_sub_policy:
        - {name: slow, type: latency, latency: {threshold_ms: 100}}
        - {name: all, type: always_sample}
      rate_allocation: [{policy: slow, percent: 25}]
"#;
    let slow = |t: u128| batch((1..=4).map(|i| span(t, i, 500, vec![])).collect());
    let fast = |t: u128| batch((1..=4).map(|i| span(t, i, 1, vec![])).collect());
    // slow 1 takes 4 of 5; slow 2 would exceed its 5 and is not sampled (not passed on to
    // `all`); fast traces share all's 10: two of three.
    let kept = run(
        &mut processor(yaml),
        vec![slow(1), slow(2), fast(3), fast(4), fast(5)],
    );
    assert_eq!(kept, vec![1, 3, 4]);
}

#[test]
fn a_trace_is_decided_once_whole_and_late_spans_follow() {
    let yaml = "policies: [{name: slow, type: latency, latency: {threshold_ms: 100}}]";
    let mut p = processor(yaml);
    let t0 = Instant::now();
    let mut out = Vec::new();
    // Traces 1 and 2 interleaved across batches and resources.
    p.process_at(
        batch(vec![span(1, 1, 500, vec![]), span(2, 1, 1, vec![])]),
        t0,
        &mut out,
    );
    p.process_at(
        batch_with(
            vec![("service.name", s("db"))],
            vec![span(2, 2, 2, vec![]), span(1, 2, 3, vec![])],
        ),
        t0 + Duration::from_millis(300),
        &mut out,
    );
    assert_eq!(p.next_deadline(), Some(t0 + Duration::from_secs(1)));
    p.on_deadline(t0 + Duration::from_millis(999), &mut out);
    assert!(out.is_empty());
    p.on_deadline(t0 + Duration::from_secs(1), &mut out);
    assert_eq!(
        kept(&out),
        vec![(1, 2)],
        "both spans of the slow trace, none of the other"
    );
    // The kept trace's pieces keep their resources.
    let Batch::Traces(t) = &out[0] else { panic!() };
    let services: Vec<_> = t
        .raw()
        .iter()
        .map(|r| r.head().resource_attribute("service.name").and_then(|v| v.value))
        .collect();
    assert_eq!(services, [Some(s("shop")), Some(s("db"))]);
    out.clear();
    // Late spans follow their trace's decision, at once.
    p.process_at(
        batch(vec![span(1, 3, 1, vec![]), span(2, 3, 900, vec![])]),
        t0 + Duration::from_secs(5),
        &mut out,
    );
    assert_eq!(kept(&out), vec![(1, 1)]);
    assert_eq!(p.stats().late_spans, [1, 1]);
    assert_eq!(p.stats().new_traces, 2);
    assert_eq!(p.next_deadline(), None);
}

#[test]
fn kept_traces_of_one_service_leave_under_one_resource() {
    let mut p = processor("policies: [{name: all, type: always_sample}]");
    let t0 = Instant::now();
    let mut out = Vec::new();
    // Three requests from "shop" (three traces, two in one request) and one from "db".
    let sent = vec![
        batch(vec![span(1, 1, 5, vec![]), span(2, 1, 5, vec![])]),
        batch(vec![span(3, 1, 5, vec![("http.route", s("/cart"))])]),
        batch_with(vec![("service.name", s("db"))], vec![span(4, 1, 5, vec![])]),
        batch(vec![span(1, 2, 5, vec![])]),
    ];
    let mut expected: Vec<Span> = Vec::new();
    for b in &sent {
        let Batch::Traces(t) = b else { panic!() };
        expected.extend(
            t.resource_spans()
                .into_iter()
                .flat_map(|r| r.scope_spans)
                .flat_map(|s| s.spans),
        );
    }
    for b in sent {
        p.process_at(b, t0, &mut out);
    }
    p.on_deadline(t0 + Duration::from_secs(1), &mut out);
    let [Batch::Traces(t)] = &out[..] else {
        panic!("one batch: {out:?}")
    };
    let resources = t.resource_spans();
    let services: Vec<_> = resources
        .iter()
        .map(|r| r.resource.as_ref().map(|r| r.attributes[0].clone()))
        .collect();
    assert_eq!(
        services,
        [
            Some(kv("service.name", s("shop"))),
            Some(kv("service.name", s("db")))
        ],
        "one container a service, not one a trace"
    );
    assert_eq!(resources[0].scope_spans.len(), 1, "and one a scope");
    let mut got: Vec<Span> = resources
        .into_iter()
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect();
    let key = |s: &Span| (s.trace_id.clone(), s.span_id.clone());
    got.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(got, expected, "every span, unchanged");
}

#[test]
fn waiting_traces_are_bounded_and_the_oldest_is_decided_early() {
    let yaml = "num_traces: 3\npolicies: [{name: all, type: always_sample}]";
    let mut p = processor(yaml);
    let t0 = Instant::now();
    let mut out = Vec::new();
    for t in 1..=5u128 {
        p.process_at(batch(vec![span(t, 1, 1, vec![])]), t0, &mut out);
        assert!(p.stats().waiting_traces <= 3);
    }
    // Traces 1 and 2 went early, whole, with what they had.
    assert_eq!(kept(&out), vec![(1, 1), (2, 1)]);
    assert_eq!(p.stats().decided_early, 2);
    assert_eq!(p.stats().waiting_traces, 3);
    out.clear();
    p.drain(&mut out);
    assert_eq!(kept(&out), vec![(3, 1), (4, 1), (5, 1)]);
}

#[test]
fn remembered_decisions_are_bounded() {
    let yaml = "decision_cache: {sampled_cache_size: 2}\npolicies: [{name: all, type: always_sample}]";
    let mut p = processor(yaml);
    let t0 = Instant::now();
    let mut out = Vec::new();
    for t in 1..=3u128 {
        p.process_at(batch(vec![span(t, 1, 1, vec![])]), t0, &mut out);
    }
    p.on_deadline(t0 + Duration::from_secs(1), &mut out);
    out.clear();
    // Trace 1's decision was forgotten (only 2 remembered): its late span waits anew.
    p.process_at(
        batch(vec![span(1, 2, 1, vec![]), span(3, 2, 1, vec![])]),
        t0 + Duration::from_secs(2),
        &mut out,
    );
    assert_eq!(kept(&out), vec![(3, 1)]);
    assert_eq!(p.stats().new_traces, 4);
    assert_eq!(p.stats().waiting_traces, 1);
}

#[test]
fn shutdown_decides_or_drops_what_waits() {
    let yaml = "policies: [{name: all, type: always_sample}]";
    let mut p = processor(yaml);
    let mut out = Vec::new();
    p.process_at(batch(vec![span(1, 1, 1, vec![])]), Instant::now(), &mut out);
    p.drain(&mut out);
    assert_eq!(kept(&out), vec![(1, 1)]);
    let mut p = processor(&format!("drop_pending_traces_on_shutdown: true\n{yaml}"));
    let mut out = Vec::new();
    p.process_at(batch(vec![span(1, 1, 1, vec![])]), Instant::now(), &mut out);
    p.drain(&mut out);
    assert!(out.is_empty());
    assert_eq!(p.stats().dropped_on_shutdown, 1);
}

#[test]
fn config_errors_are_clear() {
    let errs = |yaml: &str| {
        yaml_errors::<TailSamplingConfig>(yaml)
            .into_iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let e = errs("policies: [{name: x, type: sometimes}]");
    assert!(
        e.contains("policies[0].type") && e.contains("unknown sampling policy type \"sometimes\""),
        "{e}"
    );
    assert!(e.contains("always_sample, latency, numeric_attribute, probabilistic, status_code, string_attribute, boolean_attribute, span_count, rate_limiting, and, drop, not, composite"), "{e}");
    let e = errs("policies: [{name: x, type: ottl_condition}]");
    assert!(e.contains("otelcol's but hotspan does not have it"), "{e}");
    let e = errs("policies: [{name: x, type: and, and: {and_sub_policy: [{name: y, type: composite}]}}]");
    assert!(
        e.contains("policies[0].and.and_sub_policy[0].type") && e.contains("known here"),
        "{e}"
    );
    let e = errs("policies: [{name: x, type: status_code, status_code: {status_codes: [FAIL]}}]");
    assert!(e.contains("unknown status code \"FAIL\""), "{e}");
    let e = errs("policies: [{name: x, type: string_attribute, string_attribute: {key: k, values: ['('], enabled_regex_matching: true}}]");
    assert!(e.contains("invalid regex"), "{e}");
    let e = errs("policies: [{name: x, type: numeric_attribute, numeric_attribute: {key: k}}]");
    assert!(e.contains("set min_value or max_value"), "{e}");
    let e = errs("policies: [{name: x, type: always_sample}, {name: x, type: always_sample}]");
    assert!(e.contains("duplicate policy name"), "{e}");
    let e = errs("policies: [{type: always_sample}]");
    assert!(e.contains("policies[0].name"), "{e}");
    let e = errs("policies: [{name: x, type: always_sample, color: red}]");
    assert!(e.contains("color"), "{e}");
    let e = errs("block_on_overflow: true\npolicies: [{name: x, type: always_sample}]");
    assert!(e.contains("block_on_overflow"), "{e}");
    assert!(errs("policies: []").contains("at least one policy"));
    assert_eq!(errs("policies: [{name: x, type: always_sample}]"), "");
}

#[test]
fn other_signals_pass_through() {
    let mut p = processor("policies: [{name: all, type: always_sample}]");
    let mut out = Vec::new();
    p.process(Batch::Logs(Default::default()), &mut out);
    assert_eq!(out.len(), 1);
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(300))]

    /// With a policy that decides by trace id alone, whatever the arrival order and timing
    /// (spans long after their trace's decision included) and however small the bounds on
    /// waiting traces and remembered decisions, a span leaves exactly when a fresh processor
    /// keeps its trace, once and unchanged.
    #[test]
    fn a_span_leaves_once_exactly_when_its_trace_is_kept(
        traces in proptest::collection::vec(1u128.., 1..8),
        arrivals in proptest::collection::vec((0usize..8, 0u64..2500, proptest::bool::ANY), 1..60),
        num_traces in proptest::prop_oneof![proptest::strategy::Just(50_000u64), 1u64..5],
        cache in proptest::prop_oneof![proptest::strategy::Just(0usize), 1usize..4],
    ) {
        let config = format!(
            "num_traces: {num_traces}
decision_cache: {{sampled_cache_size: {cache}, non_sampled_cache_size: {cache}}}
policies: [{{name: p, type: probabilistic, probabilistic: {{sampling_percentage: 40, hash_salt: s}}}}]"
        );
        let kept_alone = |trace: u128| {
            !run(&mut processor(&config), vec![batch(vec![span(trace, 1, 1, vec![])])]).is_empty()
        };
        let mut p = processor(&config);
        let (mut now, mut out, mut expected) = (Instant::now(), Vec::new(), std::collections::BTreeMap::new());
        for (n, (which, after_ms, db)) in arrivals.into_iter().enumerate() {
            let trace = traces[which % traces.len()];
            let mut one = span(trace, 0, 1, vec![]);
            one.span_id = (n as u64 + 1).to_be_bytes().to_vec();
            if kept_alone(trace) {
                expected.insert(n as u64 + 1, one.clone());
            }
            now += Duration::from_millis(after_ms);
            p.on_deadline(now, &mut out);
            let service = if db { "db" } else { "shop" };
            p.process_at(batch_with(vec![("service.name", s(service))], vec![one]), now, &mut out);
        }
        p.drain(&mut out);
        let traces = out.into_iter().map(|b| match b {
            Batch::Traces(t) => t,
            _ => panic!("not traces"),
        });
        proptest::prop_assert_eq!(spans_by_id(traces), expected);
    }
}
