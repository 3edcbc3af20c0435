//! A counting pass over the raw protobuf, run before prost allocates anything.
//!
//! prost builds every repeated message as it goes, and a 2-byte empty submessage becomes a
//! struct of tens of bytes, so the limits must hold before decoding, not after. This walks
//! the wire format (keys and lengths only, no copies) and counts what the [`Limits`] bound.

use super::{Limits, PprofError};

/// Cap on `Profile.sample_type`, outside [`Limits`]: each type becomes an OTLP `Profile`, so
/// an empty-sample payload could otherwise ask for millions of them. Real producers use < 20.
pub(crate) const MAX_SAMPLE_TYPES: usize = 256;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// A window `[pos, end)` of the payload; offsets stay absolute so errors point into it.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            end: buf.len(),
        }
    }

    fn done(&self) -> bool {
        self.pos >= self.end
    }

    fn malformed(&self, reason: &'static str) -> PprofError {
        PprofError::Malformed {
            offset: self.pos,
            reason,
        }
    }

    fn varint(&mut self) -> Result<u64, PprofError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.buf.get(self.pos).filter(|_| self.pos < self.end) else {
                return Err(self.malformed("truncated varint"));
            };
            self.pos += 1;
            // The tenth byte may only carry the top bit of a u64.
            if shift == 63 && byte > 1 {
                return Err(self.malformed("varint longer than 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.malformed("varint longer than 64 bits"))
    }

    /// Reads a field key: (field number, wire type).
    fn key(&mut self) -> Result<(u64, u8), PprofError> {
        let start = self.pos;
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            return Err(PprofError::Malformed {
                offset: start,
                reason: "invalid field number",
            });
        }
        Ok((field, (key & 7) as u8))
    }

    fn advance(&mut self, n: u64) -> Result<(), PprofError> {
        let left = self.end.saturating_sub(self.pos) as u64;
        if n > left {
            return Err(self.malformed("field runs past the end of its message"));
        }
        self.pos += n as usize;
        Ok(())
    }

    /// Reads a length-delimited field and returns a reader over its bytes.
    fn sub(&mut self) -> Result<Reader<'a>, PprofError> {
        let len = self.varint()?;
        let start = self.pos;
        self.advance(len)?;
        Ok(Reader {
            buf: self.buf,
            pos: start,
            end: self.pos,
        })
    }

    fn skip(&mut self, wire: u8) -> Result<(), PprofError> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.advance(8),
            LEN => self.sub().map(drop),
            FIXED32 => self.advance(4),
            // Groups (3, 4) are long deprecated and absent from profile.proto.
            _ => Err(self.malformed("unsupported wire type")),
        }
    }

    /// Counts the varints in a packed field's bytes.
    fn packed_count(self) -> Result<usize, PprofError> {
        let bytes = self.buf.get(self.pos..self.end).unwrap_or_default();
        if bytes.last().is_some_and(|b| b & 0x80 != 0) {
            return Err(PprofError::Malformed {
                offset: self.end,
                reason: "truncated packed varint",
            });
        }
        Ok(bytes.iter().filter(|b| *b & 0x80 == 0).count())
    }
}

fn limit(what: &'static str, limit: usize, at: impl FnOnce() -> String) -> PprofError {
    PprofError::Limit {
        what,
        limit,
        at: at(),
    }
}

/// Walks a `Profile` message and fails on the first bound it crosses.
pub(crate) fn check(buf: &[u8], limits: &Limits) -> Result<(), PprofError> {
    let mut r = Reader::new(buf);
    let (mut sample_types, mut samples, mut mappings, mut locations, mut functions) = (0, 0, 0, 0, 0);
    let (mut strings, mut string_bytes) = (0usize, 0usize);
    while !r.done() {
        let (field, wire) = r.key()?;
        if wire != LEN {
            r.skip(wire)?;
            continue;
        }
        let body = r.sub()?;
        match field {
            1 => {
                sample_types += 1;
                if sample_types > MAX_SAMPLE_TYPES {
                    return Err(limit("sample types (fixed)", MAX_SAMPLE_TYPES, || {
                        "sample_type".into()
                    }));
                }
            }
            2 => {
                samples += 1;
                if samples > limits.max_samples {
                    return Err(limit("max_samples", limits.max_samples, || "sample".into()));
                }
                check_sample(body, samples - 1, limits)?;
            }
            // Mappings share the location bound: every location names at most one mapping.
            3 => {
                mappings += 1;
                if mappings > limits.max_locations {
                    return Err(limit("max_locations", limits.max_locations, || "mapping".into()));
                }
            }
            4 => {
                locations += 1;
                if locations > limits.max_locations {
                    return Err(limit("max_locations", limits.max_locations, || "location".into()));
                }
                check_location(body, locations - 1, limits)?;
            }
            5 => {
                functions += 1;
                if functions > limits.max_functions {
                    return Err(limit("max_functions", limits.max_functions, || "function".into()));
                }
            }
            6 => {
                strings += 1;
                string_bytes = string_bytes.saturating_add(body.end.saturating_sub(body.pos));
                if strings > limits.max_strings {
                    return Err(limit("max_strings", limits.max_strings, || "string_table".into()));
                }
                if string_bytes > limits.max_string_bytes {
                    return Err(limit("max_string_bytes", limits.max_string_bytes, || {
                        "string_table".into()
                    }));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_sample(mut r: Reader<'_>, index: usize, limits: &Limits) -> Result<(), PprofError> {
    let (mut depth, mut labels) = (0usize, 0usize);
    while !r.done() {
        match r.key()? {
            // location_id, packed (the proto3 default) or one varint per entry.
            (1, LEN) => depth += r.sub()?.packed_count()?,
            (1, VARINT) => {
                r.varint()?;
                depth += 1;
            }
            (3, LEN) => {
                r.sub()?;
                labels += 1;
            }
            (_, wire) => r.skip(wire)?,
        }
        if depth > limits.max_stack_depth {
            return Err(limit("max_stack_depth", limits.max_stack_depth, || {
                format!("sample {index}")
            }));
        }
        if labels > limits.max_labels_per_sample {
            return Err(limit(
                "max_labels_per_sample",
                limits.max_labels_per_sample,
                || format!("sample {index}"),
            ));
        }
    }
    Ok(())
}

/// Inlined lines of one location are frames of the stack, so they share `max_stack_depth`.
fn check_location(mut r: Reader<'_>, index: usize, limits: &Limits) -> Result<(), PprofError> {
    let mut lines = 0usize;
    while !r.done() {
        match r.key()? {
            (4, LEN) => {
                r.sub()?;
                lines += 1;
                if lines > limits.max_stack_depth {
                    return Err(limit("max_stack_depth", limits.max_stack_depth, || {
                        format!("location {index} (inlined lines)")
                    }));
                }
            }
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(())
}
