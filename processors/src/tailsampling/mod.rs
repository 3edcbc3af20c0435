//! The `tail_sampling` processor, otelcol's drop-in: spans wait, grouped by trace, for
//! `decision_wait` after their trace's first span; then policies decide the whole trace, and
//! its spans go on together or not at all. Spans that come after the decision follow it (the
//! decision is remembered, bounded); at most `num_traces` traces wait, past that the oldest is
//! decided early with what it has (otelcol drops it) and counted.
//!
//! In hotspan it sits in `traces/out` after the join, so policies see the join's `profile.*`
//! attributes: the join has held every span of a request for its own `wait` already.

mod config;
mod policy;
pub mod probabilistic;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use foldhash::fast::RandomState;
use hotspan_proto::raw::{merge_into, Head, RawSpan, ResourceSpansRaw, ScopeSpansRaw};
use hotspan_proto::{Batch, TracesBatch};

pub use config::{
    AndConfig, BooleanAttributeConfig, CompositeConfig, DecisionCacheConfig, DropConfig, LatencyConfig,
    NotConfig, NumericAttributeConfig, PolicyConfig, ProbabilisticConfig, RateAllocationConfig,
    RateLimitingConfig, SpanCountConfig, StatusCodeConfig, StringAttributeConfig, TailSamplingConfig,
};
pub use policy::{Decision, PolicyError};

use crate::Processor;
use policy::{Clock, NamedPolicy, Policy, TraceView};

/// Spans in one output batch, at most (whole traces each): about what the join releases.
const OUTPUT_SPANS: usize = 8192;

/// What the processor has counted, for the collector to publish under otelcol's names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TailSamplingStats {
    /// Per top-level policy, in evaluation order (`drop` policies first).
    pub policies: Vec<PolicyStats>,
    /// Traces by final decision, indexed by [`Decision::index`].
    pub traces: [u64; 3],
    pub new_traces: u64,
    /// Traces decided before their `decision_wait` because `num_traces` were waiting.
    pub decided_early: u64,
    /// Spans that came after their trace's decision: [followed a sampled one, a not sampled one].
    pub late_spans: [u64; 2],
    /// Traces waiting for a decision now.
    pub waiting_traces: u64,
    /// Traces still waiting at shutdown and dropped (`drop_pending_traces_on_shutdown`).
    pub dropped_on_shutdown: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyStats {
    pub name: String,
    /// Traces and spans by this policy's own decision, indexed by [`Decision::index`].
    pub traces: [u64; 3],
    pub spans: [u64; 3],
}

struct Waiting {
    spans: i64,
    pieces: Vec<ResourceSpansRaw>,
}

/// Decided trace ids, the oldest forgotten first past `capacity`.
struct Remembered {
    ids: HashSet<u128, RandomState>,
    order: VecDeque<u128>,
    capacity: usize,
}

impl Remembered {
    fn new(capacity: usize) -> Self {
        Remembered {
            ids: HashSet::default(),
            order: VecDeque::new(),
            capacity,
        }
    }

    fn insert(&mut self, id: u128) {
        if self.capacity == 0 || !self.ids.insert(id) {
            return;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }

    fn contains(&self, id: u128) -> bool {
        self.ids.contains(&id)
    }
}

pub struct TailSamplingProcessor {
    wait: Duration,
    num_traces: usize,
    first_match: bool,
    drop_on_shutdown: bool,
    policies: Vec<NamedPolicy>,
    waiting: HashMap<u128, Waiting, RandomState>,
    /// Waiting traces by first arrival, which is also the order they are decided in.
    order: VecDeque<(Instant, u128)>,
    sampled: Remembered,
    not_sampled: Remembered,
    stats: TailSamplingStats,
    /// Unix time at `epoch`, for `composite`'s per-second budgets.
    epoch: (Instant, i64),
}

/// At most this many waiting traces' room is set aside at start.
const PREALLOCATED_TRACES: usize = 65_536;

impl TailSamplingProcessor {
    /// Builds the policies; the config was validated, so an error here is a bug's, reported.
    pub fn new(config: &TailSamplingConfig) -> Result<Self, PolicyError> {
        let policies = Policy::build_all(&config.policies)?;
        let num_traces = usize::try_from(config.num_traces).unwrap_or(usize::MAX).max(1);
        let remembered = |n: usize| Remembered::new(if n == 0 { num_traces } else { n });
        let expected = config
            .expected_new_traces_per_sec
            .saturating_mul(config.decision_wait.as_secs().max(1));
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Ok(TailSamplingProcessor {
            wait: config.decision_wait,
            num_traces,
            first_match: config.sample_on_first_match,
            drop_on_shutdown: config.drop_pending_traces_on_shutdown,
            stats: TailSamplingStats {
                policies: policies
                    .iter()
                    .map(|p| PolicyStats {
                        name: p.name.clone(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
            policies,
            waiting: HashMap::with_capacity_and_hasher(
                // Grows past this as traces come: a big expectation must not be allocated up front.
                usize::try_from(expected)
                    .unwrap_or(0)
                    .min(num_traces)
                    .min(PREALLOCATED_TRACES),
                RandomState::default(),
            ),
            order: VecDeque::new(),
            sampled: remembered(config.decision_cache.sampled_cache_size),
            not_sampled: remembered(config.decision_cache.non_sampled_cache_size),
            epoch: (Instant::now(), unix),
        })
    }

    pub fn stats(&self) -> &TailSamplingStats {
        &self.stats
    }

    /// [`Processor::process`] at a given instant.
    pub fn process_at(&mut self, batch: Batch, now: Instant, out: &mut Vec<Batch>) {
        let traces = match batch {
            Batch::Traces(t) => t,
            other => return out.push(other),
        };
        let mut output = Output::default();
        for (id, spans, pieces) in split_by_trace(traces) {
            if self.sampled.contains(id) {
                self.stats.late_spans[0] += spans as u64;
                output.add(pieces, spans as usize, out);
            } else if self.not_sampled.contains(id) {
                self.stats.late_spans[1] += spans as u64;
            } else if let Some(w) = self.waiting.get_mut(&id) {
                w.spans += spans;
                w.pieces.extend(pieces);
            } else {
                if self.waiting.len() >= self.num_traces {
                    if let Some((_, oldest)) = self.order.pop_front() {
                        self.stats.decided_early += 1;
                        self.decide(oldest, now, &mut output, out);
                    }
                }
                self.stats.new_traces += 1;
                self.waiting.insert(id, Waiting { spans, pieces });
                self.order.push_back((now, id));
            }
        }
        output.flush(out);
        self.stats.waiting_traces = self.waiting.len() as u64;
    }

    /// [`Processor::on_deadline`]: decides every trace whose wait is over.
    fn decide_due(&mut self, now: Instant, out: &mut Vec<Batch>) {
        let mut output = Output::default();
        while let Some(&(arrived, id)) = self.order.front() {
            if arrived + self.wait > now {
                break;
            }
            self.order.pop_front();
            self.decide(id, now, &mut output, out);
        }
        output.flush(out);
        self.stats.waiting_traces = self.waiting.len() as u64;
    }

    fn clock(&self, now: Instant) -> Clock {
        let (at, unix) = self.epoch;
        Clock {
            now,
            unix_second: unix + now.saturating_duration_since(at).as_secs() as i64,
        }
    }

    /// Decides trace `id` (taken off `order` by the caller), remembers the decision and hands
    /// a sampled trace's spans to `output`.
    fn decide(&mut self, id: u128, now: Instant, output: &mut Output, out: &mut Vec<Batch>) {
        let Some(w) = self.waiting.remove(&id) else {
            return;
        };
        let view = TraceView {
            id,
            span_count: w.spans,
            pieces: &w.pieces,
        };
        let decision = self.evaluate(&view, self.clock(now));
        self.stats.traces[decision.index()] += 1;
        if decision == Decision::Sampled {
            self.sampled.insert(id);
            output.add(w.pieces, w.spans as usize, out);
        } else {
            self.not_sampled.insert(id);
        }
    }

    /// otelcol's combination: `drop` policies first, any that drops wins; then any policy
    /// that samples keeps the trace (the first one only with `sample_on_first_match`).
    fn evaluate(&mut self, trace: &TraceView, clock: Clock) -> Decision {
        let mut sampled = false;
        for (p, stats) in self.policies.iter_mut().zip(&mut self.stats.policies) {
            let d = p.policy.evaluate(trace, clock);
            stats.traces[d.index()] += 1;
            stats.spans[d.index()] += trace.span_count as u64;
            match d {
                Decision::Dropped => return Decision::Dropped,
                Decision::Sampled if self.first_match => return Decision::Sampled,
                Decision::Sampled => sampled = true,
                Decision::NotSampled => {}
            }
        }
        if sampled {
            Decision::Sampled
        } else {
            Decision::NotSampled
        }
    }
}

impl Processor for TailSamplingProcessor {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        self.process_at(batch, Instant::now(), out);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.order.front().map(|(arrived, _)| *arrived + self.wait)
    }

    fn on_deadline(&mut self, now: Instant, out: &mut Vec<Batch>) {
        self.decide_due(now, out);
    }

    /// Input is closed: every waiting trace is decided with what it has (or dropped, with
    /// `drop_pending_traces_on_shutdown`), as otelcol does at shutdown.
    fn drain(&mut self, out: &mut Vec<Batch>) {
        if self.drop_on_shutdown {
            self.stats.dropped_on_shutdown += self.waiting.len() as u64;
            self.waiting.clear();
            self.order.clear();
        } else {
            let now = Instant::now();
            let mut output = Output::default();
            while let Some((_, id)) = self.order.pop_front() {
                self.decide(id, now, &mut output, out);
            }
            output.flush(out);
        }
        self.stats.waiting_traces = 0;
    }
}

/// Sampled traces' pieces, gathered into batches of about [`OUTPUT_SPANS`], each resource's
/// traces under one container (otelcol sends one a trace, repeating the resource).
#[derive(Default)]
struct Output {
    pieces: Vec<ResourceSpansRaw>,
    spans: usize,
}

impl Output {
    fn add(&mut self, pieces: Vec<ResourceSpansRaw>, spans: usize, out: &mut Vec<Batch>) {
        for piece in pieces {
            merge_into(&mut self.pieces, piece);
        }
        self.spans += spans;
        if self.spans >= OUTPUT_SPANS {
            self.flush(out);
        }
    }

    fn flush(&mut self, out: &mut Vec<Batch>) {
        if !self.pieces.is_empty() {
            out.push(Batch::Traces(TracesBatch::from_raw(std::mem::take(
                &mut self.pieces,
            ))));
        }
        self.spans = 0;
    }
}

/// A batch's spans by trace, in first-seen order: (trace id, spans, pieces). A trace's
/// pieces keep the batch's resources and scopes, one piece per resource it had spans in, as
/// otelcol splits a batch.
fn split_by_trace(batch: TracesBatch) -> Vec<(u128, i64, Vec<ResourceSpansRaw>)> {
    let resources = batch.into_raw();
    // A batch of one trace (an SDK's export of one request, often) stays as it came.
    let mut ids = resources
        .iter()
        .flat_map(|r| r.scopes().iter().flat_map(|s| s.spans()))
        .map(|s| s.index.trace_id);
    let Some(first) = ids.next() else {
        return Vec::new();
    };
    let mut count = 1i64;
    let mut one = true;
    for id in ids {
        one &= id == first;
        count += 1;
    }
    if one {
        return vec![(first, count, resources)];
    }

    type Scope = (Arc<Head>, Vec<RawSpan>);
    struct Group {
        id: u128,
        spans: i64,
        pieces: Vec<(Arc<Head>, Vec<Scope>)>,
        /// The resource and scope (indices in the batch) of the last piece and scope opened.
        last: (usize, usize),
    }
    let mut index: HashMap<u128, usize, RandomState> = HashMap::default();
    let mut groups: Vec<Group> = Vec::new();
    for (ri, resource) in resources.into_iter().enumerate() {
        let (rhead, scopes) = resource.into_parts();
        for (si, scope) in scopes.into_iter().enumerate() {
            let (shead, spans) = scope.into_parts();
            for span in spans {
                let id = span.index.trace_id;
                let g = *index.entry(id).or_insert_with(|| {
                    groups.push(Group {
                        id,
                        spans: 0,
                        pieces: Vec::new(),
                        last: (usize::MAX, usize::MAX),
                    });
                    groups.len() - 1
                });
                let g = &mut groups[g];
                if g.last.0 != ri {
                    g.pieces.push((rhead.clone(), Vec::new()));
                    g.last = (ri, usize::MAX);
                }
                let piece = g.pieces.last_mut().map(|(_, scopes)| scopes);
                if let Some(scopes) = piece {
                    if g.last.1 != si {
                        scopes.push((shead.clone(), Vec::new()));
                        g.last.1 = si;
                    }
                    if let Some((_, spans)) = scopes.last_mut() {
                        spans.push(span);
                    }
                }
                g.spans += 1;
            }
        }
    }
    groups
        .into_iter()
        .map(|g| {
            let pieces = g
                .pieces
                .into_iter()
                .map(|(head, scopes)| {
                    ResourceSpansRaw::new(
                        head,
                        scopes
                            .into_iter()
                            .map(|(h, spans)| ScopeSpansRaw::new(h, spans))
                            .collect(),
                    )
                })
                .collect();
            (g.id, g.spans, pieces)
        })
        .collect()
}
