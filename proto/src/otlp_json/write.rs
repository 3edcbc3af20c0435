//! Writing: messages stream out of the borrowed request into the JSON serializer.

use std::fmt::Display;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::scalars::{Base64, Hex, Int};
use super::Msg;

/// Serializes a message as a JSON object.
pub(super) struct J<'a, T>(pub(super) &'a T);

impl<T: Msg> Serialize for J<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        self.0.write(&mut Out(&mut map))?;
        map.end()
    }
}

/// Serializes a repeated message field as a JSON array.
struct Seq<'a, T>(&'a [T]);

impl<T: Msg> Serialize for Seq<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(J))
    }
}

/// Serializes anything `Display` as a JSON string without an intermediate `String`.
pub(super) struct AsStr<T>(pub(super) T);

impl<T: Display> Serialize for AsStr<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A repeated 64-bit integer field: an array of decimal strings.
struct AsStrs<'a, T>(&'a [T]);

impl<T: Display> Serialize for AsStrs<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(AsStr))
    }
}

/// A double: a JSON number, or "NaN" / "Infinity" / "-Infinity" as proto3 JSON writes them
/// (serde_json would write `null`).
pub(super) struct Double(pub(super) f64);

impl Serialize for Double {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_nan() {
            s.serialize_str("NaN")
        } else if v.is_infinite() {
            s.serialize_str(if v > 0.0 { "Infinity" } else { "-Infinity" })
        } else {
            s.serialize_f64(v)
        }
    }
}

/// A repeated double field.
struct Doubles<'a>(&'a [f64]);

impl Serialize for Doubles<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|v| Double(*v)))
    }
}

/// Writes a message's fields into the JSON object being serialized, leaving defaults out.
pub(super) struct Out<'a, M>(pub(super) &'a mut M);

impl<M: SerializeMap> Out<'_, M> {
    pub(super) fn entry<V: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &V,
    ) -> Result<(), M::Error> {
        self.0.serialize_entry(key, value)
    }

    pub(super) fn int<T: Int>(&mut self, key: &'static str, v: T) -> Result<(), M::Error> {
        if v == T::default() {
            Ok(())
        } else if T::QUOTED {
            self.entry(key, &AsStr(v))
        } else {
            self.entry(key, &v)
        }
    }

    pub(super) fn ints<T: Int>(&mut self, key: &'static str, v: &[T]) -> Result<(), M::Error> {
        if v.is_empty() {
            Ok(())
        } else if T::QUOTED {
            self.entry(key, &AsStrs(v))
        } else {
            self.entry(key, v)
        }
    }

    pub(super) fn double(&mut self, key: &'static str, v: f64) -> Result<(), M::Error> {
        // NaN is not 0 and is written; -0.0 is left out like 0, as protobuf does.
        if v == 0.0 {
            return Ok(());
        }
        self.entry(key, &Double(v))
    }

    /// A proto3 `optional double`: written whenever present, 0 included.
    pub(super) fn optional_double(&mut self, key: &'static str, v: Option<f64>) -> Result<(), M::Error> {
        match v {
            Some(v) => self.entry(key, &Double(v)),
            None => Ok(()),
        }
    }

    pub(super) fn doubles(&mut self, key: &'static str, v: &[f64]) -> Result<(), M::Error> {
        if v.is_empty() {
            return Ok(());
        }
        self.entry(key, &Doubles(v))
    }

    pub(super) fn string(&mut self, key: &'static str, v: &str) -> Result<(), M::Error> {
        if v.is_empty() {
            return Ok(());
        }
        self.entry(key, v)
    }

    pub(super) fn strings(&mut self, key: &'static str, v: &[String]) -> Result<(), M::Error> {
        if v.is_empty() {
            return Ok(());
        }
        self.entry(key, v)
    }

    pub(super) fn hex(&mut self, key: &'static str, v: &[u8]) -> Result<(), M::Error> {
        if v.is_empty() {
            return Ok(());
        }
        self.entry(key, &AsStr(Hex(v)))
    }

    pub(super) fn base64(&mut self, key: &'static str, v: &[u8]) -> Result<(), M::Error> {
        if v.is_empty() {
            return Ok(());
        }
        self.entry(key, &AsStr(Base64(v)))
    }

    /// A present message is written even when all its fields are default (`{}`).
    pub(super) fn msg<T: Msg>(&mut self, key: &'static str, v: &Option<T>) -> Result<(), M::Error> {
        match v {
            Some(m) => self.entry(key, &J(m)),
            None => Ok(()),
        }
    }

    pub(super) fn msgs<T: Msg>(&mut self, key: &'static str, v: &[T]) -> Result<(), M::Error> {
        if v.is_empty() {
            return Ok(());
        }
        self.entry(key, &Seq(v))
    }
}
