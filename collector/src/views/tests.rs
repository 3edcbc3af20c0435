//! The aggregation end to end: spans in, names, percentiles, bounds and the window out.

use std::time::{Duration, Instant};

use super::*;
use crate::report::{HotPath, SpanRecord};

fn span(name: &str, d: u64, stacks: &[(&str, u64)]) -> SpanRecord {
    let cpu: u64 = stacks.iter().map(|(_, w)| w).sum();
    SpanRecord {
        name: name.into(),
        service: "shop".into(),
        trace_id: format!("{d:032x}"),
        span_id: format!("{d:016x}"),
        duration_ns: d,
        samples: u64::from(cpu > 0),
        cpu_ns: cpu,
        hot_paths: stacks
            .iter()
            .map(|(s, w)| HotPath {
                stack: s.to_string(),
                samples: 1,
                cpu_ns: *w,
                share: 0.0,
            })
            .collect(),
        ..Default::default()
    }
}

fn key(name: &str) -> NameKey {
    ("shop".into(), name.into())
}

#[test]
fn names_get_counts_percentiles_stacks_and_slow_versus_fast() {
    let mut v = Views::new(Limits::PAGE);
    let mut interner = Interner::new(100);
    for d in 1..=200u64 {
        let mut stacks = vec![("main;charge", 10_000)];
        if d > 180 {
            stacks.push(("main;charge;slowPath", 60_000));
        }
        let mut s = span("charge card", d * 1000, &stacks);
        // The span's CPU beyond its events' stacks.
        s.cpu_ns += 500;
        v.add(&s, 0, &mut interner);
    }
    let m = v.into_merged();
    let n = &m.names[&key("charge card")];
    assert_eq!(n.count, 200);
    let p50 = n.durations.percentile(0.5) as f64;
    assert!((p50 - 100_000.0).abs() <= 500.0, "{p50}");
    assert!((n.durations.percentile(0.99) as f64 - 198_000.0).abs() <= 990.0);
    assert_eq!(n.stacks["main;charge"], 2_000_000);
    assert_eq!(n.stacks["main;charge;slowPath"], 1_200_000);
    assert_eq!(n.stacks[OTHER_STACKS], 100_000);
    assert_eq!(n.cpu_ns, 3_300_000);
    let sf = slow_fast(&n.kept_merged).unwrap();
    assert_eq!(sf.slow_spans, 20.0);
    let grew = sf.grew().unwrap();
    assert_eq!(grew.0, "slowPath");
    assert!((grew.2 - 60_000.0).abs() < 1e-6 && grew.1 == 0.0, "{grew:?}");
}

#[test]
fn bounds_hold_and_what_did_not_fit_is_counted() {
    let limits = Limits {
        names: 3,
        stacks_per_name: 4,
        stacks: 6,
        kept_per_name: 10,
        label_sets: 2,
        functions: 2,
    };
    let mut v = Views::new(limits);
    let mut interner = Interner::new(limits.stacks);
    for i in 0..1000u64 {
        let stack = format!("main;f{}", i % 50);
        let mut s = span(&format!("n{}", i % 5), 1 + i, &[(&stack, 10)]);
        s.labels.insert("stage".into(), format!("s{}", i % 7));
        s.top_functions = vec![(format!("f{}", i % 50), 1.0)];
        v.add(&s, 0, &mut interner);
    }
    assert_eq!(v.names.len(), 3);
    assert_eq!(v.dropped.name_spans, 400);
    assert_eq!(v.labels.len(), 2);
    assert!(v.dropped.label_spans > 0);
    assert!(interner.len() <= limits.stacks + 1);
    for n in v.names.values() {
        assert!(n.stacks.len() <= limits.stacks_per_name + 1, "{}", n.stacks.len());
        assert!(n.functions.len() <= limits.functions);
        assert_eq!(n.kept.items.len(), limits.kept_per_name);
        // Nothing is lost from the totals: over-the-bound stacks are summed, not dropped.
        assert_eq!(n.stacks.values().sum::<u64>(), n.cpu_ns);
        assert!(n.stacks_over_cap > 0);
        // The kept sample stands for every span of the name.
        let weighted: f64 = n.kept.weighted().map(|k| k.weight).sum();
        assert!((weighted - n.count as f64).abs() < 1e-9);
    }
    assert!(v.dropped.stacks > 0);
}

#[test]
fn children_in_the_same_group_count_as_in_child_spans() {
    let parent = SpanRecord {
        parent_span_id: String::new(),
        ..span("checkout", 100, &[])
    };
    let mut child = span("charge card", 40, &[("main;charge", 10)]);
    child.trace_id = parent.trace_id.clone();
    child.parent_span_id = parent.span_id.clone();
    child.start_unix_nano = 30;
    child.wait_ns = Some(20);
    child.wait_reasons = vec![("sleep".into(), 1.0)];
    let mut v = Views::new(Limits::PAGE);
    v.add_group(&[parent, child], &mut Interner::new(10));
    let p = &v.names[&key("checkout")].parts;
    assert_eq!((p.children, p.unexplained), (40, 60));
    let c = &v.names[&key("charge card")].parts;
    assert_eq!(
        (c.cpu, c.wait["sleep"], c.unexplained, c.with_breakdown),
        (10, 20, 10, 1)
    );
    let segs = c.mean_segments();
    assert_eq!(segs.iter().map(|s| s.ns).sum::<u64>(), 40);
}

#[test]
fn the_window_forgets_old_slices_and_their_stacks() {
    let mut w = Window::new(Duration::from_secs(10), Limits::PAGE);
    let t0 = Instant::now();
    w.add_group(t0, &[span("old", 5, &[("main;old", 10)])]);
    w.add_group(
        t0 + Duration::from_secs(5),
        &[span("new", 5, &[("main;new", 10)])],
    );
    let m = w.merged(t0 + Duration::from_secs(6), &|_| true);
    assert_eq!(m.names.len(), 2);
    assert!(m.names.values().all(|n| n.kept_merged.len() == 1));
    drop(m);
    // At 11.5 s the first slice (0-1 s) ended more than 10 s ago.
    let m = w.merged(t0 + Duration::from_millis(11_500), &|_| false);
    assert_eq!(m.names.keys().map(|k| k.1.as_str()).collect::<Vec<_>>(), ["new"]);
    // Only the names asked for bring their kept spans.
    assert!(m.names.values().all(|n| n.kept_merged.is_empty() && n.count == 1));
    drop(m);
    assert_eq!(w.stacks_held(), 1);
    assert!(w.slices() <= 11);
}
