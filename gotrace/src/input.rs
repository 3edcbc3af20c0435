//! Reading the trace stream: a small buffer over any `Read`, a byte count held to the limit,
//! and Go's unsigned varints.

use std::io::{ErrorKind, Read};

use crate::TraceError;

/// The longest varint Go writes for a `uint64`.
const MAX_VARINT_LEN: usize = 10;

/// Decodes an unsigned LEB128 varint from the front of `b` as Go's `binary.Uvarint` does
/// (non-minimal encodings are accepted; more than 64 bits is an error). Returns the value and
/// the bytes it took, or `None` when `b` ends first or the value overflows.
#[inline]
pub fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    // One byte covers most deltas and small IDs.
    if let Some(&first) = b.first() {
        if first < 0x80 {
            return Some((first as u64, 1));
        }
    }
    let mut x: u64 = 0;
    let mut shift = 0u32;
    for (i, &byte) in b.iter().enumerate().take(MAX_VARINT_LEN) {
        if byte < 0x80 {
            if i == MAX_VARINT_LEN - 1 && byte > 1 {
                return None;
            }
            return Some((x | (byte as u64) << shift, i + 1));
        }
        x |= ((byte & 0x7f) as u64) << shift;
        shift += 7;
    }
    None
}

/// The input stream with its position, for error offsets and the size limit.
pub struct Input<R> {
    inner: R,
    buf: Box<[u8]>,
    /// Next unread byte in `buf`.
    pos: usize,
    /// End of the valid bytes in `buf`.
    len: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Refuse the trace once more than this many bytes have been read.
    max_bytes: u64,
}

impl<R: Read> Input<R> {
    pub fn new(inner: R, max_bytes: u64) -> Self {
        Input {
            inner,
            buf: vec![0; 64 << 10].into_boxed_slice(),
            pos: 0,
            len: 0,
            base: 0,
            max_bytes,
        }
    }

    /// Stream offset of the next byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Refills the buffer once it is used up; `false` at end of stream.
    fn fill(&mut self) -> Result<bool, TraceError> {
        if self.pos < self.len {
            return Ok(true);
        }
        self.base += self.len as u64;
        self.pos = 0;
        self.len = 0;
        let n = loop {
            match self.inner.read(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(TraceError::Io(e)),
            }
        };
        self.len = n;
        if self.base + n as u64 > self.max_bytes {
            return Err(TraceError::TooLarge {
                what: "bytes read",
                limit: self.max_bytes,
            });
        }
        Ok(n > 0)
    }

    /// What is read but not yet taken.
    fn buffered(&self) -> &[u8] {
        self.buf.get(self.pos..self.len).unwrap_or_default()
    }

    /// The next byte, or `None` at a clean end of stream.
    pub fn byte(&mut self) -> Result<Option<u8>, TraceError> {
        if !self.fill()? {
            return Ok(None);
        }
        // `fill` leaves `pos` below `len`, and `len` within `buf`.
        let Some(&b) = self.buf.get(self.pos) else {
            return Ok(None);
        };
        self.pos += 1;
        Ok(Some(b))
    }

    /// The next byte; end of stream here means the trace was cut short.
    pub fn need_byte(&mut self, what: &str) -> Result<u8, TraceError> {
        let at = self.offset();
        self.byte()?.ok_or_else(|| truncated(at, what))
    }

    /// Reads a varint (Go's `binary.ReadUvarint`).
    pub fn uvarint(&mut self, what: &str) -> Result<u64, TraceError> {
        let at = self.offset();
        // Fast path: the whole varint is in the buffer.
        if let Some((v, n)) = uvarint(self.buffered()) {
            self.pos += n;
            return Ok(v);
        }
        let mut x: u64 = 0;
        let mut shift = 0u32;
        for i in 0..MAX_VARINT_LEN {
            let byte = self.need_byte(what)?;
            if byte < 0x80 {
                if i == MAX_VARINT_LEN - 1 && byte > 1 {
                    break;
                }
                return Ok(x | (byte as u64) << shift);
            }
            x |= ((byte & 0x7f) as u64) << shift;
            shift += 7;
        }
        Err(TraceError::Malformed {
            offset: at,
            what: format!("{what}: varint overflows 64 bits"),
        })
    }

    /// Appends exactly `n` bytes to `out`.
    pub fn read_into(&mut self, n: usize, out: &mut Vec<u8>, what: &str) -> Result<(), TraceError> {
        let at = self.offset();
        let mut left = n;
        while left > 0 {
            if !self.fill()? {
                return Err(truncated(at, what));
            }
            let chunk = self.buffered();
            let take = left.min(chunk.len());
            if take == 0 {
                return Err(truncated(at, what));
            }
            out.extend_from_slice(chunk.get(..take).unwrap_or_default());
            self.pos += take;
            left -= take;
        }
        Ok(())
    }
}

fn truncated(offset: u64, what: &str) -> TraceError {
    TraceError::Malformed {
        offset,
        what: format!("trace ends inside {what} (truncated?)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_decode_as_go_does() {
        assert_eq!(uvarint(&[0x00]), Some((0, 1)));
        assert_eq!(uvarint(&[0x7f]), Some((127, 1)));
        assert_eq!(uvarint(&[0x80, 0x01]), Some((128, 2)));
        assert_eq!(uvarint(&[0xac, 0x02, 0xff]), Some((300, 2)));
        // Non-minimal encodings are accepted, as Go's reader accepts them.
        assert_eq!(uvarint(&[0x80, 0x80, 0x00]), Some((0, 3)));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(uvarint(&max), Some((u64::MAX, 10)));
        // A tenth byte above 1 carries bits past 64.
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(uvarint(&over), None);
        // Eleven bytes is too long whatever they hold.
        assert_eq!(uvarint(&[0x80; 11]), None);
        // Cut short.
        assert_eq!(uvarint(&[0x80]), None);
        assert_eq!(uvarint(&[]), None);
    }

    #[test]
    fn stream_varints_agree_with_slice_varints_across_buffer_refills() {
        // A reader that hands out one byte at a time forces the slow path.
        struct OneByte<'a>(&'a [u8]);
        impl Read for OneByte<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                match self.0.split_first() {
                    Some((b, rest)) if !out.is_empty() => {
                        out[0] = *b;
                        self.0 = rest;
                        Ok(1)
                    }
                    _ => Ok(0),
                }
            }
        }
        let values = [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX];
        let mut bytes = Vec::new();
        for v in values {
            let mut v = v;
            while v >= 0x80 {
                bytes.push((v as u8) | 0x80);
                v >>= 7;
            }
            bytes.push(v as u8);
        }
        let mut input = Input::new(OneByte(&bytes), u64::MAX);
        for v in values {
            assert_eq!(input.uvarint("test").unwrap(), v);
        }
        assert_eq!(input.byte().unwrap(), None);
        assert_eq!(input.offset(), bytes.len() as u64);
    }

    #[test]
    fn reading_past_the_limit_is_refused() {
        let bytes = [0u8; 100];
        let mut input = Input::new(&bytes[..], 99);
        let mut out = Vec::new();
        let err = input.read_into(100, &mut out, "test").unwrap_err();
        assert!(matches!(err, TraceError::TooLarge { limit: 99, .. }), "{err}");
        let mut input = Input::new(&bytes[..], 100);
        input.read_into(100, &mut out, "test").unwrap();
    }
}
