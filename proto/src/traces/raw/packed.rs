//! Spans held for a while (the join's `wait`), packed: their records one after another in one
//! buffer, compressed with snappy, with the resource and scope heads copied out of the request
//! they came in. Nothing then keeps that request's body (and its allocation's slack) alive, and
//! a held span costs its share of the compressed buffer instead of its encoded bytes plus a
//! `RawSpan`. Unpacking gives back containers that encode to the same spans.

use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;
use prost::encoding::{decode_key, WireType};

use super::super::wire::{error, take_len};
use super::{Head, RawSpan, ResourceSpansRaw, ScopeSpansRaw, SpanIndex, SPANS};
use crate::DecodeError;

/// Resources and their spans, packed. See the module's documentation.
pub struct PackedSpans {
    /// Every span's record (key, length, message) in order; snappy's block format when
    /// `compressed`.
    data: Bytes,
    compressed: bool,
    /// Each resource's head with its scopes.
    shape: Vec<(Arc<Head>, Vec<Scope>)>,
}

/// A scope's head and how many spans it holds.
type Scope = (Arc<Head>, u32);

/// A packing thread's snappy encoder and output buffer, reused: snappy writes into a buffer
/// sized for the worst case, which `compress_vec` zeroes on every call and then leaves as the
/// held buffer, slack and all. Once the freed memory of released spans was being reused, that
/// slack was zeroed, so resident, and a sidecar's memory kept growing past its `wait`.
struct Snappy {
    encoder: snap::raw::Encoder,
    out: Vec<u8>,
}

/// A buffer bigger than this (a request of several thousand spans) is let go after use rather
/// than kept by the thread.
const SNAPPY_KEEP_BYTES: usize = 4 << 20;

thread_local! {
    static SNAPPY: RefCell<Snappy> = RefCell::new(Snappy {
        encoder: snap::raw::Encoder::new(),
        out: Vec::new(),
    });
}

/// `records` in snappy's block format, in a buffer of exactly its size; `None` if snappy
/// refuses (an input past its 4 GiB bound).
fn snappy(records: &[u8]) -> Option<Bytes> {
    SNAPPY.with_borrow_mut(|Snappy { encoder, out }| {
        let bound = snap::raw::max_compress_len(records.len());
        if bound == 0 {
            return None;
        }
        if out.len() < bound {
            out.resize(bound, 0);
        }
        let packed = encoder
            .compress(records, out)
            .ok()
            .and_then(|n| out.get(..n))
            .map(Bytes::copy_from_slice);
        if out.len() > SNAPPY_KEEP_BYTES {
            *out = Vec::new();
        }
        packed
    })
}

impl PackedSpans {
    /// Packs `resources`, compressed if `compress` (left plain should snappy refuse).
    pub fn pack(resources: &[ResourceSpansRaw], compress: bool) -> PackedSpans {
        let len: usize = resources
            .iter()
            .flat_map(|r| &r.scopes)
            .flat_map(|s| &s.spans)
            .map(RawSpan::record_len)
            .sum();
        let mut records = Vec::with_capacity(len);
        // Heads shared between containers stay shared, so merging still finds them equal
        // by pointer.
        let mut owned: Vec<(*const Head, Arc<Head>)> = Vec::new();
        let mut own = |head: &Arc<Head>| -> Arc<Head> {
            if let Some((_, o)) = owned.iter().find(|(p, _)| *p == Arc::as_ptr(head)) {
                return o.clone();
            }
            let copy = Arc::new(Head {
                records: head.records.iter().map(|r| Bytes::copy_from_slice(r)).collect(),
            });
            owned.push((Arc::as_ptr(head), copy.clone()));
            copy
        };
        let shape = resources
            .iter()
            .map(|r| {
                let scopes = r
                    .scopes
                    .iter()
                    .map(|s| {
                        s.spans.iter().for_each(|span| span.write_record(&mut records));
                        // A request holds far fewer than 4 Gi spans.
                        (own(&s.head), s.spans.len() as u32)
                    })
                    .collect();
                (own(&r.head), scopes)
            })
            .collect();
        let packed = compress.then(|| snappy(&records)).flatten();
        let compressed = packed.is_some();
        PackedSpans {
            data: packed.unwrap_or_else(|| Bytes::from(records)),
            compressed,
            shape,
        }
    }

    /// Bytes this holds, besides its heads (shared per resource and scope).
    pub fn resident(&self) -> usize {
        self.data.len()
    }

    /// The spans back, as containers under their heads. `index` is each span's index in
    /// packing order, kept by the caller: it is not packed again.
    pub fn unpack(&self, index: &[SpanIndex]) -> Result<Vec<ResourceSpansRaw>, DecodeError> {
        let buf = if self.compressed {
            let plain = snap::raw::Decoder::new()
                .decompress_vec(&self.data)
                .map_err(|e| error(format!("packed spans: {e}")))?;
            Bytes::from(plain)
        } else {
            self.data.clone()
        };
        let mut at = 0;
        let mut indexes = index.iter();
        let mut resources = Vec::with_capacity(self.shape.len());
        for (head, scopes) in &self.shape {
            let mut out = Vec::with_capacity(scopes.len());
            for (scope_head, n) in scopes {
                let from = at;
                let mut spans = Vec::with_capacity(*n as usize);
                for _ in 0..*n {
                    let mut rest = buf.get(at..).unwrap_or_default();
                    let whole = rest.len();
                    let key = decode_key(&mut rest)?;
                    if key != (SPANS, WireType::LengthDelimited) {
                        return Err(error("packed spans: not a span record"));
                    }
                    let body = take_len(&mut rest)?.len();
                    let start = at + (whole - rest.len() - body);
                    at = start + body;
                    let mut index = *indexes
                        .next()
                        .ok_or_else(|| error("packed spans: fewer indexes than spans"))?;
                    // Written here, with a minimal key and length.
                    index.set_record_minimal(true);
                    spans.push(RawSpan {
                        bytes: buf.slice(start..at),
                        extra: Box::default(),
                        index,
                    });
                }
                out.push(ScopeSpansRaw {
                    whole: None,
                    // The run of records is copied in one piece while none changed.
                    sources: vec![buf.slice(from..at)],
                    head: scope_head.clone(),
                    spans,
                });
            }
            resources.push(ResourceSpansRaw::new(head.clone(), out));
        }
        if at != buf.len() || indexes.next().is_some() {
            return Err(error("packed spans: spans and indexes do not match"));
        }
        Ok(resources)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{Rng, Shape, Template};
    use crate::{Encoding, TracesBatch};

    fn realistic(spans: usize) -> Vec<u8> {
        let template = Template::new(Shape::Realistic, 1, spans, 3).expect("template");
        template.fill(&mut Rng::new(7), 1, 1_700_000_000_000_000_000).0
    }

    fn indexes(resources: &[ResourceSpansRaw]) -> Vec<SpanIndex> {
        resources
            .iter()
            .flat_map(|r| r.scopes())
            .flat_map(|s| s.spans())
            .map(|s| s.index)
            .collect()
    }

    #[test]
    fn unpacked_spans_encode_as_received_and_drop_the_request() {
        let body = realistic(512);
        for compress in [true, false] {
            let received = Bytes::from(body.clone());
            let range = received.as_ptr() as usize..received.as_ptr() as usize + received.len();
            // Kept alive to the end, so no allocation below can reuse its addresses.
            let batch = TracesBatch::decode_bytes(received.clone(), Encoding::Protobuf).expect("decodes");
            let resources = batch.into_raw();
            let index = indexes(&resources);
            let packed = PackedSpans::pack(&resources, compress);
            drop(resources);
            if compress {
                assert!(
                    packed.resident() * 3 < body.len(),
                    "{} of {}",
                    packed.resident(),
                    body.len()
                );
            }
            let back = packed.unpack(&index).expect("unpacks");
            assert_eq!(indexes(&back).len(), 512);
            assert_eq!(super::super::encode(&back), body, "compress: {compress}");
            // Nothing unpacked points into the request any more.
            let inside = |b: &[u8]| range.contains(&(b.as_ptr() as usize));
            for r in &back {
                assert!(!r.head().records.iter().any(|h| inside(h)));
                for s in r.scopes() {
                    assert!(!s.head().records.iter().any(|h| inside(h)));
                    assert!(!s.spans().iter().any(|span| inside(&span.bytes)));
                }
            }
            drop(received);
        }
    }

    #[test]
    fn packed_bytes_take_no_more_memory_than_their_length() {
        let batch = TracesBatch::decode(&realistic(512), Encoding::Protobuf).expect("decodes");
        let resources = batch.into_raw();
        for compress in [true, false] {
            // Twice: the second packing reuses the thread's snappy buffer.
            for _ in 0..2 {
                let packed = PackedSpans::pack(&resources, compress);
                let len = packed.data.len();
                let own = packed.data.try_into_mut().expect("the only owner of its buffer");
                assert_eq!(own.capacity(), len, "compress: {compress}");
            }
        }
    }

    #[test]
    fn an_index_short_or_long_is_an_error_not_a_panic() {
        let batch = TracesBatch::decode(&realistic(16), Encoding::Protobuf).expect("decodes");
        let resources = batch.into_raw();
        let index = indexes(&resources);
        let packed = PackedSpans::pack(&resources, true);
        assert!(packed.unpack(&index[1..]).is_err());
        let mut long = index.clone();
        long.push(SpanIndex::default());
        assert!(packed.unpack(&long).is_err());
        let mut broken = PackedSpans::pack(&resources, true);
        broken.data = broken.data.slice(1..);
        assert!(broken.unpack(&index).is_err());
    }
}
