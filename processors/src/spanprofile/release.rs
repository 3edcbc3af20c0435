//! Releasing held spans: a block leaves after its wait, each span after its held
//! descendants so their CPU rolls up into it first, with the samples still waiting on its
//! trace or thread given to it or left for others; then expiry of what waited too long.

use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use hotspan_proto::raw::{merge_into, AttributeKey, RawSpan, ResourceSpansRaw, ScopeSpansRaw};
use hotspan_proto::TracesBatch;

use super::annotate::{annotate, annotate_overlap, annotate_rollup, PYROSCOPE_PROFILE_ID};
use super::block::{Block, Gathered, Loose};
use super::index::{lock, shard_of, Entry, Generation, Shard, TraceState, Waiting, MAX_DEPTH_WALK, SHARDS};
use super::join::Join;
use super::model::{Event, Rule, SpanId, TraceId};
use super::timeline::{Matching, Timelines};

/// Looked for on every span that got samples, before its annotation is written.
static PROFILE_ID_KEY: LazyLock<AttributeKey> = LazyLock::new(|| AttributeKey::new(PYROSCOPE_PROFILE_ID));

/// A trace's held spans by parent, as (parent, child) sorted by parent: built once per
/// release of the trace, so finding a span's children is a binary search, not a scan.
#[derive(Default)]
pub(super) struct Children {
    pairs: Vec<(SpanId, SpanId)>,
}

impl Children {
    /// Indexes `state`'s held spans, reusing the buffer.
    fn index(&mut self, state: &TraceState) {
        self.pairs.clear();
        self.pairs.extend(
            state
                .held
                .iter()
                .filter(|e| e.parent != 0)
                .map(|e| (e.parent, e.id)),
        );
        self.pairs.sort_unstable();
    }

    fn of(&self, parent: SpanId) -> impl Iterator<Item = &SpanId> {
        let from = self.pairs.partition_point(|p| p.0 < parent);
        self.pairs[from..]
            .iter()
            .take_while(move |p| p.0 == parent)
            .map(|p| &p.1)
    }
}

/// Released spans leave in batches of about this many (whole requests each): a backlog
/// released at once must not become one message too big for whoever receives it.
const RELEASE_BATCH_SPANS: usize = 8192;

/// What one release gathers: the annotations of the leaving block's spans, and spans of
/// other blocks that leave with it (descendants of its spans, held in younger blocks).
pub(super) struct Leaving<'a> {
    pub(super) block: &'a Arc<Block>,
    /// Positions in `block` that left in this release.
    pub(super) done: Vec<bool>,
    pub(super) accs: Vec<(u32, Gathered)>,
    pub(super) loose: Vec<Loose>,
    /// Ids of the spans that left the index, in order.
    pub(super) released: Vec<SpanId>,
    /// The timelines each of the leaving block's resources reads; others' looked up in
    /// `all` as needed.
    timelines: Vec<Matching>,
    all: &'a Timelines,
}

impl<'a> Leaving<'a> {
    pub(super) fn new(block: &'a Arc<Block>, all: &'a Timelines) -> Self {
        Leaving {
            block,
            done: vec![false; block.len()],
            accs: Vec::new(),
            loose: Vec::new(),
            released: Vec::new(),
            timelines: block.keys.iter().map(|k| all.matching(k)).collect(),
            all,
        }
    }

    /// A span that left its trace's index, from `block`: it goes out with its block when
    /// that is the block leaving, else on its own.
    pub(super) fn add(&mut self, e: Entry, block: &Arc<Block>) {
        self.released.push(e.id);
        if Arc::ptr_eq(self.block, block) {
            self.done[e.at as usize] = true;
            let resource = block.locs.get(e.at as usize).map_or(0, |l| l.resource as usize);
            let timelines = self.timelines.get(resource).cloned().unwrap_or_default();
            self.accs
                .extend(Gathered::of(e.acc, e.children_cpu, &timelines).map(|g| (e.at, g)));
        } else {
            let timelines = self.all.matching(block.key(e.at));
            let gathered = Gathered::of(e.acc, e.children_cpu, &timelines);
            self.loose.extend(block.take_loose(e.at, gathered));
        }
    }
}

impl Join {
    /// Releases a block: each span after its held descendants (some of which may be in
    /// younger blocks: they leave now too), so their CPU rolls up into it first. Adds what
    /// leaves to `out`; returns how many spans left.
    pub(super) fn release_block(
        &self,
        block: &Arc<Block>,
        now: Instant,
        out: &mut Vec<ResourceSpansRaw>,
    ) -> usize {
        let mut by_shard: Vec<Vec<u32>> = (0..SHARDS).map(|_| Vec::new()).collect();
        for (at, ix) in block.index.iter().enumerate() {
            if !block.is_gone(at) {
                by_shard[shard_of(&ix.trace_id)].push(at as u32);
            }
        }
        let mut leaving = Leaving::new(block, &self.timelines);
        let mut children = Children::default();
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
                // Built once for the trace, so walking its tree is linear in its held spans.
                children.index(state);
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
                        self.release_tree(state, trace, id, &mut leaving, &children, 0);
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
        self.held_bytes.fetch_sub(block.bytes, Ordering::AcqRel);
        let mut spans = 0;
        let mut annotate = |span: &RawSpan, g: &Gathered| self.annotation(span, g, &mut scratch);
        for r in block.take_spans(accs, &mut annotate) {
            spans += r.span_count();
            merge_into(out, r);
        }
        spans + self.put_loose(out, loose)
    }

    /// Adds spans leaving apart from their blocks to `out`; returns how many.
    pub(super) fn put_loose(&self, out: &mut Vec<ResourceSpansRaw>, loose: Vec<Loose>) -> usize {
        let n = loose.len();
        let mut scratch = Vec::new();
        for mut l in loose {
            if let Some(g) = &l.gathered {
                let annotation = self.annotation(&l.span, g, &mut scratch);
                l.span.append(annotation);
            }
            let span = l.span;
            merge_into(
                out,
                ResourceSpansRaw::new(l.resource, vec![ScopeSpansRaw::new(l.scope, vec![span])]),
            );
        }
        n
    }

    /// A span's annotation, written in `scratch` (reused, so it grows once) and copied out
    /// at its size.
    pub(super) fn annotation(&self, span: &RawSpan, gathered: &Gathered, scratch: &mut Vec<u8>) -> Box<[u8]> {
        scratch.clear();
        match &gathered.acc {
            Some(acc) => {
                // otel-profiling-go sets it already on the spans it labels; a key appears once.
                let has_profile_id = span.attribute(&PROFILE_ID_KEY).is_some();
                annotate(
                    &span.index,
                    acc,
                    gathered.children_cpu,
                    &self.config,
                    !has_profile_id,
                    scratch,
                )
            }
            None => annotate_rollup(gathered.children_cpu, &self.config, scratch),
        }
        if !gathered.timelines.is_empty() {
            let (start, end) = (span.index.start, span.index.end.max(span.index.start));
            let overlap = gathered.timelines.overlap(start, end);
            if !overlap.is_empty() {
                annotate_overlap(&overlap, &self.config, scratch);
            }
        }
        Box::from(&scratch[..])
    }

    /// What leaves as one batch, counted.
    pub(super) fn finish(&self, out: Vec<ResourceSpansRaw>, spans: usize) -> Vec<TracesBatch> {
        if out.is_empty() {
            return Vec::new();
        }
        self.stats.spans_out.fetch_add(spans as u64, Ordering::Relaxed);
        vec![TracesBatch::from_raw(out)]
    }

    /// Releases a span after its held descendants, so their CPU rolls up into it first.
    pub(super) fn release_tree(
        &self,
        state: &mut TraceState,
        trace: TraceId,
        id: SpanId,
        leaving: &mut Leaving,
        children: &Children,
        depth: usize,
    ) {
        if depth < MAX_DEPTH_WALK {
            for &child in children.of(id) {
                // Gone already: released in an earlier walk (or, in a parent cycle, this one).
                if state.position(child).is_some() {
                    self.release_tree(state, trace, child, leaving, children, depth + 1);
                }
            }
        }
        if let Some(e) = self.release(state, trace, id) {
            let block = e.block as usize;
            leaving.add(e, &state.blocks[block]);
        }
    }

    /// Takes a span out of the index after giving it every waiting sample it can claim.
    pub(super) fn release(&self, state: &mut TraceState, trace: TraceId, id: SpanId) -> Option<Entry> {
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
        // Samples on this span's thread taken while it ran, unless a deeper span ran then:
        // found under each name of its process.
        if let Some(thread) = thread {
            let mut mine = Vec::new();
            for process in key.processes() {
                let tk = (process, thread);
                let mut threads = lock(&self.threads[shard_of(&tk)]);
                let Some(bucket) = threads.get_mut(&tk) else {
                    continue;
                };
                let spans = bucket.spans.clone();
                let (claimed, others): (Vec<Event>, Vec<Event>) =
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
                mine.extend(claimed);
            }
            if let Some(e) = state.find_mut(id) {
                for event in &mine {
                    self.attach(e, event, Rule::Thread);
                }
            }
            done += mine.len();
        }
        self.release_pending(done);
        Self::leave(state, id, keep)
    }

    /// Takes a span out, puts back the samples it did not claim, rolls its CPU up, and
    /// remembers it left.
    pub(super) fn leave(state: &mut TraceState, id: SpanId, keep: Vec<(Waiting, Event)>) -> Option<Entry> {
        let e = state.remove(id)?;
        state.waiting.extend(keep);
        // Descendants' CPU and waiting roll up into ancestors still held.
        let cpu = e
            .acc
            .as_ref()
            .map_or(0, |a| a.own.cpu_ns)
            .saturating_add(e.children_cpu);
        let wait = e.acc.as_ref().map_or(0, |a| {
            let w = a.wait_ns().saturating_add(a.children_wait_ns);
            if w == 0 {
                return 0;
            }
            // Blocked time is an estimate: what rolls up is never more than the span lasted.
            let h = state.held_at(&e);
            w.min(a.wait_ns().min(h.end() - h.start()) + a.children_wait_ns)
                .min(h.end() - h.start())
        });
        let parent = e.parent().filter(|_| cpu > 0 || wait > 0);
        if let Some(parent) = parent.and_then(|p| state.find_mut(p)) {
            parent.children_cpu = parent.children_cpu.saturating_add(cpu);
            if wait > 0 {
                let acc = parent.acc.get_or_insert_default();
                acc.children_wait_ns = acc.children_wait_ns.saturating_add(wait);
            }
        }
        Some(e)
    }

    /// A generation of released spans is this long: each is remembered for `wait` to
    /// `wait` and this.
    pub(super) fn generation_stretch(&self) -> Duration {
        (self.config.wait / 2).max(Duration::from_millis(50))
    }

    /// Takes forgotten spans out of `owners`, when it is kept.
    pub(super) fn forget_owners(&self, g: &Generation) {
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
    pub(super) fn cut(
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
    pub(super) fn expire(&self, shard: &mut Shard, now: Instant) {
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
            // Spans of the trace still held will be offered these samples as they leave: a
            // sample that came before its spans (profiles overtake spans a batch processor
            // holds back) waits for them, not only for its own `wait`.
            let spans_held = !state.held.is_empty();
            state.waiting.retain(|(_, e)| {
                let keep = spans_held || e.arrived + wait > now;
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

    pub(super) fn expire_parked(&self, now: Instant) {
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
        let skew = self.skew();
        for t in &self.threads {
            lock(t).retain(|_, bucket| {
                let spans = &bucket.spans;
                bucket.waiting.retain(|e| {
                    // As for traces: a held span on the thread that ran then will claim it.
                    let claimable = e.time.is_some_and(|t| {
                        spans
                            .iter()
                            .any(|s| s.2.saturating_sub(skew) <= t && t <= s.3.saturating_add(skew))
                    });
                    let keep = claimable || e.arrived + wait > now;
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

    pub(super) fn count_expired(&self, samples: &[u64]) {
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
            let released = self.release_block(&block, now, &mut out);
            count += released;
            self.stats.drained.fetch_add(released as u64, Ordering::Relaxed);
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
}
