//! Reading one generation at a time.
//!
//! A Go 1.22+ trace is a sequence of generations (the runtime starts a new one about every
//! second), each self-contained: its own string table, stack table, frequency and, from Go
//! 1.25, clock snapshot. Within a generation every M (OS thread) writes batches of events
//! in its own order, and the frequency needed to read any timestamp may come last, so a
//! generation's event batches are buffered whole before its events can be put in order. Only
//! the event batches and the string table are kept; stacks and experimental data are skipped
//! as they are read.

use std::io::Read;

use foldhash::HashMap;

use crate::clock::Freq;
use crate::input::{uvarint, Input};
use crate::spec::*;
use crate::{GoVersion, TraceError};

/// Go's `MaxBatchSize`: the runtime never writes a larger batch.
const MAX_BATCH_SIZE: u64 = 64 << 10;
/// Go's `MaxEventTrailerDataSize`: the longest string the runtime writes.
const MAX_STRING_SIZE: u64 = 1 << 10;

/// One M's batch of events, its bytes in [`Generation::data`].
#[derive(Clone, Copy, Debug)]
pub struct Batch {
    /// Base timestamp, ticks: the first event's delta counts from here.
    pub time: u64,
    pub start: usize,
    pub end: usize,
    /// Stream offset of `data[start]`, for error messages.
    pub offset: u64,
}

/// The events written by one M, batches in the order they appear in the stream.
#[derive(Debug)]
pub struct MStream {
    pub m: u64,
    pub batches: Vec<Batch>,
}

/// The clock snapshot of a sync batch, raw.
#[derive(Clone, Copy, Debug)]
pub struct RawClock {
    pub ticks: u64,
    pub mono: u64,
    pub sec: u64,
    pub nsec: u64,
}

#[derive(Debug, Default)]
pub struct Generation {
    pub gen: u64,
    /// Event bytes of every M batch, back to back.
    pub data: Vec<u8>,
    /// One entry per M, in order of first appearance (the order Go seeds its merge with).
    pub ms: Vec<MStream>,
    m_index: HashMap<u64, usize>,
    /// String id -> range in `strs`.
    strings: HashMap<u64, (usize, usize)>,
    strs: Vec<u8>,
    pub freq: Option<Freq>,
    pub clock: Option<RawClock>,
    /// Earliest batch base time in the generation, ticks: the time of its Sync event.
    pub min_ts: u64,
    /// CPU profile samples' timestamps, ticks (they are merged into the event order by time).
    pub cpu_ticks: Vec<u64>,
}

impl Generation {
    /// The string with `id`; id 0 is always the empty string, as in Go.
    pub fn string(&self, id: u64) -> Option<&[u8]> {
        if id == 0 {
            return Some(b"");
        }
        self.strings.get(&id).and_then(|&(s, e)| self.strs.get(s..e))
    }

    fn buffered(&self) -> usize {
        self.data.len()
            + self.strs.len()
            + self.strings.len() * 24
            + self.ms.iter().map(|m| m.batches.len()).sum::<usize>() * std::mem::size_of::<Batch>()
            + self.cpu_ticks.len() * 8
    }
}

/// A batch header.
#[derive(Clone, Copy, Debug)]
struct Header {
    /// Experiment id; 0 for ordinary batches.
    exp: u8,
    gen: u64,
    m: u64,
    time: u64,
    /// Stream offset of the batch's data (once read).
    offset: u64,
}

enum Next {
    Batch(Header),
    EndOfGeneration,
    Eof,
}

/// A batch of the next generation, read while looking for the end of the current one (before
/// Go 1.26 nothing else marks a generation's end).
struct Spill {
    header: Header,
    data: Vec<u8>,
}

pub struct GenReader<R> {
    input: Input<R>,
    version: GoVersion,
    max_generation_bytes: usize,
    spill: Option<Spill>,
    /// At least one generation was read (before Go 1.26 a trace with none is broken).
    started: bool,
}

impl<R: Read> GenReader<R> {
    pub fn new(input: Input<R>, version: GoVersion, max_generation_bytes: usize) -> Self {
        GenReader {
            input,
            version,
            max_generation_bytes,
            spill: None,
            started: false,
        }
    }

    pub fn bytes_read(&self) -> u64 {
        self.input.offset()
    }

    /// The next generation, or `None` after the last.
    pub fn next(&mut self) -> Result<Option<Generation>, TraceError> {
        let gen = if self.version >= GoVersion::Go126 {
            self.next_delimited()?
        } else {
            self.next_with_spill()?
        };
        let Some(g) = gen else { return Ok(None) };
        self.started = true;
        let at = self.input.offset();
        if g.freq.is_none() {
            return Err(malformed(
                at,
                format!("generation {} has no frequency event", g.gen),
            ));
        }
        if self.version >= GoVersion::Go125 && g.clock.is_none() {
            return Err(malformed(
                at,
                format!("generation {} has no clock snapshot event", g.gen),
            ));
        }
        Ok(Some(g))
    }

    /// Go 1.26+: every generation ends with an EndOfGeneration marker.
    fn next_delimited(&mut self) -> Result<Option<Generation>, TraceError> {
        let mut g = Generation::default();
        loop {
            let at = self.input.offset();
            match self.header()? {
                Next::Eof => {
                    if !g.ms.is_empty() {
                        return Err(malformed(
                            at,
                            "trace ends inside a generation (truncated?)".into(),
                        ));
                    }
                    return Ok(None);
                }
                Next::EndOfGeneration => break,
                Next::Batch(h) => {
                    if h.gen == 0 {
                        return Err(malformed(at, "batch of generation 0".into()));
                    }
                    if g.gen == 0 {
                        g.gen = h.gen;
                    } else if h.gen != g.gen {
                        return Err(malformed(
                            at,
                            format!(
                                "batch of generation {} inside generation {}: missing end of generation",
                                h.gen, g.gen
                            ),
                        ));
                    }
                    let start = g.data.len();
                    let offset = self.batch_data(&mut g.data)?;
                    self.add_batch(&mut g, Header { offset, ..h }, start)?;
                }
            }
        }
        Ok(Some(g))
    }

    /// Go 1.22 to 1.25: a generation ends where a batch of the next one begins.
    fn next_with_spill(&mut self) -> Result<Option<Generation>, TraceError> {
        if self.started && self.spill.is_none() {
            return Ok(None);
        }
        let mut g = Generation::default();
        if let Some(spill) = self.spill.take() {
            g.gen = spill.header.gen;
            g.data = spill.data;
            self.add_batch(&mut g, spill.header, 0)?;
        }
        loop {
            let at = self.input.offset();
            let h = match self.header()? {
                Next::Eof => break,
                Next::EndOfGeneration => {
                    return Err(malformed(at, "end-of-generation marker before Go 1.26".into()))
                }
                Next::Batch(h) => h,
            };
            if h.gen == 0 {
                return Err(malformed(at, "batch of generation 0".into()));
            }
            if g.gen == 0 {
                g.gen = h.gen;
            }
            if h.gen == g.gen.wrapping_add(1) {
                let mut data = Vec::new();
                let offset = self.batch_data(&mut data)?;
                self.spill = Some(Spill {
                    header: Header { offset, ..h },
                    data,
                });
                break;
            }
            if h.gen != g.gen {
                return Err(malformed(
                    at,
                    format!(
                        "batch of generation {} inside generation {}: out of order",
                        h.gen, g.gen
                    ),
                ));
            }
            let start = g.data.len();
            let offset = self.batch_data(&mut g.data)?;
            self.add_batch(&mut g, Header { offset, ..h }, start)?;
        }
        Ok(Some(g))
    }

    /// Reads a batch header, or the end-of-generation marker, or a clean end of stream.
    fn header(&mut self) -> Result<Next, TraceError> {
        let at = self.input.offset();
        let Some(typ) = self.input.byte()? else {
            return Ok(Next::Eof);
        };
        let exp = match typ {
            EV_END_OF_GENERATION => return Ok(Next::EndOfGeneration),
            EV_EVENT_BATCH => 0,
            EV_EXPERIMENTAL_BATCH => self.input.need_byte("a batch header")?,
            other => {
                return Err(malformed(
                    at,
                    format!("expected a batch, found event type {other} ({})", name(other)),
                ))
            }
        };
        let gen = self.input.uvarint("a batch header")?;
        let m = self.input.uvarint("a batch header")?;
        let time = self.input.uvarint("a batch header")?;
        Ok(Next::Batch(Header {
            exp,
            gen,
            m,
            time,
            offset: 0,
        }))
    }

    /// Reads the size and bytes of the batch whose header was just read, appending to `out`;
    /// returns the stream offset of the bytes.
    fn batch_data(&mut self, out: &mut Vec<u8>) -> Result<u64, TraceError> {
        let at = self.input.offset();
        let size = self.input.uvarint("a batch header")?;
        if size > MAX_BATCH_SIZE {
            return Err(malformed(
                at,
                format!("batch of {size} bytes, more than Go's {MAX_BATCH_SIZE}"),
            ));
        }
        let offset = self.input.offset();
        self.input.read_into(size as usize, out, "a batch")?;
        Ok(offset)
    }

    /// Files the batch whose bytes are `g.data[start..]`: event batches stay, the special
    /// batches are decoded and their bytes dropped.
    fn add_batch(&mut self, g: &mut Generation, h: Header, start: usize) -> Result<(), TraceError> {
        if g.min_ts == 0 || h.time < g.min_ts {
            g.min_ts = h.time;
        }
        let first = g.data.get(start).copied();
        let kind = match (h.exp, first) {
            (0, Some(EV_STRINGS)) => Special::Strings,
            (0, Some(EV_STACKS)) => Special::Skip,
            (0, Some(EV_CPU_SAMPLES)) => Special::CpuSamples,
            (0, Some(EV_FREQUENCY)) if self.version < GoVersion::Go125 => Special::Sync,
            (0, Some(EV_SYNC)) if self.version >= GoVersion::Go125 => Special::Sync,
            (0, Some(EV_END_OF_GENERATION)) => {
                return Err(malformed(
                    h.offset,
                    "end-of-generation event inside a batch".into(),
                ))
            }
            (0, _) => Special::Events,
            // Experiments' own formats: nothing this crate reads.
            _ => Special::Skip,
        };
        if let Special::Events = kind {
            let batch = Batch {
                time: h.time,
                start,
                end: g.data.len(),
                offset: h.offset,
            };
            match g.m_index.get(&h.m).and_then(|&i| g.ms.get_mut(i)) {
                Some(ms) => ms.batches.push(batch),
                None => {
                    g.m_index.insert(h.m, g.ms.len());
                    g.ms.push(MStream {
                        m: h.m,
                        batches: vec![batch],
                    });
                }
            }
        } else {
            let data = std::mem::take(&mut g.data);
            // `start` is where this batch's bytes begin: its first byte was read above.
            let batch = data.get(start..).unwrap_or_default();
            let result = match kind {
                Special::Strings => add_strings(g, batch, h.offset),
                Special::CpuSamples => add_cpu_samples(g, batch, h.offset),
                Special::Sync => add_sync(g, batch, h, self.version),
                _ => Ok(()),
            };
            g.data = data;
            g.data.truncate(start);
            result?;
        }
        if g.buffered() > self.max_generation_bytes {
            return Err(TraceError::TooLarge {
                what: "bytes buffered for one generation",
                limit: self.max_generation_bytes as u64,
            });
        }
        Ok(())
    }
}

enum Special {
    Events,
    Strings,
    CpuSamples,
    Sync,
    Skip,
}

/// A cursor over a special batch's bytes, for its error offsets.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    offset: u64,
}

impl Cursor<'_> {
    fn at(&self) -> u64 {
        self.offset + self.pos as u64
    }

    fn done(&self) -> bool {
        self.pos >= self.b.len()
    }

    fn byte(&mut self) -> Result<u8, TraceError> {
        let b = self
            .b
            .get(self.pos)
            .copied()
            .ok_or_else(|| malformed(self.at(), "batch ends early".into()))?;
        self.pos += 1;
        Ok(b)
    }

    fn uvarint(&mut self) -> Result<u64, TraceError> {
        let (v, n) = uvarint(self.b.get(self.pos..).unwrap_or_default())
            .ok_or_else(|| malformed(self.at(), "bad varint".into()))?;
        self.pos += n;
        Ok(v)
    }

    fn bytes(&mut self, n: u64) -> Result<&[u8], TraceError> {
        let s = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .and_then(|end| self.b.get(self.pos..end));
        let Some(s) = s else {
            return Err(malformed(self.at(), "string runs past its batch".into()));
        };
        self.pos += s.len();
        Ok(s)
    }

    fn expect(&mut self, typ: u8) -> Result<(), TraceError> {
        let at = self.at();
        let got = self.byte()?;
        if got != typ {
            return Err(malformed(
                at,
                format!("expected {}, found {}", name(typ), name(got)),
            ));
        }
        Ok(())
    }
}

fn add_strings(g: &mut Generation, b: &[u8], offset: u64) -> Result<(), TraceError> {
    let mut c = Cursor { b, pos: 1, offset };
    while !c.done() {
        let at = c.at();
        c.expect(EV_STRING)?;
        let id = c.uvarint()?;
        let len = c.uvarint()?;
        if len > MAX_STRING_SIZE {
            return Err(malformed(
                at,
                format!("string of {len} bytes, more than Go's {MAX_STRING_SIZE}"),
            ));
        }
        let s = c.bytes(len)?;
        // Id 0 is the implicit empty string: defining it again is a duplicate, as in Go.
        if id == 0 || g.strings.contains_key(&id) {
            return Err(malformed(at, format!("string id {id} defined twice")));
        }
        let start = g.strs.len();
        g.strs.extend_from_slice(s);
        g.strings.insert(id, (start, g.strs.len()));
    }
    Ok(())
}

fn add_cpu_samples(g: &mut Generation, b: &[u8], offset: u64) -> Result<(), TraceError> {
    let mut c = Cursor { b, pos: 1, offset };
    while !c.done() {
        c.expect(EV_CPU_SAMPLE)?;
        let ticks = c.uvarint()?;
        // M, P, G, stack: not needed.
        for _ in 0..4 {
            c.uvarint()?;
        }
        g.cpu_ticks.push(ticks);
    }
    Ok(())
}

fn add_sync(g: &mut Generation, b: &[u8], h: Header, version: GoVersion) -> Result<(), TraceError> {
    let mut c = Cursor {
        b,
        pos: 0,
        offset: h.offset,
    };
    if version >= GoVersion::Go125 {
        c.expect(EV_SYNC)?;
    }
    let mut last = h.time;
    while !c.done() {
        let at = c.at();
        match c.byte()? {
            EV_FREQUENCY => {
                if g.freq.is_some() {
                    return Err(malformed(at, "two frequency events in one generation".into()));
                }
                let f = c.uvarint()?;
                g.freq =
                    Some(Freq::new(f).ok_or_else(|| malformed(at, "frequency of 0 ticks a second".into()))?);
            }
            EV_CLOCK_SNAPSHOT if version >= GoVersion::Go125 => {
                if g.clock.is_some() {
                    return Err(malformed(at, "two clock snapshots in one generation".into()));
                }
                // Ticks, like an event's: a delta from the batch's base time.
                last = last.wrapping_add(c.uvarint()?);
                let mono = c.uvarint()?;
                let sec = c.uvarint()?;
                let nsec = c.uvarint()?;
                g.clock = Some(RawClock {
                    ticks: last,
                    mono,
                    sec,
                    nsec,
                });
            }
            other => {
                return Err(malformed(
                    at,
                    format!(
                        "expected frequency or clock snapshot in a sync batch, found {}",
                        name(other)
                    ),
                ))
            }
        }
    }
    Ok(())
}

pub fn malformed(offset: u64, what: String) -> TraceError {
    TraceError::Malformed { offset, what }
}
