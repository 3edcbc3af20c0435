//! Checking OTLP trace bytes without decoding them: the same rules prost applies (wire types
//! of known fields, lengths, UTF-8 of strings, nesting depth, unknown fields skipped), so
//! whatever passes here decodes anywhere downstream, at a fraction of the cost of decoding.

use prost::encoding::{decode_key, decode_varint, WireType};

use crate::DecodeError;

/// prost's `RECURSION_LIMIT`: a message nested deeper than this is refused, as prost would.
const DEPTH_LIMIT: u32 = 100;

pub(crate) fn error(msg: impl Into<String>) -> DecodeError {
    DecodeError::Wire(msg.into())
}

/// What a known field holds, which fixes its wire type.
#[derive(Clone, Copy)]
pub(crate) enum Field {
    Varint,
    Fixed32,
    Fixed64,
    Bytes,
    Str,
    Message(Msg),
}

/// The messages nested inside a span, resource or scope.
#[derive(Clone, Copy)]
#[repr(u8)]
pub(crate) enum Msg {
    Resource,
    Scope,
    Span,
    Event,
    Link,
    Status,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
    EntityRef,
}

impl Msg {
    /// Every kind in declaration order, so `ALL[m as usize]` is `m` (asserted below):
    /// `check_message` picks each kind's loop by that number.
    const ALL: [Msg; 11] = [
        Msg::Resource,
        Msg::Scope,
        Msg::Span,
        Msg::Event,
        Msg::Link,
        Msg::Status,
        Msg::KeyValue,
        Msg::AnyValue,
        Msg::ArrayValue,
        Msg::KeyValueList,
        Msg::EntityRef,
    ];
}

const _: () = {
    let (mut rest, mut i): (&[Msg], usize) = (&Msg::ALL, 0);
    while let [m, tail @ ..] = rest {
        assert!(*m as usize == i, "Msg::ALL lists the kinds in declaration order");
        (rest, i) = (tail, i + 1);
    }
};

/// The schema: opentelemetry-proto's trace, resource and common messages.
#[inline(always)]
pub(crate) fn field(msg: Msg, tag: u32) -> Option<Field> {
    use Field::*;
    Some(match (msg, tag) {
        (Msg::Resource, 1) => Message(Msg::KeyValue),
        (Msg::Resource, 2) => Varint,
        (Msg::Resource, 3) => Message(Msg::EntityRef),
        (Msg::Scope, 1 | 2) => Str,
        (Msg::Scope, 3) => Message(Msg::KeyValue),
        (Msg::Scope, 4) => Varint,
        (Msg::Span, 1 | 2 | 4) => Bytes,
        (Msg::Span, 3 | 5) => Str,
        (Msg::Span, 6 | 10 | 12 | 14) => Varint,
        (Msg::Span, 7 | 8) => Fixed64,
        (Msg::Span, 9) => Message(Msg::KeyValue),
        (Msg::Span, 11) => Message(Msg::Event),
        (Msg::Span, 13) => Message(Msg::Link),
        (Msg::Span, 15) => Message(Msg::Status),
        (Msg::Span, 16) => Fixed32,
        (Msg::Event, 1) => Fixed64,
        (Msg::Event, 2) => Str,
        (Msg::Event, 3) => Message(Msg::KeyValue),
        (Msg::Event, 4) => Varint,
        (Msg::Link, 1 | 2) => Bytes,
        (Msg::Link, 3) => Str,
        (Msg::Link, 4) => Message(Msg::KeyValue),
        (Msg::Link, 5) => Varint,
        (Msg::Link, 6) => Fixed32,
        (Msg::Status, 2) => Str,
        (Msg::Status, 3) => Varint,
        (Msg::KeyValue, 1) => Str,
        (Msg::KeyValue, 2) => Message(Msg::AnyValue),
        (Msg::KeyValue, 3) => Varint,
        (Msg::AnyValue, 1) => Str,
        (Msg::AnyValue, 2 | 3 | 8) => Varint,
        (Msg::AnyValue, 4) => Fixed64,
        (Msg::AnyValue, 5) => Message(Msg::ArrayValue),
        (Msg::AnyValue, 6) => Message(Msg::KeyValueList),
        (Msg::AnyValue, 7) => Bytes,
        (Msg::ArrayValue, 1) => Message(Msg::AnyValue),
        (Msg::KeyValueList, 1) => Message(Msg::KeyValue),
        (Msg::EntityRef, 1..=4) => Str,
        _ => return None,
    })
}

impl Field {
    fn wire_type(self) -> WireType {
        match self {
            Field::Varint => WireType::Varint,
            Field::Fixed32 => WireType::ThirtyTwoBit,
            Field::Fixed64 => WireType::SixtyFourBit,
            Field::Bytes | Field::Str | Field::Message(_) => WireType::LengthDelimited,
        }
    }
}

pub(crate) fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if n > buf.len() {
        return Err(error("buffer underflow"));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

/// A length-delimited value's bytes.
#[inline(always)]
pub(crate) fn take_len<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    // Most lengths fit in one byte: read inline, without prost's general varint decoder.
    let len = match buf.first() {
        Some(&b) if b < 0x80 => {
            *buf = buf.get(1..).unwrap_or_default();
            u64::from(b)
        }
        _ => decode_varint(buf)?,
    };
    let len = usize::try_from(len).map_err(|_| error("buffer underflow"))?;
    take(buf, len)
}

pub(crate) fn expect(actual: WireType, expected: WireType) -> Result<(), DecodeError> {
    if actual != expected {
        return Err(error(format!(
            "invalid wire type: {actual:?} (expected {expected:?})"
        )));
    }
    Ok(())
}

/// Checks one known field's value at a message `depth` levels below the request, and returns
/// its bytes (empty for varints).
#[inline(always)]
pub(crate) fn check_field<'a>(
    f: Field,
    wire_type: WireType,
    buf: &mut &'a [u8],
    depth: u32,
) -> Result<&'a [u8], DecodeError> {
    expect(wire_type, f.wire_type())?;
    Ok(match f {
        Field::Varint => {
            decode_varint(buf)?;
            &[]
        }
        Field::Fixed32 => take(buf, 4)?,
        Field::Fixed64 => take(buf, 8)?,
        Field::Bytes => take_len(buf)?,
        Field::Str => {
            let s = take_len(buf)?;
            if !s.is_ascii() {
                std::str::from_utf8(s)
                    .map_err(|_| error("invalid string value: data is not UTF-8 encoded"))?;
            }
            s
        }
        Field::Message(m) => {
            if depth >= DEPTH_LIMIT {
                return Err(error("recursion limit reached"));
            }
            let body = take_len(buf)?;
            check_message(m, body, depth + 1)?;
            body
        }
    })
}

/// Checks a whole message of kind `msg` at `depth`.
#[inline(always)]
pub(crate) fn check_message(msg: Msg, buf: &[u8], depth: u32) -> Result<(), DecodeError> {
    // One loop per message kind: each has its own few fields, so the branches that pick a
    // field's check are predicted per kind rather than shared by all.
    const fn kind(m: Msg) -> u8 {
        m as u8
    }
    match msg {
        Msg::Resource => check_kind::<{ kind(Msg::Resource) }>(buf, depth),
        Msg::Scope => check_kind::<{ kind(Msg::Scope) }>(buf, depth),
        Msg::Span => check_kind::<{ kind(Msg::Span) }>(buf, depth),
        Msg::Event => check_kind::<{ kind(Msg::Event) }>(buf, depth),
        Msg::Link => check_kind::<{ kind(Msg::Link) }>(buf, depth),
        Msg::Status => check_kind::<{ kind(Msg::Status) }>(buf, depth),
        Msg::KeyValue => check_kind::<{ kind(Msg::KeyValue) }>(buf, depth),
        Msg::AnyValue => check_kind::<{ kind(Msg::AnyValue) }>(buf, depth),
        Msg::ArrayValue => check_kind::<{ kind(Msg::ArrayValue) }>(buf, depth),
        Msg::KeyValueList => check_kind::<{ kind(Msg::KeyValueList) }>(buf, depth),
        Msg::EntityRef => check_kind::<{ kind(Msg::EntityRef) }>(buf, depth),
    }
}

fn check_kind<const KIND: u8>(mut buf: &[u8], depth: u32) -> Result<(), DecodeError> {
    #[expect(
        clippy::indexing_slicing,
        reason = "evaluated at compile time: no kind is past the list"
    )]
    let msg = const { Msg::ALL[KIND as usize] };
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        match field(msg, tag) {
            Some(f) => {
                check_field(f, wire_type, &mut buf, depth)?;
            }
            None => skip(wire_type, tag, &mut buf, depth)?,
        }
    }
    Ok(())
}

/// Skips an unknown field as prost does, groups included.
pub(crate) fn skip(wire_type: WireType, tag: u32, buf: &mut &[u8], depth: u32) -> Result<(), DecodeError> {
    if depth >= DEPTH_LIMIT {
        return Err(error("recursion limit reached"));
    }
    match wire_type {
        WireType::Varint => {
            decode_varint(buf)?;
        }
        WireType::ThirtyTwoBit => {
            take(buf, 4)?;
        }
        WireType::SixtyFourBit => {
            take(buf, 8)?;
        }
        WireType::LengthDelimited => {
            take_len(buf)?;
        }
        WireType::StartGroup => loop {
            let (inner_tag, inner) = decode_key(buf)?;
            if inner == WireType::EndGroup {
                if inner_tag != tag {
                    return Err(error("unexpected end group tag"));
                }
                break;
            }
            skip(inner, inner_tag, buf, depth + 1)?;
        },
        WireType::EndGroup => return Err(error("unexpected end group tag")),
    }
    Ok(())
}
