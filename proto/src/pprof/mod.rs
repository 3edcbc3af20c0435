//! pprof decoding and conversion to OTLP profiles.
//!
//! pprof stops at the receiver: [`to_otlp`] turns a (gzipped or raw) `profile.proto` payload
//! into an OTLP `ExportProfilesServiceRequest` with one `Profile` per pprof sample type, all
//! sharing one deduplicated dictionary. Correlation labels (`span_id`, `trace_id`, Datadog's
//! `span id`, ...) become OTLP `Link`s so the join reads ids in one place.
//!
//! Ordering: pprof's `Sample.location_id` and OTLP's `Stack.location_indices` are both leaf
//! first, and both list inlined lines of one location innermost first, so neither is reversed.
//!
//! What the conversion keeps beyond the obvious fields: a mapping's build id becomes the
//! mapping attribute [`BUILD_ID_KEY`], a location's `is_folded` the location attribute
//! [`IS_FOLDED_KEY`] (bool, only when set). What it drops: `drop_frames`/`keep_frames`,
//! `comment`, `default_sample_type`, `doc_url` and the mappings' `has_*` flags; set
//! [`ConvertOptions::include_original_payload`] when those matter.

mod back;
mod convert;
mod decode;
mod error;
mod links;
mod scan;
#[cfg(test)]
mod tests;

/// Rust types generated from `proto/profile.proto` (package `perftools.profiles`) by build.rs.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/perftools.profiles.rs"));
}

pub use back::from_otlp;
pub use convert::{to_otlp, ConvertOptions, Snapshot};
pub use decode::{decode, Limits};
pub use error::PprofError;

/// Mapping attribute carrying pprof's `Mapping.build_id`.
pub const BUILD_ID_KEY: &str = "pprof.mapping.build_id";
/// Location attribute (bool `true`) carrying pprof's `Location.is_folded`: the location's lines
/// name only one of several functions folded into the same code.
pub const IS_FOLDED_KEY: &str = "pprof.location.is_folded";
/// `Profile.original_payload_format` when the original bytes are attached.
const ORIGINAL_FORMAT: &str = "pprof";
