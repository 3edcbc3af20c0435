//! Held spans as blocks: the spans of one request, kept as the bytes they came in (packed and
//! compressed for their wait unless `held_compression: none`), released together in arrival
//! order and sent on as those same bytes plus whatever the join appended.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hotspan_proto::raw::{Head, PackedSpans, RawSpan, ResourceSpansRaw, SpanIndex};
use hotspan_proto::TracesBatch;

use super::index::lock;
use super::model::{Accumulator, ResourceKey};
use super::timeline::Matching;

/// What a held span costs besides its bytes: its index entry, its copy of the span's index
/// and its place in the block.
const HELD_OVERHEAD: usize = 160;

/// Where a span sits in its block's resources.
#[derive(Clone, Copy)]
pub(super) struct Loc {
    pub(super) resource: u32,
    pub(super) scope: u32,
    pub(super) span: u32,
}

/// The spans of one request, held together and released together, oldest first.
pub(super) struct Block {
    /// When its wait is over, in nanoseconds since the join's epoch.
    pub(super) deadline: u64,
    pub(super) bytes: usize,
    /// The spans, as received or packed; taken when the block leaves.
    resources: Mutex<Held>,
    /// Each span's index and place, by its position in the block: read without the lock.
    pub(super) index: Vec<SpanIndex>,
    pub(super) locs: Vec<Loc>,
    /// The resource key of each resource.
    pub(super) keys: Vec<Arc<ResourceKey>>,
    /// Spans that left apart from the block: with an ancestor from an older block, or at
    /// once (a second copy of a held span, or ids nothing could join).
    pub(super) gone: Vec<AtomicU64>,
}

/// A block's spans while held: as received, or packed (then `received` is empty).
#[derive(Default)]
struct Held {
    received: Vec<ResourceSpansRaw>,
    packed: Option<PackedSpans>,
}

/// A span that leaves apart from its block, with its resource and scope.
pub(super) struct Loose {
    pub(super) resource: Arc<Head>,
    pub(super) scope: Arc<Head>,
    pub(super) span: RawSpan,
    pub(super) gathered: Option<Gathered>,
}

/// What a span leaves with: samples of its own, its descendants' CPU, and the process-wide
/// timelines (pauses, throttling) of its resource. Most spans have none of these.
pub(super) struct Gathered {
    pub(super) acc: Option<Box<Accumulator>>,
    /// CPU of descendants that left before it, rolled up.
    pub(super) children_cpu: u64,
    pub(super) timelines: Matching,
}

impl Gathered {
    /// What a span with these leaves with, if anything.
    pub(super) fn of(
        acc: Option<Box<Accumulator>>,
        children_cpu: u64,
        timelines: &Matching,
    ) -> Option<Gathered> {
        (acc.is_some() || children_cpu > 0 || !timelines.is_empty()).then(|| Gathered {
            acc,
            children_cpu,
            timelines: timelines.clone(),
        })
    }
}

impl Block {
    pub(super) fn new(batch: TracesBatch, deadline: u64) -> Block {
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
            resources: Mutex::new(Held {
                received: resources,
                packed: None,
            }),
            index,
            locs,
            keys,
        }
    }

    /// Packs the spans, compressed (see [`PackedSpans`]), for the rest of their wait.
    pub(super) fn pack(&self) {
        let mut held = lock(&self.resources);
        if held.packed.is_none() && !held.received.is_empty() {
            let packed = PackedSpans::pack(&held.received, true);
            *held = Held {
                received: Vec::new(),
                packed: Some(packed),
            };
        }
    }

    /// The spans as containers, unpacked if they were packed (and kept so: a block some of
    /// whose spans leave on their own is unpacked once, not once for each).
    fn received<'a>(&self, held: &'a mut Held) -> &'a mut Vec<ResourceSpansRaw> {
        if let Some(packed) = held.packed.take() {
            held.received = packed.unpack(&self.index).unwrap_or_else(|e| {
                // Packed here from spans checked on the way in: not expected, but not a panic.
                tracing::error!(error = %e, spans = self.index.len(), "held spans did not unpack and are lost");
                Vec::new()
            });
        }
        &mut held.received
    }

    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    pub(super) fn key(&self, i: u32) -> &Arc<ResourceKey> {
        &self.keys[self.locs[i as usize].resource as usize]
    }

    pub(super) fn is_gone(&self, i: usize) -> bool {
        self.gone[i / 64].load(Ordering::Acquire) & (1 << (i % 64)) != 0
    }

    /// Takes span `i` out of the block to leave on its own. Called under the lock of the
    /// span's index shard, before the block's own release takes its spans.
    pub(super) fn take_loose(&self, i: u32, gathered: Option<Gathered>) -> Option<Loose> {
        let i = i as usize;
        self.gone[i / 64].fetch_or(1 << (i % 64), Ordering::AcqRel);
        let loc = self.locs[i];
        let mut held = lock(&self.resources);
        let rs = self.received(&mut held).get(loc.resource as usize)?;
        let ss = rs.scopes().get(loc.scope as usize)?;
        Some(Loose {
            resource: rs.head().clone(),
            scope: ss.head().clone(),
            span: ss.spans().get(loc.span as usize)?.clone(),
            gathered,
        })
    }

    /// The block's spans as they leave: without those gone already, with the annotation
    /// `annotate` writes for each of `gathered` (`(position, what)` in position order)
    /// appended. Unchanged containers keep their bytes as received.
    pub(super) fn take_spans(
        &self,
        gathered: Vec<(u32, Gathered)>,
        annotate: &mut dyn FnMut(&RawSpan, &Gathered) -> Box<[u8]>,
    ) -> Vec<ResourceSpansRaw> {
        let mut resources = std::mem::take(self.received(&mut lock(&self.resources)));
        let any_gone = self.gone.iter().any(|w| w.load(Ordering::Acquire) != 0);
        if gathered.is_empty() && !any_gone {
            return resources;
        }
        let mut annotations = gathered.into_iter().peekable();
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
                        while let Some((i, g)) = annotations.next_if(|a| (a.0 as usize) < at) {
                            if let Some(span) = spans.get_mut(i as usize - base) {
                                let extra = annotate(span, &g);
                                span.append(extra);
                            }
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
