//! The join on inputs with known answers: a generator plants samples for known spans under
//! every rule, in every arrival order, and each span's annotation is checked exactly.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hotspan_proto::otlp::common::v1::any_value;
use hotspan_proto::otlp::trace::v1::Span;
use hotspan_proto::{ProfilesBatch, TracesBatch};

use super::fixtures::*;
use super::*;

fn config() -> SpanProfileConfig {
    SpanProfileConfig {
        wait: Duration::from_secs(10),
        clock_skew: Duration::from_millis(2),
        ..Default::default()
    }
}

/// The annotation of one output span, read back.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    samples: i64,
    cpu_ns: i64,
    cpu_ns_total: i64,
    hot_path: String,
    join: String,
    top: Vec<String>,
    labels: BTreeMap<String, String>,
}

fn seen(span: &Span) -> Seen {
    let mut out = Seen::default();
    for a in &span.attributes {
        let v = a.value.as_ref().and_then(|v| v.value.clone());
        match (a.key.as_str(), v) {
            ("profile.samples", Some(any_value::Value::IntValue(i))) => out.samples = i,
            ("profile.cpu_ns", Some(any_value::Value::IntValue(i))) => out.cpu_ns = i,
            ("profile.cpu_ns_total", Some(any_value::Value::IntValue(i))) => out.cpu_ns_total = i,
            ("profile.hot_path", Some(any_value::Value::StringValue(x))) => out.hot_path = x,
            ("profile.join", Some(any_value::Value::StringValue(x))) => out.join = x,
            ("profile.top_functions", Some(any_value::Value::ArrayValue(arr))) => {
                out.top = arr
                    .values
                    .iter()
                    .filter_map(|v| match &v.value {
                        Some(any_value::Value::StringValue(x)) => Some(x.clone()),
                        _ => None,
                    })
                    .collect()
            }
            (k, Some(any_value::Value::StringValue(x))) if k.starts_with("profile.labels.") => {
                out.labels.insert(k["profile.labels.".len()..].to_string(), x);
            }
            _ => {}
        }
    }
    out
}

/// Runs spans and profiles through a join in the given order and returns every output span
/// by id (checking none is lost or duplicated).
fn run(join: &Join, steps: Vec<Step>) -> BTreeMap<u64, Span> {
    let now = Instant::now();
    let mut out = Vec::new();
    let mut sent = 0;
    for step in steps {
        match step {
            Step::Spans(t) => {
                sent += t.span_count();
                out.extend(join.add_spans(t, now));
            }
            Step::Profiles(p) => {
                join.add_profiles(&p, now);
            }
        }
    }
    out.extend(join.release_due(now + Duration::from_secs(11)));
    let by_id = spans_by_id(out);
    assert_eq!(by_id.len(), sent, "every span comes out");
    assert_eq!(join.held_spans(), 0);
    by_id
}

enum Step {
    Spans(TracesBatch),
    Profiles(ProfilesBatch),
}

fn plant(stack: &[&'static str], count: u64, span: u64) -> Plant {
    Plant {
        stack: stack.to_vec(),
        count,
        span: Some(span),
        trace: Some(TRACE),
        ..Default::default()
    }
}

/// A root (1) with two children (2: 10-40 ms, 3: 50-90 ms) and a grandchild under 3 (4: 60-70).
fn tree() -> Vec<Span> {
    vec![
        span(1, None, 0, 100),
        span(2, Some(1), 10, 40),
        span(3, Some(1), 50, 90),
        span(4, Some(3), 60, 70),
    ]
}

#[test]
fn span_rule_exact_in_any_arrival_order() {
    let plants = vec![
        plant(&["main.validateCart", "main.handle"], 7, 2),
        plant(&["main.chargeCard", "main.handle"], 5, 3),
        plant(&["main.hash", "main.chargeCard", "main.handle"], 3, 3),
        plant(&["main.discount", "main.handle"], 4, 4),
        // The same stack twice for one span adds up.
        plant(&["main.chargeCard", "main.handle"], 1, 3),
    ];
    for order in 0..3 {
        let join = Join::new(config());
        let p = profiles("shop", &plants, false);
        let t = traces("shop", tree());
        let steps = match order {
            0 => vec![Step::Spans(t), Step::Profiles(p)],
            1 => vec![Step::Profiles(p), Step::Spans(t)],
            _ => {
                // Half the spans, the profiles, the rest.
                let mut spans = tree();
                let rest = spans.split_off(2);
                vec![
                    Step::Spans(traces("shop", spans)),
                    Step::Profiles(p),
                    Step::Spans(traces("shop", rest)),
                ]
            }
        };
        let out = run(&join, steps);
        let s2 = seen(&out[&2]);
        assert_eq!(s2.samples, 7, "order {order}");
        assert_eq!(s2.cpu_ns, 70 * MS as i64);
        assert_eq!(s2.hot_path, "main.handle;main.validateCart");
        assert_eq!(s2.join, "span");
        assert_eq!(s2.top, vec!["main.validateCart 100.0%"]);
        let s3 = seen(&out[&3]);
        assert_eq!((s3.samples, s3.cpu_ns), (9, 90 * MS as i64), "order {order}");
        assert_eq!(s3.hot_path, "main.handle;main.chargeCard");
        assert_eq!(s3.top, vec!["main.chargeCard 66.7%", "main.hash 33.3%"]);
        // Rolled up: 3 has 4's CPU in its total; the root has everyone's.
        assert_eq!(s3.cpu_ns_total, (90 + 40) * MS as i64);
        let s1 = seen(&out[&1]);
        assert_eq!((s1.samples, s1.cpu_ns_total), (0, 200 * MS as i64));
        assert_eq!(
            join.stats.joined[Rule::Span as usize].load(std::sync::atomic::Ordering::Relaxed),
            20
        );
    }
}

#[test]
fn labels_as_attributes_and_hot_path_events() {
    let mut p = plant(&["main.chargeCard"], 4, 3);
    p.as_labels = true;
    p.labels = vec![("domain", "payment"), ("stage", "charge")];
    let mut q = plant(&["main.fraudCheck"], 2, 3);
    q.labels = vec![("domain", "payment"), ("stage", "fraud")];
    let join = Join::new(config());
    let out = run(
        &join,
        vec![
            Step::Spans(traces("shop", tree())),
            Step::Profiles(profiles("shop", &[p, q], false)),
        ],
    );
    let s3 = seen(&out[&3]);
    assert_eq!(s3.samples, 6);
    assert_eq!(
        s3.labels,
        BTreeMap::from([
            ("domain".into(), "payment".into()),
            ("stage".into(), "charge,fraud".into())
        ])
    );
    let events: Vec<&str> = out[&3].events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(events, ["profile.hot_path", "profile.hot_path"]);
    let pyro = out[&3]
        .attributes
        .iter()
        .find(|a| a.key == "pyroscope.profile.id")
        .and_then(|a| a.value.clone());
    assert_eq!(pyro.and_then(|v| v.value), Some(s("0000000000000003")));
    // Spans without samples are left as they were.
    assert!(out[&2].attributes.is_empty() && out[&2].events.is_empty());
}

#[test]
fn trace_rule_with_timestamps_picks_the_deepest_running_span() {
    // eBPF-style: only the trace id and per-sample timestamps, each one 10 ms period.
    let p = Plant {
        stack: vec!["main.work"],
        trace: Some(TRACE),
        times_ms: vec![5, 20, 65, 66, 55, 95],
        ..Default::default()
    };
    let join = Join::new(config());
    let out = run(
        &join,
        vec![
            Step::Profiles(profiles("shop", &[p], true)),
            Step::Spans(traces("shop", tree())),
        ],
    );
    // 5 and 95 ms: only the root runs. 20: span 2. 55: span 3. 65, 66: span 4, inside 3.
    assert_eq!(seen(&out[&1]).samples, 2);
    assert_eq!(seen(&out[&2]).samples, 1);
    assert_eq!(seen(&out[&3]).samples, 1);
    let s4 = seen(&out[&4]);
    assert_eq!(
        (s4.samples, s4.cpu_ns, s4.join.as_str()),
        (2, 20 * MS as i64, "trace")
    );
}

#[test]
fn trace_rule_without_timestamps_goes_to_the_local_root() {
    let p = Plant {
        stack: vec!["main.work"],
        count: 3,
        trace: Some(TRACE),
        ..Default::default()
    };
    let join = Join::new(config());
    let out = run(
        &join,
        vec![
            Step::Spans(traces("shop", tree())),
            Step::Profiles(profiles("shop", &[p], false)),
        ],
    );
    let s1 = seen(&out[&1]);
    assert_eq!((s1.samples, s1.join.as_str()), (3, "trace"));
    // Another service's profile of the same trace is not this resource's.
    let q = Plant {
        stack: vec!["main.work"],
        count: 3,
        trace: Some(TRACE),
        ..Default::default()
    };
    let join = Join::new(config());
    let out = run(
        &join,
        vec![
            Step::Spans(traces("shop", tree())),
            Step::Profiles(profiles("billing", &[q], false)),
        ],
    );
    assert_eq!(seen(&out[&1]).samples, 0);
    assert_eq!(join.stats.unjoined.load(std::sync::atomic::Ordering::Relaxed), 3);
}

#[test]
fn root_only_labels_descend_when_timestamps_say_so() {
    // otel-profiling-go labels only the local root; a timestamp inside a child moves the
    // sample there, one with no deeper span running stays with the root.
    let p = Plant {
        stack: vec!["main.work"],
        span: Some(1),
        times_ms: vec![20, 65, 95],
        ..Default::default()
    };
    let join = Join::new(config());
    let out = run(
        &join,
        vec![
            Step::Spans(traces("shop", tree())),
            Step::Profiles(profiles("shop", &[p], true)),
        ],
    );
    let (s1, s2, s4) = (seen(&out[&1]), seen(&out[&2]), seen(&out[&4]));
    assert_eq!((s1.samples, s1.join.as_str()), (1, "span"));
    assert_eq!((s2.samples, s2.join.as_str()), (1, "trace"));
    assert_eq!((s4.samples, s4.join.as_str()), (1, "trace"));
    // Without timestamps (Go's pprof) everything stays with the root.
    let q = Plant {
        stack: vec!["main.work"],
        count: 9,
        span: Some(1),
        ..Default::default()
    };
    let join = Join::new(config());
    let out = run(
        &join,
        vec![
            Step::Spans(traces("shop", tree())),
            Step::Profiles(profiles("shop", &[q], false)),
        ],
    );
    assert_eq!(seen(&out[&1]).samples, 9);
}

#[test]
fn clock_skew_is_allowed_and_no_more() {
    // Span 2 runs 10-40 ms; skew is 2 ms: 41 ms is in, 43 ms is out (the root gets it).
    let p = Plant {
        stack: vec!["main.work"],
        trace: Some(TRACE),
        times_ms: vec![41, 43],
        ..Default::default()
    };
    let join = Join::new(config());
    let out = run(
        &join,
        vec![
            Step::Spans(traces("shop", tree())),
            Step::Profiles(profiles("shop", &[p], true)),
        ],
    );
    assert_eq!(seen(&out[&2]).samples, 1);
    assert_eq!(seen(&out[&1]).samples, 1);
}

#[test]
fn concurrent_children_split_by_depth_then_latest_start() {
    // Two children of the root overlap from 30 to 40 ms; a sample at 35 ms goes to the one
    // that started later (deeper work on the same timeline).
    let spans = vec![
        span(1, None, 0, 100),
        span(2, Some(1), 10, 40),
        span(3, Some(1), 30, 60),
    ];
    let p = Plant {
        stack: vec!["main.work"],
        trace: Some(TRACE),
        times_ms: vec![35, 20, 50],
        ..Default::default()
    };
    let join = Join::new(config());
    let out = run(
        &join,
        vec![
            Step::Spans(traces("shop", spans)),
            Step::Profiles(profiles("shop", &[p], true)),
        ],
    );
    assert_eq!(seen(&out[&2]).samples, 1);
    assert_eq!(seen(&out[&3]).samples, 2);
}

#[test]
fn thread_rule_joins_by_thread_and_time() {
    let mut spans = vec![
        span(1, None, 0, 100),
        span(2, Some(1), 10, 40),
        span_in(0x999, 9, None, 0, 100),
    ];
    spans[0]
        .attributes
        .push(kv("thread.id", any_value::Value::IntValue(7)));
    spans[1]
        .attributes
        .push(kv("thread.id", any_value::Value::IntValue(7)));
    spans[2]
        .attributes
        .push(kv("thread.id", any_value::Value::IntValue(8)));
    let on7 = Plant {
        stack: vec!["main.work"],
        thread: Some(7),
        times_ms: vec![5, 20, 30],
        ..Default::default()
    };
    let on8 = Plant {
        stack: vec!["main.other"],
        thread: Some(8),
        times_ms: vec![20],
        ..Default::default()
    };
    let join = Join::new(config());
    let out = run(
        &join,
        vec![
            Step::Profiles(profiles("shop", &[on7, on8], true)),
            Step::Spans(traces("shop", spans)),
        ],
    );
    assert_eq!(seen(&out[&1]).samples, 1);
    let s2 = seen(&out[&2]);
    assert_eq!((s2.samples, s2.join.as_str()), (2, "thread"));
    assert_eq!(seen(&out[&9]).hot_path, "main.other");
}

/// Holds `tree()` from `t0` and releases it at 11 s (`wait` is 10 s): all four spans leave.
fn tree_released(join: &Join, t0: Instant) {
    join.add_spans(traces("shop", tree()), t0);
    let released = join.release_due(t0 + Duration::from_secs(11));
    assert_eq!(released.iter().map(TracesBatch::span_count).sum::<usize>(), 4);
}

#[test]
fn late_and_unjoined_samples_are_counted() {
    use std::sync::atomic::Ordering::Relaxed;
    let join = Join::new(config());
    let now = Instant::now();
    tree_released(&join, now);
    // After the spans left: late. For a span never seen: unjoined once it waited `wait`.
    join.add_profiles(
        &profiles(
            "shop",
            &[plant(&["main.x"], 2, 3), plant(&["main.y"], 5, 77)],
            false,
        ),
        now,
    );
    assert_eq!(join.stats.late.load(Relaxed), 2);
    assert_eq!(join.pending_samples(), 1);
    join.release_due(now + Duration::from_secs(30));
    assert_eq!(join.stats.unjoined.load(Relaxed), 5);
    assert_eq!(join.pending_samples(), 0);
    // A sample with no ids, thread or time has nowhere to go.
    join.add_profiles(
        &profiles(
            "shop",
            &[Plant {
                stack: vec!["main.z"],
                count: 1,
                ..Default::default()
            }],
            false,
        ),
        now,
    );
    assert_eq!(join.stats.unjoined.load(Relaxed), 6);
}

#[test]
fn a_trace_id_that_disagrees_is_not_joined() {
    let mut p = plant(&["main.x"], 2, 3);
    p.trace = Some(0x1234);
    let join = Join::new(config());
    let out = run(
        &join,
        vec![
            Step::Spans(traces("shop", tree())),
            Step::Profiles(profiles("shop", &[p], false)),
        ],
    );
    assert_eq!(seen(&out[&3]).samples, 0);
}

#[test]
fn the_preemption_trampoline_does_not_split_hot_paths() {
    let plants = vec![
        plant(&["runtime.asyncPreempt", "main.chargeCard", "main.handle"], 1, 3),
        plant(&["main.chargeCard", "main.handle"], 9, 3),
    ];
    let join = Join::new(config());
    let out = run(
        &join,
        vec![
            Step::Spans(traces("shop", tree())),
            Step::Profiles(profiles("shop", &plants, false)),
        ],
    );
    let s3 = seen(&out[&3]);
    assert_eq!(s3.top, vec!["main.chargeCard 100.0%"]);
    assert_eq!(s3.hot_path, "main.handle;main.chargeCard");
}

#[test]
fn over_the_bound_the_oldest_spans_leave_early_and_none_is_lost() {
    let cfg = SpanProfileConfig {
        max_buffered_spans: 16 * 4,
        ..config()
    };
    let join = Join::new(cfg);
    let now = Instant::now();
    let mut out = 0;
    for t in 0..100u128 {
        let spans = (0..10u64)
            .map(|i| span_in(t + 1, t as u64 * 100 + i + 1, None, 0, 10))
            .collect();
        out += join
            .add_spans(traces("shop", spans), now)
            .iter()
            .map(TracesBatch::span_count)
            .sum::<usize>();
        assert!(join.held_spans() <= 16 * 4 + 16, "held {}", join.held_spans());
    }
    out += join.drain(now).iter().map(TracesBatch::span_count).sum::<usize>();
    assert_eq!(out, 1000);
    assert!(
        join.stats
            .released_early
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
}

#[test]
fn duplicate_spans_both_come_out() {
    let join = Join::new(config());
    let now = Instant::now();
    let early = join.add_spans(
        traces("shop", vec![span(5, None, 0, 10), span(5, None, 0, 10)]),
        now,
    );
    assert_eq!(early.iter().map(TracesBatch::span_count).sum::<usize>(), 1);
    assert_eq!(
        join.drain(now).iter().map(TracesBatch::span_count).sum::<usize>(),
        1
    );
    // The one held span left at the drain, before its wait: counted as drained.
    assert_eq!(join.stats.drained.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn only_spans_a_drain_releases_count_as_drained() {
    let join = Join::new(config());
    let now = Instant::now();
    join.add_spans(traces("shop", vec![span(1, None, 0, 10)]), now);
    let due = join.release_due(now + join.config.wait + Duration::from_secs(1));
    assert_eq!(due.iter().map(TracesBatch::span_count).sum::<usize>(), 1);
    join.add_spans(traces("shop", vec![span(2, None, 0, 10)]), now);
    assert_eq!(
        join.drain(now).iter().map(TracesBatch::span_count).sum::<usize>(),
        1
    );
    assert_eq!(join.stats.drained.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn profiles_out_gets_links_from_labels() {
    let mut p = plant(&["main.x"], 2, 3);
    p.as_labels = true;
    let join = Join::new(config());
    let linked = join.link_profiles(&profiles("shop", &[p], false));
    let d = linked.dictionary().expect("dictionary");
    for prof in linked.resource_profiles()[0].scope_profiles[0].profiles.iter() {
        let link = &d.link_table[prof.samples[0].link_index as usize];
        assert_eq!(link.span_id, 3u64.to_be_bytes().to_vec());
        assert_eq!(link.trace_id, TRACE.to_be_bytes().to_vec());
    }
}

#[test]
fn concurrent_feeders_lose_nothing() {
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;
    let join = Arc::new(Join::new(config()));
    let now = Instant::now();
    let traces_per_thread = 50u64;
    let mut handles = Vec::new();
    for t in 0..4u64 {
        let j = join.clone();
        // Spans of traces t*1000.., four per trace.
        handles.push(std::thread::spawn(move || {
            let mut out = 0;
            for i in 0..traces_per_thread {
                let trace = (t * 1000 + i + 1) as u128;
                let base = (t * 1000 + i) * 10 + 1;
                let spans = vec![
                    span_in(trace, base, None, 0, 100),
                    span_in(trace, base + 1, Some(base), 10, 40),
                    span_in(trace, base + 2, Some(base), 50, 90),
                    span_in(trace, base + 3, Some(base + 2), 60, 70),
                ];
                out += j
                    .add_spans(traces("shop", spans), now)
                    .iter()
                    .map(TracesBatch::span_count)
                    .sum::<usize>();
            }
            out
        }));
        let j = join.clone();
        // Samples for every span of those traces, named by span id only, in reverse order.
        handles.push(std::thread::spawn(move || {
            for i in (0..traces_per_thread).rev() {
                let base = (t * 1000 + i) * 10 + 1;
                let plants: Vec<Plant> = (0..4)
                    .map(|k| Plant {
                        stack: vec!["main.work"],
                        count: k + 1,
                        span: Some(base + k),
                        ..Default::default()
                    })
                    .collect();
                j.add_profiles(&profiles("shop", &plants, false), now);
            }
            0
        }));
    }
    let early: usize = handles.into_iter().map(|h| h.join().expect("feeder")).sum();
    let out: usize = join
        .release_due(now + Duration::from_secs(11))
        .iter()
        .map(TracesBatch::span_count)
        .sum();
    assert_eq!(early + out, 4 * traces_per_thread as usize * 4);
    // 1 + 2 + 3 + 4 samples a trace, every one joined by span id.
    assert_eq!(
        join.stats.joined[Rule::Span as usize].load(Relaxed),
        4 * traces_per_thread * 10
    );
    assert_eq!(
        join.stats.unjoined.load(Relaxed) + join.stats.late.load(Relaxed),
        0
    );
    assert_eq!(join.pending_samples(), 0);
}

#[test]
fn output_options_are_honoured() {
    let cfg = SpanProfileConfig {
        attribute_prefix: "cpu.".into(),
        hot_path_frames: 2,
        top_functions: 1,
        emit_events: false,
        ..config()
    };
    let plants = vec![
        plant(&["main.leaf", "main.mid", "main.top", "main.main"], 3, 2),
        plant(&["main.other"], 1, 2),
    ];
    let join = Join::new(cfg);
    let out = run(
        &join,
        vec![
            Step::Spans(traces("shop", tree())),
            Step::Profiles(profiles("shop", &plants, false)),
        ],
    );
    let span = &out[&2];
    let get = |k: &str| {
        span.attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.clone())
            .and_then(|v| v.value)
    };
    // The leaf-most two frames, root first.
    assert_eq!(get("cpu.hot_path"), Some(s("main.mid;main.leaf")));
    match get("cpu.top_functions") {
        Some(any_value::Value::ArrayValue(a)) => assert_eq!(a.values.len(), 1),
        other => panic!("top_functions: {other:?}"),
    }
    assert!(span.attributes.iter().all(|a| !a.key.starts_with("profile.")));
    assert!(span.events.is_empty());
}

#[test]
fn big_traces_find_every_span() {
    // Past BIG_TRACE held spans a trace looks spans up through a map; spans leave one by one
    // (swap_remove reorders), duplicates are still caught, samples reach the right span and
    // CPU still rolls up to the root.
    let n = 3 * super::index::BIG_TRACE as u64;
    let mut spans = vec![span(1, None, 0, 10_000)];
    spans.extend((2..=n).map(|id| span(id, Some(1), id, id + 1)));
    let plants: Vec<Plant> = (2..=n)
        .step_by(7)
        .map(|id| plant(&["main.work"], 1, id))
        .collect();
    let join = Join::new(config());
    let now = Instant::now();
    let early = join.add_spans(traces("shop", spans), now);
    assert!(early.is_empty());
    let copies = join.add_spans(traces("shop", vec![span(n, Some(1), n, n + 1)]), now);
    assert_eq!(copies.iter().map(TracesBatch::span_count).sum::<usize>(), 1);
    join.add_profiles(&profiles("shop", &plants, false), now);
    let out = spans_by_id(join.release_due(now + Duration::from_secs(11)));
    assert_eq!(out.len(), n as usize);
    assert_eq!(join.held_spans(), 0);
    for id in 2..=n {
        let expected = if (id - 2) % 7 == 0 { 1 } else { 0 };
        assert_eq!(seen(&out[&id]).samples, expected, "span {id}");
    }
    assert_eq!(seen(&out[&1]).cpu_ns_total, plants.len() as i64 * 10 * MS as i64);
}

#[test]
fn released_spans_are_remembered_for_wait_then_forgotten() {
    use std::sync::atomic::Ordering::Relaxed;
    let join = Join::new(config());
    let t0 = Instant::now();
    tree_released(&join, t0);
    let only_span = |span| Plant {
        stack: vec!["main.x"],
        count: 1,
        span: Some(span),
        ..Default::default()
    };
    // Within `wait` of leaving, naming the trace or only the span: late.
    let at = t0 + Duration::from_secs(20);
    join.add_profiles(&profiles("shop", &[plant(&["main.x"], 2, 3)], false), at);
    join.add_profiles(&profiles("shop", &[only_span(4)], false), at);
    join.release_due(at);
    assert_eq!(join.stats.late.load(Relaxed), 3);
    assert_eq!(join.pending_samples(), 0);
    // Long after: forgotten, so such samples wait as for a span not seen yet, then expire.
    let later = t0 + Duration::from_secs(40);
    join.release_due(later);
    join.add_profiles(&profiles("shop", &[plant(&["main.x"], 2, 3)], false), later);
    join.add_profiles(&profiles("shop", &[only_span(4)], false), later);
    assert_eq!(join.stats.late.load(Relaxed), 3);
    assert_eq!(join.pending_samples(), 2);
    join.release_due(later + Duration::from_secs(11));
    assert_eq!(join.pending_samples(), 0);
    assert_eq!(join.stats.unjoined.load(Relaxed), 3);
}

#[test]
fn a_backlog_leaves_in_batches_of_bounded_size() {
    let join = Join::new(config());
    let now = Instant::now();
    // 40 requests of 512 spans, all due at once.
    for r in 0..40u64 {
        let spans = (0..512u64)
            .map(|i| span_in(1000 + r as u128, r * 1000 + i + 1, None, 0, 5))
            .collect();
        join.add_spans(traces("shop", spans), now);
    }
    for out in [join.release_due(now + Duration::from_secs(11)), {
        for r in 40..80u64 {
            let spans = (0..512u64)
                .map(|i| span_in(1000 + r as u128, r * 1000 + i + 1, None, 0, 5))
                .collect();
            join.add_spans(traces("shop", spans), now);
        }
        join.drain(now)
    }] {
        let sizes: Vec<usize> = out.iter().map(TracesBatch::span_count).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 40 * 512, "{sizes:?}");
        assert!(sizes.len() >= 2, "{sizes:?}");
        assert!(sizes.iter().all(|n| *n <= 8192 + 512), "{sizes:?}");
    }
}

#[test]
fn one_service_in_many_requests_leaves_under_one_resource() {
    let join = Join::new(config());
    let now = Instant::now();
    for (id, trace) in [(1, 10u128), (2, 11), (3, 12)] {
        join.add_spans(traces("shop", vec![span_in(trace, id, None, 0, 5)]), now);
    }
    join.add_spans(traces("cart", vec![span_in(13, 4, None, 0, 5)]), now);
    let out = join.release_due(now + Duration::from_secs(11));
    assert_eq!(out.len(), 1);
    let resources = out[0].resource_spans();
    let per_resource: Vec<usize> = resources
        .iter()
        .map(|r| r.scope_spans.iter().map(|s| s.spans.len()).sum())
        .collect();
    let mut sorted = per_resource.clone();
    sorted.sort();
    // Three requests of "shop" come out as one resource (and one scope), "cart" as another.
    assert_eq!(sorted, [1, 3], "{per_resource:?}");
    assert!(resources.iter().all(|r| r.scope_spans.len() == 1));
}

#[test]
fn spans_in_parent_cycles_each_leave_once() {
    // A span that is its own parent, and two that are each other's: the release walks stop.
    let join = Join::new(config());
    let spans = vec![
        span(7, Some(7), 0, 10),
        span(8, Some(9), 0, 10),
        span(9, Some(8), 0, 10),
    ];
    let out = run(&join, vec![Step::Spans(traces("shop", spans))]);
    assert_eq!(out.keys().copied().collect::<Vec<_>>(), [7, 8, 9]);
}

#[test]
fn a_span_that_has_a_pyroscope_profile_id_keeps_its_own_and_gets_no_second() {
    use hotspan_proto::otlp::common::v1::{AnyValue, KeyValue};
    // otel-profiling-go puts the id on the root span it labels; span 2 has none.
    let mut spans = tree();
    spans[0].attributes.push(KeyValue {
        key: "pyroscope.profile.id".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue("0000000000000001".into())),
        }),
        ..Default::default()
    });
    let plants = vec![plant(&["main.root"], 2, 1), plant(&["main.child"], 1, 2)];
    let join = Join::new(config());
    let out = run(
        &join,
        vec![
            Step::Spans(traces("shop", spans)),
            Step::Profiles(profiles("shop", &plants, false)),
        ],
    );
    let ids = |id: u64| -> Vec<String> {
        out[&id]
            .attributes
            .iter()
            .filter(|a| a.key == "pyroscope.profile.id")
            .filter_map(|a| match a.value.as_ref().and_then(|v| v.value.clone()) {
                Some(any_value::Value::StringValue(s)) => Some(s),
                _ => None,
            })
            .collect()
    };
    assert_eq!(seen(&out[&1]).samples, 2, "the root was joined");
    assert_eq!(ids(1), ["0000000000000001"]);
    assert_eq!(ids(2), ["0000000000000002"]);
}

/// An int attribute of a span, if it has it.
fn int_of(span: &Span, key: &str) -> Option<i64> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            any_value::Value::IntValue(i) => Some(*i),
            _ => None,
        })
}

#[test]
fn pauses_go_on_every_span_they_overlapped_and_no_further() {
    // tree(): 1 = 0-100 ms, 2 = 10-40, 3 = 50-90, 4 = 60-70 (under 3).
    let join = Join::new(config());
    join.add_logs(&pauses(
        "shop",
        &[
            (20, 500, "GC mark termination", true),   // inside 1 and 2
            (39, 2000, "GC sweep termination", true), // 39-41: 1 ms in 2, 2 ms in 1
            (65, 300, "read mem stats", false),       // inside 1, 3 and 4
            (150, 1000, "GC mark termination", true), // after everything
        ],
    ));
    join.add_logs(&pauses("other", &[(30, 5000, "GC mark termination", true)]));
    let out = run(&join, vec![Step::Spans(traces("shop", tree()))]);
    let pause_ns = |id: u64| int_of(&out[&id], "profile.gc.pause_ns");
    let count = |id: u64| int_of(&out[&id], "profile.gc.pauses");
    assert_eq!((pause_ns(1), count(1)), (Some(2_800_000), Some(3)));
    assert_eq!((pause_ns(2), count(2)), (Some(1_500_000), Some(2)));
    assert_eq!((pause_ns(3), count(3)), (Some(300_000), Some(1)));
    assert_eq!((pause_ns(4), count(4)), (Some(300_000), Some(1)));
    assert_eq!(int_of(&out[&4], "profile.gc.clock_error_ns"), Some(64));
    let events: Vec<(u64, String)> = out[&2]
        .events
        .iter()
        .filter(|e| e.name == "gc.pause")
        .map(|e| {
            let reason = e.attributes.iter().find(|a| a.key == "reason").and_then(|a| {
                match a.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                }
            });
            (e.time_unix_nano, reason.unwrap_or_default())
        })
        .collect();
    assert_eq!(
        events,
        [
            (T0 + 20 * MS, "GC mark termination".to_string()),
            (T0 + 39 * MS, "GC sweep termination".to_string())
        ]
    );
    // A span of a service with no pauses in its time gets nothing.
    let quiet = Join::new(config());
    quiet.add_logs(&pauses("shop", &[(500, 100, "GC mark termination", true)]));
    let out = run(&quiet, vec![Step::Spans(traces("shop", tree()))]);
    assert!(out
        .values()
        .all(|s| s.attributes.iter().all(|a| !a.key.starts_with("profile."))));
}

#[test]
fn throttling_is_prorated_over_the_intervals_a_span_covered() {
    // Readings every 20 ms: 4 ms throttled (2 periods) in 0-20, nothing in 20-40, 10 ms
    // (5 periods) in 40-60, 20 ms (10 periods) in 60-80, nothing after.
    let readings = [
        (0, 0, 0),
        (20, 4, 2),
        (40, 4, 2),
        (60, 14, 7),
        (80, 34, 17),
        (100, 34, 17),
    ];
    let join = Join::new(config());
    join.add_metrics(&cpu_stats("shop", &readings, Some(0.2)));
    let out = run(&join, vec![Step::Spans(traces("shop", tree()))]);
    let throttled = |id: u64| int_of(&out[&id], "profile.cpu.throttled_ns");
    let periods = |id: u64| int_of(&out[&id], "profile.cpu.throttled_periods");
    // 1 (0-100) covers it all; 2 (10-40) half of the first interval; 3 (50-90) half of
    // 40-60 and all of 60-80; 4 (60-70) half of 60-80.
    assert_eq!((throttled(1), periods(1)), (Some(34 * MS as i64), Some(17)));
    assert_eq!((throttled(2), periods(2)), (Some(2 * MS as i64), Some(1)));
    assert_eq!(throttled(3), Some(25 * MS as i64));
    assert_eq!(throttled(4), Some(10 * MS as i64));
    let quota = out[&4].attributes.iter().find(|a| a.key == "profile.cpu.quota");
    assert_eq!(
        quota.and_then(|a| a.value.clone()?.value),
        Some(any_value::Value::DoubleValue(0.2))
    );
    // Never more than the span lasted: 40 ms over 59-61 (as a counter could jump after a
    // missed poll) gives 4 (60-70) half of it, 20 ms, capped at its 10 ms.
    let join = Join::new(config());
    join.add_metrics(&cpu_stats("shop", &[(59, 0, 0), (61, 40, 20)], None));
    let out = run(&join, vec![Step::Spans(traces("shop", tree()))]);
    assert_eq!(int_of(&out[&4], "profile.cpu.throttled_ns"), Some(10 * MS as i64));
    assert_eq!(int_of(&out[&4], "profile.cpu.throttled_periods"), Some(10));
    assert!(out[&4].attributes.iter().all(|a| a.key != "profile.cpu.quota"));
}

fn str_of(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

fn strs_of(span: &Span, key: &str) -> Vec<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            any_value::Value::ArrayValue(arr) => Some(
                arr.values
                    .iter()
                    .filter_map(|v| match &v.value {
                        Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

/// A goroutine caught by snapshots at `times_ms` in `span`, `stack` leaf first.
fn caught(stack: &[&'static str], span: u64, count: u64, times_ms: &[u64]) -> Plant {
    Plant {
        stack: stack.to_vec(),
        count,
        span: Some(span),
        trace: Some(TRACE),
        times_ms: times_ms.to_vec(),
        ..Default::default()
    }
}

#[test]
fn goroutine_snapshots_estimate_blocked_time_with_its_reason_and_stack() {
    const CHAN: &[&str] = &[
        "runtime.gopark",
        "runtime.chanrecv",
        "runtime.chanrecv1",
        "main.awaitQuote",
        "main.handle",
    ];
    const MUTEX: &[&str] = &[
        "runtime.gopark",
        "runtime.semacquire1",
        "sync.runtime_SemacquireMutex",
        "sync.(*Mutex).Lock",
        "main.lockInventory",
    ];
    const SLEEP: &[&str] = &["runtime.gopark", "time.Sleep", "main.backOff"];
    // Snapshots every 10 ms. tree(): 1 = 0-100 ms, 2 = 10-40, 3 = 50-90, 4 = 60-70 (in 3).
    let snapshots = goroutines(
        "shop",
        &[
            caught(CHAN, 2, 1, &[15, 25, 35]),
            caught(MUTEX, 3, 2, &[55]),
            caught(&["main.totalOrder", "main.handle"], 3, 1, &[85]),
            // Three snapshots of 10 ms in a 10 ms span: capped at its duration.
            caught(SLEEP, 4, 1, &[61, 65, 69]),
        ],
        10,
    );
    let join = Join::new(config());
    let out = run(
        &join,
        vec![Step::Spans(traces("shop", tree())), Step::Profiles(snapshots)],
    );
    let ms = |x: i64| Some(x * MS as i64);
    assert_eq!(int_of(&out[&2], "profile.wait_ns"), ms(30));
    assert_eq!(strs_of(&out[&2], "profile.wait_reasons"), ["chan receive 100.0%"]);
    assert_eq!(
        str_of(&out[&2], "profile.wait_path").as_deref(),
        Some("main.handle;main.awaitQuote;runtime.chanrecv1")
    );
    assert_eq!(
        str_of(&out[&2], "profile.wait_source").as_deref(),
        Some("goroutine")
    );
    assert_eq!(int_of(&out[&3], "profile.wait_ns"), ms(20));
    assert_eq!(
        strs_of(&out[&3], "profile.wait_reasons"),
        ["sync.Mutex.Lock 100.0%"]
    );
    assert_eq!(
        str_of(&out[&3], "profile.wait_path").as_deref(),
        Some("main.lockInventory;sync.(*Mutex).Lock")
    );
    // Caught running once (10 ms), with no CPU samples: runnable, not waiting.
    assert_eq!(int_of(&out[&3], "profile.runnable_ns"), ms(10));
    assert_eq!(int_of(&out[&4], "profile.wait_ns"), ms(10));
    // Descendants roll up, each capped at its own duration.
    assert_eq!(int_of(&out[&3], "profile.wait_ns_total"), ms(30));
    assert_eq!(int_of(&out[&1], "profile.wait_ns"), None);
    assert_eq!(int_of(&out[&1], "profile.wait_ns_total"), ms(60));
    // Snapshots carry no CPU.
    assert!(out.values().all(|s| int_of(s, "profile.cpu_ns").is_none()));
}

#[test]
fn off_cpu_samples_are_exact_blocked_time() {
    let off = off_cpu(
        "shop",
        &[
            // 12 ms off CPU ending at 30 ms, in span 2; 5 ms ending at 80 in span 3.
            caught(
                &["schedule", "do_nanosleep", "time.Sleep", "main.nap"],
                2,
                12,
                &[30],
            ),
            caught(
                &["schedule", "futex_wait", "runtime.futex", "main.spin"],
                3,
                5,
                &[80],
            ),
        ],
    );
    let join = Join::new(config());
    let out = run(
        &join,
        vec![Step::Spans(traces("shop", tree())), Step::Profiles(off)],
    );
    assert_eq!(int_of(&out[&2], "profile.wait_ns"), Some(12 * MS as i64));
    assert_eq!(strs_of(&out[&2], "profile.wait_reasons"), ["sleep 100.0%"]);
    assert_eq!(
        str_of(&out[&2], "profile.wait_source").as_deref(),
        Some("off_cpu")
    );
    assert_eq!(strs_of(&out[&3], "profile.wait_reasons"), ["off CPU 100.0%"]);
    assert_eq!(int_of(&out[&3], "profile.runnable_ns"), None);
}

/// `batch` with its resource replaced by these attributes.
fn with_resource(
    batch: ProfilesBatch,
    attrs: Vec<hotspan_proto::otlp::common::v1::KeyValue>,
) -> ProfilesBatch {
    let mut request = batch.request().clone();
    for rp in &mut request.resource_profiles {
        rp.resource = Some(hotspan_proto::otlp::resource::v1::Resource {
            attributes: attrs.clone(),
            ..Default::default()
        });
    }
    ProfilesBatch::from_request(request)
}

#[test]
fn profiles_naming_no_service_match_spans_of_their_process() {
    use hotspan_proto::otlp::resource::v1::Resource;
    let int = |i: i64| any_value::Value::IntValue(i);
    // The eBPF profiler's shape: a process, its executable, labels as process.context.label.*,
    // timestamps. The trace rule with timestamps looks at resources.
    let plants = [Plant {
        stack: vec!["main.validateCart"],
        count: 1,
        trace: Some(TRACE),
        as_labels: true,
        times_ms: vec![20, 30],
        ..Default::default()
    }];
    let profile = |attrs| with_resource(profiles("shop", &plants, true), attrs);
    let ours = vec![
        kv("process.pid", int(4242)),
        kv("process.executable.name", s("shop-server")),
    ];
    let theirs = vec![
        kv("process.pid", int(999)),
        kv("process.executable.name", s("shop-server")),
    ];
    let spans = || {
        let mut batch = traces("shop", tree()).into_resource_spans();
        batch[0].resource = Some(Resource {
            attributes: vec![kv("service.name", s("shop")), kv("process.pid", int(4242))],
            ..Default::default()
        });
        TracesBatch::from_resource_spans(batch)
    };
    let joined = |config: SpanProfileConfig, attrs| {
        let join = Join::new(config);
        let out = run(&join, vec![Step::Spans(spans()), Step::Profiles(profile(attrs))]);
        seen(&out[&2]).samples
    };
    assert_eq!(joined(config(), ours.clone()), 2, "same pid");
    assert_eq!(joined(config(), theirs.clone()), 0, "another process");
    // A sidecar's mapping: the executable names the service (its pid may be the host's).
    let mapped = SpanProfileConfig {
        service_by_executable: [("shop-server".to_string(), "shop".to_string())].into(),
        ..config()
    };
    assert_eq!(joined(mapped, theirs.clone()), 2, "by executable");
    let fallback = SpanProfileConfig {
        default_service: Some("shop".into()),
        ..config()
    };
    assert_eq!(joined(fallback, theirs), 2, "default service");
}

#[test]
fn a_sample_taken_when_its_labelled_span_was_not_running_is_not_given_to_it() {
    use std::sync::atomic::Ordering::Relaxed;
    // Labelled span 2 (10-40 ms); one timestamp inside, one at 80 ms (span 3's time): the
    // eBPF profiler merged two events' stacks under the first one's labels.
    let plants = [Plant {
        stack: vec!["main.validateCart"],
        count: 1,
        span: Some(2),
        trace: Some(TRACE),
        as_labels: true,
        times_ms: vec![20, 80],
        ..Default::default()
    }];
    let join = Join::new(config());
    let out = run(
        &join,
        vec![
            Step::Spans(traces("shop", tree())),
            Step::Profiles(profiles("shop", &plants, true)),
        ],
    );
    assert_eq!(seen(&out[&2]).samples, 1);
    assert_eq!(seen(&out[&3]).samples, 0);
    assert_eq!(join.stats.misfits.load(Relaxed), 1);
    assert_eq!(join.stats.unjoined.load(Relaxed), 1);
}

#[test]
fn the_thread_rule_finds_spans_whose_resource_says_more_than_the_samples() {
    use hotspan_proto::otlp::resource::v1::Resource;
    let int = |i: i64| any_value::Value::IntValue(i);
    let mut spans = tree();
    for sp in &mut spans {
        sp.attributes.push(kv("thread.id", int(7)));
    }
    // The spans' resource names the service, its pid and host; samples name only one of them.
    let mut batch = traces("shop", spans).into_resource_spans();
    batch[0].resource = Some(Resource {
        attributes: vec![
            kv("service.name", s("shop")),
            kv("process.pid", int(4242)),
            kv("host.name", s("node-1")),
        ],
        ..Default::default()
    });
    let on7 = |ms: u64| Plant {
        stack: vec!["main.work"],
        thread: Some(7),
        times_ms: vec![ms],
        ..Default::default()
    };
    let by_service = profiles("shop", &[on7(20)], true);
    let by_pid = with_resource(
        profiles("shop", &[on7(65)], true),
        vec![kv("process.pid", int(4242))],
    );
    let join = Join::new(config());
    let out = run(
        &join,
        vec![
            Step::Spans(TracesBatch::from_resource_spans(batch)),
            Step::Profiles(by_service),
            Step::Profiles(by_pid),
        ],
    );
    assert_eq!(
        (seen(&out[&2]).samples, seen(&out[&2]).join.as_str()),
        (1, "thread")
    );
    assert_eq!(
        (seen(&out[&4]).samples, seen(&out[&4]).join.as_str()),
        (1, "thread")
    );
}

#[test]
fn samples_that_came_before_their_spans_wait_while_the_spans_are_held() {
    use std::sync::atomic::Ordering::Relaxed;
    // Trace ids only, timestamped: they wait on the trace. The spans come a second later
    // (a batch processor held them back); the samples' own wait runs out first.
    let plants = [Plant {
        stack: vec!["main.work"],
        count: 1,
        trace: Some(TRACE),
        times_ms: vec![20, 30, 95],
        ..Default::default()
    }];
    let join = Join::new(config());
    let t0 = Instant::now();
    join.add_profiles(&profiles("shop", &plants, true), t0);
    assert!(join
        .add_spans(traces("shop", tree()), t0 + Duration::from_secs(1))
        .is_empty());
    // 10.5 s: the samples' wait is over, the spans' not yet.
    assert!(join.release_due(t0 + Duration::from_millis(10_500)).is_empty());
    assert_eq!(join.stats.unjoined.load(Relaxed), 0);
    let out = spans_by_id(join.release_due(t0 + Duration::from_secs(12)));
    assert_eq!(seen(&out[&2]).samples, 2);
    assert_eq!(seen(&out[&1]).samples, 1);
    assert_eq!(join.stats.unjoined.load(Relaxed), 0);
    assert_eq!(join.pending_samples(), 0);
}

#[test]
fn packed_spans_leave_exactly_as_unpacked_ones() {
    use hotspan_proto::synthetic::{linked_profiles, service_name, Rng, Shape, Template};
    use hotspan_proto::Encoding;
    use prost::Message;

    let template = Template::new(Shape::Realistic, 0, 512, 5).expect("template");
    let now_ns = 1_700_000_000_000_000_000;
    let (body, ids) = template.fill(&mut Rng::new(3), 1, now_ns);
    let profiles = ProfilesBatch::from_request(linked_profiles(
        service_name(Shape::Realistic, 0),
        &ids,
        300,
        now_ns,
    ));
    let leaving = |held_compression| {
        let join = Join::new(SpanProfileConfig {
            held_compression,
            ..config()
        });
        let now = Instant::now();
        let mut batch = TracesBatch::decode(&body, Encoding::Protobuf).expect("decodes");
        // Two requests, a trace cut between them: the younger block's half of that trace
        // leaves with its root, on its own, out of a packed block.
        let older = batch.split_front(260);
        let mut out = join.add_spans(older, now);
        out.extend(join.add_spans(batch, now));
        join.add_profiles(&profiles, now);
        // Every span again: the copies leave at once, before their block is packed.
        out.extend(join.add_spans(
            TracesBatch::decode(&body, Encoding::Protobuf).expect("decodes"),
            now,
        ));
        out.extend(join.drain(now));
        let mut spans: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = out
            .into_iter()
            .flat_map(TracesBatch::into_resource_spans)
            .flat_map(|rs| {
                let resource = rs.resource.unwrap_or_default().encode_to_vec();
                rs.scope_spans.into_iter().flat_map(move |ss| {
                    let (resource, scope) = (resource.clone(), ss.scope.unwrap_or_default().encode_to_vec());
                    ss.spans
                        .into_iter()
                        .map(move |s| (resource.clone(), scope.clone(), s.encode_to_vec()))
                })
            })
            .collect();
        spans.sort();
        let annotated = spans
            .iter()
            .filter(|(_, _, s)| Span::decode(&s[..]).is_ok_and(|s| int_of(&s, "profile.cpu_ns").is_some()))
            .count();
        (spans, annotated)
    };
    let (packed, annotated) = leaving(HeldCompression::Snappy);
    let (received, _) = leaving(HeldCompression::None);
    assert_eq!(packed.len(), 1024);
    assert!(annotated >= 256, "{annotated} annotated");
    assert!(packed == received, "packed spans left changed");
}
