//! The join: spans come in as blocks, samples are placed on the span they name (or park
//! until it comes), and a block leaves after its wait with what its spans gathered
//! (`release.rs`). Everything it holds is bounded.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use foldhash::HashMap;
use hotspan_proto::{LogsBatch, MetricsBatch, ProfilesBatch, TracesBatch};

use super::block::{Block, Loose};
use super::config::{HeldCompression, SpanProfileConfig};
use super::extract;
use super::index::{lock, shard_of, sharded, Entry, Shard, ThreadBucket, ThreadKey, Waiting, SHARDS};
use super::model::{Event, Rule, SpanId, TraceId};
use super::timeline::Timelines;

/// Counters the collector exports; all in samples except the span counts.
#[derive(Default)]
pub struct JoinStats {
    pub joined: [AtomicU64; 3],
    pub unjoined: AtomicU64,
    pub late: AtomicU64,
    pub released_early: AtomicU64,
    /// Spans that left before their wait because the join stopped (shutdown, or a reload).
    pub drained: AtomicU64,
    pub spans_in: AtomicU64,
    pub spans_out: AtomicU64,
    /// Stop-the-world pauses taken from logs.
    pub pauses: AtomicU64,
    /// cgroup CPU data points taken from metrics.
    pub cpu_readings: AtomicU64,
    /// Samples naming a span that was not running when they were taken (placed by thread,
    /// or counted unjoined).
    pub misfits: AtomicU64,
}

/// The join of spans and profile samples (DESIGN.md, "The join").
pub struct Join {
    pub(super) config: SpanProfileConfig,
    /// Held blocks, oldest first.
    pub(super) blocks: Mutex<VecDeque<Arc<Block>>>,
    pub(super) held: AtomicUsize,
    pub(super) held_bytes: AtomicUsize,
    pub(super) shards: Vec<Mutex<Shard>>,
    /// span id -> trace id of held and remembered spans, for samples that name only a span.
    /// Kept only once such a sample has come: it costs two cache misses a span.
    pub(super) owners: Vec<Mutex<HashMap<SpanId, TraceId>>>,
    pub(super) track_owners: AtomicBool,
    pub(super) owners_ready: OnceLock<()>,
    /// Samples naming a span not seen yet, by span id.
    pub(super) orphans: Vec<Mutex<HashMap<SpanId, Vec<Event>>>>,
    /// Samples in `orphans`: while there are none, arriving spans need not look.
    pub(super) orphans_parked: AtomicUsize,
    pub(super) threads: Vec<Mutex<HashMap<ThreadKey, ThreadBucket>>>,
    pub(super) pending: AtomicUsize,
    /// Pauses and throttling per resource, read by every span of that resource as it leaves.
    pub(super) timelines: Timelines,
    /// Deadlines count from here.
    pub(super) epoch: Instant,
    pub stats: JoinStats,
}

impl Join {
    pub fn new(config: SpanProfileConfig) -> Self {
        // Spans leave `wait` after they arrive and may have started well before.
        let timelines = Timelines::new(config.wait * 2 + Duration::from_secs(600));
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
            timelines,
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
    pub(super) fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    pub(super) fn skew(&self) -> u64 {
        self.config.clock_skew.as_nanos() as u64
    }

    pub(super) fn attach(&self, e: &mut Entry, event: &Event, rule: Rule) {
        e.acc.get_or_insert_default().add(event, rule);
        self.stats.joined[rule as usize].fetch_add(event.samples, Ordering::Relaxed);
    }

    pub(super) fn unjoined(&self, event: &Event) {
        self.stats.unjoined.fetch_add(event.samples, Ordering::Relaxed);
    }

    /// Room for one more waiting sample, or it is counted unjoined now.
    pub(super) fn reserve_pending(&self, event: &Event) -> bool {
        if self.pending.fetch_add(1, Ordering::Relaxed) >= self.config.max_pending_samples {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.unjoined(event);
            return false;
        }
        true
    }

    pub(super) fn release_pending(&self, n: usize) {
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
                for process in block.key(at).processes() {
                    let tk = (process, thread);
                    lock(&self.threads[shard_of(&tk)])
                        .entry(tk)
                        .or_default()
                        .spans
                        .push((ix.trace_id, ix.span_id, ix.start, ix.end.max(ix.start)));
                }
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
        // Packed once those that leave at once are out, outside every lock but the block's.
        if self.config.held_compression == HeldCompression::Snappy {
            block.pack();
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
    pub(super) fn publish_owners(&self, ids: &[(TraceId, SpanId)]) {
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
    pub(super) fn ensure_owners(&self) {
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

    pub(super) fn owner(&self, span: SpanId) -> Option<TraceId> {
        self.ensure_owners();
        lock(&self.owners[shard_of(&span)]).get(&span).copied()
    }

    pub(super) fn take_orphans(&self, span: SpanId) -> Vec<Event> {
        let events = lock(&self.orphans[shard_of(&span)])
            .remove(&span)
            .unwrap_or_default();
        self.orphans_parked.fetch_sub(events.len(), Ordering::AcqRel);
        self.release_pending(events.len());
        events
    }

    pub(super) fn over_limits(&self) -> bool {
        self.held.load(Ordering::Acquire) > self.config.max_buffered_spans.max(1)
            || self.held_bytes.load(Ordering::Acquire) > self.config.max_buffered_bytes.max(1)
    }

    /// Takes a batch of profiles: every CPU sample is joined now or waits for its span.
    pub fn add_profiles(&self, batch: &ProfilesBatch, now: Instant) {
        for event in extract::events(batch, &self.config, now) {
            self.place(event);
        }
    }

    /// Takes stop-the-world pauses (`go.stw` log records) for the spans of their resource.
    pub fn add_logs(&self, batch: &LogsBatch) {
        let n = self.timelines.add_logs(batch);
        self.stats.pauses.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Takes cgroup CPU readings (throttling, quota) for the spans of their resource.
    pub fn add_metrics(&self, batch: &MetricsBatch) {
        let n = self.timelines.add_metrics(batch);
        self.stats.cpu_readings.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The batch with Links filled in from correlation labels, for the profiles/out pipeline.
    pub fn link_profiles(&self, batch: &ProfilesBatch) -> ProfilesBatch {
        extract::fill_links(batch, &self.config)
    }

    /// Joins one event now, or parks it where the span it waits for will find it.
    pub(super) fn place(&self, event: Event) {
        match (event.span, event.trace) {
            (Some(span), named_trace) => {
                let owner = named_trace.or_else(|| self.owner(span));
                if let Some(trace) = owner {
                    let mut shard = lock(&self.shards[shard_of(&trace)]);
                    let skew = self.skew();
                    let found = shard.traces.get(&trace).and_then(|t| {
                        let h = t.find(span)?;
                        Some((
                            t.is_local_root(h),
                            event.time.is_none_or(|at| h.runs_at(at, skew)),
                        ))
                    });
                    // Taken when the span it names was not running: the profiler gave it
                    // another sample's labels (the eBPF profiler merges samples of one stack
                    // and thread). It can still go by its thread; its ids are wrong.
                    if let Some((_, false)) = found {
                        drop(shard);
                        return self.misfit(event);
                    }
                    match found.map(|(root, _)| root) {
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
                        let tk = (event.resource.process(), thread);
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

    /// A sample whose ids contradict its time: placed by its thread alone, or unjoined.
    fn misfit(&self, mut event: Event) {
        self.stats.misfits.fetch_add(event.samples, Ordering::Relaxed);
        event.span = None;
        event.trace = None;
        self.place(event);
    }

    pub(super) fn park_orphan(&self, span: SpanId, event: Event) {
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

    /// Spans held right now.
    pub fn held_spans(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Samples waiting for their span right now.
    pub fn pending_samples(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }
}
