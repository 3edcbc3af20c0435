//! Bytes to a checked `pb::Profile`: gunzip (bounded), count (bounded), decode, validate.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;

use prost::Message;

use super::{pb, scan, PprofError};

/// Bounds on what one pprof payload may hold, so a hostile or broken sender costs bounded
/// memory. All are checked before prost allocates (see `scan.rs`).
///
/// Two bounds ride along: mappings count against `max_locations`, and inlined lines of one
/// location against `max_stack_depth`. Sample types are capped at 256, and [`super::to_otlp`]
/// also holds the OTLP samples it makes (pprof samples × sample types) to `max_samples`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Size of the protobuf after gunzip (and of raw input): stops gzip bombs.
    pub max_decompressed_bytes: usize,
    /// Entries in `string_table`.
    pub max_strings: usize,
    /// Total bytes of all `string_table` entries.
    pub max_string_bytes: usize,
    pub max_samples: usize,
    /// Location ids in one sample.
    pub max_stack_depth: usize,
    pub max_labels_per_sample: usize,
    pub max_locations: usize,
    pub max_functions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decompressed_bytes: 64 << 20,
            max_strings: 1_000_000,
            max_string_bytes: 16 << 20,
            max_samples: 2_000_000,
            max_stack_depth: 1024,
            max_labels_per_sample: 64,
            max_locations: 2_000_000,
            max_functions: 1_000_000,
        }
    }
}

/// Decodes a pprof payload, gzipped (Go's default) or raw, and checks that every reference in
/// it resolves: string indices, location/function/mapping ids, one value per sample type.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<pb::Profile, PprofError> {
    decode_indexed(bytes, limits).map(|d| d.profile)
}

/// A validated profile plus the id lookups validation built, reused by the conversion.
pub(crate) struct Decoded {
    pub profile: pb::Profile,
    pub locations: IdIndex,
    pub functions: IdIndex,
    pub mappings: IdIndex,
}

pub(crate) fn decode_indexed(bytes: &[u8], limits: &Limits) -> Result<Decoded, PprofError> {
    let payload = inflate(bytes, limits.max_decompressed_bytes)?;
    scan::check(&payload, limits)?;
    let profile = pb::Profile::decode(payload.as_ref())?;
    drop(payload);
    validate(profile)
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Gunzips when the gzip magic is present. No protobuf starts with it (0x1f is field 3 with
/// the invalid wire type 7), so the sniff cannot misread a raw profile.
fn inflate(bytes: &[u8], limit: usize) -> Result<Cow<'_, [u8]>, PprofError> {
    let too_big = |at: &str| PprofError::Limit {
        what: "max_decompressed_bytes",
        limit,
        at: at.into(),
    };
    if !bytes.starts_with(&GZIP_MAGIC) {
        return if bytes.len() > limit {
            Err(too_big("raw protobuf payload"))
        } else {
            Ok(Cow::Borrowed(bytes))
        };
    }
    let mut out = Vec::new();
    // Reading one byte past the limit tells "exactly at the limit" from "over it" without
    // inflating any further; a bomb costs at most `limit` bytes.
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::MultiGzDecoder::new(bytes)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(PprofError::Gzip)?;
    if out.len() > limit {
        return Err(too_big("gzip stream"));
    }
    Ok(Cow::Owned(out))
}

/// Position of each id in its table. Go and most producers number ids 1..=n in order, which
/// needs no map at all.
pub(crate) enum IdIndex {
    Dense(usize),
    Sparse(HashMap<u64, usize>),
}

impl IdIndex {
    fn build(ids: &[u64], what: &'static str) -> Result<Self, PprofError> {
        if ids.iter().enumerate().all(|(i, &id)| id == i as u64 + 1) {
            return Ok(IdIndex::Dense(ids.len()));
        }
        let mut map = HashMap::with_capacity(ids.len());
        for (pos, &id) in ids.iter().enumerate() {
            if map.insert(id, pos).is_some() {
                return Err(PprofError::DuplicateId { what, id });
            }
        }
        Ok(IdIndex::Sparse(map))
    }

    pub(crate) fn get(&self, id: u64) -> Option<usize> {
        match self {
            IdIndex::Dense(n) => usize::try_from(id)
                .ok()
                .filter(|&i| i >= 1 && i <= *n)
                .map(|i| i - 1),
            IdIndex::Sparse(map) => map.get(&id).copied(),
        }
    }

    /// Resolves an optional reference (0 = none) or says which one dangles.
    fn check_optional(
        &self,
        id: u64,
        what: &'static str,
        at: impl FnOnce() -> String,
    ) -> Result<(), PprofError> {
        if id == 0 || self.get(id).is_some() {
            Ok(())
        } else {
            Err(PprofError::UnknownId { what, id, at: at() })
        }
    }
}

/// Checks string indices against the table. An empty table is read as `[""]`, so a profile
/// whose indices are all 0 (the empty message, for one) stays valid.
struct Strings(usize);

impl Strings {
    fn check(&self, index: i64, at: impl FnOnce() -> String) -> Result<(), PprofError> {
        if index == 0 || usize::try_from(index).is_ok_and(|i| i < self.0) {
            Ok(())
        } else {
            Err(PprofError::StringIndex {
                at: at(),
                index,
                len: self.0,
            })
        }
    }
}

fn validate(profile: pb::Profile) -> Result<Decoded, PprofError> {
    let p = &profile;
    if p.string_table.first().is_some_and(|s| !s.is_empty()) {
        return Err(PprofError::Invalid {
            at: "string_table[0]".into(),
            reason: "must be the empty string",
        });
    }
    let strings = Strings(p.string_table.len());
    for (i, vt) in p.sample_type.iter().enumerate() {
        strings.check(vt.r#type, || format!("sample_type {i} type"))?;
        strings.check(vt.unit, || format!("sample_type {i} unit"))?;
    }
    if let Some(vt) = &p.period_type {
        strings.check(vt.r#type, || "period_type type".into())?;
        strings.check(vt.unit, || "period_type unit".into())?;
    }
    strings.check(p.drop_frames, || "drop_frames".into())?;
    strings.check(p.keep_frames, || "keep_frames".into())?;
    strings.check(p.default_sample_type, || "default_sample_type".into())?;
    strings.check(p.doc_url, || "doc_url".into())?;
    for (i, &c) in p.comment.iter().enumerate() {
        strings.check(c, || format!("comment {i}"))?;
    }

    let ids: Vec<u64> = p.mapping.iter().map(|m| m.id).collect();
    let mappings = IdIndex::build(&ids, "mapping")?;
    for m in &p.mapping {
        strings.check(m.filename, || format!("mapping id {} filename", m.id))?;
        strings.check(m.build_id, || format!("mapping id {} build_id", m.id))?;
    }

    let ids: Vec<u64> = p.function.iter().map(|f| f.id).collect();
    let functions = IdIndex::build(&ids, "function")?;
    for f in &p.function {
        strings.check(f.name, || format!("function id {} name", f.id))?;
        strings.check(f.system_name, || format!("function id {} system_name", f.id))?;
        strings.check(f.filename, || format!("function id {} filename", f.id))?;
    }

    let ids: Vec<u64> = p.location.iter().map(|l| l.id).collect();
    let locations = IdIndex::build(&ids, "location")?;
    drop(ids);
    for l in &p.location {
        mappings.check_optional(l.mapping_id, "mapping", || format!("location id {}", l.id))?;
        for (j, line) in l.line.iter().enumerate() {
            functions.check_optional(line.function_id, "function", || {
                format!("location id {} line {j}", l.id)
            })?;
        }
    }

    let want = p.sample_type.len();
    for (i, s) in p.sample.iter().enumerate() {
        if s.value.len() != want {
            return Err(PprofError::ValueCount {
                sample: i,
                got: s.value.len(),
                want,
            });
        }
        // Unlike mapping and function references, a stack entry has no "none" value.
        for &id in &s.location_id {
            if locations.get(id).is_none() {
                return Err(PprofError::UnknownId {
                    what: "location",
                    id,
                    at: format!("sample {i}"),
                });
            }
        }
        for (j, l) in s.label.iter().enumerate() {
            strings.check(l.key, || format!("sample {i} label {j} key"))?;
            strings.check(l.str, || format!("sample {i} label {j} str"))?;
            strings.check(l.num_unit, || format!("sample {i} label {j} num_unit"))?;
        }
    }
    Ok(Decoded {
        profile,
        locations,
        functions,
        mappings,
    })
}
