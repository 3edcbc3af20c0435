//! The join's state. Spans are held as blocks: the spans of one request, kept as the bytes
//! they came in, released together in arrival order and sent on as those same bytes plus
//! whatever the join appended. An index sharded by trace id finds a held span for the samples
//! that name it, so receivers feeding the join from many tasks never contend on one lock.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use hotspan_proto::raw::{Head, RawSpan, ResourceSpansRaw, ScopeSpansRaw, SpanIndex};
use hotspan_proto::{ProfilesBatch, TracesBatch};

use super::annotate::{annotate, annotate_rollup};
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

/// Released spans leave in batches of about this many (whole requests each): a backlog
/// released at once must not become one message too big for whoever receives it.
const RELEASE_BATCH_SPANS: usize = 8192;

/// What a held span costs besides its bytes: its index entry, its copy of the span's index
/// and its place in the block.
const HELD_OVERHEAD: usize = 160;

/// Where a span sits in its block's resources.
#[derive(Clone, Copy)]
struct Loc {
    resource: u32,
    scope: u32,
    span: u32,
}

/// The spans of one request, held together and released together, oldest first.
struct Block {
    /// When its wait is over, in nanoseconds since the join's epoch.
    deadline: u64,
    bytes: usize,
    /// The spans as received; taken when the block leaves.
    resources: Mutex<Vec<ResourceSpansRaw>>,
    /// Each span's index and place, by its position in the block: read without the lock.
    index: Vec<SpanIndex>,
    locs: Vec<Loc>,
    /// The resource key of each resource.
    keys: Vec<Arc<ResourceKey>>,
    /// Spans that left apart from the block: with an ancestor from an older block, or at
    /// once (a second copy of a held span, or ids nothing could join).
    gone: Vec<AtomicU64>,
}

/// A span that leaves apart from its block, with its resource and scope.
struct Loose {
    resource: Arc<Head>,
    scope: Arc<Head>,
    span: RawSpan,
    gathered: Option<Gathered>,
}

/// What a span leaves with: samples of its own (and its descendants' CPU), or only its
/// descendants' CPU.
enum Gathered {
    Samples(Box<Accumulator>),
    Rollup(u64),
}

impl Block {
    fn new(batch: TracesBatch, deadline: u64) -> Block {
        let resources = batch.into_raw();
        let n = resources.iter().map(ResourceSpansRaw::span_count).sum();
        let mut index = Vec::with_capacity(n);
        let mut locs = Vec::with_capacity(n);
        let mut keys = Vec::with_capacity(resources.len());
        let mut bytes = 0;
        for (r, rs) in resources.iter().enumerate() {
            keys.push(Arc::new(
                rs.head()
                    .resource()
                    .map(|res| ResourceKey::from_attributes(&res.attributes))
                    .unwrap_or_default(),
            ));
            for (s, ss) in rs.scopes().iter().enumerate() {
                for (i, span) in ss.spans().iter().enumerate() {
                    index.push(span.index);
                    // Requests are bounded far below 4 Gi spans.
                    locs.push(Loc {
                        resource: r as u32,
                        scope: s as u32,
                        span: i as u32,
                    });
                    bytes += span.len() + HELD_OVERHEAD;
                }
            }
        }
        Block {
            deadline,
            bytes,
            gone: (0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            resources: Mutex::new(resources),
            index,
            locs,
            keys,
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn key(&self, i: u32) -> &Arc<ResourceKey> {
        &self.keys[self.locs[i as usize].resource as usize]
    }

    fn is_gone(&self, i: usize) -> bool {
        self.gone[i / 64].load(Ordering::Acquire) & (1 << (i % 64)) != 0
    }

    /// Takes span `i` out of the block to leave on its own. Called under the lock of the
    /// span's index shard, before the block's own release takes its spans.
    fn take_loose(&self, i: u32, gathered: Option<Gathered>) -> Option<Loose> {
        let i = i as usize;
        self.gone[i / 64].fetch_or(1 << (i % 64), Ordering::AcqRel);
        let loc = self.locs[i];
        let resources = lock(&self.resources);
        let rs = resources.get(loc.resource as usize)?;
        let ss = rs.scopes().get(loc.scope as usize)?;
        Some(Loose {
            resource: rs.head().clone(),
            scope: ss.head().clone(),
            span: ss.spans().get(loc.span as usize)?.clone(),
            gathered,
        })
    }

    /// The block's spans as they leave: without those gone already, with annotations
    /// (`(position, bytes)` in position order) appended. Unchanged containers keep their
    /// bytes as received.
    fn take_spans(&self, annotations: Vec<(u32, Box<[u8]>)>) -> Vec<ResourceSpansRaw> {
        let mut resources = std::mem::take(&mut *lock(&self.resources));
        let any_gone = self.gone.iter().any(|w| w.load(Ordering::Acquire) != 0);
        if annotations.is_empty() && !any_gone {
            return resources;
        }
        let mut annotations = annotations.into_iter().peekable();
        let mut at = 0usize;
        for rs in &mut resources {
            let from = at;
            let n = rs.span_count();
            if annotations.peek().is_some_and(|a| (a.0 as usize) < from + n) {
                for ss in rs.scopes_mut() {
                    let base = at;
                    at += ss.spans().len();
                    if annotations.peek().is_some_and(|a| (a.0 as usize) < at) {
                        let spans = ss.spans_mut();
                        while let Some((i, extra)) = annotations.next_if(|a| (a.0 as usize) < at) {
                            spans[i as usize - base].append(extra);
                        }
                    }
                }
            }
            at = from + n;
            if any_gone && (from..at).any(|i| self.is_gone(i)) {
                let mut i = from;
                rs.retain_spans(|_| {
                    i += 1;
                    !self.is_gone(i - 1)
                });
            }
        }
        if any_gone {
            resources.retain(|r| r.span_count() > 0);
        }
        resources
    }
}

/// A held span, as its trace's index knows it: the ids searched for are kept here, the rest
/// is read from its block.
struct Entry {
    id: SpanId,
    /// 0 when the span has no parent.
    parent: SpanId,
    /// Its block, as a position in its trace's `blocks`.
    block: u32,
    /// Its position in the block.
    at: u32,
    /// Allocated when the first sample lands: most spans get none.
    acc: Option<Box<Accumulator>>,
    /// CPU of descendants that left before it, rolled up.
    children_cpu: u64,
}

impl Entry {
    /// What it leaves with, if anything.
    fn gathered(acc: Option<Box<Accumulator>>, children_cpu: u64) -> Option<Gathered> {
        match acc {
            Some(mut acc) => {
                acc.children_cpu_ns = children_cpu;
                Some(Gathered::Samples(acc))
            }
            None => (children_cpu > 0).then_some(Gathered::Rollup(children_cpu)),
        }
    }

    fn parent(&self) -> Option<SpanId> {
        (self.parent != 0).then_some(self.parent)
    }
}

/// A held span with the block its fields are read from.
#[derive(Clone, Copy)]
struct Held<'a> {
    e: &'a Entry,
    block: &'a Block,
}

impl Held<'_> {
    fn index(&self) -> &SpanIndex {
        &self.block.index[self.e.at as usize]
    }

    fn key(&self) -> &Arc<ResourceKey> {
        self.block.key(self.e.at)
    }

    fn remote_parent(&self) -> bool {
        let flags = self.index().flags;
        flags & FLAG_HAS_IS_REMOTE != 0 && flags & FLAG_IS_REMOTE != 0
    }

    fn start(&self) -> u64 {
        self.index().start
    }

    fn end(&self) -> u64 {
        self.index().end.max(self.index().start)
    }

    fn thread(&self) -> Option<i64> {
        self.index().thread_id()
    }

    fn runs_at(&self, t: u64, skew: u64) -> bool {
        self.start().saturating_sub(skew) <= t && t <= self.end().saturating_add(skew)
    }
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

/// Held spans a trace may have before it gets a map of them; below, a linear search over
/// one small vector costs less than a miss in a shard-wide map.
pub(super) const BIG_TRACE: usize = 64;

/// Blocks a trace refers to before it drops those none of its held spans is in.
const TRACE_BLOCKS: usize = 8;

/// One trace in the index. Every rule looks only within one trace, so everything a span's
/// release reads is here, found with one look-up in the shard.
#[derive(Default)]
struct TraceState {
    /// Held spans of this trace.
    held: Vec<Entry>,
    /// id -> position in `held`, once the trace has more than `BIG_TRACE` held.
    big: Option<HashMap<SpanId, usize>>,
    /// The blocks `held` refers to: one reference per trace and block, not one per span.
    blocks: Vec<Arc<Block>>,
    waiting: Vec<(Waiting, Event)>,
}

impl TraceState {
    fn is_empty(&self) -> bool {
        self.held.is_empty() && self.waiting.is_empty()
    }

    fn position(&self, id: SpanId) -> Option<usize> {
        match &self.big {
            Some(map) => map.get(&id).copied(),
            None => self.held.iter().position(|e| e.id == id),
        }
    }

    fn held_at<'a>(&'a self, e: &'a Entry) -> Held<'a> {
        Held {
            e,
            block: &self.blocks[e.block as usize],
        }
    }

    fn find(&self, id: SpanId) -> Option<Held<'_>> {
        self.position(id).map(|i| self.held_at(&self.held[i]))
    }

    fn find_mut(&mut self, id: SpanId) -> Option<&mut Entry> {
        self.position(id).map(|i| &mut self.held[i])
    }

    /// The position in `blocks` of `block`, entered if new.
    fn block_slot(&mut self, block: &Arc<Block>) -> u32 {
        if self.blocks.last().is_some_and(|b| Arc::ptr_eq(b, block)) {
            return (self.blocks.len() - 1) as u32;
        }
        if self.blocks.len() >= TRACE_BLOCKS {
            // A long-lived trace must not keep every block it ever had alive.
            let mut used = vec![false; self.blocks.len()];
            for e in &self.held {
                used[e.block as usize] = true;
            }
            let mut moved = vec![0u32; self.blocks.len()];
            let mut kept = Vec::with_capacity(self.blocks.len());
            for (i, b) in std::mem::take(&mut self.blocks).into_iter().enumerate() {
                if used[i] {
                    moved[i] = kept.len() as u32;
                    kept.push(b);
                }
            }
            self.blocks = kept;
            for e in &mut self.held {
                e.block = moved[e.block as usize];
            }
        }
        self.blocks.push(block.clone());
        (self.blocks.len() - 1) as u32
    }

    fn push(&mut self, e: Entry) {
        if let Some(map) = &mut self.big {
            map.insert(e.id, self.held.len());
        }
        self.held.push(e);
        if self.big.is_none() && self.held.len() > BIG_TRACE {
            self.big = Some(self.held.iter().enumerate().map(|(i, e)| (e.id, i)).collect());
        }
    }

    fn remove(&mut self, id: SpanId) -> Option<Entry> {
        let i = self.position(id)?;
        let e = self.held.swap_remove(i);
        if let Some(map) = &mut self.big {
            map.remove(&id);
            if let Some(moved) = self.held.get(i) {
                map.insert(moved.id, i);
            }
        }
        Some(e)
    }

    fn is_local_root(&self, h: Held) -> bool {
        match h.e.parent() {
            None => true,
            Some(_) if h.remote_parent() => true,
            // A parent on another resource (another service) makes this the local root.
            Some(p) => self.find(p).is_some_and(|parent| !parent.key().matches(h.key())),
        }
    }

    fn depth(&self, mut span: SpanId) -> usize {
        let mut depth = 0;
        while let Some(parent) = self.find(span).and_then(|h| h.e.parent()) {
            if depth >= MAX_DEPTH_WALK || self.position(parent).is_none() {
                break;
            }
            depth += 1;
            span = parent;
        }
        depth
    }

    fn descends_from(&self, mut span: SpanId, root: SpanId) -> bool {
        for _ in 0..MAX_DEPTH_WALK {
            if span == root {
                return true;
            }
            match self.find(span).and_then(|h| h.e.parent()) {
                Some(p) => span = p,
                None => return false,
            }
        }
        false
    }

    /// The deepest held span on a matching resource running at `t`, optionally only within
    /// `root`'s subtree.
    fn deepest_at(&self, t: u64, key: &ResourceKey, within: Option<SpanId>, skew: u64) -> Option<SpanId> {
        self.held
            .iter()
            .map(|e| self.held_at(e))
            .filter(|h| {
                h.runs_at(t, skew)
                    && h.key().matches(key)
                    && within.is_none_or(|root| self.descends_from(h.e.id, root))
            })
            .max_by_key(|h| (self.depth(h.e.id), h.start(), h.e.id))
            .map(|h| h.e.id)
    }
}

/// One part of the index: the traces whose ids hash here.
#[derive(Default)]
struct Shard {
    /// Traces with spans held or samples waiting.
    traces: HashMap<TraceId, TraceState>,
    /// Spans that left, remembered for at least `wait` to tell late samples from early ones:
    /// in generations, oldest first, so forgetting drops a whole generation rather than
    /// look each trace up again.
    released: VecDeque<Generation>,
    /// Spans in `released`.
    released_spans: usize,
    /// Whether a sample may be waiting on a trace here: while none is, expiry need not look
    /// at every trace.
    waiting: bool,
}

/// Spans that left within one stretch of time: each release of a trace is a run of ids,
/// linked to the trace's run before it.
struct Generation {
    since: Instant,
    /// Each trace's last run.
    last: HashMap<TraceId, u32>,
    runs: Vec<Run>,
    ids: Vec<SpanId>,
}

struct Run {
    trace: TraceId,
    start: u32,
    end: u32,
    /// The trace's run before this one in the generation, or `u32::MAX`.
    before: u32,
}

impl Generation {
    fn runs_of(&self, trace: TraceId) -> impl Iterator<Item = &[SpanId]> {
        let mut next = self.last.get(&trace).copied().unwrap_or(u32::MAX);
        std::iter::from_fn(move || {
            let run = self.runs.get(next as usize)?;
            next = run.before;
            Some(&self.ids[run.start as usize..run.end as usize])
        })
    }
}

impl Shard {
    /// Remembers that `ids` of `trace` left at `now`; a generation spans `stretch`.
    fn remember(&mut self, trace: TraceId, ids: &[SpanId], now: Instant, stretch: Duration) {
        if self.released.back().is_none_or(|g| now >= g.since + stretch) {
            self.released.push_back(Generation {
                since: now,
                last: HashMap::default(),
                runs: Vec::new(),
                ids: Vec::new(),
            });
        }
        let Some(g) = self.released.back_mut() else {
            return;
        };
        // Bounded far below 4 Gi by `max_buffered_spans`.
        let start = g.ids.len() as u32;
        g.ids.extend_from_slice(ids);
        let run = g.runs.len() as u32;
        let before = g.last.insert(trace, run).unwrap_or(u32::MAX);
        g.runs.push(Run {
            trace,
            start,
            end: g.ids.len() as u32,
            before,
        });
        self.released_spans += ids.len();
    }

    fn is_released(&self, trace: TraceId, span: SpanId) -> bool {
        self.released
            .iter()
            .any(|g| g.runs_of(trace).any(|ids| ids.contains(&span)))
    }

    fn has_released(&self, trace: TraceId) -> bool {
        self.released.iter().any(|g| g.last.contains_key(&trace))
    }

    /// Forgets the oldest generation; returns it.
    fn forget_oldest(&mut self) -> Option<Generation> {
        let g = self.released.pop_front()?;
        self.released_spans = self.released_spans.saturating_sub(g.ids.len());
        Some(g)
    }

    fn wait_on(&mut self, trace: TraceId, why: Waiting, event: Event) {
        self.waiting = true;
        self.traces.entry(trace).or_default().waiting.push((why, event));
    }
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

/// What one release gathers: the annotations of the leaving block's spans, and spans of
/// other blocks that leave with it (descendants of its spans, held in younger blocks).
struct Leaving<'a> {
    block: &'a Arc<Block>,
    /// Positions in `block` that left in this release.
    done: Vec<bool>,
    accs: Vec<(u32, Gathered)>,
    loose: Vec<Loose>,
    /// Ids of the spans that left the index, in order.
    released: Vec<SpanId>,
}

impl<'a> Leaving<'a> {
    fn new(block: &'a Arc<Block>) -> Self {
        Leaving {
            block,
            done: vec![false; block.len()],
            accs: Vec::new(),
            loose: Vec::new(),
            released: Vec::new(),
        }
    }

    /// A span that left its trace's index, from `block`: it goes out with its block when
    /// that is the block leaving, else on its own.
    fn add(&mut self, e: Entry, block: &Arc<Block>) {
        self.released.push(e.id);
        let gathered = Entry::gathered(e.acc, e.children_cpu);
        if Arc::ptr_eq(self.block, block) {
            self.done[e.at as usize] = true;
            self.accs.extend(gathered.map(|g| (e.at, g)));
        } else {
            self.loose.extend(block.take_loose(e.at, gathered));
        }
    }
}

/// The join of spans and profile samples (DESIGN.md, "The join").
pub struct Join {
    config: SpanProfileConfig,
    /// Held blocks, oldest first.
    blocks: Mutex<VecDeque<Arc<Block>>>,
    held: AtomicUsize,
    held_bytes: AtomicUsize,
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

impl Join {
    pub fn new(config: SpanProfileConfig) -> Self {
        Join {
            config,
            blocks: Mutex::new(VecDeque::new()),
            held: AtomicUsize::new(0),
            held_bytes: AtomicUsize::new(0),
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

    fn attach(&self, e: &mut Entry, event: &Event, rule: Rule) {
        e.acc.get_or_insert_default().add(event, rule);
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

    /// Takes a batch of spans. Returns spans that leave at once: copies of spans held
    /// already, spans with ids nothing could join, and the oldest held spans when the join
    /// is over its bounds.
    pub fn add_spans(&self, batch: TracesBatch, now: Instant) -> Vec<TracesBatch> {
        let deadline = now
            .checked_add(self.config.wait)
            .map_or(u64::MAX, |t| self.nanos(t));
        let block = Arc::new(Block::new(batch, deadline));
        let n = block.len();
        self.stats.spans_in.fetch_add(n as u64, Ordering::Relaxed);
        // Grouped by shard first, so each shard's lock is taken once a batch.
        let mut by_shard: Vec<Vec<u32>> = (0..SHARDS)
            .map(|_| Vec::with_capacity(n * 2 / SHARDS + 4))
            .collect();
        let mut at_once = Vec::new();
        for (at, ix) in block.index.iter().enumerate() {
            let at = at as u32;
            if ix.id_problem().is_some() {
                // Receivers drop invalid ids; should one get here, it passes through unjoined.
                at_once.push(at);
                continue;
            }
            if let Some(thread) = ix.thread_id() {
                let tk = (block.key(at).clone(), thread);
                lock(&self.threads[shard_of(&tk)])
                    .entry(tk)
                    .or_default()
                    .spans
                    .push((ix.trace_id, ix.span_id, ix.start, ix.end.max(ix.start)));
            }
            by_shard[shard_of(&ix.trace_id)].push(at);
        }
        let mut claimed = Vec::new();
        for (i, positions) in by_shard.iter().enumerate() {
            if positions.is_empty() {
                continue;
            }
            let mut shard = lock(&self.shards[i]);
            let mut added = Vec::with_capacity(positions.len());
            let mut k = 0;
            while k < positions.len() {
                // A trace's spans mostly come together: one look-up for each run of them.
                let trace = block.index[positions[k] as usize].trace_id;
                let run = positions[k..]
                    .iter()
                    .take_while(|&&at| block.index[at as usize].trace_id == trace)
                    .count();
                let state = shard.traces.entry(trace).or_default();
                state.held.reserve(run);
                let slot = state.block_slot(&block);
                for &at in &positions[k..k + run] {
                    let ix = &block.index[at as usize];
                    if state.find(ix.span_id).is_some() {
                        // The same span twice: the first keeps its place and its samples; the
                        // copy goes on at once rather than replace it.
                        at_once.push(at);
                        continue;
                    }
                    state.push(Entry {
                        id: ix.span_id,
                        parent: ix.parent_span_id,
                        block: slot,
                        at,
                        acc: None,
                        children_cpu: 0,
                    });
                    added.push((trace, ix.span_id));
                }
                k += run;
            }
            // Counted before the lock goes: an older block's release may take one of these.
            self.held.fetch_add(added.len(), Ordering::AcqRel);
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
        }
        let mut out = Vec::new();
        let mut leaving = 0;
        if !at_once.is_empty() {
            let loose: Vec<Loose> = at_once
                .iter()
                .filter_map(|&at| block.take_loose(at, None))
                .collect();
            leaving += self.put_loose(&mut out, loose);
        }
        self.held_bytes.fetch_add(block.bytes, Ordering::AcqRel);
        lock(&self.blocks).push_back(block);
        for event in claimed {
            self.place(event);
        }
        // Over a bound, the oldest blocks leave early with what they have.
        let mut early = 0;
        while self.over_limits() {
            let Some(oldest) = lock(&self.blocks).pop_front() else {
                break;
            };
            early += self.release_block(&oldest, now, &mut out);
        }
        self.stats
            .released_early
            .fetch_add(early as u64, Ordering::Relaxed);
        self.finish(out, leaving + early)
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
                    ids.extend(state.held.iter().map(|e| (*trace, e.id)));
                }
                for g in &shard.released {
                    for run in &g.runs {
                        let released = &g.ids[run.start as usize..run.end as usize];
                        ids.extend(released.iter().map(|id| (run.trace, *id)));
                    }
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

    fn over_limits(&self) -> bool {
        self.held.load(Ordering::Acquire) > self.config.max_buffered_spans.max(1)
            || self.held_bytes.load(Ordering::Acquire) > self.config.max_buffered_bytes.max(1)
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
                    let local_root = shard
                        .traces
                        .get(&trace)
                        .and_then(|t| t.find(span).map(|h| t.is_local_root(h)));
                    match local_root {
                        Some(true) if event.time.is_some() => {
                            if self.reserve_pending(&event) {
                                shard.wait_on(trace, Waiting::Descend(span), event);
                            }
                        }
                        Some(_) => {
                            if let Some(e) = shard.traces.get_mut(&trace).and_then(|t| t.find_mut(span)) {
                                self.attach(e, &event, Rule::Span);
                            }
                        }
                        None if shard.is_released(trace, span) => {
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
                        t.held
                            .iter()
                            .map(|e| t.held_at(e))
                            .find(|h| t.is_local_root(*h) && h.key().matches(&event.resource))
                            .map(|h| h.e.id)
                    });
                    if let Some(e) = root.and_then(|id| shard.traces.get_mut(&trace)?.find_mut(id)) {
                        self.attach(e, &event, Rule::Trace);
                        return;
                    }
                }
                let none_held = shard.traces.get(&trace).is_none_or(|t| t.held.is_empty());
                if none_held && shard.has_released(trace) {
                    self.stats.late.fetch_add(event.samples, Ordering::Relaxed);
                } else if self.reserve_pending(&event) {
                    shard.wait_on(trace, Waiting::Trace, event);
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
                shard
                    .traces
                    .get(&trace)
                    .is_some_and(|t| t.position(span).is_some())
                    || shard.is_released(trace, span)
            }
            None => lock(&self.owners[shard_of(&span)]).contains_key(&span),
        };
        if arrived {
            for e in self.take_orphans(span) {
                self.place(e);
            }
        }
    }

    /// Releases a block: each span after its held descendants (some of which may be in
    /// younger blocks: they leave now too), so their CPU rolls up into it first. Adds what
    /// leaves to `out`; returns how many spans left.
    fn release_block(&self, block: &Arc<Block>, now: Instant, out: &mut Vec<ResourceSpansRaw>) -> usize {
        let mut by_shard: Vec<Vec<u32>> = (0..SHARDS).map(|_| Vec::new()).collect();
        for (at, ix) in block.index.iter().enumerate() {
            if !block.is_gone(at) {
                by_shard[shard_of(&ix.trace_id)].push(at as u32);
            }
        }
        let mut leaving = Leaving::new(block);
        let stretch = self.generation_stretch();
        for (i, positions) in by_shard.iter().enumerate() {
            if positions.is_empty() {
                continue;
            }
            let mut guard = lock(&self.shards[i]);
            let shard = &mut *guard;
            let mut k = 0;
            while k < positions.len() {
                // A trace's spans mostly come together: one look-up for each run of them.
                let trace = block.index[positions[k] as usize].trace_id;
                let from = k;
                while positions
                    .get(k)
                    .is_some_and(|&at| block.index[at as usize].trace_id == trace)
                {
                    k += 1;
                }
                let Some(state) = shard.traces.get_mut(&trace) else {
                    continue;
                };
                let before = leaving.released.len();
                for &at in &positions[from..k] {
                    if leaving.done[at as usize] {
                        continue;
                    }
                    let id = block.index[at as usize].span_id;
                    // Still held, as this very span (not a copy held from another block)?
                    let held = state
                        .find(id)
                        .is_some_and(|h| std::ptr::eq(h.block, &**block) && h.e.at == at);
                    if held {
                        self.release_tree(state, trace, id, &mut leaving, 0);
                    }
                }
                if state.held.is_empty() {
                    state.blocks.clear();
                }
                // Gone from the index in the same look-up as its release, once nothing is
                // held or waits on it: what is remembered of it is in the generations.
                if state.is_empty() {
                    shard.traces.remove(&trace);
                }
                if leaving.released.len() > before {
                    shard.remember(trace, &leaving.released[before..], now, stretch);
                }
            }
            // Remembering released spans only serves to call late samples late: bounded like
            // the held spans, the oldest generation forgotten first.
            let cap = (self.config.max_buffered_spans / SHARDS).max(1);
            while shard.released_spans > cap {
                let Some(g) = shard.forget_oldest() else {
                    break;
                };
                self.forget_owners(&g);
            }
        }
        let Leaving {
            mut accs,
            loose,
            released,
            ..
        } = leaving;
        self.held.fetch_sub(released.len(), Ordering::AcqRel);
        accs.sort_unstable_by_key(|(at, _)| *at);
        let mut scratch = Vec::new();
        let annotations = accs
            .into_iter()
            .map(|(at, g)| (at, self.annotation(&block.index[at as usize], &g, &mut scratch)))
            .collect();
        self.held_bytes.fetch_sub(block.bytes, Ordering::AcqRel);
        let mut spans = 0;
        for r in block.take_spans(annotations) {
            spans += r.span_count();
            merge(out, r);
        }
        spans + self.put_loose(out, loose)
    }

    /// Adds spans leaving apart from their blocks to `out`; returns how many.
    fn put_loose(&self, out: &mut Vec<ResourceSpansRaw>, loose: Vec<Loose>) -> usize {
        let n = loose.len();
        let mut scratch = Vec::new();
        for mut l in loose {
            if let Some(g) = &l.gathered {
                let annotation = self.annotation(&l.span.index, g, &mut scratch);
                l.span.append(annotation);
            }
            let span = l.span;
            merge(
                out,
                ResourceSpansRaw::new(l.resource, vec![ScopeSpansRaw::new(l.scope, vec![span])]),
            );
        }
        n
    }

    /// A span's annotation, written in `scratch` (reused, so it grows once) and copied out
    /// at its size.
    fn annotation(&self, index: &SpanIndex, gathered: &Gathered, scratch: &mut Vec<u8>) -> Box<[u8]> {
        scratch.clear();
        match gathered {
            Gathered::Samples(acc) => annotate(index, acc, &self.config, scratch),
            Gathered::Rollup(cpu) => annotate_rollup(*cpu, &self.config, scratch),
        }
        Box::from(&scratch[..])
    }

    /// What leaves as one batch, counted.
    fn finish(&self, out: Vec<ResourceSpansRaw>, spans: usize) -> Vec<TracesBatch> {
        if out.is_empty() {
            return Vec::new();
        }
        self.stats.spans_out.fetch_add(spans as u64, Ordering::Relaxed);
        vec![TracesBatch::from_raw(out)]
    }

    /// Releases a span after its held descendants, so their CPU rolls up into it first.
    fn release_tree(
        &self,
        state: &mut TraceState,
        trace: TraceId,
        id: SpanId,
        leaving: &mut Leaving,
        depth: usize,
    ) {
        if depth < MAX_DEPTH_WALK {
            // Each child leaves the index with its subtree, so the next search finds the next.
            while let Some(child) = state.held.iter().find(|e| e.parent == id).map(|e| e.id) {
                self.release_tree(state, trace, child, leaving, depth + 1);
            }
        }
        if let Some(e) = self.release(state, trace, id) {
            let block = e.block as usize;
            leaving.add(e, &state.blocks[block]);
        }
    }

    /// Takes a span out of the index after giving it every waiting sample it can claim.
    fn release(&self, state: &mut TraceState, trace: TraceId, id: SpanId) -> Option<Entry> {
        let h = state.find(id)?;
        // Most spans leave with nothing waiting on their trace or thread: straight out.
        if state.waiting.is_empty() && h.thread().is_none() {
            return Self::leave(state, id, Vec::new());
        }
        let skew = self.skew();
        let (start, end, key, thread) = (h.start(), h.end(), h.key().clone(), h.thread());
        // Samples waiting on the trace whose answer may be this span or one below it.
        let waiting = std::mem::take(&mut state.waiting);
        // Looking up the parent costs a cache miss per span: only when a sample needs it.
        let is_root = !waiting.is_empty() && state.find(id).is_some_and(|h| state.is_local_root(h));
        let mut keep = Vec::new();
        let mut done = 0;
        for (why, event) in waiting {
            let target = match (why, event.time) {
                (Waiting::Descend(root), Some(t))
                    if root == id
                        || (state.descends_from(id, root)
                            && t >= start.saturating_sub(skew)
                            && t <= end.saturating_add(skew)) =>
                {
                    let chosen = state
                        .deepest_at(t, &event.resource, Some(root), skew)
                        .unwrap_or(root);
                    Some((chosen, if chosen == root { Rule::Span } else { Rule::Trace }))
                }
                (Waiting::Trace, Some(t))
                    if t >= start.saturating_sub(skew)
                        && t <= end.saturating_add(skew)
                        && key.matches(&event.resource) =>
                {
                    state
                        .deepest_at(t, &event.resource, None, skew)
                        .map(|c| (c, Rule::Trace))
                }
                (Waiting::Trace, None) if is_root && key.matches(&event.resource) => Some((id, Rule::Trace)),
                _ => None,
            };
            match target.and_then(|(c, rule)| state.find_mut(c).map(|e| (e, rule))) {
                Some((e, rule)) => {
                    self.attach(e, &event, rule);
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
                if let Some(e) = state.find_mut(id) {
                    for event in &mine {
                        self.attach(e, event, Rule::Thread);
                    }
                }
                done += mine.len();
            }
        }
        self.release_pending(done);
        Self::leave(state, id, keep)
    }

    /// Takes a span out, puts back the samples it did not claim, rolls its CPU up, and
    /// remembers it left.
    fn leave(state: &mut TraceState, id: SpanId, keep: Vec<(Waiting, Event)>) -> Option<Entry> {
        let e = state.remove(id)?;
        state.waiting.extend(keep);
        // Descendants' CPU rolls up into ancestors still held.
        let cpu = e
            .acc
            .as_ref()
            .map_or(0, |a| a.own.cpu_ns)
            .saturating_add(e.children_cpu);
        if let Some(parent) = e.parent().filter(|_| cpu > 0).and_then(|p| state.find_mut(p)) {
            parent.children_cpu = parent.children_cpu.saturating_add(cpu);
        }
        Some(e)
    }

    /// A generation of released spans is this long: each is remembered for `wait` to
    /// `wait` and this.
    fn generation_stretch(&self) -> Duration {
        (self.config.wait / 2).max(Duration::from_millis(50))
    }

    /// Takes forgotten spans out of `owners`, when it is kept.
    fn forget_owners(&self, g: &Generation) {
        if !self.track_owners.load(Ordering::Acquire) {
            return;
        }
        for run in &g.runs {
            for id in &g.ids[run.start as usize..run.end as usize] {
                let mut owners = lock(&self.owners[shard_of(id)]);
                if owners.get(id) == Some(&run.trace) {
                    owners.remove(id);
                }
            }
        }
    }

    /// Releases every block whose wait is over, with its annotations, and expires samples
    /// that waited as long as a span would.
    pub fn release_due(&self, now: Instant) -> Vec<TracesBatch> {
        let now_ns = self.nanos(now);
        let mut batches = Vec::new();
        let mut out = Vec::new();
        let mut count = 0;
        loop {
            let due = {
                let mut blocks = lock(&self.blocks);
                match blocks.front() {
                    Some(b) if b.deadline <= now_ns => blocks.pop_front(),
                    _ => None,
                }
            };
            let Some(block) = due else { break };
            count += self.release_block(&block, now, &mut out);
            self.cut(&mut batches, &mut out, &mut count, RELEASE_BATCH_SPANS);
        }
        for s in &self.shards {
            self.expire(&mut lock(s), now);
        }
        self.expire_parked(now);
        self.cut(&mut batches, &mut out, &mut count, 0);
        batches
    }

    /// Moves what `out` gathered into `batches` as one batch, once it has `at_least` spans.
    fn cut(
        &self,
        batches: &mut Vec<TracesBatch>,
        out: &mut Vec<ResourceSpansRaw>,
        count: &mut usize,
        at_least: usize,
    ) {
        if *count >= at_least {
            batches.extend(self.finish(std::mem::take(out), std::mem::take(count)));
        }
    }

    /// Forgets released spans after `wait` and counts trace samples that waited too long.
    fn expire(&self, shard: &mut Shard, now: Instant) {
        let remembered = self.generation_stretch() + self.config.wait;
        while shard
            .released
            .front()
            .is_some_and(|g| g.since + remembered <= now)
        {
            if let Some(g) = shard.forget_oldest() {
                self.forget_owners(&g);
            }
        }
        if !shard.waiting {
            return;
        }
        let wait = self.config.wait;
        let mut expired = Vec::new();
        let mut waiting = false;
        shard.traces.retain(|_, state| {
            state.waiting.retain(|(_, e)| {
                let keep = e.arrived + wait > now;
                if !keep {
                    expired.push(e.samples);
                }
                keep
            });
            waiting |= !state.waiting.is_empty();
            !state.is_empty()
        });
        shard.waiting = waiting;
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
        let mut batches = Vec::new();
        let mut out = Vec::new();
        let mut count = 0;
        while let Some(block) = {
            let next = lock(&self.blocks).pop_front();
            next
        } {
            count += self.release_block(&block, now, &mut out);
            self.cut(&mut batches, &mut out, &mut count, RELEASE_BATCH_SPANS);
        }
        for s in &self.shards {
            let waiting: Vec<u64> = lock(s)
                .traces
                .drain()
                .flat_map(|(_, t)| t.waiting)
                .map(|(_, e)| e.samples)
                .collect();
            self.count_expired(&waiting);
        }
        self.expire_parked(now + self.config.wait + Duration::from_secs(1));
        self.cut(&mut batches, &mut out, &mut count, 0);
        batches
    }

    /// Spans held right now.
    pub fn held_spans(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Samples waiting for their span right now.
    pub fn pending_samples(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }
}

/// Adds `r` to `out`, under an equal resource (and scope) already there if there is one:
/// one service's spans from many requests leave under one resource.
fn merge(out: &mut Vec<ResourceSpansRaw>, r: ResourceSpansRaw) {
    let Some(i) = out.iter().rposition(|o| same(o.head(), r.head())) else {
        out.push(r);
        return;
    };
    let placeholder = ResourceSpansRaw::new(Arc::default(), Vec::new());
    let (head, mut scopes) = std::mem::replace(&mut out[i], placeholder).into_parts();
    for s in r.into_parts().1 {
        match scopes.iter().rposition(|o| same(o.head(), s.head())) {
            Some(j) => scopes[j].absorb(s),
            None => scopes.push(s),
        }
    }
    out[i] = ResourceSpansRaw::new(head, scopes);
}

/// The same head: one shared copy, or equal bytes.
fn same(a: &Arc<Head>, b: &Arc<Head>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

#[cfg(test)]
mod size {
    /// The index keeps one entry per held span.
    #[test]
    fn an_index_entry_stays_small() {
        assert!(std::mem::size_of::<super::Entry>() <= 40);
        assert_eq!(std::mem::size_of::<hotspan_proto::raw::SpanIndex>(), 64);
    }
}
