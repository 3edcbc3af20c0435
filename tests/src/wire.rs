//! Counting spans in an encoded export request without decoding it, for sinks that must not
//! be the bottleneck of a benchmark.

use anyhow::{bail, Result};

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&b) = buf.get(*pos) else {
            bail!("truncated varint")
        };
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    bail!("varint too long")
}

/// Calls `f` with each length-delimited field `want` of a message; skips the rest.
fn for_each_field(buf: &[u8], want: u64, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        match key & 7 {
            0 => {
                varint(buf, &mut pos)?;
            }
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                let end = pos.checked_add(len).filter(|e| *e <= buf.len());
                let Some(end) = end else {
                    bail!("field runs past the message")
                };
                if key >> 3 == want {
                    f(&buf[pos..end])?;
                }
                pos = end;
            }
            t => bail!("unsupported wire type {t}"),
        }
    }
    if pos > buf.len() {
        bail!("truncated message");
    }
    Ok(())
}

/// Spans in an `ExportTraceServiceRequest`: resource_spans(1) > scope_spans(2) > spans(2).
pub fn count_spans(request: &[u8]) -> Result<usize> {
    let mut n = 0;
    for_each_field(request, 1, |rs| {
        for_each_field(rs, 2, |ss| {
            for_each_field(ss, 2, |_| {
                n += 1;
                Ok(())
            })
        })
    })?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use hotspan_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use hotspan_proto::{Encoding, TracesBatch};

    #[test]
    fn counts_what_prost_counts() {
        let rs = |scopes: Vec<usize>| ResourceSpans {
            scope_spans: scopes
                .into_iter()
                .map(|n| ScopeSpans {
                    spans: vec![
                        Span {
                            name: "x".into(),
                            ..Default::default()
                        };
                        n
                    ],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let batch = TracesBatch::from_resource_spans(vec![rs(vec![3, 0, 2]), rs(vec![5])]);
        assert_eq!(
            super::count_spans(&batch.encode(Encoding::Protobuf)).expect("counts"),
            10
        );
        assert!(super::count_spans(&[0x0a, 0xff]).is_err());
    }
}
