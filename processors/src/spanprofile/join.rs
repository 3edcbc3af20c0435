//! The join's state: held spans and waiting samples, sharded so receivers feeding it from
//! many tasks never contend on one lock.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use hotspan_proto::raw::{Head, RawSpan, ResourceSpansRaw, ScopeSpansRaw};
use hotspan_proto::{ProfilesBatch, TracesBatch};

use super::annotate::annotate;
use super::config::SpanProfileConfig;
use super::extract;
use foldhash::HashMap;

use super::model::{Accumulator, Event, ResourceKey, Rule, SpanId, TraceId};

const SHARDS: usize = 16;
/// Parent links followed when measuring depth; deeper trees are rare and still ordered.
const MAX_DEPTH_WALK: usize = 256;
/// W3C "parent is remote" bits of `Span.flags`: known, and remote.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// What a held span costs besides its bytes: this struct, its map and queue entries.
const HELD_OVERHEAD: usize = 384;

/// Released spans grouped by scope, in arrival order.
type ScopesOut = Vec<(Arc<Head>, Vec<RawSpan>)>;

/// Where spans came from: shared by the spans of one scope of one request.
struct Origin {
    resource: Arc<Head>,
    scope: Arc<Head>,
    key: Arc<ResourceKey>,
}

/// A span held, kept small (144 bytes): the join moves each a few times.
struct Held {
    /// The span as received; annotations are appended to its bytes when it leaves.
    span: RawSpan,
    origin: Arc<Origin>,
    /// When its wait is over, in nanoseconds since the join's epoch.
    deadline: u64,
    bytes: u32,
    /// Allocated when the first sample lands: most spans get none.
    acc: Option<Box<Accumulator>>,
}

/// Why a sample waits on a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiting {
    /// Labelled with this local root's span id and taken at a known instant: it belongs to the
    /// deepest descendant running then, known only once the trace's spans are in.
    Descend(SpanId),
    /// Only the trace is known.
    Trace,
}

/// Where a held span is: its arrival number in the shard's queue.
#[derive(Clone, Copy)]
struct HeldRef {
    id: SpanId,
    parent: Option<SpanId>,
    arrival: u64,
}

/// Held spans a trace may have before it gets a map of them; below, a linear search over
/// one small vector costs less than a miss in a shard-wide map.
pub(super) const BIG_TRACE: usize = 64;

#[derive(Default)]
struct TraceState {
    /// Held spans of this trace.
    held: Vec<HeldRef>,
    /// id -> position in `held`, once the trace has more than `BIG_TRACE` held.
    big: Option<HashMap<SpanId, usize>>,
    waiting: Vec<(Waiting, Event)>,
    /// Spans of this trace that left and are still remembered, for telling late samples
    /// from early ones.
    released: Vec<SpanId>,
}

impl TraceState {
    fn is_empty(&self) -> bool {
        self.held.is_empty() && self.waiting.is_empty() && self.released.is_empty()
    }

    fn position(&self, id: SpanId) -> Option<usize> {
        match &self.big {
            Some(map) => map.get(&id).copied(),
            None => self.held.iter().position(|r| r.id == id),
        }
    }

    fn find(&self, id: SpanId) -> Option<HeldRef> {
        self.position(id).map(|i| self.held[i])
    }

    fn push(&mut self, r: HeldRef) {
        if let Some(map) = &mut self.big {
            map.insert(r.id, self.held.len());
        }
        self.held.push(r);
        if self.big.is_none() && self.held.len() > BIG_TRACE {
            self.big = Some(self.held.iter().enumerate().map(|(i, r)| (r.id, i)).collect());
        }
    }

    fn remove(&mut self, id: SpanId) -> Option<HeldRef> {
        let i = self.position(id)?;
        let r = self.held.swap_remove(i);
        if let Some(map) = &mut self.big {
            map.remove(&id);
            if let Some(moved) = self.held.get(i) {
                map.insert(moved.id, i);
            }
        }
        Some(r)
    }
}

#[derive(Default)]
struct Shard {
    /// Held spans in arrival order, which is release order (every span waits as long); a
    /// slot empties when its span leaves ahead of its turn (with its parent, or early).
    slots: VecDeque<Option<Held>>,
    /// The arrival number of `slots[0]`.
    first: u64,
    /// Spans held.
    count: usize,
    traces: HashMap<TraceId, TraceState>,
    /// Spans that left, and when to forget them (after `wait`, when no sample is due).
    released_order: VecDeque<(Instant, TraceId, SpanId)>,
    bytes: usize,
}

/// Samples on one thread of one resource, waiting for the spans that ran on it.
#[derive(Default)]
struct ThreadBucket {
    /// (trace, span, start, end) of held spans on this thread.
    spans: Vec<(TraceId, SpanId, u64, u64)>,
    waiting: Vec<Event>,
}

type ThreadKey = (Arc<ResourceKey>, i64);

/// Counters the collector exports; all in samples except the span counts.
#[derive(Default)]
pub struct JoinStats {
    pub joined: [AtomicU64; 3],
    pub unjoined: AtomicU64,
    pub late: AtomicU64,
    pub released_early: AtomicU64,
    pub spans_in: AtomicU64,
    pub spans_out: AtomicU64,
}

/// The join of spans and profile samples (DESIGN.md, "The join").
pub struct Join {
    config: SpanProfileConfig,
    shards: Vec<Mutex<Shard>>,
    /// span id -> trace id of held and remembered spans, for samples that name only a span.
    /// Kept only once such a sample has come: it costs two cache misses a span.
    owners: Vec<Mutex<HashMap<SpanId, TraceId>>>,
    track_owners: AtomicBool,
    owners_ready: OnceLock<()>,
    /// Samples naming a span not seen yet, by span id.
    orphans: Vec<Mutex<HashMap<SpanId, Vec<Event>>>>,
    /// Samples in `orphans`: while there are none, arriving spans need not look.
    orphans_parked: AtomicUsize,
    threads: Vec<Mutex<HashMap<ThreadKey, ThreadBucket>>>,
    pending: AtomicUsize,
    /// Deadlines count from here.
    epoch: Instant,
    pub stats: JoinStats,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn shard_of<K: Hash>(key: &K) -> usize {
    // Fixed seed: the same key must pick the same shard for the life of the process.
    (foldhash::fast::FixedState::with_seed(0x5eed).hash_one(key) as usize) % SHARDS
}

fn sharded<T: Default>() -> Vec<Mutex<T>> {
    (0..SHARDS).map(|_| Mutex::new(T::default())).collect()
}

/// What the join reads of a held span comes from its index, so `Held` stays small: it is
/// moved in and out of queues several times on its way through.
impl Held {
    fn parent(&self) -> Option<SpanId> {
        let p = self.span.index.parent_span_id;
        (p != 0).then_some(p)
    }

    fn remote_parent(&self) -> bool {
        let flags = self.span.index.flags;
        flags & FLAG_HAS_IS_REMOTE != 0 && flags & FLAG_IS_REMOTE != 0
    }

    fn start(&self) -> u64 {
        self.span.index.start
    }

    fn end(&self) -> u64 {
        self.span.index.end.max(self.span.index.start)
    }

    fn thread(&self) -> Option<i64> {
        self.span.index.thread_id()
    }

    fn runs_at(&self, t: u64, skew: u64) -> bool {
        self.start().saturating_sub(skew) <= t && t <= self.end().saturating_add(skew)
    }
}

impl Shard {
    fn arrival(&self, trace: TraceId, id: SpanId) -> Option<u64> {
        Some(self.traces.get(&trace)?.find(id)?.arrival)
    }

    fn get(&self, trace: TraceId, id: SpanId) -> Option<&Held> {
        let n = self.arrival(trace, id)?;
        self.slots.get((n - self.first) as usize)?.as_ref()
    }

    fn get_mut(&mut self, trace: TraceId, id: SpanId) -> Option<&mut Held> {
        let n = self.arrival(trace, id)?;
        self.slots.get_mut((n - self.first) as usize)?.as_mut()
    }

    fn contains(&self, trace: TraceId, id: SpanId) -> bool {
        self.arrival(trace, id).is_some()
    }

    fn held_count(&self) -> usize {
        self.count
    }

    /// Holds a span, or gives it back if one with its ids is held already.
    fn insert(&mut self, trace: TraceId, id: SpanId, held: Held) -> Option<Held> {
        let arrival = self.first + self.slots.len() as u64;
        let state = self.traces.entry(trace).or_default();
        if state.find(id).is_some() {
            return Some(held);
        }
        state.push(HeldRef {
            id,
            parent: held.parent(),
            arrival,
        });
        self.bytes += held.bytes as usize;
        self.count += 1;
        self.slots.push_back(Some(held));
        None
    }

    /// Takes a span out: it is no longer held.
    fn take(&mut self, trace: TraceId, id: SpanId) -> Option<Held> {
        let n = self.traces.get_mut(&trace)?.remove(id)?.arrival;
        self.take_slot(n)
    }

    /// Empties the slot of the span that arrived `n`th (already out of its trace's list).
    fn take_slot(&mut self, n: u64) -> Option<Held> {
        let held = self.slots.get_mut((n - self.first) as usize)?.take();
        if let Some(h) = &held {
            self.bytes = self.bytes.saturating_sub(h.bytes as usize);
            self.count -= 1;
        }
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.first += 1;
        }
        held
    }

    /// The span whose turn to leave is next.
    fn oldest(&self) -> Option<(u64, TraceId, SpanId)> {
        let h = self.slots.front()?.as_ref()?;
        Some((h.deadline, h.span.index.trace_id, h.span.index.span_id))
    }

    fn is_local_root(&self, trace: TraceId, h: &Held) -> bool {
        match h.parent() {
            None => true,
            Some(_) if h.remote_parent() => true,
            // A parent on another resource (another service) makes this the local root.
            Some(p) => self
                .get(trace, p)
                .is_some_and(|parent| !parent.origin.key.matches(&h.origin.key)),
        }
    }

    fn depth(&self, trace: TraceId, mut span: SpanId) -> usize {
        let mut depth = 0;
        while let Some(parent) = self.get(trace, span).and_then(|h| h.parent()) {
            if depth >= MAX_DEPTH_WALK || !self.contains(trace, parent) {
                break;
            }
            depth += 1;
            span = parent;
        }
        depth
    }

    fn descends_from(&self, trace: TraceId, mut span: SpanId, root: SpanId) -> bool {
        for _ in 0..MAX_DEPTH_WALK {
            if span == root {
                return true;
            }
            match self.get(trace, span).and_then(|h| h.parent()) {
                Some(p) => span = p,
                None => return false,
            }
        }
        false
    }

    /// The deepest held span of `trace` on a matching resource running at `t`, optionally
    /// only within `root`'s subtree.
    fn deepest_at(
        &self,
        trace: TraceId,
        t: u64,
        key: &ResourceKey,
        within: Option<SpanId>,
        skew: u64,
    ) -> Option<SpanId> {
        let state = self.traces.get(&trace)?;
        state
            .held
            .iter()
            .filter_map(|r| {
                let h = self.slots.get((r.arrival - self.first) as usize)?.as_ref()?;
                Some((r.id, h))
            })
            .filter(|(id, h)| {
                h.runs_at(t, skew)
                    && h.origin.key.matches(key)
                    && within.is_none_or(|root| self.descends_from(trace, *id, root))
            })
            .max_by_key(|(id, h)| (self.depth(trace, *id), h.start(), *id))
            .map(|(id, _)| id)
    }
}

impl Join {
    pub fn new(config: SpanProfileConfig) -> Self {
        Join {
            config,
            shards: sharded(),
            owners: sharded(),
            track_owners: AtomicBool::new(false),
            owners_ready: OnceLock::new(),
            orphans: sharded(),
            orphans_parked: AtomicUsize::new(0),
            threads: sharded(),
            pending: AtomicUsize::new(0),
            // Well before any instant a caller will pass, so none saturates to it.
            epoch: Instant::now()
                .checked_sub(Duration::from_secs(3600))
                .unwrap_or_else(Instant::now),
            stats: JoinStats::default(),
        }
    }

    pub fn config(&self) -> &SpanProfileConfig {
        &self.config
    }

    /// `t` in nanoseconds since the epoch.
    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn skew(&self) -> u64 {
        self.config.clock_skew.as_nanos() as u64
    }

    fn attach(&self, held: &mut Held, event: &Event, rule: Rule) {
        held.acc.get_or_insert_default().add(event, rule);
        self.stats.joined[rule as usize].fetch_add(event.samples, Ordering::Relaxed);
    }

    fn unjoined(&self, event: &Event) {
        self.stats.unjoined.fetch_add(event.samples, Ordering::Relaxed);
    }

    /// Room for one more waiting sample, or it is counted unjoined now.
    fn reserve_pending(&self, event: &Event) -> bool {
        if self.pending.fetch_add(1, Ordering::Relaxed) >= self.config.max_pending_samples {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.unjoined(event);
            return false;
        }
        true
    }

    fn release_pending(&self, n: usize) {
        if n > 0 {
            self.pending.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Takes a batch of spans. Returns spans that had to leave early to stay within bounds.
    pub fn add_spans(&self, batch: TracesBatch, now: Instant) -> Vec<TracesBatch> {
        // Everything leaving now goes out as one batch.
        let mut leaving = Vec::new();
        // Grouped by shard first, so each shard's lock is taken once a batch.
        let total = batch.span_count();
        // Sized for an even spread and then some: growing vectors of `Held` is all memmove.
        let mut by_shard: Vec<Vec<Held>> = (0..SHARDS)
            .map(|_| Vec::with_capacity(total * 2 / SHARDS + 4))
            .collect();
        let mut count = 0;
        let deadline = now
            .checked_add(self.config.wait)
            .map_or(u64::MAX, |t| self.nanos(t));
        for rs in batch.into_raw() {
            let (resource, scopes) = rs.into_parts();
            // Held spans must not keep their whole request alive (see `hotspan_proto::raw::detach`).
            let resource = Arc::new(resource.detached());
            let key = Arc::new(
                resource
                    .resource()
                    .map(|r| ResourceKey::from_attributes(&r.attributes))
                    .unwrap_or_default(),
            );
            for ss in scopes {
                let (scope, spans) = ss.into_parts();
                let origin = Arc::new(Origin {
                    resource: resource.clone(),
                    scope: Arc::new(scope.detached()),
                    key: key.clone(),
                });
                for span in spans {
                    count += 1;
                    if span.index.id_problem().is_some() {
                        // Receivers drop invalid ids; should one get here, it passes through unjoined.
                        leaving.push(Held::new(span, origin.clone(), 0));
                        continue;
                    }
                    let held = Held::new(span, origin.clone(), deadline);
                    let (trace, id) = held.ids();
                    if let Some(thread) = held.thread() {
                        let tk = (key.clone(), thread);
                        lock(&self.threads[shard_of(&tk)])
                            .entry(tk)
                            .or_default()
                            .spans
                            .push((trace, id, held.start(), held.end()));
                    }
                    by_shard[shard_of(&trace)].push(held);
                }
            }
        }
        self.stats.spans_in.fetch_add(count, Ordering::Relaxed);
        let mut claimed = Vec::new();
        for (i, spans) in by_shard.into_iter().enumerate() {
            if spans.is_empty() {
                continue;
            }
            let mut spans = spans;
            // Spans of one shard from one request leave together: one allocation for them.
            hotspan_proto::raw::detach(&mut spans, |h| &mut h.span);
            let mut shard = lock(&self.shards[i]);
            let mut added = Vec::with_capacity(spans.len());
            for held in spans {
                let (trace, id) = held.ids();
                match shard.insert(trace, id, held) {
                    None => added.push((trace, id)),
                    // The same span twice: the first keeps its place and its samples; the copy
                    // goes on at once rather than replace it.
                    Some(copy) => leaving.push(copy),
                }
            }
            // Known to samples that name only the span from now on; under the shard lock, so
            // whoever finds the owner also finds the span.
            if self.track_owners.load(Ordering::Acquire) {
                self.publish_owners(&added);
            }
            // Samples that came before their span.
            if self.orphans_parked.load(Ordering::Acquire) > 0 {
                for (_, id) in &added {
                    claimed.extend(self.take_orphans(*id));
                }
            }
            if self.over_limits(&shard) {
                // Full shards let about as many leave as came in.
                leaving.reserve(total);
                let before = leaving.len();
                self.release_oldest(&mut shard, now, &mut leaving);
                self.stats
                    .released_early
                    .fetch_add((leaving.len() - before) as u64, Ordering::Relaxed);
            }
        }
        for event in claimed {
            self.place(event);
        }
        if leaving.is_empty() {
            return Vec::new();
        }
        vec![self.emit(leaving)]
    }

    /// Enters spans in `owners`, grouped so each owners shard is locked once.
    fn publish_owners(&self, ids: &[(TraceId, SpanId)]) {
        let mut groups: Vec<Vec<(TraceId, SpanId)>> = (0..SHARDS).map(|_| Vec::new()).collect();
        for &(trace, id) in ids {
            groups[shard_of(&id)].push((trace, id));
        }
        for (i, group) in groups.into_iter().enumerate() {
            if !group.is_empty() {
                let mut owners = lock(&self.owners[i]);
                owners.extend(group.into_iter().map(|(trace, id)| (id, trace)));
            }
        }
    }

    /// Starts keeping `owners`, entering the spans held now. Returns once they are in.
    fn ensure_owners(&self) {
        self.owners_ready.get_or_init(|| {
            // Set before the walk: a span added meanwhile either sees the flag and enters
            // itself, or was in its shard before the walk took that shard's lock.
            self.track_owners.store(true, Ordering::Release);
            for shard in &self.shards {
                let shard = lock(shard);
                let mut ids: Vec<(TraceId, SpanId)> = Vec::new();
                for (trace, state) in &shard.traces {
                    ids.extend(state.held.iter().map(|r| (*trace, r.id)));
                    ids.extend(state.released.iter().map(|id| (*trace, *id)));
                }
                self.publish_owners(&ids);
            }
        });
    }

    fn owner(&self, span: SpanId) -> Option<TraceId> {
        self.ensure_owners();
        lock(&self.owners[shard_of(&span)]).get(&span).copied()
    }

    fn take_orphans(&self, span: SpanId) -> Vec<Event> {
        let events = lock(&self.orphans[shard_of(&span)])
            .remove(&span)
            .unwrap_or_default();
        self.orphans_parked.fetch_sub(events.len(), Ordering::AcqRel);
        self.release_pending(events.len());
        events
    }

    fn over_limits(&self, shard: &Shard) -> bool {
        let spans = (self.config.max_buffered_spans / SHARDS).max(1);
        let bytes = (self.config.max_buffered_bytes / SHARDS).max(1);
        shard.held_count() > spans || shard.bytes > bytes
    }

    /// Releases the oldest spans of an over-full shard until it is back within bounds.
    fn release_oldest(&self, shard: &mut Shard, now: Instant, out: &mut Vec<Held>) {
        while self.over_limits(shard) {
            let Some((_, trace, id)) = shard.oldest() else {
                break;
            };
            self.release_front(shard, trace, id, now, out);
        }
    }

    /// Takes a batch of profiles: every CPU sample is joined now or waits for its span.
    pub fn add_profiles(&self, batch: &ProfilesBatch, now: Instant) {
        for event in extract::events(batch, &self.config, now) {
            self.place(event);
        }
    }

    /// The batch with Links filled in from correlation labels, for the profiles/out pipeline.
    pub fn link_profiles(&self, batch: &ProfilesBatch) -> ProfilesBatch {
        extract::fill_links(batch, &self.config)
    }

    /// Joins one event now, or parks it where the span it waits for will find it.
    fn place(&self, event: Event) {
        match (event.span, event.trace) {
            (Some(span), named_trace) => {
                let owner = named_trace.or_else(|| self.owner(span));
                if let Some(trace) = owner {
                    let mut shard = lock(&self.shards[shard_of(&trace)]);
                    let local_root = shard.get(trace, span).map(|h| shard.is_local_root(trace, h));
                    match local_root {
                        Some(true) if event.time.is_some() => {
                            if self.reserve_pending(&event) {
                                shard
                                    .traces
                                    .entry(trace)
                                    .or_default()
                                    .waiting
                                    .push((Waiting::Descend(span), event));
                            }
                        }
                        Some(_) => {
                            if let Some(h) = shard.get_mut(trace, span) {
                                self.attach(h, &event, Rule::Span);
                            }
                        }
                        None if shard
                            .traces
                            .get(&trace)
                            .is_some_and(|t| t.released.contains(&span)) =>
                        {
                            self.stats.late.fetch_add(event.samples, Ordering::Relaxed);
                        }
                        None => {
                            // The trace id a sample names must agree with the span's own.
                            let owned_elsewhere = named_trace.is_some()
                                && self.track_owners.load(Ordering::Acquire)
                                && lock(&self.owners[shard_of(&span)])
                                    .get(&span)
                                    .is_some_and(|t| Some(*t) != named_trace);
                            drop(shard);
                            if owned_elsewhere {
                                self.unjoined(&event);
                            } else {
                                self.park_orphan(span, event);
                            }
                        }
                    }
                } else {
                    self.park_orphan(span, event);
                }
            }
            (None, Some(trace)) => {
                let mut shard = lock(&self.shards[shard_of(&trace)]);
                if event.time.is_none() {
                    let root = shard.traces.get(&trace).and_then(|t| {
                        t.held.iter().map(|r| r.id).find(|id| {
                            shard.get(trace, *id).is_some_and(|h| {
                                shard.is_local_root(trace, h) && h.origin.key.matches(&event.resource)
                            })
                        })
                    });
                    if let Some(h) = root.and_then(|id| shard.get_mut(trace, id)) {
                        self.attach(h, &event, Rule::Trace);
                        return;
                    }
                }
                let state = shard.traces.get(&trace);
                if state.is_some_and(|t| t.held.is_empty() && !t.released.is_empty()) {
                    self.stats.late.fetch_add(event.samples, Ordering::Relaxed);
                } else if self.reserve_pending(&event) {
                    shard
                        .traces
                        .entry(trace)
                        .or_default()
                        .waiting
                        .push((Waiting::Trace, event));
                }
            }
            (None, None) => match (event.thread, event.time) {
                (Some(thread), Some(_)) => {
                    if self.reserve_pending(&event) {
                        let tk = (event.resource.clone(), thread);
                        lock(&self.threads[shard_of(&tk)])
                            .entry(tk)
                            .or_default()
                            .waiting
                            .push(event);
                    }
                }
                _ => self.unjoined(&event),
            },
        }
    }

    fn park_orphan(&self, span: SpanId, event: Event) {
        if !self.reserve_pending(&event) {
            return;
        }
        let named_trace = event.trace;
        {
            let mut orphans = lock(&self.orphans[shard_of(&span)]);
            self.orphans_parked.fetch_add(1, Ordering::AcqRel);
            orphans.entry(span).or_default().push(event);
        }
        // The span may have arrived between our look-up and the parking, and looked for
        // orphans before there were any: if it is there now, take them back.
        let arrived = match named_trace {
            Some(trace) => {
                let shard = lock(&self.shards[shard_of(&trace)]);
                shard.contains(trace, span)
                    || shard
                        .traces
                        .get(&trace)
                        .is_some_and(|t| t.released.contains(&span))
            }
            None => lock(&self.owners[shard_of(&span)]).contains_key(&span),
        };
        if arrived {
            for e in self.take_orphans(span) {
                self.place(e);
            }
        }
    }

    /// Releases the oldest span of a shard, with its held descendants.
    fn release_front(
        &self,
        shard: &mut Shard,
        trace: TraceId,
        id: SpanId,
        now: Instant,
        out: &mut Vec<Held>,
    ) {
        self.release_tree(shard, trace, id, now, out, 0);
        // `release` always takes the span it is given; were that ever to fail, the slot goes
        // anyway, so no caller loops on it.
        if shard.oldest().is_some_and(|(_, t, s)| (t, s) == (trace, id)) {
            out.extend(shard.take(trace, id));
        }
    }

    /// Releases a span after its held descendants, so their CPU rolls up into it first.
    fn release_tree(
        &self,
        shard: &mut Shard,
        trace: TraceId,
        id: SpanId,
        now: Instant,
        out: &mut Vec<Held>,
        depth: usize,
    ) {
        if depth < MAX_DEPTH_WALK {
            let children: Vec<SpanId> = shard
                .traces
                .get(&trace)
                .map(|t| {
                    t.held
                        .iter()
                        .filter(|r| r.parent == Some(id))
                        .map(|r| r.id)
                        .collect()
                })
                .unwrap_or_default();
            for child in children {
                self.release_tree(shard, trace, child, now, out, depth + 1);
            }
        }
        if let Some(h) = self.release(shard, trace, id, now) {
            out.push(h);
        }
    }

    /// Takes a span out of its shard after giving it every waiting sample it can claim.
    fn release(&self, shard: &mut Shard, trace: TraceId, id: SpanId, now: Instant) -> Option<Held> {
        // Most spans leave with nothing waiting on their trace or thread: straight out.
        let state = shard.traces.get(&trace)?;
        let quiet = state.waiting.is_empty()
            && state
                .find(id)
                .and_then(|r| shard.slots.get((r.arrival - shard.first) as usize)?.as_ref())
                .is_some_and(|h| h.thread().is_none());
        if quiet {
            return self.leave(shard, trace, id, Vec::new(), now);
        }
        let skew = self.skew();
        let (start, end, key, thread) = {
            let h = shard.get(trace, id)?;
            (h.start(), h.end(), h.origin.key.clone(), h.thread())
        };
        // Samples waiting on the trace whose answer may be this span or one below it.
        let waiting = shard
            .traces
            .get_mut(&trace)
            .map(|t| std::mem::take(&mut t.waiting))
            .unwrap_or_default();
        // Looking up the parent costs a cache miss per span: only when a sample needs it.
        let is_root = !waiting.is_empty()
            && shard
                .get(trace, id)
                .is_some_and(|h| shard.is_local_root(trace, h));
        let mut keep = Vec::new();
        let mut done = 0;
        for (why, event) in waiting {
            let target = match (why, event.time) {
                (Waiting::Descend(root), Some(t))
                    if root == id
                        || (shard.descends_from(trace, id, root)
                            && t >= start.saturating_sub(skew)
                            && t <= end.saturating_add(skew)) =>
                {
                    let chosen = shard
                        .deepest_at(trace, t, &event.resource, Some(root), skew)
                        .unwrap_or(root);
                    Some((chosen, if chosen == root { Rule::Span } else { Rule::Trace }))
                }
                (Waiting::Trace, Some(t))
                    if t >= start.saturating_sub(skew)
                        && t <= end.saturating_add(skew)
                        && key.matches(&event.resource) =>
                {
                    shard
                        .deepest_at(trace, t, &event.resource, None, skew)
                        .map(|c| (c, Rule::Trace))
                }
                (Waiting::Trace, None) if is_root && key.matches(&event.resource) => Some((id, Rule::Trace)),
                _ => None,
            };
            match target.and_then(|(c, rule)| shard.get_mut(trace, c).map(|h| (h, rule))) {
                Some((h, rule)) => {
                    self.attach(h, &event, rule);
                    done += 1;
                }
                None => keep.push((why, event)),
            }
        }
        // Samples on this span's thread taken while it ran, unless a deeper span ran then.
        if let Some(thread) = thread {
            let tk = (key.clone(), thread);
            let mut threads = lock(&self.threads[shard_of(&tk)]);
            if let Some(bucket) = threads.get_mut(&tk) {
                let spans = bucket.spans.clone();
                let (mine, others): (Vec<Event>, Vec<Event>) =
                    std::mem::take(&mut bucket.waiting).into_iter().partition(|e| {
                        let Some(t) = e.time else { return false };
                        let running = spans
                            .iter()
                            .filter(|s| s.2.saturating_sub(skew) <= t && t <= s.3.saturating_add(skew));
                        running
                            .max_by_key(|s| (s.2, s.1))
                            .is_some_and(|s| s.0 == trace && s.1 == id)
                    });
                bucket.waiting = others;
                bucket.spans.retain(|s| !(s.0 == trace && s.1 == id));
                if bucket.spans.is_empty() && bucket.waiting.is_empty() {
                    threads.remove(&tk);
                }
                drop(threads);
                if let Some(h) = shard.get_mut(trace, id) {
                    for e in &mine {
                        self.attach(h, e, Rule::Thread);
                    }
                }
                done += mine.len();
            }
        }
        self.release_pending(done);
        self.leave(shard, trace, id, keep, now)
    }

    /// Takes a span out, puts back the samples it did not claim, rolls its CPU up, and
    /// remembers it left.
    fn leave(
        &self,
        shard: &mut Shard,
        trace: TraceId,
        id: SpanId,
        keep: Vec<(Waiting, Event)>,
        now: Instant,
    ) -> Option<Held> {
        let state = shard.traces.get_mut(&trace)?;
        let arrival = state.remove(id)?.arrival;
        state.waiting.extend(keep);
        state.released.push(id);
        let held = shard.take_slot(arrival)?;
        // Descendants' CPU rolls up into ancestors still held.
        let cpu = held
            .acc
            .as_ref()
            .map_or(0, |a| a.own.cpu_ns.saturating_add(a.children_cpu_ns));
        if let Some(parent) = held
            .parent()
            .filter(|_| cpu > 0)
            .and_then(|p| shard.get_mut(trace, p))
        {
            let acc = parent.acc.get_or_insert_default();
            acc.children_cpu_ns = acc.children_cpu_ns.saturating_add(cpu);
        }
        let forget_at = now + self.config.wait;
        shard.released_order.push_back((forget_at, trace, id));
        // Remembering released spans only serves to call late samples late: bounded like the
        // held spans, the oldest forgotten first.
        let cap = (self.config.max_buffered_spans / SHARDS).max(1);
        while shard.released_order.len() > cap {
            if let Some((_, t, s)) = shard.released_order.pop_front() {
                self.forget(shard, t, s);
            }
        }
        Some(held)
    }

    fn forget(&self, shard: &mut Shard, trace: TraceId, id: SpanId) {
        if let Some(state) = shard.traces.get_mut(&trace) {
            state.released.retain(|s| *s != id);
            if state.is_empty() {
                shard.traces.remove(&trace);
            }
        }
        if self.track_owners.load(Ordering::Acquire) {
            let mut owners = lock(&self.owners[shard_of(&id)]);
            if owners.get(&id) == Some(&trace) {
                owners.remove(&id);
            }
        }
    }

    /// Releases every span whose wait is over, with its annotation, and expires samples that
    /// waited as long as a span would.
    pub fn release_due(&self, now: Instant) -> Vec<TracesBatch> {
        let mut released = Vec::new();
        let now_ns = self.nanos(now);
        for (i, s) in self.shards.iter().enumerate() {
            let mut shard = lock(s);
            while let Some((deadline, trace, id)) = shard.oldest() {
                if deadline > now_ns {
                    break;
                }
                self.release_front(&mut shard, trace, id, now, &mut released);
            }
            self.expire(&mut shard, i, now);
        }
        self.expire_parked(now);
        if released.is_empty() {
            return Vec::new();
        }
        vec![self.emit(released)]
    }

    /// Forgets released spans after `wait` and counts trace samples that waited too long.
    fn expire(&self, shard: &mut Shard, _index: usize, now: Instant) {
        while shard.released_order.front().is_some_and(|(at, _, _)| *at <= now) {
            if let Some((_, trace, id)) = shard.released_order.pop_front() {
                self.forget(shard, trace, id);
            }
        }
        let wait = self.config.wait;
        let mut expired = Vec::new();
        shard.traces.retain(|_, state| {
            state.waiting.retain(|(_, e)| {
                let keep = e.arrived + wait > now;
                if !keep {
                    expired.push(e.samples);
                }
                keep
            });
            !state.is_empty()
        });
        self.count_expired(&expired);
    }

    fn expire_parked(&self, now: Instant) {
        let wait = self.config.wait;
        let mut expired = Vec::new();
        for o in &self.orphans {
            lock(o).retain(|_, events| {
                events.retain(|e| {
                    let keep = e.arrived + wait > now;
                    if !keep {
                        expired.push(e.samples);
                    }
                    keep
                });
                !events.is_empty()
            });
        }
        self.orphans_parked.fetch_sub(expired.len(), Ordering::AcqRel);
        for t in &self.threads {
            lock(t).retain(|_, bucket| {
                bucket.waiting.retain(|e| {
                    let keep = e.arrived + wait > now;
                    if !keep {
                        expired.push(e.samples);
                    }
                    keep
                });
                !(bucket.spans.is_empty() && bucket.waiting.is_empty())
            });
        }
        self.count_expired(&expired);
    }

    fn count_expired(&self, samples: &[u64]) {
        self.release_pending(samples.len());
        self.stats
            .unjoined
            .fetch_add(samples.iter().sum(), Ordering::Relaxed);
    }

    /// Releases everything (shutdown): every held span leaves with what it has, and samples
    /// still waiting are counted unjoined.
    pub fn drain(&self, now: Instant) -> Vec<TracesBatch> {
        let mut out = Vec::new();
        for s in &self.shards {
            let mut shard = lock(s);
            let mut released = Vec::new();
            while let Some((_, trace, id)) = shard.oldest() {
                self.release_front(&mut shard, trace, id, now, &mut released);
            }
            let waiting: Vec<u64> = shard
                .traces
                .drain()
                .flat_map(|(_, t)| t.waiting)
                .map(|(_, e)| e.samples)
                .collect();
            drop(shard);
            self.count_expired(&waiting);
            if !released.is_empty() {
                out.push(self.emit(released));
            }
        }
        self.expire_parked(now + self.config.wait + Duration::from_secs(1));
        out
    }

    /// Spans held right now.
    pub fn held_spans(&self) -> usize {
        self.shards.iter().map(|s| lock(s).held_count()).sum()
    }

    /// Samples waiting for their span right now.
    pub fn pending_samples(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Annotates released spans and groups them back under their resources and scopes.
    fn emit(&self, spans: Vec<Held>) -> TracesBatch {
        let mut resources: Vec<(Arc<Head>, ScopesOut)> = Vec::new();
        self.stats
            .spans_out
            .fetch_add(spans.len() as u64, Ordering::Relaxed);
        let total = spans.len();
        for (n, mut held) in spans.into_iter().enumerate() {
            if let Some(acc) = &held.acc {
                // Most annotations fit in 1 KiB, a roll-up alone in 32 bytes: written without regrowing.
                let mut annotation = Vec::with_capacity(if acc.is_empty() { 32 } else { 1024 });
                annotate(&held.span.index, acc, &self.config, &mut annotation);
                held.span = held.span.appended(annotation);
            }
            // Each request's resource is its own copy: equal ones (the same service in
            // another request) share one group, so the output repeats no resource.
            let r = match resources
                .iter_mut()
                .rposition(|(r, _)| same(r, &held.origin.resource))
            {
                Some(i) => &mut resources[i].1,
                None => {
                    resources.push((held.origin.resource.clone(), Vec::new()));
                    let last = resources.len() - 1;
                    &mut resources[last].1
                }
            };
            match r.iter().rposition(|(s, _)| same(s, &held.origin.scope)) {
                Some(i) => r[i].1.push(held.span),
                None => {
                    let mut scope = Vec::with_capacity(total - n);
                    scope.push(held.span);
                    r.push((held.origin.scope.clone(), scope));
                }
            }
        }
        let resource_spans = resources
            .into_iter()
            .map(|(r, scopes)| {
                let scopes = scopes
                    .into_iter()
                    .map(|(s, spans)| ScopeSpansRaw::new(s, spans))
                    .collect();
                ResourceSpansRaw::new(r, scopes)
            })
            .collect();
        TracesBatch::from_raw(resource_spans)
    }
}

/// The same head: one shared copy, or equal bytes.
fn same(a: &Arc<Head>, b: &Arc<Head>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

impl Held {
    fn new(span: RawSpan, origin: Arc<Origin>, deadline: u64) -> Self {
        Held {
            deadline,
            // Spans come in requests far below 4 GiB.
            bytes: u32::try_from(span.len() + HELD_OVERHEAD).unwrap_or(u32::MAX),
            span,
            origin,
            acc: None,
        }
    }

    fn ids(&self) -> (TraceId, SpanId) {
        (self.span.index.trace_id, self.span.index.span_id)
    }
}
#[cfg(test)]
mod size {
    /// Every span held moves a few times (into its shard, out, into its batch): it stays
    /// within 144 bytes, three cache lines' worth.
    #[test]
    fn a_held_span_stays_small() {
        assert!(std::mem::size_of::<super::Held>() <= 144);
        assert!(std::mem::size_of::<Option<super::Held>>() <= 144);
        assert_eq!(std::mem::size_of::<hotspan_proto::raw::SpanIndex>(), 64);
    }
}
