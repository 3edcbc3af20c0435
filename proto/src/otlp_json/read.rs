//! Reading: JSON objects stream into the prost structs, keys normalized to lowerCamelCase.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, IgnoredAny, MapAccess, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};

use super::scalars::{Base64In, DoubleIn, Enum, EnumIn, HexIn, Int, IntIn};
use super::Msg;

/// Deserializes a message from a JSON object.
pub(super) struct In<T>(pub(super) T);

impl<'de, T: Msg> Deserialize<'de> for In<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MsgVisitor(PhantomData))
    }
}

struct MsgVisitor<T>(PhantomData<T>);

impl<'de, T: Msg> Visitor<'de> for MsgVisitor<T> {
    type Value = In<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<In<T>, A::Error> {
        let mut msg = T::default();
        while let Some(Key(key)) = a.next_key()? {
            msg.read(&camel(&key), &mut a)?;
        }
        Ok(In(msg))
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The lowerCamelCase form of a snake_case proto field name (`memory_start` -> `memoryStart`);
/// other keys are returned as they are.
fn camel(key: &str) -> Cow<'_, str> {
    if !key.contains('_') || key.bytes().any(|b| b.is_ascii_uppercase()) {
        return Cow::Borrowed(key);
    }
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

// Field readers: `null` means absent, so it gives the field's default.

pub(super) fn skip<'de, A: MapAccess<'de>>(a: &mut A) -> Result<(), A::Error> {
    a.next_value::<IgnoredAny>().map(|_| ())
}

pub(super) fn int<'de, A: MapAccess<'de>, T: Int>(a: &mut A) -> Result<T, A::Error> {
    Ok(a.next_value::<Option<IntIn<T>>>()?
        .map_or_else(T::default, |v| v.0))
}

pub(super) fn ints<'de, A: MapAccess<'de>, T: Int>(a: &mut A) -> Result<Vec<T>, A::Error> {
    let v = a.next_value::<Option<Vec<IntIn<T>>>>()?.unwrap_or_default();
    Ok(v.into_iter().map(|v| v.0).collect())
}

pub(super) fn enumeration<'de, A: MapAccess<'de>, E: Enum>(a: &mut A) -> Result<i32, A::Error> {
    Ok(a.next_value::<Option<EnumIn<E>>>()?.map_or(0, |v| v.0))
}

pub(super) fn double<'de, A: MapAccess<'de>>(a: &mut A) -> Result<f64, A::Error> {
    Ok(a.next_value::<Option<DoubleIn>>()?.map_or(0.0, |v| v.0))
}

/// A proto3 `optional double`: present (even as 0) or absent.
pub(super) fn optional_double<'de, A: MapAccess<'de>>(a: &mut A) -> Result<Option<f64>, A::Error> {
    Ok(a.next_value::<Option<DoubleIn>>()?.map(|v| v.0))
}

pub(super) fn doubles<'de, A: MapAccess<'de>>(a: &mut A) -> Result<Vec<f64>, A::Error> {
    let v = a.next_value::<Option<Vec<DoubleIn>>>()?.unwrap_or_default();
    Ok(v.into_iter().map(|v| v.0).collect())
}

pub(super) fn string<'de, A: MapAccess<'de>>(a: &mut A) -> Result<String, A::Error> {
    Ok(a.next_value::<Option<String>>()?.unwrap_or_default())
}

pub(super) fn strings<'de, A: MapAccess<'de>>(a: &mut A) -> Result<Vec<String>, A::Error> {
    Ok(a.next_value::<Option<Vec<String>>>()?.unwrap_or_default())
}

pub(super) fn hex<'de, A: MapAccess<'de>>(a: &mut A) -> Result<Vec<u8>, A::Error> {
    Ok(a.next_value::<Option<HexIn>>()?.map(|v| v.0).unwrap_or_default())
}

pub(super) fn base64<'de, A: MapAccess<'de>>(a: &mut A) -> Result<Vec<u8>, A::Error> {
    Ok(a.next_value::<Option<Base64In>>()?
        .map(|v| v.0)
        .unwrap_or_default())
}

pub(super) fn msg<'de, A: MapAccess<'de>, T: Msg>(a: &mut A) -> Result<Option<T>, A::Error> {
    Ok(a.next_value::<Option<In<T>>>()?.map(|m| m.0))
}

pub(super) fn msgs<'de, A: MapAccess<'de>, T: Msg>(a: &mut A) -> Result<Vec<T>, A::Error> {
    let v = a.next_value::<Option<Vec<In<T>>>>()?.unwrap_or_default();
    Ok(v.into_iter().map(|m| m.0).collect())
}

/// Sets a oneof from one of its fields' keys; `None` (the key was `null`) leaves it alone.
/// A second member, or the same one twice, is an error: which one the sender meant is unknown,
/// and keeping either would silently drop the other.
pub(super) fn oneof<T, E: de::Error>(slot: &mut Option<T>, value: Option<T>, what: &str) -> Result<(), E> {
    if value.is_some() {
        if slot.is_some() {
            return Err(E::custom(format_args!(
                "{what} sets more than one of its oneof fields"
            )));
        }
        *slot = value;
    }
    Ok(())
}

/// A bad string for an error message; long ones are not copied into it.
pub(super) fn unexpected_str(v: &str) -> Unexpected<'_> {
    if v.len() <= 64 {
        Unexpected::Str(v)
    } else {
        Unexpected::Other("a long string")
    }
}
