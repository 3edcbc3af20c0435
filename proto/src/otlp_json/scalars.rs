//! Scalars: integers (numbers or decimal strings), enums (numbers or names), doubles (with NaN
//! and the infinities as strings), hex ids and base64 bytes.

use std::fmt::{self, Display};
use std::marker::PhantomData;
use std::str::FromStr;

use base64::alphabet::{self, Alphabet};
use base64::display::Base64Display;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::read::unexpected_str;

/// The integer types of the OTLP messages.
pub(super) trait Int:
    Copy + Default + PartialEq + Display + FromStr + TryFrom<i128> + Serialize
{
    /// 64-bit integers are decimal strings in OTLP/JSON, 32-bit ones are numbers.
    const QUOTED: bool;
}

impl Int for i32 {
    const QUOTED: bool = false;
}
impl Int for u32 {
    const QUOTED: bool = false;
}
impl Int for i64 {
    const QUOTED: bool = true;
}
impl Int for u64 {
    const QUOTED: bool = true;
}

/// An integer read from a JSON number or a decimal string, checked against `T`'s range.
pub(super) struct IntIn<T>(pub(super) T);

impl<'de, T: Int> Deserialize<'de> for IntIn<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IntVisitor(PhantomData)).map(IntIn)
    }
}

struct IntVisitor<T>(PhantomData<T>);

impl<T: Int> IntVisitor<T> {
    /// Integral floats (`3.0`, `1e3`) are accepted, as proto3 JSON parsers do.
    fn integral<E: de::Error>(&self, v: f64) -> Result<T, E> {
        let whole = v.is_finite() && v.fract() == 0.0;
        // `as` saturates; anything outside `T` then fails `try_from`.
        let n = if whole { T::try_from(v as i128).ok() } else { None };
        n.ok_or_else(|| E::invalid_value(Unexpected::Float(v), self))
    }
}

impl<T: Int> Visitor<'_> for IntVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "an integer in the {} range, as a number or a decimal string",
            std::any::type_name::<T>()
        )
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::try_from(i128::from(v)).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::try_from(i128::from(v)).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        self.integral(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        if let Ok(n) = v.parse::<T>() {
            return Ok(n);
        }
        // "1e3" is an integer too; `f64` parsing also takes "inf" / "nan", which `integral` refuses.
        match v.parse::<f64>() {
            Ok(f) => self.integral(f),
            Err(_) => Err(E::invalid_value(unexpected_str(v), &self)),
        }
    }
}

/// A protobuf enum, for reading its values by name.
pub(super) trait Enum {
    /// The enum's name, for error messages.
    const NAME: &'static str;
    /// The number of the value named `name` in the .proto (`SPAN_KIND_SERVER` -> 2).
    fn number(name: &str) -> Option<i32>;
}

/// An enum field read from a number or a value's name. Numbers outside the enum are kept as they
/// are (proto3 enums are open); a name the enum does not have is an error, as in otelcol's pdata
/// and protojson. A number as a string ("2") is not a name, so it is an error too.
pub(super) struct EnumIn<E>(pub(super) i32, PhantomData<E>);

impl<'de, E: Enum> Deserialize<'de> for EnumIn<E> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EnumVisitor::<E>(PhantomData))
            .map(|n| EnumIn(n, PhantomData))
    }
}

struct EnumVisitor<E>(PhantomData<E>);

impl<E: Enum> Visitor<'_> for EnumVisitor<E> {
    type Value = i32;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} as an int32 number or a value's name", E::NAME)
    }

    fn visit_i64<Er: de::Error>(self, v: i64) -> Result<i32, Er> {
        IntVisitor::<i32>(PhantomData).visit_i64(v)
    }

    fn visit_u64<Er: de::Error>(self, v: u64) -> Result<i32, Er> {
        IntVisitor::<i32>(PhantomData).visit_u64(v)
    }

    fn visit_f64<Er: de::Error>(self, v: f64) -> Result<i32, Er> {
        IntVisitor::<i32>(PhantomData).integral(v)
    }

    fn visit_str<Er: de::Error>(self, v: &str) -> Result<i32, Er> {
        E::number(v).ok_or_else(|| Er::invalid_value(unexpected_str(v), &self))
    }
}

/// A double read from a JSON number or a string ("NaN", "Infinity", "-Infinity", "1.5").
pub(super) struct DoubleIn(pub(super) f64);

impl<'de> Deserialize<'de> for DoubleIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DoubleVisitor;
        impl Visitor<'_> for DoubleVisitor {
            type Value = f64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, \"NaN\", \"Infinity\" or \"-Infinity\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
                Ok(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
                match v {
                    "NaN" => Ok(f64::NAN),
                    "Infinity" => Ok(f64::INFINITY),
                    "-Infinity" => Ok(f64::NEG_INFINITY),
                    _ => v.parse().map_err(|_| E::invalid_value(unexpected_str(v), &self)),
                }
            }
        }
        d.deserialize_any(DoubleVisitor).map(DoubleIn)
    }
}

// ---- bytes ----

/// Lower-case hex, for trace, span and profile ids.
pub(super) struct Hex<'a>(pub(super) &'a [u8]);

impl Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Decodes hex of either case; `None` for odd lengths and non-hex characters.
pub(super) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    hex::decode(s).ok()
}

/// Bytes read from a hex string.
pub(super) struct HexIn(pub(super) Vec<u8>);

impl<'de> Deserialize<'de> for HexIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct HexVisitor;
        impl Visitor<'_> for HexVisitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an id as a hex string of even length")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                hex_decode(v).ok_or_else(|| E::invalid_value(unexpected_str(v), &self))
            }
        }
        d.deserialize_str(HexVisitor).map(HexIn)
    }
}

/// Standard base64 with padding, for `bytes` fields other than ids.
pub(super) struct Base64<'a>(pub(super) &'a [u8]);

impl Display for Base64<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Base64Display::new(self.0, &STANDARD).fmt(f)
    }
}

/// Decodes base64, standard or URL-safe alphabet, with or without padding. `None` for other
/// characters, misplaced or partial padding and impossible lengths. The rules are Go's protojson
/// (which writes most OTLP/JSON): URL-safe when `-` or `_` appear, unpadded unless the length
/// is a multiple of 4, leftover bits in the last character ignored.
pub(super) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const fn engine(alphabet: &Alphabet, padding: DecodePaddingMode) -> GeneralPurpose {
        let config = GeneralPurposeConfig::new()
            .with_decode_padding_mode(padding)
            .with_decode_allow_trailing_bits(true);
        GeneralPurpose::new(alphabet, config)
    }
    const STANDARD_PADDED: GeneralPurpose = engine(&alphabet::STANDARD, DecodePaddingMode::RequireCanonical);
    const STANDARD_UNPADDED: GeneralPurpose = engine(&alphabet::STANDARD, DecodePaddingMode::RequireNone);
    const URL_SAFE_PADDED: GeneralPurpose = engine(&alphabet::URL_SAFE, DecodePaddingMode::RequireCanonical);
    const URL_SAFE_UNPADDED: GeneralPurpose = engine(&alphabet::URL_SAFE, DecodePaddingMode::RequireNone);
    let url_safe = s.contains(['-', '_']);
    let padded = s.len().is_multiple_of(4);
    let engine = match (url_safe, padded) {
        (false, true) => &STANDARD_PADDED,
        (false, false) => &STANDARD_UNPADDED,
        (true, true) => &URL_SAFE_PADDED,
        (true, false) => &URL_SAFE_UNPADDED,
    };
    engine.decode(s).ok()
}

/// Bytes read from a base64 string.
pub(super) struct Base64In(pub(super) Vec<u8>);

impl<'de> Deserialize<'de> for Base64In {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Base64Visitor;
        impl Visitor<'_> for Base64Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("bytes as a base64 string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                base64_decode(v).ok_or_else(|| E::invalid_value(unexpected_str(v), &self))
            }
        }
        d.deserialize_str(Base64Visitor).map(Base64In)
    }
}
