//! What happened to a whole process over time rather than to one span: stop-the-world pauses
//! (Go execution traces, arriving as OTLP logs) and CPU throttling (cgroup counters, arriving
//! as OTLP metrics). Kept per resource and bounded; when a span leaves it gets the part that
//! overlapped it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hotspan_proto::otlp::common::v1::{any_value, KeyValue};
use hotspan_proto::otlp::metrics::v1::{metric, number_data_point, NumberDataPoint};
use hotspan_proto::{LogsBatch, MetricsBatch};

use super::index::lock;
use super::model::ResourceKey;

/// The OTLP names the sources write (`pprof_scrape`'s trace scrapes, the `cgroup` receiver).
pub const STW_EVENT: &str = "go.stw";
const STW_REASON: &str = "go.stw.reason";
const STW_GC: &str = "go.stw.gc";
const STW_DURATION: &str = "go.stw.duration_ns";
const STW_CLOCK_ERROR: &str = "go.trace.clock_error_ns";
pub const THROTTLED_TIME: &str = "container.cpu.throttling_data.throttled_time";
pub const THROTTLED_PERIODS: &str = "container.cpu.throttling_data.throttled_periods";
pub const CPU_LIMIT: &str = "container.cpu.limit";

/// Entries one resource keeps of each kind; past it the oldest go.
const MAX_ENTRIES: usize = 100_000;
/// Pause events written on one span; the attributes still count them all.
pub const MAX_PAUSE_EVENTS: usize = 8;

/// One stop-the-world pause, Unix ns.
#[derive(Clone, Debug, PartialEq)]
pub struct Pause {
    pub start: u64,
    pub end: u64,
    pub reason: Arc<str>,
    pub gc: bool,
    /// How far the trace's clock may be off Unix time here.
    pub clock_error: u64,
}

/// A reading of the cgroup's cumulative counters.
#[derive(Clone, Copy, Debug, PartialEq)]
struct CpuStat {
    at: u64,
    throttled_ns: u64,
    throttled_periods: u64,
}

/// One resource's history.
#[derive(Default)]
struct Timeline {
    /// In start order.
    pauses: VecDeque<Pause>,
    /// In time order.
    stats: VecDeque<CpuStat>,
    /// The latest CPU quota in cores, if any.
    quota: Option<f64>,
}

/// What overlapped one span.
#[derive(Debug, Default, PartialEq)]
pub struct Overlap {
    pub pause_ns: u64,
    pub pauses: Vec<Pause>,
    pub pause_count: u64,
    pub clock_error: u64,
    pub throttled_ns: u64,
    pub throttled_periods: u64,
    pub quota: Option<f64>,
}

impl Overlap {
    pub fn is_empty(&self) -> bool {
        self.pause_count == 0 && self.throttled_ns == 0 && self.throttled_periods == 0
    }
}

/// One resource's timeline, shared by the spans reading it.
type Shared = Arc<Mutex<Timeline>>;

/// Every resource's timeline. Few resources (one per service instance), so a list.
#[derive(Default)]
pub struct Timelines {
    resources: Mutex<Vec<(Arc<ResourceKey>, Shared)>>,
    /// How far back entries are kept, behind the newest seen.
    keep: Duration,
}

/// A handle on the timelines that match one resource of spans.
#[derive(Clone, Default)]
pub struct Matching(Vec<Shared>);

impl Matching {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What overlapped `[start, end]` (Unix ns): pauses and prorated throttling, never more
    /// than the span lasted.
    pub fn overlap(&self, start: u64, end: u64) -> Overlap {
        let mut o = Overlap::default();
        let duration = end.saturating_sub(start);
        for t in &self.0 {
            let t = lock(t);
            t.pauses_in(start, end, &mut o);
            t.throttling_in(start, end, &mut o);
            o.quota = o.quota.or(t.quota);
        }
        o.pause_ns = o.pause_ns.min(duration);
        o.throttled_ns = o.throttled_ns.min(duration);
        o
    }
}

fn int_attr(attrs: &[KeyValue], key: &str) -> Option<u64> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .and_then(|v| match v {
            any_value::Value::IntValue(i) => u64::try_from(*i).ok(),
            any_value::Value::DoubleValue(d) if *d >= 0.0 => Some(*d as u64),
            _ => None,
        })
}

fn str_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

fn bool_attr(attrs: &[KeyValue], key: &str) -> bool {
    attrs.iter().any(|kv| {
        kv.key == key
            && matches!(
                kv.value.as_ref().and_then(|v| v.value.as_ref()),
                Some(any_value::Value::BoolValue(true))
            )
    })
}

fn point_value(p: &NumberDataPoint) -> Option<f64> {
    match p.value? {
        number_data_point::Value::AsInt(i) => Some(i as f64),
        number_data_point::Value::AsDouble(d) => Some(d),
    }
}

impl Timeline {
    fn add_pause(&mut self, p: Pause) {
        // Traces arrive in order; a pause out of order goes to its place.
        let at = self.pauses.partition_point(|q| q.start <= p.start);
        if self.pauses.get(at.wrapping_sub(1)) == Some(&p) {
            return;
        }
        self.pauses.insert(at, p);
        if self.pauses.len() > MAX_ENTRIES {
            self.pauses.pop_front();
        }
    }

    fn add_stat(&mut self, s: CpuStat) {
        let at = self.stats.partition_point(|q| q.at < s.at);
        match self.stats.get_mut(at) {
            // Two metrics of one poll share a time: merge them.
            Some(q) if q.at == s.at => {
                q.throttled_ns = q.throttled_ns.max(s.throttled_ns);
                q.throttled_periods = q.throttled_periods.max(s.throttled_periods);
            }
            _ => self.stats.insert(at, s),
        }
        if self.stats.len() > MAX_ENTRIES {
            self.stats.pop_front();
        }
    }

    /// Drops what ended more than `keep` before the newest entry.
    fn forget_before(&mut self, keep: Duration) {
        let newest = self
            .pauses
            .back()
            .map(|p| p.end)
            .into_iter()
            .chain(self.stats.back().map(|s| s.at))
            .max()
            .unwrap_or(0);
        let horizon = newest.saturating_sub(keep.as_nanos() as u64);
        while self.pauses.front().is_some_and(|p| p.end < horizon) {
            self.pauses.pop_front();
        }
        // Keep one reading before the horizon: it starts the first interval after it.
        while self.stats.get(1).is_some_and(|s| s.at < horizon) {
            self.stats.pop_front();
        }
    }

    fn pauses_in(&self, start: u64, end: u64, o: &mut Overlap) {
        // Pauses are short and do not overlap each other: those starting before `end` and
        // ending after `start`, found from the first that could.
        let from = self.pauses.partition_point(|p| p.end < start);
        for p in self.pauses.range(from..) {
            if p.start > end {
                break;
            }
            let overlap = p.end.min(end).saturating_sub(p.start.max(start));
            if overlap == 0 && p.end > p.start {
                continue;
            }
            o.pause_ns = o.pause_ns.saturating_add(overlap);
            o.pause_count += 1;
            o.clock_error = o.clock_error.max(p.clock_error);
            if o.pauses.len() < MAX_PAUSE_EVENTS {
                o.pauses.push(p.clone());
            }
        }
    }

    /// The counters' growth over each polling interval, shared out by how much of the
    /// interval the span covered: an estimate, as throttling within an interval is not
    /// known more finely.
    fn throttling_in(&self, start: u64, end: u64, o: &mut Overlap) {
        let from = self.stats.partition_point(|s| s.at < start).saturating_sub(1);
        let mut prev: Option<&CpuStat> = None;
        let (mut ns, mut periods) = (0.0f64, 0.0f64);
        for s in self.stats.range(from..) {
            if let Some(p) = prev {
                let (a, b) = (p.at, s.at);
                let covered = end.min(b).saturating_sub(start.max(a));
                if b > a && covered > 0 {
                    let f = covered as f64 / (b - a) as f64;
                    ns += s.throttled_ns.saturating_sub(p.throttled_ns) as f64 * f;
                    periods += s.throttled_periods.saturating_sub(p.throttled_periods) as f64 * f;
                }
                if a >= end {
                    break;
                }
            }
            prev = Some(s);
        }
        o.throttled_ns = o.throttled_ns.saturating_add(ns.round() as u64);
        o.throttled_periods = o.throttled_periods.saturating_add(periods.round() as u64);
    }
}

impl Timelines {
    /// Entries are kept `keep` behind the newest: long enough for any span still held.
    pub fn new(keep: Duration) -> Self {
        Timelines {
            resources: Mutex::new(Vec::new()),
            keep,
        }
    }

    fn timeline(&self, key: ResourceKey) -> Shared {
        let mut all = lock(&self.resources);
        if let Some((_, t)) = all.iter().find(|(k, _)| **k == key) {
            return t.clone();
        }
        let t = Arc::new(Mutex::new(Timeline::default()));
        all.push((Arc::new(key), t.clone()));
        t
    }

    /// The timelines a span of resource `key` reads; empty (and free) when none match.
    pub fn matching(&self, key: &ResourceKey) -> Matching {
        let all = lock(&self.resources);
        if all.is_empty() {
            return Matching::default();
        }
        Matching(
            all.iter()
                .filter(|(k, _)| k.matches(key))
                .map(|(_, t)| t.clone())
                .collect(),
        )
    }

    /// Takes stop-the-world pauses from `go.stw` log records; returns how many.
    pub fn add_logs(&self, batch: &LogsBatch) -> usize {
        let mut n = 0;
        for rl in batch.resources() {
            let key = rl
                .resource
                .as_ref()
                .map(|r| ResourceKey::from_attributes(&r.attributes))
                .unwrap_or_default();
            let pauses: Vec<Pause> = rl
                .scope_logs
                .iter()
                .flat_map(|s| &s.log_records)
                .filter(|r| r.event_name == STW_EVENT && r.time_unix_nano > 0)
                .map(|r| Pause {
                    start: r.time_unix_nano,
                    end: r
                        .time_unix_nano
                        .saturating_add(int_attr(&r.attributes, STW_DURATION).unwrap_or(0)),
                    reason: Arc::from(str_attr(&r.attributes, STW_REASON).unwrap_or("")),
                    gc: bool_attr(&r.attributes, STW_GC),
                    clock_error: int_attr(&r.attributes, STW_CLOCK_ERROR).unwrap_or(0),
                })
                .collect();
            if pauses.is_empty() {
                continue;
            }
            n += pauses.len();
            let t = self.timeline(key);
            let mut t = lock(&t);
            for p in pauses {
                t.add_pause(p);
            }
            t.forget_before(self.keep);
        }
        n
    }

    /// Takes cgroup CPU readings (cumulative throttled time and periods, the quota); returns
    /// how many data points it used.
    pub fn add_metrics(&self, batch: &MetricsBatch) -> usize {
        let mut n = 0;
        for rm in batch.resources() {
            let key = rm
                .resource
                .as_ref()
                .map(|r| ResourceKey::from_attributes(&r.attributes))
                .unwrap_or_default();
            let mut stats = Vec::new();
            let mut quota = None;
            for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                let points = match &m.data {
                    Some(metric::Data::Sum(s)) => &s.data_points,
                    Some(metric::Data::Gauge(g)) => &g.data_points,
                    _ => continue,
                };
                for p in points {
                    let Some(v) = point_value(p).filter(|v| v.is_finite() && *v >= 0.0) else {
                        continue;
                    };
                    let stat = |ns: u64, periods: u64| CpuStat {
                        at: p.time_unix_nano,
                        throttled_ns: ns,
                        throttled_periods: periods,
                    };
                    match m.name.as_str() {
                        THROTTLED_TIME => stats.push(stat(v as u64, 0)),
                        THROTTLED_PERIODS => stats.push(stat(0, v as u64)),
                        CPU_LIMIT => quota = Some(v),
                        _ => continue,
                    }
                    n += 1;
                }
            }
            if stats.is_empty() && quota.is_none() {
                continue;
            }
            let t = self.timeline(key);
            let mut t = lock(&t);
            for s in stats {
                t.add_stat(s);
            }
            if quota.is_some() {
                t.quota = quota;
            }
            t.forget_before(self.keep);
        }
        n
    }
}
