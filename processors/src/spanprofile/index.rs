//! The index of held spans, sharded by trace id: every rule looks only within one trace, so
//! receivers feeding the join from many tasks never contend on one lock. A trace's held spans
//! and the samples waiting on it; released spans remembered in generations; threads' buckets.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use foldhash::HashMap;
use hotspan_proto::raw::SpanIndex;

use super::block::Block;
use super::model::{Accumulator, Event, Process, ResourceKey, SpanId, TraceId};

pub(super) const SHARDS: usize = 16;
/// Parent links followed when measuring depth; deeper trees are rare and still ordered.
pub(super) const MAX_DEPTH_WALK: usize = 256;
/// W3C "parent is remote" bits of `Span.flags`: known, and remote.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn shard_of<K: Hash>(key: &K) -> usize {
    // Fixed seed: the same key must pick the same shard for the life of the process.
    (foldhash::fast::FixedState::with_seed(0x5eed).hash_one(key) as usize) % SHARDS
}

pub(super) fn sharded<T: Default>() -> Vec<Mutex<T>> {
    (0..SHARDS).map(|_| Mutex::new(T::default())).collect()
}

/// A held span, as its trace's index knows it: the ids searched for are kept here, the rest
/// is read from its block.
pub(super) struct Entry {
    pub(super) id: SpanId,
    /// 0 when the span has no parent.
    pub(super) parent: SpanId,
    /// Its block, as a position in its trace's `blocks`.
    pub(super) block: u32,
    /// Its position in the block.
    pub(super) at: u32,
    /// Allocated when the first sample lands: most spans get none.
    pub(super) acc: Option<Box<Accumulator>>,
    /// CPU of descendants that left before it, rolled up.
    pub(super) children_cpu: u64,
}

impl Entry {
    pub(super) fn parent(&self) -> Option<SpanId> {
        (self.parent != 0).then_some(self.parent)
    }
}

/// A held span with the block its fields are read from.
#[derive(Clone, Copy)]
pub(super) struct Held<'a> {
    pub(super) e: &'a Entry,
    pub(super) block: &'a Block,
}

impl Held<'_> {
    pub(super) fn index(&self) -> &SpanIndex {
        &self.block.index[self.e.at as usize]
    }

    pub(super) fn key(&self) -> &Arc<ResourceKey> {
        self.block.key(self.e.at)
    }

    pub(super) fn remote_parent(&self) -> bool {
        let flags = self.index().flags;
        flags & FLAG_HAS_IS_REMOTE != 0 && flags & FLAG_IS_REMOTE != 0
    }

    pub(super) fn start(&self) -> u64 {
        self.index().start
    }

    pub(super) fn end(&self) -> u64 {
        self.index().end.max(self.index().start)
    }

    pub(super) fn thread(&self) -> Option<i64> {
        self.index().thread_id()
    }

    pub(super) fn runs_at(&self, t: u64, skew: u64) -> bool {
        self.start().saturating_sub(skew) <= t && t <= self.end().saturating_add(skew)
    }
}

/// Why a sample waits on a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Waiting {
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
pub(super) const TRACE_BLOCKS: usize = 8;

/// One trace in the index. Every rule looks only within one trace, so everything a span's
/// release reads is here, found with one look-up in the shard.
#[derive(Default)]
pub(super) struct TraceState {
    /// Held spans of this trace.
    pub(super) held: Vec<Entry>,
    /// id -> position in `held`, once the trace has more than `BIG_TRACE` held.
    pub(super) big: Option<HashMap<SpanId, usize>>,
    /// The blocks `held` refers to: one reference per trace and block, not one per span.
    pub(super) blocks: Vec<Arc<Block>>,
    pub(super) waiting: Vec<(Waiting, Event)>,
}

impl TraceState {
    pub(super) fn is_empty(&self) -> bool {
        self.held.is_empty() && self.waiting.is_empty()
    }

    pub(super) fn position(&self, id: SpanId) -> Option<usize> {
        match &self.big {
            Some(map) => map.get(&id).copied(),
            None => self.held.iter().position(|e| e.id == id),
        }
    }

    pub(super) fn held_at<'a>(&'a self, e: &'a Entry) -> Held<'a> {
        Held {
            e,
            block: &self.blocks[e.block as usize],
        }
    }

    pub(super) fn find(&self, id: SpanId) -> Option<Held<'_>> {
        self.position(id).map(|i| self.held_at(&self.held[i]))
    }

    pub(super) fn find_mut(&mut self, id: SpanId) -> Option<&mut Entry> {
        self.position(id).map(|i| &mut self.held[i])
    }

    /// The position in `blocks` of `block`, entered if new.
    pub(super) fn block_slot(&mut self, block: &Arc<Block>) -> u32 {
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

    pub(super) fn push(&mut self, e: Entry) {
        if let Some(map) = &mut self.big {
            map.insert(e.id, self.held.len());
        }
        self.held.push(e);
        if self.big.is_none() && self.held.len() > BIG_TRACE {
            self.big = Some(self.held.iter().enumerate().map(|(i, e)| (e.id, i)).collect());
        }
    }

    pub(super) fn remove(&mut self, id: SpanId) -> Option<Entry> {
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

    pub(super) fn is_local_root(&self, h: Held) -> bool {
        match h.e.parent() {
            None => true,
            Some(_) if h.remote_parent() => true,
            // A parent on another resource (another service) makes this the local root.
            Some(p) => self.find(p).is_some_and(|parent| !parent.key().matches(h.key())),
        }
    }

    pub(super) fn depth(&self, mut span: SpanId) -> usize {
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

    pub(super) fn descends_from(&self, mut span: SpanId, root: SpanId) -> bool {
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
    pub(super) fn deepest_at(
        &self,
        t: u64,
        key: &ResourceKey,
        within: Option<SpanId>,
        skew: u64,
    ) -> Option<SpanId> {
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
pub(super) struct Shard {
    /// Traces with spans held or samples waiting.
    pub(super) traces: HashMap<TraceId, TraceState>,
    /// Spans that left, remembered for at least `wait` to tell late samples from early ones:
    /// in generations, oldest first, so forgetting drops a whole generation rather than
    /// look each trace up again.
    pub(super) released: VecDeque<Generation>,
    /// Spans in `released`.
    pub(super) released_spans: usize,
    /// Whether a sample may be waiting on a trace here: while none is, expiry need not look
    /// at every trace.
    pub(super) waiting: bool,
}

/// Spans that left within one stretch of time: each release of a trace is a run of ids,
/// linked to the trace's run before it.
pub(super) struct Generation {
    pub(super) since: Instant,
    /// Each trace's last run.
    pub(super) last: HashMap<TraceId, u32>,
    pub(super) runs: Vec<Run>,
    pub(super) ids: Vec<SpanId>,
}

pub(super) struct Run {
    pub(super) trace: TraceId,
    pub(super) start: u32,
    pub(super) end: u32,
    /// The trace's run before this one in the generation, or `u32::MAX`.
    pub(super) before: u32,
}

impl Generation {
    pub(super) fn runs_of(&self, trace: TraceId) -> impl Iterator<Item = &[SpanId]> {
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
    pub(super) fn remember(&mut self, trace: TraceId, ids: &[SpanId], now: Instant, stretch: Duration) {
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

    pub(super) fn is_released(&self, trace: TraceId, span: SpanId) -> bool {
        self.released
            .iter()
            .any(|g| g.runs_of(trace).any(|ids| ids.contains(&span)))
    }

    pub(super) fn has_released(&self, trace: TraceId) -> bool {
        self.released.iter().any(|g| g.last.contains_key(&trace))
    }

    /// Forgets the oldest generation; returns it.
    pub(super) fn forget_oldest(&mut self) -> Option<Generation> {
        let g = self.released.pop_front()?;
        self.released_spans = self.released_spans.saturating_sub(g.ids.len());
        Some(g)
    }

    pub(super) fn wait_on(&mut self, trace: TraceId, why: Waiting, event: Event) {
        self.waiting = true;
        self.traces.entry(trace).or_default().waiting.push((why, event));
    }
}

/// Samples on one thread of one resource, waiting for the spans that ran on it.
#[derive(Default)]
pub(super) struct ThreadBucket {
    /// (trace, span, start, end) of held spans on this thread.
    pub(super) spans: Vec<(TraceId, SpanId, u64, u64)>,
    pub(super) waiting: Vec<Event>,
}

/// A thread of one process: thread ids are a process's, whether its resource names the
/// service (spans) or only the pid (the eBPF profiler's samples).
pub(super) type ThreadKey = (Process, i64);

#[cfg(test)]
mod size {
    /// The index keeps one entry per held span.
    #[test]
    fn an_index_entry_stays_small() {
        assert!(std::mem::size_of::<super::Entry>() <= 40);
        assert_eq!(std::mem::size_of::<hotspan_proto::raw::SpanIndex>(), 64);
    }
}
