//! The views' numbers: spans summed per (service, span name) and per label set, with every
//! map bounded (names, stacks, label sets, functions, kept spans) and what did not fit
//! counted. One [`Views`] covers a stretch of time; the page keeps one per slice of its window
//! and merges them to draw, the report fills one from its files.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::breakdown::{child_coverage, PartSums, Parts};
use super::histogram::Histogram;
use crate::report::SpanRecord;

/// The frame standing for a span's CPU outside the stacks its events name (the join keeps
/// the top `hot_paths` stacks of each span).
pub const OTHER_STACKS: &str = "[stacks not in the span's top hot paths]";
/// The frame standing for stacks past the bounds.
pub const OVER_CAP: &str = "[stacks past the page's bound]";

/// How much one [`Views`] keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Distinct (service, span name) pairs; spans of further names are only counted.
    pub names: usize,
    /// Distinct stacks per name; more are summed under [`OVER_CAP`].
    pub stacks_per_name: usize,
    /// Distinct stack strings held at all (shared by every name and slice).
    pub stacks: usize,
    /// Spans kept per name for slow versus fast (a uniform sample beyond that).
    pub kept_per_name: usize,
    /// Distinct label sets; spans of further sets are only counted.
    pub label_sets: usize,
    /// Distinct top functions per name and per label set.
    pub functions: usize,
}

impl Limits {
    /// For the live page: one of these per slice of the window.
    pub const PAGE: Limits = Limits {
        names: 200,
        stacks_per_name: 1000,
        stacks: 20_000,
        kept_per_name: 300,
        label_sets: 500,
        functions: 200,
    };
    /// For the report: one for all its files.
    pub const REPORT: Limits = Limits {
        names: 1000,
        stacks_per_name: 5000,
        stacks: 100_000,
        kept_per_name: 2000,
        label_sets: 5000,
        functions: 2000,
    };
}

/// Shares stack strings between names and slices, up to a bound.
#[derive(Debug, Default)]
pub struct Interner {
    set: HashSet<Arc<str>>,
    cap: usize,
    over_cap: Option<Arc<str>>,
}

impl Interner {
    pub fn new(cap: usize) -> Interner {
        Interner {
            set: HashSet::new(),
            cap,
            over_cap: None,
        }
    }

    /// The shared string, or [`OVER_CAP`] once the bound is reached.
    pub fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.set.get(s) {
            return a.clone();
        }
        if self.set.len() >= self.cap {
            return self.over_cap.get_or_insert_with(|| Arc::from(OVER_CAP)).clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.set.insert(a.clone());
        a
    }

    /// Forgets strings no view holds any more (after a slice expired).
    pub fn prune(&mut self) {
        self.set.retain(|a| Arc::strong_count(a) > 1);
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// One span kept for slow versus fast.
#[derive(Clone, Debug, PartialEq)]
pub struct Kept {
    pub duration_ns: u64,
    pub trace_id: String,
    pub span_id: String,
    /// Its stacks and their weights (CPU ns, or samples), [`OTHER_STACKS`] included.
    pub stacks: Vec<(Arc<str>, u64)>,
    /// How many spans it stands for: 1, more once a slice kept a sample of its spans.
    pub weight: f64,
}

/// A bounded uniform sample of a name's spans (reservoir sampling, with a fixed seed so the
/// same input gives the same report).
#[derive(Clone, Debug, Default)]
pub struct Reservoir {
    pub items: Vec<Kept>,
    pub seen: u64,
    rng: u64,
}

impl Reservoir {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn add(&mut self, cap: usize, item: impl FnOnce() -> Kept) {
        self.seen += 1;
        if self.items.len() < cap {
            self.items.push(item());
        } else {
            let j = self.next() % self.seen;
            if let Some(slot) = self.items.get_mut(j as usize) {
                *slot = item();
            }
        }
    }

    /// The kept spans, each weighted by how many it stands for.
    pub fn weighted(&self) -> impl Iterator<Item = Kept> + '_ {
        let w = self.seen as f64 / self.items.len().max(1) as f64;
        self.items.iter().map(move |k| Kept {
            weight: k.weight * w,
            ..k.clone()
        })
    }
}

/// Everything about one (service, span name).
#[derive(Clone, Debug, Default)]
pub struct NameAgg {
    pub count: u64,
    pub with_samples: u64,
    pub durations: Histogram,
    pub duration_sum: u64,
    pub cpu_ns: u64,
    pub samples: u64,
    /// CPU ns, or samples for spans whose profile gave no time.
    pub weight: u64,
    pub utilization_sum: f64,
    pub stacks: HashMap<Arc<str>, u64>,
    /// Weight summed under [`OVER_CAP`] because the name had too many stacks.
    pub stacks_over_cap: u64,
    /// Self weight per leaf function, from `profile.top_functions`.
    pub functions: HashMap<String, f64>,
    pub parts: PartSums,
    pub kept: Reservoir,
    /// Merged views: the kept spans of every slice, already weighted.
    pub kept_merged: Vec<Kept>,
}

impl NameAgg {
    /// Adds `o` in; its kept spans join [`NameAgg::kept_merged`], weighted.
    pub fn merge(&mut self, o: &NameAgg) {
        self.merge_numbers(o);
        self.kept_merged.extend(o.kept.weighted());
        self.kept_merged.extend(o.kept_merged.iter().cloned());
    }

    /// Adds all but the kept spans of `o` in (what every view but slow versus fast needs).
    pub fn merge_numbers(&mut self, o: &NameAgg) {
        self.count += o.count;
        self.with_samples += o.with_samples;
        self.durations.merge(&o.durations);
        self.duration_sum = self.duration_sum.saturating_add(o.duration_sum);
        self.cpu_ns = self.cpu_ns.saturating_add(o.cpu_ns);
        self.samples = self.samples.saturating_add(o.samples);
        self.weight = self.weight.saturating_add(o.weight);
        self.utilization_sum += o.utilization_sum;
        for (s, w) in &o.stacks {
            *self.stacks.entry(s.clone()).or_default() += w;
        }
        self.stacks_over_cap += o.stacks_over_cap;
        for (f, w) in &o.functions {
            *self.functions.entry(f.clone()).or_default() += w;
        }
        self.parts.merge(&o.parts);
    }
}

/// Spans of one label set.
#[derive(Clone, Debug, Default)]
pub struct LabelAgg {
    pub spans: u64,
    pub weight: u64,
    pub duration_sum: u64,
    pub functions: HashMap<String, f64>,
}

/// What did not fit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Spans of names past [`Limits::names`]: counted, not aggregated.
    pub name_spans: u64,
    /// Spans of label sets past [`Limits::label_sets`].
    pub label_spans: u64,
    /// Stack weights summed under [`OVER_CAP`] (per name or overall bound).
    pub stacks: u64,
}

impl Dropped {
    fn merge(&mut self, o: &Dropped) {
        self.name_spans += o.name_spans;
        self.label_spans += o.label_spans;
        self.stacks += o.stacks;
    }
}

/// `(service, span name)`.
pub type NameKey = (String, String);

/// Spans summed up, per name and per label set.
#[derive(Clone, Debug)]
pub struct Views {
    pub limits: Limits,
    pub names: HashMap<NameKey, NameAgg>,
    pub labels: HashMap<String, LabelAgg>,
    pub spans: u64,
    /// Spans with samples.
    pub sampled: u64,
    pub total_weight: u64,
    pub dropped: Dropped,
}

fn add_capped(map: &mut HashMap<String, f64>, cap: usize, key: &str, w: f64) {
    if let Some(v) = map.get_mut(key) {
        *v += w;
    } else if map.len() < cap {
        map.insert(key.to_string(), w);
    }
}

impl Views {
    pub fn new(limits: Limits) -> Views {
        Views {
            limits,
            names: HashMap::new(),
            labels: HashMap::new(),
            spans: 0,
            sampled: 0,
            total_weight: 0,
            dropped: Dropped::default(),
        }
    }

    /// Adds the spans of one export request: a parent's "in child spans" counts its children
    /// among them (the join releases each request's spans together).
    pub fn add_group(&mut self, spans: &[SpanRecord], stacks: &mut Interner) {
        for (span, children) in spans.iter().zip(child_coverage(spans)) {
            self.add(span, children, stacks);
        }
    }

    /// Adds one span whose children cover `children_ns` of it.
    pub fn add(&mut self, span: &SpanRecord, children_ns: u64, stacks: &mut Interner) {
        self.spans += 1;
        let weight = span.weight();
        self.total_weight = self.total_weight.saturating_add(weight);
        if span.has_samples() {
            self.sampled += 1;
        }
        let key = (span.service.clone(), span.name.clone());
        if !self.names.contains_key(&key) && self.names.len() >= self.limits.names {
            self.dropped.name_spans += 1;
        } else {
            let limits = self.limits;
            let acc = self.names.entry(key).or_default();
            self.dropped.stacks += add_to_name(acc, span, children_ns, limits, stacks);
        }
        if !span.has_samples() {
            return;
        }
        let label_key = span.label_key();
        if !self.labels.contains_key(&label_key) && self.labels.len() >= self.limits.label_sets {
            self.dropped.label_spans += 1;
            return;
        }
        let group = self.labels.entry(label_key).or_default();
        group.spans += 1;
        group.weight = group.weight.saturating_add(weight);
        group.duration_sum = group.duration_sum.saturating_add(span.duration_ns);
        for (f, w) in span.function_weights() {
            add_capped(&mut group.functions, self.limits.functions, f, w);
        }
    }

    /// Adds `other` (a later slice) into this one; the result keeps each slice's kept spans
    /// weighted, for drawing only, of the names `kept` wants (copying every name's would cost
    /// a page view the kept spans of every name and slice).
    pub fn merge(&mut self, other: &Views, kept: &dyn Fn(&NameKey) -> bool) {
        self.spans += other.spans;
        self.sampled += other.sampled;
        self.total_weight = self.total_weight.saturating_add(other.total_weight);
        self.dropped.merge(&other.dropped);
        for (key, o) in &other.names {
            let acc = self.names.entry(key.clone()).or_default();
            if kept(key) {
                acc.merge(o);
            } else {
                acc.merge_numbers(o);
            }
        }
        for (key, o) in &other.labels {
            let acc = self.labels.entry(key.clone()).or_default();
            acc.spans += o.spans;
            acc.weight = acc.weight.saturating_add(o.weight);
            acc.duration_sum = acc.duration_sum.saturating_add(o.duration_sum);
            for (f, w) in &o.functions {
                *acc.functions.entry(f.clone()).or_default() += w;
            }
        }
    }

    /// Ready to draw: every name's kept spans weighted, without copying them.
    pub fn into_merged(mut self) -> Views {
        for n in self.names.values_mut() {
            let kept = std::mem::take(&mut n.kept);
            n.kept_merged.extend(kept.weighted());
        }
        self
    }
}

/// Returns the weight that went under [`OVER_CAP`].
fn add_to_name(
    acc: &mut NameAgg,
    span: &SpanRecord,
    children_ns: u64,
    limits: Limits,
    interner: &mut Interner,
) -> u64 {
    acc.count += 1;
    acc.durations.add(span.duration_ns);
    acc.duration_sum = acc.duration_sum.saturating_add(span.duration_ns);
    acc.parts.add(&Parts::of(span, children_ns), span.has_breakdown());
    let mut stacks: Vec<(Arc<str>, u64)> = Vec::new();
    let mut over = 0;
    if span.has_samples() {
        acc.with_samples += 1;
        acc.cpu_ns = acc.cpu_ns.saturating_add(span.cpu_ns);
        acc.samples = acc.samples.saturating_add(span.samples);
        let weight = span.weight();
        acc.weight = acc.weight.saturating_add(weight);
        let own = span.cpu_ns as f64 / span.duration_ns.max(1) as f64;
        acc.utilization_sum += span.cpu_utilization.unwrap_or(own);
        for (f, w) in span.function_weights() {
            add_capped(&mut acc.functions, limits.functions, f, w);
        }
        let mut named = 0u64;
        for (stack, w) in span.stack_weights() {
            named = named.saturating_add(w);
            stacks.push((stack_key(acc, stack, limits, interner), w));
        }
        if weight > named {
            stacks.push((stack_key(acc, OTHER_STACKS, limits, interner), weight - named));
        }
        for (s, w) in &stacks {
            if &**s == OVER_CAP {
                over += w;
                acc.stacks_over_cap += w;
            }
            *acc.stacks.entry(s.clone()).or_default() += w;
        }
    }
    acc.kept.add(limits.kept_per_name, || Kept {
        duration_ns: span.duration_ns,
        trace_id: span.trace_id.clone(),
        span_id: span.span_id.clone(),
        stacks,
        weight: 1.0,
    });
    over
}

fn stack_key(acc: &NameAgg, stack: &str, limits: Limits, interner: &mut Interner) -> Arc<str> {
    if let Some((k, _)) = acc.stacks.get_key_value(stack) {
        return k.clone();
    }
    if acc.stacks.len() >= limits.stacks_per_name {
        return interner.get(OVER_CAP);
    }
    interner.get(stack)
}
