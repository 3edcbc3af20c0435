//! Counters and gauges rendered as Prometheus text. Registration takes a lock; counting is one
//! atomic add on a handle the component keeps.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Default, Debug)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A counter following a total counted elsewhere (e.g. by the join's own atomics) by adding
/// its growth: a series is shared with the component a reload replaced, so it must keep
/// counting up from where that one left it, not restart from the new component's zero.
pub struct Follower {
    counter: Counter,
    seen: AtomicU64,
}

impl Follower {
    pub fn new(counter: Counter) -> Self {
        Follower {
            counter,
            seen: AtomicU64::new(0),
        }
    }

    pub fn follow(&self, total: u64) {
        let before = self.seen.swap(total, Ordering::Relaxed);
        self.counter.add(total.saturating_sub(before));
    }
}

#[derive(Clone, Default, Debug)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn set(&self, n: i64) {
        self.0.store(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

enum Series {
    Counter(Counter),
    Gauge(Gauge),
}

struct Family {
    help: &'static str,
    /// Rendered label set -> value.
    series: BTreeMap<String, Series>,
}

#[derive(Default)]
pub struct Metrics {
    families: Mutex<BTreeMap<String, Family>>,
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ = write!(out, "{k}=\"{v}\"");
    }
    out
}

impl Metrics {
    /// The counter for this name and label set; the same handle every time it is asked for.
    pub fn counter(&self, name: &str, help: &'static str, labels: &[(&str, &str)]) -> Counter {
        let mut families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let family = families.entry(name.to_string()).or_insert_with(|| Family {
            help,
            series: BTreeMap::new(),
        });
        match family
            .series
            .entry(render_labels(labels))
            .or_insert_with(|| Series::Counter(Counter::default()))
        {
            Series::Counter(c) => c.clone(),
            // A name is registered as one kind in code; a mismatch is a bug, so count nowhere.
            Series::Gauge(_) => Counter::default(),
        }
    }

    pub fn gauge(&self, name: &str, help: &'static str, labels: &[(&str, &str)]) -> Gauge {
        let mut families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let family = families.entry(name.to_string()).or_insert_with(|| Family {
            help,
            series: BTreeMap::new(),
        });
        match family
            .series
            .entry(render_labels(labels))
            .or_insert_with(|| Series::Gauge(Gauge::default()))
        {
            Series::Gauge(g) => g.clone(),
            Series::Counter(_) => Gauge::default(),
        }
    }

    /// The sum of every series of the counter `name`; None when nothing registered it.
    pub fn counter_total(&self, name: &str) -> Option<u64> {
        let families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let family = families.get(name)?;
        Some(
            family
                .series
                .values()
                .map(|s| match s {
                    Series::Counter(c) => c.get(),
                    Series::Gauge(_) => 0,
                })
                .fold(0u64, u64::saturating_add),
        )
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (name, family) in families.iter() {
            let kind = match family.series.values().next() {
                Some(Series::Gauge(_)) => "gauge",
                _ => "counter",
            };
            let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {kind}", family.help);
            for (labels, series) in &family.series {
                let value = match series {
                    Series::Counter(c) => c.get() as i128,
                    Series::Gauge(g) => g.get() as i128,
                };
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {value}");
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_replacing_another_keeps_the_series_counting_up() {
        let m = Metrics::default();
        let series = || {
            m.counter(
                "hotspan_spanprofile_late_samples",
                "Late.",
                &[("connector", "sp")],
            )
        };
        let first = Follower::new(series());
        first.follow(5);
        first.follow(7);
        // A reload: the new join counts from zero into the same series.
        let second = Follower::new(series());
        second.follow(3);
        assert_eq!(m.counter_total("hotspan_spanprofile_late_samples"), Some(10));
    }

    #[test]
    fn renders_counters_and_gauges_with_labels() {
        let m = Metrics::default();
        let c = m.counter(
            "otelcol_receiver_accepted_spans",
            "Spans accepted.",
            &[("receiver", "otlp"), ("transport", "grpc")],
        );
        c.add(3);
        m.counter(
            "otelcol_receiver_accepted_spans",
            "Spans accepted.",
            &[("receiver", "otlp"), ("transport", "grpc")],
        )
        .add(2);
        m.gauge(
            "otelcol_exporter_queue_size",
            "Queue size.",
            &[("exporter", "a\"b")],
        )
        .set(7);
        assert_eq!(m.counter_total("otelcol_receiver_accepted_spans"), Some(5));
        assert_eq!(m.counter_total("nothing"), None);
        let text = m.render();
        assert!(
            text.contains("otelcol_receiver_accepted_spans{receiver=\"otlp\",transport=\"grpc\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE otelcol_exporter_queue_size gauge"),
            "{text}"
        );
        assert!(
            text.contains("otelcol_exporter_queue_size{exporter=\"a\\\"b\"} 7"),
            "{text}"
        );
    }
}
