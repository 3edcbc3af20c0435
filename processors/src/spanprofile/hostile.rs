//! The join on valid but hostile input, generated: parent cycles, ids reused across spans and
//! traces, spans that end before they start or at the ends of time, samples for spans that
//! never come, pauses, throttling and snapshots at any time, any arrival order, bounds small
//! enough to force early release. Whatever comes in, every span leaves exactly once, as it
//! came apart from the join's own attributes and events, and every part of its breakdown is
//! non-negative and at most its duration.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hotspan_proto::otlp::common::v1::any_value::Value;
use hotspan_proto::otlp::trace::v1::Span;
use proptest::prelude::*;

use super::fixtures::*;
use super::*;

const STACKS: [&[&str]; 3] = [
    &["main.work", "main.handle", "runtime.goexit"],
    &["sync.(*Mutex).Lock", "main.handle", "runtime.goexit"],
    &["runtime.gopark", "main.wait"],
];

#[derive(Clone, Debug)]
struct SpanSpec {
    trace: u128,
    id: u64,
    parent: Option<u64>,
    start: u64,
    end: u64,
    thread: Option<i64>,
    service: bool,
}

/// Times in ms after T0, or the ends of time.
fn time() -> impl Strategy<Value = u64> {
    prop_oneof![8 => (0u64..300).prop_map(|ms| T0 + ms * MS), 1 => Just(0u64), 1 => Just(u64::MAX)]
}

fn span_spec() -> impl Strategy<Value = SpanSpec> {
    (
        0u128..4,
        0u64..14,
        prop::option::of(0u64..14),
        time(),
        time(),
        prop::option::of(1i64..4),
        prop::bool::weighted(0.75),
    )
        .prop_map(|(trace, id, parent, start, end, thread, service)| SpanSpec {
            trace,
            id,
            parent,
            start,
            end,
            thread,
            service,
        })
}

fn plant() -> impl Strategy<Value = Plant> {
    (
        0usize..STACKS.len(),
        0u64..5,
        prop::option::weighted(0.8, 0u64..15),
        prop::option::weighted(0.4, 0u128..5),
        any::<bool>(),
        prop::option::of(1i64..4),
        prop::collection::vec(0u64..320, 0..3),
        any::<bool>(),
    )
        .prop_map(
            |(stack, count, span, trace, as_labels, thread, times_ms, label)| Plant {
                stack: STACKS[stack].to_vec(),
                count,
                span,
                trace,
                as_labels,
                thread,
                times_ms,
                labels: if label {
                    vec![("domain", "payment")]
                } else {
                    vec![]
                },
            },
        )
}

#[derive(Clone, Debug)]
enum Input {
    /// Indexes into the spans, sent as one request.
    Spans(Vec<usize>),
    Cpu(Vec<Plant>, bool),
    Goroutines(Vec<Plant>),
    OffCpu(Vec<Plant>),
    Pauses(Vec<(u64, u64, bool)>),
    Throttling(Vec<(u64, u64, u64)>, bool),
    /// Releases what is due this many ms later.
    Release(u64),
}

fn input(spans: usize) -> impl Strategy<Value = Input> {
    let plants = || prop::collection::vec(plant(), 0..8);
    prop_oneof![
        3 => prop::collection::vec(0..spans, 1..spans + 1).prop_map(Input::Spans),
        3 => (plants(), any::<bool>()).prop_map(|(p, ebpf)| Input::Cpu(p, ebpf)),
        1 => plants().prop_map(Input::Goroutines),
        1 => plants().prop_map(Input::OffCpu),
        1 => prop::collection::vec((0u64..320, 0u64..50_000, any::<bool>()), 0..4).prop_map(Input::Pauses),
        1 => (prop::collection::vec((0u64..320, 0u64..400, 0u64..50), 0..4), any::<bool>())
            .prop_map(|(r, q)| Input::Throttling(r, q)),
        1 => prop_oneof![4 => 0u64..3_000, 1 => 3_000u64..20_000].prop_map(Input::Release),
    ]
}

/// Span `s`, named `n`: every span sent has a name of its own.
fn build(n: usize, s: &SpanSpec) -> Span {
    let mut span = span_in(s.trace, s.id, s.parent, 0, 0);
    span.name = format!("s{n}");
    span.start_time_unix_nano = s.start;
    span.end_time_unix_nano = s.end;
    if let Some(t) = s.thread {
        span.attributes.push(kv("thread.id", Value::IntValue(t)));
    }
    span
}

/// The span as it came in: without what the join adds.
fn stripped(mut span: Span) -> Span {
    span.attributes
        .retain(|a| !a.key.starts_with("profile.") && a.key != "pyroscope.profile.id");
    span.events
        .retain(|e| !e.name.starts_with("profile.") && e.name != "gc.pause");
    span
}

/// Parts of the breakdown: each is time within the span.
const WITHIN: [&str; 5] = [
    "profile.wait_ns",
    "profile.wait_ns_total",
    "profile.runnable_ns",
    "profile.gc.pause_ns",
    "profile.cpu.throttled_ns",
];

fn check_annotation(span: &Span) -> Result<(), TestCaseError> {
    let duration = span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano);
    for a in span.attributes.iter().filter(|a| a.key.starts_with("profile.")) {
        match a.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::IntValue(i)) => {
                prop_assert!(*i >= 0, "{} is {i} on {}", a.key, span.name);
                if WITHIN.contains(&a.key.as_str()) {
                    prop_assert!(
                        *i as u64 <= duration,
                        "{} {i} over {duration} on {}",
                        a.key,
                        span.name
                    );
                }
            }
            Some(Value::DoubleValue(d)) => {
                prop_assert!(d.is_finite() && *d >= 0.0, "{} is {d} on {}", a.key, span.name)
            }
            _ => {}
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn hostile_input_every_span_leaves_once_unchanged_with_a_bounded_breakdown(
        specs in prop::collection::vec(span_spec(), 1..12),
        inputs in (1usize..12).prop_flat_map(|n| prop::collection::vec(input(n), 1..16)),
        max_buffered_spans in prop_oneof![3 => Just(100_000usize), 1 => 1usize..6],
        plain in any::<bool>(),
    ) {
        let join = Join::new(SpanProfileConfig {
            wait: Duration::from_secs(10),
            clock_skew: Duration::from_millis(2),
            max_buffered_spans,
            held_compression: if plain { HeldCompression::None } else { HeldCompression::Snappy },
            ..Default::default()
        });
        let service = |s: &SpanSpec| if s.service { "shop" } else { "cart" };
        let mut now = Instant::now();
        let (mut sent, mut out, mut named) = (BTreeMap::new(), Vec::new(), 0);
        for input in &inputs {
            match input {
                Input::Spans(which) => {
                    // One request a service, as an SDK of each would send.
                    for svc in ["shop", "cart"] {
                        let spans: Vec<Span> = which
                            .iter()
                            .filter_map(|&k| specs.get(k))
                            .filter(|s| service(s) == svc)
                            .map(|s| {
                                named += 1;
                                build(named, s)
                            })
                            .collect();
                        if spans.is_empty() {
                            continue;
                        }
                        for s in &spans {
                            sent.insert(s.name.clone(), s.clone());
                        }
                        out.extend(join.add_spans(traces(svc, spans), now));
                    }
                }
                Input::Cpu(p, ebpf) => join.add_profiles(&profiles("shop", p, *ebpf), now),
                Input::Goroutines(p) => join.add_profiles(&goroutines("shop", p, 100), now),
                Input::OffCpu(p) => join.add_profiles(&off_cpu("cart", p), now),
                Input::Pauses(p) => {
                    let p: Vec<_> = p.iter().map(|&(at, us, gc)| (at, us, "GC", gc)).collect();
                    join.add_logs(&pauses("shop", &p));
                }
                Input::Throttling(r, quota) => {
                    join.add_metrics(&cpu_stats("shop", r, quota.then_some(0.5)))
                }
                Input::Release(ms) => {
                    now += Duration::from_millis(*ms);
                    out.extend(join.release_due(now));
                }
            }
        }
        out.extend(join.drain(now));
        prop_assert_eq!(join.held_spans(), 0);

        let mut left = BTreeMap::new();
        for span in spans_of(out) {
            check_annotation(&span)?;
            let name = span.name.clone();
            prop_assert!(left.insert(name.clone(), stripped(span)).is_none(), "{} left twice", name);
        }
        prop_assert_eq!(left, sent);
    }
}
