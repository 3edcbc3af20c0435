//! Spans as the bytes they arrived in, with an index of the few fields the collector reads
//! (ids, parent, flags, times). Forwarding copies bytes instead of decoding and re-encoding
//! every attribute, and the join appends its annotations as bytes: protobuf merges repeated
//! fields that come later in a message into the earlier ones.

use std::ops::Range;
use std::sync::Arc;

use bytes::{BufMut, Bytes};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::encoding::{decode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message;

use super::wire::{skip, take_len};

mod packed;
mod scan;
pub use packed::PackedSpans;
pub(crate) use scan::scan;

/// Tags of the containers this module rebuilds.
const RESOURCE_SPANS: u32 = 1;
const SCOPE_SPANS: u32 = 2;
const SPANS: u32 = 2;
const SPAN_ATTRIBUTES: u32 = 9;
const SPAN_LINKS: u32 = 13;
const SPAN_STATUS: u32 = 15;
const STATUS_CODE: u32 = 3;
/// `Resource` in a resource container, and `attributes` in a `Resource`.
const RESOURCE: u32 = 1;
const RESOURCE_ATTRIBUTES: u32 = 1;

/// The fields of a span the collector reads, taken from its bytes. Ids that have the wrong
/// length read as 0; their lengths say what came. 64 bytes: the join keeps one per span held
/// and moves it several times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpanIndex {
    pub trace_id: u128,
    pub span_id: u64,
    /// 0 when the span has no (valid) parent.
    pub parent_span_id: u64,
    pub start: u64,
    pub end: u64,
    /// Valid when the [`HAS_THREAD`] bit is set (an `Option<i64>` would take 8 bytes more).
    thread: i64,
    pub flags: u32,
    /// Lengths of the ids as received, 255 standing for 255 or more.
    pub trace_id_len: u8,
    pub span_id_len: u8,
    /// [`HAS_THREAD`], [`RECORD_MINIMAL`]: flags, so the status fits in the same 64 bytes.
    bits: u8,
    /// The status code the span's bytes give, when it is 0-254 (every code OTLP defines);
    /// [`STATUS_UNREAD`] for any other, which [`RawSpan::status_code`] then reads from them.
    status: u8,
}

/// `thread` holds the span's `thread.id`.
const HAS_THREAD: u8 = 1;
/// The span's record (tag and length) was written minimally, as the encoder here writes it:
/// then an unchanged span can be copied with it, as received.
const RECORD_MINIMAL: u8 = 2;
/// A `parent_span_id`, or a link's id, of a length no OTLP decoder takes (pdata refuses the
/// whole request for one): the span is refused here, not the batch it would join downstream.
const BAD_PARENT: u8 = 4;
const BAD_LINK: u8 = 8;
const STATUS_UNREAD: u8 = u8::MAX;

// Every held and waiting span carries one: the flags and the status fill the last bytes.
const _: () = assert!(std::mem::size_of::<SpanIndex>() == 64);

impl SpanIndex {
    /// The `thread.id` attribute (an int, or a string holding one), which the join's thread
    /// rule reads; found while the scan checks the attributes anyway.
    pub fn thread_id(&self) -> Option<i64> {
        (self.bits & HAS_THREAD != 0).then_some(self.thread)
    }

    fn set_thread_id(&mut self, thread: i64) {
        self.thread = thread;
        self.bits |= HAS_THREAD;
    }

    fn record_minimal(&self) -> bool {
        self.bits & RECORD_MINIMAL != 0
    }

    fn set_record_minimal(&mut self, minimal: bool) {
        self.bits = if minimal {
            self.bits | RECORD_MINIMAL
        } else {
            self.bits & !RECORD_MINIMAL
        };
    }

    fn set_status(&mut self, code: i32) {
        self.status = u8::try_from(code)
            .ok()
            .filter(|c| *c != STATUS_UNREAD)
            .unwrap_or(STATUS_UNREAD);
    }

    /// Why nothing downstream could correlate this span, if so.
    pub fn id_problem(&self) -> Option<String> {
        let problem = |len: u8, want: u8, zero: bool, what: &str| {
            if len == u8::MAX {
                Some(format!("{what} must be {want} bytes, got 255 or more"))
            } else if len != want {
                Some(format!("{what} must be {want} bytes, got {len}"))
            } else if zero {
                Some(format!("{what} must not be all zeros"))
            } else {
                None
            }
        };
        problem(self.trace_id_len, 16, self.trace_id == 0, "trace_id")
            .or_else(|| problem(self.span_id_len, 8, self.span_id == 0, "span_id"))
            .or_else(|| {
                (self.bits & BAD_PARENT != 0).then(|| "parent_span_id must be empty or 8 bytes".into())
            })
            .or_else(|| {
                (self.bits & BAD_LINK != 0)
                    .then(|| "a link's trace_id and span_id must be empty or 16 and 8 bytes".into())
            })
    }

    /// Notes a parent id's length (the last one given counts) or a link's ids.
    fn check_nested_ids(&mut self, tag: u32, value: &[u8]) {
        match tag {
            4 if matches!(value.len(), 0 | 8) => self.bits &= !BAD_PARENT,
            4 => self.bits |= BAD_PARENT,
            SPAN_LINKS if !link_ids_fit(value) => self.bits |= BAD_LINK,
            _ => {}
        }
    }
}

/// An attribute key to look for in many spans. A key is written as its bytes, so where they
/// appear nowhere in a span no attribute there has it: a substring search, with its searcher
/// built once here, costs a fraction of walking the span's fields, and most spans lack most
/// keys asked for (`cargo bench -p hotspan-proto --bench codec -- attribute_of`).
#[derive(Clone, Debug)]
pub struct AttributeKey {
    key: String,
    finder: memchr::memmem::Finder<'static>,
}

impl AttributeKey {
    pub fn new(key: &str) -> Self {
        AttributeKey {
            key: key.to_string(),
            finder: memchr::memmem::Finder::new(key.as_bytes()).into_owned(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.key
    }
}

/// One span: its encoded message (without tag and length), fields appended to it, and its
/// index.
#[derive(Clone, Debug)]
pub struct RawSpan {
    bytes: Bytes,
    /// Written after `bytes` when encoding; kept apart so appending copies nothing. Boxed
    /// rather than `Bytes`: held spans carry it empty, and it is half the size.
    extra: Box<[u8]>,
    pub index: SpanIndex,
}

impl RawSpan {
    /// Size of the encoded `Span` message.
    pub fn len(&self) -> usize {
        self.bytes.len() + self.extra.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// This span with `extra` (encoded fields of a `Span`, e.g. attributes and events)
    /// appended: decoders merge them into the span.
    pub fn appended(mut self, extra: Vec<u8>) -> RawSpan {
        self.append(extra.into_boxed_slice());
        self
    }

    /// Appends `extra` (encoded fields of a `Span`) to this span.
    pub fn append(&mut self, extra: Box<[u8]>) {
        if extra.is_empty() {
            return;
        }
        self.extra = if self.extra.is_empty() {
            extra
        } else {
            [&self.extra[..], &extra].concat().into_boxed_slice()
        };
    }

    /// The value of the first attribute named `key`, decoded.
    pub fn attribute(&self, key: &AttributeKey) -> Option<AnyValue> {
        [&self.bytes[..], &self.extra[..]]
            .into_iter()
            .filter(|part| key.finder.find(part).is_some())
            .find_map(|part| first_attribute(part, &key.key))
    }

    /// The span's status code (0 unset, 1 ok, 2 error); the last one given counts, as when a
    /// decoder merges a `Status` given twice. The scan noted the received bytes' own.
    pub fn status_code(&self) -> i32 {
        let mut code = 0;
        match self.index.status {
            STATUS_UNREAD => {
                status_codes(&self.bytes, &mut code);
            }
            known => code = i32::from(known),
        }
        status_codes(&self.extra, &mut code);
        code
    }

    fn record_len(&self) -> usize {
        record_len(self.len())
    }

    fn write_record(&self, out: &mut Vec<u8>) {
        put_key_len(out, SPANS, self.len());
        out.extend_from_slice(&self.bytes);
        out.extend_from_slice(&self.extra);
    }

    /// Where this span's record is in `source`, when it is unchanged, lies there, and was
    /// written as this module writes it (a padded length would not be). Decided without
    /// reading `source`, which has mostly left the cache by the time spans go out.
    fn record_in(&self, source: &Bytes) -> Option<Range<usize>> {
        if !self.extra.is_empty() || !self.index.record_minimal() {
            return None;
        }
        let n = self.bytes.len();
        // Within `source`'s addresses, the span's bytes are `source`'s own (both are alive),
        // and so is the record's header in front of them.
        let body = (self.bytes.as_ptr() as usize).checked_sub(source.as_ptr() as usize)?;
        let end = body.checked_add(n).filter(|end| *end <= source.len())?;
        let start = body.checked_sub(record_len(n) - n)?;
        Some(start..end)
    }
}

fn first_attribute(mut buf: &[u8], key: &str) -> Option<AnyValue> {
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).ok()?;
        if tag != SPAN_ATTRIBUTES {
            skip(wire_type, tag, &mut buf, 0).ok()?;
            continue;
        }
        let kv = take_len(&mut buf).ok()?;
        if let Some(value) = key_value(kv, key) {
            return Some(value);
        }
    }
    None
}

/// Sets `code` to each status code in `buf`, an encoded `Span`'s fields; stops at bytes that
/// do not parse (the scan checked them, so only the appended part could be short).
fn status_codes(mut buf: &[u8], code: &mut i32) -> Option<()> {
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).ok()?;
        if tag != SPAN_STATUS || wire_type != WireType::LengthDelimited {
            skip(wire_type, tag, &mut buf, 0).ok()?;
            continue;
        }
        status_code_in(take_len(&mut buf).ok()?, code)?;
    }
    Some(())
}

/// Whether an encoded `Link`'s ids (checked by the scan) are empty or 16 and 8 bytes long.
fn link_ids_fit(mut link: &[u8]) -> bool {
    while !link.is_empty() {
        let Ok((tag, wire_type)) = decode_key(&mut link) else {
            return false;
        };
        let want = match tag {
            1 => 16,
            2 => 8,
            _ => {
                if skip(wire_type, tag, &mut link, 0).is_err() {
                    return false;
                }
                continue;
            }
        };
        match take_len(&mut link) {
            Ok(id) if id.is_empty() || id.len() == want => {}
            _ => return false,
        }
    }
    true
}

/// Sets `code` to each code in an encoded `Status`.
fn status_code_in(mut status: &[u8], code: &mut i32) -> Option<()> {
    while !status.is_empty() {
        let (tag, wire_type) = decode_key(&mut status).ok()?;
        if tag == STATUS_CODE && wire_type == WireType::Varint {
            // An enum is an int32 on the wire: its low 32 bits.
            *code = prost::encoding::decode_varint(&mut status).ok()? as i32;
        } else {
            skip(wire_type, tag, &mut status, 0).ok()?;
        }
    }
    Some(())
}

/// The value of an encoded `KeyValue` named `thread.id`, as a number.
fn thread_id(kv: &[u8]) -> Option<i64> {
    const KEY: &[u8] = b"thread.id";
    // Most keys are not this one: when the key comes first, as every encoder writes it, its
    // length byte says so without parsing further.
    if kv.first() == Some(&0x0a) && kv.get(1) != Some(&(KEY.len() as u8)) {
        return None;
    }
    match key_value(kv, "thread.id")?.value? {
        Value::IntValue(i) => Some(i),
        Value::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

/// The value of an encoded `KeyValue` if its key is `key`.
fn key_value(mut kv: &[u8], key: &str) -> Option<AnyValue> {
    // No key field is the empty key, as a decoder reads it (an empty string is not written).
    let mut matched = key.is_empty();
    let mut value = None;
    while !kv.is_empty() {
        let (tag, wire_type) = decode_key(&mut kv).ok()?;
        match tag {
            1 | 2 if wire_type == WireType::LengthDelimited => {
                let bytes = take_len(&mut kv).ok()?;
                if tag == 1 {
                    matched = bytes == key.as_bytes();
                } else {
                    value = Some(bytes);
                }
            }
            _ => skip(wire_type, tag, &mut kv, 0).ok()?,
        }
    }
    if !matched {
        return None;
    }
    Some(value.and_then(|v| AnyValue::decode(v).ok()).unwrap_or_default())
}

/// The fields of a resource or scope container other than its children (the `Resource` or
/// `InstrumentationScope`, the schema URL, unknown fields), as encoded records. Shared by
/// every part of a batch cut from the same container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    records: Vec<Bytes>,
}

impl Head {
    fn len(&self) -> usize {
        self.records.iter().map(Bytes::len).sum()
    }

    /// The value of the resource's first attribute named `key`, read from the head's bytes
    /// without decoding the rest of the resource.
    pub fn resource_attribute(&self, key: &str) -> Option<AnyValue> {
        self.records.iter().find_map(|record| {
            let mut buf: &[u8] = record;
            let Ok((RESOURCE, WireType::LengthDelimited)) = decode_key(&mut buf) else {
                return None;
            };
            let mut resource = take_len(&mut buf).ok()?;
            while !resource.is_empty() {
                let (tag, wire_type) = decode_key(&mut resource).ok()?;
                if tag != RESOURCE_ATTRIBUTES || wire_type != WireType::LengthDelimited {
                    skip(wire_type, tag, &mut resource, 0).ok()?;
                    continue;
                }
                let kv = take_len(&mut resource).ok()?;
                if let Some(value) = key_value(kv, key) {
                    return Some(value);
                }
            }
            None
        })
    }

    /// The `Resource` of a resource container's head, decoded.
    pub fn resource(&self) -> Option<Resource> {
        let mut resource: Option<Resource> = None;
        for record in &self.records {
            let mut buf: &[u8] = record;
            let Ok((1, WireType::LengthDelimited)) = decode_key(&mut buf) else {
                continue;
            };
            let body = take_len(&mut buf).ok()?;
            // A message field given twice is merged, as any decoder would.
            resource.get_or_insert_with(Resource::default).merge(body).ok()?;
        }
        resource
    }
}

/// Spans under one instrumentation scope.
#[derive(Clone, Debug)]
pub struct ScopeSpansRaw {
    /// The whole container as received, while nothing in it changed.
    whole: Option<Bytes>,
    /// The containers as received (more than one once others were absorbed), of which the
    /// spans are slices: once some changed, runs of those that did not are still copied from
    /// them in one piece.
    sources: Vec<Bytes>,
    head: Arc<Head>,
    spans: Vec<RawSpan>,
}

impl ScopeSpansRaw {
    pub fn new(head: Arc<Head>, spans: Vec<RawSpan>) -> Self {
        ScopeSpansRaw {
            whole: None,
            sources: Vec::new(),
            head,
            spans,
        }
    }

    /// Takes `other`'s spans after these (the heads are the caller's to match): their
    /// unchanged records are still copied in runs from the bytes they came in.
    pub fn absorb(&mut self, other: ScopeSpansRaw) {
        self.whole = None;
        self.spans.extend(other.spans);
        for source in other.sources {
            // Pieces of one request mostly come one after another: its bytes are then the last
            // listed. Looking only there keeps absorbing a thousand requests linear; a source
            // listed twice costs a longer list, not a wrong body.
            let known = self
                .sources
                .last()
                .is_some_and(|s| s.as_ptr() == source.as_ptr() && s.len() == source.len());
            if !known {
                self.sources.push(source);
            }
        }
    }

    pub fn head(&self) -> &Arc<Head> {
        &self.head
    }

    pub fn spans(&self) -> &[RawSpan] {
        &self.spans
    }

    /// The spans, to change in place: the container is written from them from now on.
    pub fn spans_mut(&mut self) -> &mut [RawSpan] {
        self.whole = None;
        &mut self.spans
    }

    pub fn into_parts(self) -> (Arc<Head>, Vec<RawSpan>) {
        (self.head, self.spans)
    }

    fn body_len(&self) -> usize {
        match &self.whole {
            Some(w) => w.len(),
            None => self.head.len() + self.spans.iter().map(RawSpan::record_len).sum::<usize>(),
        }
    }

    fn write_body(&self, out: &mut Vec<u8>) {
        if let Some(w) = &self.whole {
            return out.extend_from_slice(w);
        }
        self.head.records.iter().for_each(|r| out.extend_from_slice(r));
        if self.sources.is_empty() {
            return self.spans.iter().for_each(|span| span.write_record(out));
        }
        // Unchanged spans whose records lie one after another in a source go as one copy.
        let flush = |run: Option<(usize, Range<usize>)>, out: &mut Vec<u8>| {
            // `record_in` found the range in that source, so both lookups succeed.
            if let Some(record) = run.and_then(|(source, range)| self.sources.get(source)?.get(range)) {
                out.extend_from_slice(record);
            }
        };
        let mut run: Option<(usize, Range<usize>)> = None;
        let mut source = 0;
        for span in &self.spans {
            // Spans mostly lie in the source of the one before them, or in the next one (the
            // sources are listed in the order their spans were absorbed).
            let found = if span.extra.is_empty() {
                [source, source + 1]
                    .into_iter()
                    .find_map(|i| Some((i, span.record_in(self.sources.get(i)?)?)))
                    .or_else(|| {
                        self.sources
                            .iter()
                            .enumerate()
                            .find_map(|(i, s)| span.record_in(s).map(|r| (i, r)))
                    })
            } else {
                None
            };
            match found {
                Some((i, r)) => {
                    source = i;
                    match &mut run {
                        Some((j, current)) if *j == i && current.end == r.start => current.end = r.end,
                        _ => flush(run.replace((i, r)), out),
                    }
                }
                None => {
                    flush(run.take(), out);
                    span.write_record(out);
                }
            }
        }
        flush(run, out);
    }

    fn split_front(&mut self, n: usize) -> ScopeSpansRaw {
        self.whole = None;
        let rest = self.spans.split_off(n);
        let front = std::mem::replace(&mut self.spans, rest);
        ScopeSpansRaw {
            whole: None,
            sources: self.sources.clone(),
            head: self.head.clone(),
            spans: front,
        }
    }
}

/// Spans under one resource.
#[derive(Clone, Debug)]
pub struct ResourceSpansRaw {
    whole: Option<Bytes>,
    head: Arc<Head>,
    scopes: Vec<ScopeSpansRaw>,
}

/// Adds `r` to `out`, under an equal resource (and scope) already there if there is one, so one
/// service's spans from many requests or traces leave under one container, as its SDK sends
/// them, and the resource is written (and compressed) once rather than once a piece.
pub fn merge_into(out: &mut Vec<ResourceSpansRaw>, r: ResourceSpansRaw) {
    // The latest container is the likeliest match: pieces come in runs from one request. Only
    // the latest few are compared: a gateway taking from a thousand pods (a resource each)
    // would otherwise compare each piece with hundreds of heads, byte by byte.
    let Some(o) = out
        .iter_mut()
        .rev()
        .take(MERGE_LOOKBACK)
        .find(|o| same_head(&o.head, &r.head))
    else {
        out.push(r);
        return;
    };
    o.whole = None;
    for s in r.scopes {
        match o
            .scopes
            .iter_mut()
            .rev()
            .take(MERGE_LOOKBACK)
            .find(|x| same_head(&x.head, &s.head))
        {
            Some(x) => x.absorb(s),
            None => o.scopes.push(s),
        }
    }
}

/// Containers `merge_into` looks back through for an equal one; past them a piece gets one of
/// its own, which costs its head's bytes again, not a wrong body.
const MERGE_LOOKBACK: usize = 16;

/// The same head: one shared copy, or equal bytes.
fn same_head(a: &Arc<Head>, b: &Arc<Head>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

impl ResourceSpansRaw {
    pub fn new(head: Arc<Head>, scopes: Vec<ScopeSpansRaw>) -> Self {
        ResourceSpansRaw {
            whole: None,
            head,
            scopes,
        }
    }

    pub fn head(&self) -> &Arc<Head> {
        &self.head
    }

    pub fn scopes(&self) -> &[ScopeSpansRaw] {
        &self.scopes
    }

    /// The scopes, to change in place: the container is written from them from now on.
    pub fn scopes_mut(&mut self) -> &mut [ScopeSpansRaw] {
        self.whole = None;
        &mut self.scopes
    }

    pub fn into_parts(self) -> (Arc<Head>, Vec<ScopeSpansRaw>) {
        (self.head, self.scopes)
    }

    pub fn span_count(&self) -> usize {
        self.scopes.iter().map(|s| s.spans.len()).sum()
    }

    fn body_len(&self) -> usize {
        match &self.whole {
            Some(w) => w.len(),
            None => {
                self.head.len()
                    + self
                        .scopes
                        .iter()
                        .map(|s| record_len(s.body_len()))
                        .sum::<usize>()
            }
        }
    }

    /// Writes the container; `scope_lens` are its scopes' `body_len`s, measured already.
    fn write_body(&self, out: &mut Vec<u8>, scope_lens: &[usize]) {
        if let Some(w) = &self.whole {
            return out.extend_from_slice(w);
        }
        self.head.records.iter().for_each(|r| out.extend_from_slice(r));
        for (scope, len) in self.scopes.iter().zip(scope_lens) {
            put_key_len(out, SCOPE_SPANS, *len);
            scope.write_body(out);
        }
    }

    /// Splits off the first `n` spans (fewer than this container holds).
    pub(crate) fn split_front(&mut self, mut n: usize) -> ResourceSpansRaw {
        self.whole = None;
        let mut front = Vec::new();
        while n > 0 {
            let Some(first) = self.scopes.first_mut() else {
                break;
            };
            let count = first.spans.len();
            if count <= n {
                front.push(self.scopes.remove(0));
                n -= count;
            } else {
                front.push(first.split_front(n));
                n = 0;
            }
        }
        ResourceSpansRaw::new(self.head.clone(), front)
    }

    /// Keeps the spans `keep` says yes to (asked in order) and drops scopes left empty;
    /// returns how many went.
    pub fn retain_spans(&mut self, mut keep: impl FnMut(&RawSpan) -> bool) -> usize {
        let mut removed = 0;
        for scope in &mut self.scopes {
            let before = scope.spans.len();
            scope.spans.retain(&mut keep);
            if scope.spans.len() != before {
                removed += before - scope.spans.len();
                scope.whole = None;
            }
        }
        if removed > 0 {
            self.whole = None;
            self.scopes.retain(|s| !s.spans.is_empty());
        }
        removed
    }
}

fn record_len(body: usize) -> usize {
    // Every tag written here is below 16: its key takes one byte.
    1 + encoded_len_varint(body as u64) + body
}

fn put_key_len(out: &mut Vec<u8>, tag: u32, len: usize) {
    out.put_u8(((tag << 3) | WireType::LengthDelimited as u32) as u8);
    encode_varint(len as u64, out);
}

/// Encoded size of an `ExportTraceServiceRequest` holding `resources`.
pub(crate) fn encoded_len(resources: &[ResourceSpansRaw]) -> usize {
    resources.iter().map(|r| record_len(r.body_len())).sum()
}

/// Encodes an `ExportTraceServiceRequest` holding `resources`.
pub(crate) fn encode(resources: &[ResourceSpansRaw]) -> Vec<u8> {
    // Every container's length goes in front of it: each scope is measured once, not once
    // for each level above it.
    let scope_lens: Vec<Vec<usize>> = resources
        .iter()
        .map(|r| match r.whole {
            Some(_) => Vec::new(),
            None => r.scopes.iter().map(ScopeSpansRaw::body_len).collect(),
        })
        .collect();
    let resource_lens: Vec<usize> = resources
        .iter()
        .zip(&scope_lens)
        .map(|(r, scopes)| match &r.whole {
            Some(w) => w.len(),
            None => r.head.len() + scopes.iter().map(|n| record_len(*n)).sum::<usize>(),
        })
        .collect();
    let mut out = Vec::with_capacity(resource_lens.iter().map(|n| record_len(*n)).sum());
    for ((r, len), scopes) in resources.iter().zip(resource_lens).zip(&scope_lens) {
        put_key_len(&mut out, RESOURCE_SPANS, len);
        r.write_body(&mut out, scopes);
    }
    out
}
