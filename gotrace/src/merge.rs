//! Merging the Ms' event streams of each generation into the one order Go's parser reports.
//!
//! Go keeps one cursor per M in a binary min-heap keyed by the time of the cursor's next event
//! and offers the heap's top to the ordering model; when that event cannot happen yet it sorts
//! the cursors by time and offers each of the others in turn. CPU samples are slotted in by
//! time. Which of several events with the same time goes first decides the nanoseconds Go adds
//! to tell them apart, so the heap here moves its entries exactly as Go's does (same sift
//! rules, same tie-breaking), and the sort is stable like Go's for up to 12 cursors.

use std::io::Read;

use crate::clock::Freq;
use crate::generation::{GenReader, Generation, MStream};
use crate::input::{uvarint, Input};
use crate::order::{Ev, Ordering, Sink};
use crate::spec::{name, TIMED_ARGS};
use crate::{read_header, ClockSnapshot, Limits, Summary, TraceError};

/// Retries of out-of-order events allowed: a fixed allowance plus some per input byte.
const RETRY_BUDGET_BASE: u64 = 10_000_000;
const RETRY_BUDGET_PER_BYTE: u64 = 16;

pub fn parse<R: Read>(input: R, limits: &Limits) -> Result<Summary, TraceError> {
    let mut input = Input::new(input, limits.max_bytes);
    let version = read_header(&mut input)?;
    let mut gens = GenReader::new(input, version, limits.max_generation_bytes);
    let mut order = Ordering::default();
    let mut sink = Sink::new(limits);
    let mut clock_snapshots = Vec::new();
    let mut frontier: Vec<Cursor> = Vec::new();
    let mut generations = 0u64;
    let mut ticks_per_sec = None;
    let mut retry_work = 0u64;

    while let Some(g) = gens.next()? {
        generations += 1;
        if generations > limits.max_generations as u64 {
            return Err(TraceError::TooLarge {
                what: "generations",
                limit: limits.max_generations as u64,
            });
        }
        let at = gens.bytes_read();
        let Some(freq) = g.freq else {
            return Err(bad(at, "generation without a frequency".into()));
        };
        ticks_per_sec.get_or_insert(freq.ticks_per_sec());
        let ns = |ticks: u64| {
            freq.ns(ticks)
                .ok_or_else(|| bad(at, format!("timestamp {ticks} overflows")))
        };

        // Every generation opens with a Sync event at its earliest batch time.
        emit(&mut sink, ns(g.min_ts)?, at)?;
        if let Some(c) = g.clock {
            // Go's time.Unix(sec, nsec).UnixNano().
            let wall = (c.sec as i64 as i128) * 1_000_000_000 + c.nsec as i64 as i128;
            let wall_unix_ns =
                u64::try_from(wall).map_err(|_| bad(at, "clock snapshot wall time out of range".into()))?;
            clock_snapshots.push(ClockSnapshot {
                trace_ns: ns(c.ticks)? as u64,
                wall_unix_ns,
                mono_ns: c.mono,
            });
        }
        let mut cpu = g
            .cpu_ticks
            .iter()
            .map(|&t| ns(t))
            .collect::<Result<Vec<_>, _>>()?;
        cpu.sort_unstable();

        frontier.clear();
        for (ms, stream) in g.ms.iter().enumerate() {
            let mut c = Cursor::new(ms, stream, &mut order);
            if c.next(&g, freq)? {
                heap_insert(&mut frontier, c);
            }
        }
        let mut next_cpu = 0;
        loop {
            let head_time = frontier.first().map(|c| c.ev.time);
            match (cpu.get(next_cpu).copied(), head_time) {
                (None, None) => break,
                (Some(t), h) if h.is_none_or(|h| t < h) => {
                    emit(&mut sink, t, at)?;
                    next_cpu += 1;
                    continue;
                }
                _ => {}
            }
            if !try_advance(&mut frontier, 0, &g, freq, &mut order, &mut sink)? {
                // Real traces almost never get here (their clocks agree with their order),
                // but a hostile one could make every event do so, at a cost of the number of
                // Ms each time: bound the total to a multiple of the input.
                retry_work += frontier.len() as u64;
                if retry_work > RETRY_BUDGET_BASE + RETRY_BUDGET_PER_BYTE * gens.bytes_read() {
                    return Err(bad(
                        frontier.first().map_or(0, |c| c.ev.offset),
                        format!(
                            "events too far out of time order: gave up after {retry_work} out-of-order retries"
                        ),
                    ));
                }
                sort_by_time(&mut frontier);
                let mut advanced = false;
                for i in 1..frontier.len() {
                    if try_advance(&mut frontier, i, &g, freq, &mut order, &mut sink)? {
                        advanced = true;
                        break;
                    }
                }
                if !advanced {
                    let head = frontier.first().map(|c| c.ev).unwrap_or_default();
                    return Err(bad(
                        head.offset,
                        format!(
                            "no event can come next in generation {} (first waiting: {} at {} ns): \
                             events are missing or out of order",
                            g.gen,
                            name(head.typ),
                            head.time
                        ),
                    ));
                }
            }
            if order.resources() > limits.max_resources {
                return Err(TraceError::TooLarge {
                    what: "goroutines, threads, procs and tasks tracked at once",
                    limit: limits.max_resources as u64,
                });
            }
        }
    }
    let bytes = gens.bytes_read();
    if generations == 0 {
        return Err(bad(bytes, "the trace has a header but no events".into()));
    }
    // Go closes the trace with one more Sync event, after what was traced.
    let last = sink.last;
    sink.emit_status(last)
        .map_err(|what| bad(bytes, what.to_string()))?;
    Ok(Summary {
        version,
        start_ns: sink.first.unwrap_or(0) as u64,
        end_ns: sink.last as u64,
        // A trace of statuses alone traced nothing: its window is empty.
        covered_until_ns: sink.last_live.max(sink.first.unwrap_or(0)) as u64,
        ticks_per_sec: ticks_per_sec.unwrap_or(0),
        generations,
        events: sink.count,
        bytes,
        stw: sink.stw,
        gc: sink.gc,
        clock_snapshots,
    })
}

fn bad(offset: u64, what: String) -> TraceError {
    TraceError::Malformed { offset, what }
}

fn emit(sink: &mut Sink, t: i64, at: u64) -> Result<(), TraceError> {
    sink.emit(t).map(|_| ()).map_err(|what| bad(at, what.to_string()))
}

/// Offers the next event of cursor `i` to the ordering; when it happens, moves the cursor on
/// and restores the heap.
fn try_advance(
    frontier: &mut Vec<Cursor>,
    i: usize,
    g: &Generation,
    freq: Freq,
    order: &mut Ordering,
    sink: &mut Sink,
) -> Result<bool, TraceError> {
    let Some(c) = frontier.get_mut(i) else {
        return Ok(false);
    };
    let Some(m) = g.ms.get(c.ms).map(|s| s.m) else {
        return Ok(false);
    };
    if !order.advance(&c.ev, m, c.slot, g, sink)? {
        return Ok(false);
    }
    if c.next(g, freq)? {
        heap_update(frontier, i);
    } else {
        heap_remove(frontier, i);
    }
    Ok(true)
}

/// A position in one M's batches.
#[derive(Clone, Debug)]
struct Cursor {
    /// Index of the M in the generation.
    ms: usize,
    /// The M's state slot in the ordering.
    slot: Option<usize>,
    batch: usize,
    /// Next byte in the generation's data.
    pos: usize,
    /// Time of the previous event in this batch, ns (None at a batch's start).
    last: Option<i64>,
    /// The event read last, waiting for its turn.
    ev: Ev,
}

impl Cursor {
    fn new(ms: usize, stream: &MStream, order: &mut Ordering) -> Self {
        let pos = stream.batches.first().map_or(0, |b| b.start);
        Cursor {
            ms,
            slot: order.thread_slot(stream.m),
            batch: 0,
            pos,
            last: None,
            ev: Ev::default(),
        }
    }

    /// Reads the next event into `self.ev`; `false` when the M has no more.
    fn next(&mut self, g: &Generation, freq: Freq) -> Result<bool, TraceError> {
        let Some(batches) = g.ms.get(self.ms).map(|s| &s.batches) else {
            return Ok(false);
        };
        let b = loop {
            let Some(b) = batches.get(self.batch) else {
                return Ok(false);
            };
            if self.pos < b.end {
                break *b;
            }
            self.batch += 1;
            self.last = None;
            if let Some(next) = batches.get(self.batch) {
                self.pos = next.start;
            }
        };
        let at = b.offset + (self.pos - b.start) as u64;
        let last = match self.last {
            Some(t) => t,
            None => freq
                .ns(b.time)
                .ok_or_else(|| bad(at, format!("batch time {} overflows", b.time)))?,
        };
        // Within the batch: `pos < b.end`, and batches lie within `data`.
        let data = g.data.get(self.pos..b.end).unwrap_or_default();
        let Some(&typ) = data.first() else {
            return Err(bad(at, "event past the end of its batch".into()));
        };
        let nargs = TIMED_ARGS.get(usize::from(typ)).map_or(0, |&n| n as usize);
        if nargs == 0 {
            return Err(bad(at, format!("{} is not an event with a timestamp", name(typ))));
        }
        let mut n = 1;
        let mut dt = 0;
        let mut args = [0u64; 4];
        for i in 0..nargs {
            let (v, len) = uvarint(data.get(n..).unwrap_or_default())
                .ok_or_else(|| bad(at, format!("{} event: bad or cut-short varint", name(typ))))?;
            n += len;
            if i == 0 {
                dt = v;
            } else if let Some(arg) = args.get_mut(i - 1) {
                *arg = v;
            }
        }
        let time = freq
            .ns(dt)
            .and_then(|d| d.checked_add(last))
            .ok_or_else(|| bad(at, "event time overflows".into()))?;
        self.ev = Ev {
            typ,
            time,
            args,
            offset: at,
        };
        self.last = Some(time);
        self.pos += n;
        Ok(true)
    }
}

// The heap, moved exactly as Go's parser moves its own (internal/trace/batchcursor.go), so
// that cursors with equal times come out in the same order.

fn heap_insert(heap: &mut Vec<Cursor>, c: Cursor) {
    heap.push(c);
    let last = heap.len() - 1;
    sift_up(heap, last);
}

fn heap_update(heap: &mut [Cursor], i: usize) {
    if sift_up(heap, i) != i {
        return;
    }
    sift_down(heap, i);
}

fn heap_remove(heap: &mut Vec<Cursor>, mut i: usize) {
    // Carry the entry to the root regardless of times, then drop it from there.
    while i > 0 {
        heap.swap((i - 1) / 2, i);
        i = (i - 1) / 2;
    }
    let last = heap.len() - 1;
    heap.swap(0, last);
    heap.pop();
    sift_down(heap, 0);
}

fn sift_up(heap: &mut [Cursor], mut i: usize) -> usize {
    while i > 0 {
        let parent = (i - 1) / 2;
        match (heap.get(parent), heap.get(i)) {
            (Some(p), Some(c)) if p.ev.time > c.ev.time => heap.swap(parent, i),
            _ => break,
        }
        i = parent;
    }
    i
}

fn sift_down(heap: &mut [Cursor], mut i: usize) {
    loop {
        let mut min = i;
        let mut min_t = heap.get(i).map_or(i64::MAX, |c| c.ev.time);
        for child in [2 * i + 1, 2 * i + 2] {
            if let Some(c) = heap.get(child) {
                if c.ev.time < min_t {
                    min_t = c.ev.time;
                    min = child;
                }
            }
        }
        if min == i {
            return;
        }
        heap.swap(i, min);
        i = min;
    }
}

/// Go sorts the frontier with `slices.SortFunc`, which is an insertion sort (stable) up to 12
/// elements; any stable sort gives the same order. With more than 12 Ms Go's pattern-defeating
/// quicksort may order equal times otherwise, and a tie then broken differently can move a
/// reported time by a nanosecond or two: only on this path, which none of the real traces
/// tested ever took (their event times agree with their order).
fn sort_by_time(frontier: &mut [Cursor]) {
    frontier.sort_by_key(|c| c.ev.time);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(id: usize, time: i64) -> Cursor {
        Cursor {
            ms: id,
            slot: None,
            batch: 0,
            pos: 0,
            last: None,
            ev: Ev {
                time,
                ..Ev::default()
            },
        }
    }

    fn ids(heap: &[Cursor]) -> Vec<usize> {
        heap.iter().map(|c| c.ms).collect()
    }

    fn is_heap(heap: &[Cursor]) -> bool {
        (1..heap.len()).all(|i| heap[(i - 1) / 2].ev.time <= heap[i].ev.time)
    }

    #[test]
    fn equal_times_keep_go_s_heap_order() {
        // Go's heap, fed the same inserts, holds [0 1 2 3 4]: a tie never moves an entry.
        let mut heap = Vec::new();
        for (id, t) in [(0, 5), (1, 5), (2, 5), (3, 5), (4, 5)] {
            heap_insert(&mut heap, cursor(id, t));
        }
        assert_eq!(ids(&heap), [0, 1, 2, 3, 4]);
        // A smaller time rises past equal ones; the displaced entries keep their relative order.
        heap_insert(&mut heap, cursor(5, 1));
        assert_eq!(ids(&heap), [5, 1, 0, 3, 4, 2]);
        // Removing the root moves the last entry up, and among equals it stays put.
        heap_remove(&mut heap, 0);
        assert_eq!(ids(&heap), [2, 1, 0, 3, 4]);
        assert!(is_heap(&heap));
    }

    #[test]
    fn update_and_remove_keep_a_heap() {
        let mut heap = Vec::new();
        for (id, t) in [(0, 40), (1, 10), (2, 30), (3, 20), (4, 50), (5, 60)] {
            heap_insert(&mut heap, cursor(id, t));
        }
        assert!(is_heap(&heap));
        assert_eq!(heap[0].ms, 1);
        // The root's next event is later: it sinks.
        heap[0].ev.time = 45;
        heap_update(&mut heap, 0);
        assert!(is_heap(&heap));
        assert_eq!(heap[0].ms, 3);
        // A middle entry is exhausted.
        let i = heap.iter().position(|c| c.ms == 2).unwrap();
        heap_remove(&mut heap, i);
        assert!(is_heap(&heap));
        let mut order = Vec::new();
        while !heap.is_empty() {
            order.push(heap[0].ms);
            heap_remove(&mut heap, 0);
        }
        assert_eq!(order, [3, 0, 1, 4, 5]);
    }

    #[test]
    fn the_failed_advance_sort_is_stable() {
        let mut v: Vec<Cursor> = [(0, 3), (1, 1), (2, 3), (3, 1), (4, 2)]
            .iter()
            .map(|&(id, t)| cursor(id, t))
            .collect();
        sort_by_time(&mut v);
        assert_eq!(ids(&v), [1, 3, 4, 0, 2]);
    }
}
