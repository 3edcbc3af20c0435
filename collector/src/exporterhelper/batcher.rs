//! `sending_queue.batch`, as otelcol's exporterhelper batches: one reader takes requests from
//! the queue in order and merges them into batches of at least `min_size` (cut at `max_size`),
//! or whatever has waited `flush_timeout`; up to `num_consumers` workers send those. A request
//! leaves the queue (its place freed, a waiting sender answered) once every batch carrying
//! some of its items has been sent or given up on.

use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hotspan_config::{bounds, FieldError, Signal};
use hotspan_proto::Batch;
use serde::Deserialize;
use tokio::sync::Notify;

use super::queue::{QueueItem, Sizer, Ticket};
use crate::consumer::ConsumeError;

/// otelcol's `sending_queue.batch`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueBatchConfig {
    /// `batch: {enabled: false}` turns it off, as otelcol's optional sections take.
    pub enabled: bool,
    /// A batch smaller than `min_size` goes once its oldest item has waited this long.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub flush_timeout: Duration,
    /// `items` or `bytes`. Unset: the queue's sizer when it is one of those, else `items`.
    pub sizer: Option<Sizer>,
    pub min_size: usize,
    /// 0: batches are not cut.
    pub max_size: usize,
}

impl Default for QueueBatchConfig {
    fn default() -> Self {
        QueueBatchConfig {
            enabled: true,
            flush_timeout: Duration::from_millis(200),
            sizer: None,
            min_size: 8192,
            max_size: 0,
        }
    }
}

const FLUSH_TIMEOUTS: RangeInclusive<Duration> = Duration::from_nanos(1)..=Duration::from_secs(3600);

impl QueueBatchConfig {
    /// What the batch is measured in, given the queue's sizer.
    pub fn sizer(&self, queue: Sizer) -> Sizer {
        self.sizer.unwrap_or(match queue {
            Sizer::Requests => Sizer::Items,
            s => s,
        })
    }

    pub fn validate(&self, path: &str, queue_sizer: Sizer, queue_size: usize, errs: &mut Vec<FieldError>) {
        if !self.enabled {
            return;
        }
        bounds::check_duration(
            self.flush_timeout,
            FLUSH_TIMEOUTS,
            format!("{path}.flush_timeout"),
            errs,
        );
        if self.sizer == Some(Sizer::Requests) {
            errs.push(FieldError::new(
                format!("{path}.sizer"),
                "must be items or bytes: a batch is measured by what it carries, as in otelcol",
            ));
        }
        if self.max_size > 0 && self.max_size < self.min_size {
            errs.push(FieldError::new(
                format!("{path}.max_size"),
                format!("must be 0 (no limit) or at least min_size ({})", self.min_size),
            ));
        }
        if self.sizer(queue_sizer) == queue_sizer && self.min_size > queue_size {
            errs.push(FieldError::new(
                format!("{path}.min_size"),
                format!("must be at most queue_size ({queue_size}): the queue could never hold a full batch"),
            ));
        }
    }
}

/// A batch ready to send, with a share of every request it carries items of.
pub(super) struct Outgoing {
    pub batch: Batch,
    pub shares: Vec<Share>,
}

impl Outgoing {
    /// One request as it was queued (no batching, or a kind that does not merge).
    pub fn whole(item: QueueItem) -> Self {
        let (batch, ticket) = item.into_parts();
        Outgoing {
            batch,
            shares: vec![Share::new(Arc::new(Request::new(ticket)))],
        }
    }

    /// Every share hears the batch's outcome; `keep`: the requests stay queued (on disk, or
    /// left to the shutdown) rather than leaving the queue.
    pub fn settle(self, keep: bool, outcome: &Result<(), ConsumeError>) {
        for share in self.shares {
            share.settle(keep, outcome);
        }
    }
}

/// A request taken from the queue. When the last batch holding its items lets go of it, its
/// ticket is settled with what became of them all.
struct Request {
    state: Mutex<Settlement>,
}

struct Settlement {
    ticket: Option<Ticket>,
    keep: bool,
    /// A batch carrying some of it was dropped unsettled (aborted at the shutdown deadline).
    lost: bool,
    /// The first failure among its batches.
    error: Option<ConsumeError>,
}

impl Request {
    fn new(ticket: Ticket) -> Self {
        Request {
            state: Mutex::new(Settlement {
                ticket: Some(ticket),
                keep: false,
                lost: false,
                error: None,
            }),
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        let Some(ticket) = state.ticket.take() else { return };
        let outcome = state.error.take().map_or(Ok(()), Err);
        match (state.lost, state.keep) {
            // Its waiting sender hears that the exporter stopped.
            (true, _) => drop(ticket),
            (false, true) => ticket.keep(outcome),
            (false, false) => ticket.done(outcome),
        }
    }
}

/// One batch's hold on a request.
pub(super) struct Share {
    request: Arc<Request>,
    settled: bool,
}

impl Share {
    fn new(request: Arc<Request>) -> Self {
        Share {
            request,
            settled: false,
        }
    }

    fn settle(mut self, keep: bool, outcome: &Result<(), ConsumeError>) {
        let mut state = self.request.state.lock().unwrap_or_else(|p| p.into_inner());
        state.keep |= keep;
        if let (Err(e), None) = (outcome, &state.error) {
            state.error = Some(e.without_batch());
        }
        drop(state);
        self.settled = true;
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        if !self.settled {
            self.request.state.lock().unwrap_or_else(|p| p.into_inner()).lost = true;
        }
    }
}

/// Items of one signal waiting for their batch to fill or age.
struct Pending {
    batch: Batch,
    /// The requests whose items are in `batch`, oldest first, each with how many are.
    owners: VecDeque<(Arc<Request>, usize)>,
    since: Instant,
}

pub(super) struct Batcher {
    sizer: Sizer,
    min_size: usize,
    max_size: usize,
    flush_timeout: Duration,
    /// One per signal: an exporter in several pipelines has one queue for them all.
    pending: Mutex<Vec<Pending>>,
    /// Told when a batch starts waiting, so the flusher learns its deadline.
    pub started: Notify,
}

impl Batcher {
    pub fn new(config: &QueueBatchConfig, queue_sizer: Sizer) -> Self {
        Batcher {
            sizer: config.sizer(queue_sizer),
            min_size: config.min_size,
            max_size: match config.max_size {
                0 => usize::MAX,
                max => max,
            },
            flush_timeout: config.flush_timeout,
            pending: Mutex::new(Vec::new()),
            started: Notify::new(),
        }
    }

    fn size(&self, batch: &Batch) -> usize {
        match self.sizer {
            Sizer::Bytes => batch.encoded_len(),
            Sizer::Items | Sizer::Requests => batch.item_count(),
        }
    }

    /// Takes a request from the queue; returns the batches that are now full.
    pub fn add(&self, item: QueueItem) -> Vec<Outgoing> {
        if item.batch.is_empty() {
            let (_, ticket) = item.into_parts();
            ticket.done(Ok(()));
            return Vec::new();
        }
        // Profiles carry a per-request dictionary: merging them is not a concatenation.
        if item.batch.signal() == Signal::Profiles {
            return vec![Outgoing::whole(item)];
        }
        let (batch, ticket) = item.into_parts();
        let (signal, items) = (batch.signal(), batch.item_count());
        let request = Arc::new(Request::new(ticket));
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match pending.iter_mut().find(|p| p.batch.signal() == signal) {
            Some(p) => match p.batch.append(batch) {
                None => p.owners.push_back((request, items)),
                // Not for one signal's kinds that merge; were it refused, it goes alone.
                Some(alone) => {
                    return vec![Outgoing {
                        batch: alone,
                        shares: vec![Share::new(request)],
                    }]
                }
            },
            None => {
                pending.push(Pending {
                    batch,
                    owners: VecDeque::from([(request, items)]),
                    since: Instant::now(),
                });
                self.started.notify_one();
            }
        }
        let Some(i) = pending.iter().position(|p| p.batch.signal() == signal) else {
            return Vec::new();
        };
        self.cut(&mut pending, i, false)
    }

    /// The batches that have waited `flush_timeout` by `now`; with `None`, every one.
    pub fn flush(&self, now: Option<Instant>) -> Vec<Outgoing> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        let mut i = 0;
        while i < pending.len() {
            let due = now.is_none_or(|now| pending[i].since + self.flush_timeout <= now);
            let before = pending.len();
            if due {
                out.extend(self.cut(&mut pending, i, true));
            }
            if pending.len() == before {
                i += 1;
            }
        }
        out
    }

    /// When the oldest waiting batch is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.iter().map(|p| p.since + self.flush_timeout).min()
    }

    /// Cuts batches off the front of `pending[i]` while it is at least `min_size` (`all`: until
    /// it is empty), each at most `max_size`.
    fn cut(&self, pending: &mut Vec<Pending>, i: usize, all: bool) -> Vec<Outgoing> {
        let mut out: Vec<Outgoing> = Vec::new();
        let p = &mut pending[i];
        while !p.batch.is_empty() && (all || self.size(&p.batch) >= self.min_size) {
            let batch = self.split_front(&mut p.batch);
            let shares = take_owners(&mut p.owners, batch.item_count());
            out.push(Outgoing { batch, shares });
        }
        if p.batch.is_empty() {
            // Whatever ownership is left over belongs with the last items that went.
            let left = p.owners.drain(..).map(|(r, _)| Share::new(r));
            match out.last_mut() {
                Some(last) => last.shares.extend(left),
                None => left.for_each(|s| s.settle(false, &Ok(()))),
            }
            pending.swap_remove(i);
        } else if !out.is_empty() {
            // What is left starts a batch of its own, as otelcol's does after a flush.
            p.since = Instant::now();
        }
        out
    }

    /// The front of `batch`, at most `max_size` in sizer units (or one item bigger than that).
    fn split_front(&self, batch: &mut Batch) -> Batch {
        if self.max_size == usize::MAX || self.size(batch) <= self.max_size {
            return batch.split_front(usize::MAX);
        }
        if self.sizer != Sizer::Bytes {
            return batch.split_front(self.max_size);
        }
        // Bytes: guess the count from the average item, and again from the guess's own
        // average while it is too big (items differ in size).
        let estimate =
            |n: usize, len: usize| (n as u128 * self.max_size as u128 / len.max(1) as u128) as usize;
        let mut n = estimate(batch.item_count(), self.size(batch)).max(1);
        loop {
            let mut head = batch.split_front(n);
            let len = head.encoded_len();
            if n == 1 || len <= self.max_size {
                return head;
            }
            let rest = batch.split_front(usize::MAX);
            match head.append(rest) {
                None => *batch = head,
                // One batch's own items always merge; were they refused, the head goes as is.
                Some(rest) => {
                    *batch = rest;
                    return head;
                }
            }
            n = estimate(n, len).clamp(1, n - 1);
        }
    }
}

/// Shares in the first `items` items of a pending batch, taken off its owners.
fn take_owners(owners: &mut VecDeque<(Arc<Request>, usize)>, mut items: usize) -> Vec<Share> {
    let mut shares = Vec::new();
    while items > 0 {
        let Some((request, left)) = owners.front_mut() else {
            break;
        };
        if *left <= items {
            items -= *left;
            if let Some((request, _)) = owners.pop_front() {
                shares.push(Share::new(request));
            }
        } else {
            *left -= items;
            items = 0;
            shares.push(Share::new(request.clone()));
        }
    }
    shares
}

#[cfg(test)]
mod tests;
