//! Reading span and trace ids out of pprof label values.
//!
//! Producers disagree on the spelling: otel-profiling-go and pyroscope write lower-case hex,
//! Datadog writes the 64-bit id in decimal. Anything else is not an id and the label stays an
//! ordinary attribute.

/// Parses a span id: exactly 16 hex digits (either case), else a decimal u64 written as its 8
/// big-endian bytes. A 16-digit all-decimal value is read as hex, since hex writers always pad
/// to 16 and a decimal id has exactly 16 digits rarely. All-zero ids are invalid in OTel and
/// are not ids.
pub(crate) fn parse_span_id(value: &str) -> Option<[u8; 8]> {
    let id = if value.len() == 16 {
        from_hex::<8>(value)?
    } else {
        decimal(value)?.to_be_bytes()
    };
    (id != [0; 8]).then_some(id)
}

/// Parses a trace id: exactly 32 hex digits (either case), else a decimal u64 as the low 8
/// bytes of the 16 (the high 8 zero), which is how 64-bit trace ids widen to OTel's 128 bits.
pub(crate) fn parse_trace_id(value: &str) -> Option<[u8; 16]> {
    let id = if value.len() == 32 {
        from_hex::<16>(value)?
    } else {
        let mut id = [0; 16];
        let (_, low) = id.split_at_mut(8);
        low.copy_from_slice(&decimal(value)?.to_be_bytes());
        id
    };
    (id != [0; 16]).then_some(id)
}

/// Lower-case hex, the OTLP/JSON spelling of ids; used for the labels `from_otlp` writes.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Exactly `2 * N` hex digits, either case.
fn from_hex<const N: usize>(value: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(value, &mut out).ok()?;
    Some(out)
}

/// Plain ASCII digits only: `u64::from_str` would also take a leading `+`.
fn decimal(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}
