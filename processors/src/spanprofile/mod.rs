//! The join: profile samples to the spans that were running when they were taken
//! (DESIGN.md, "The join"). Pure logic; the `spanprofile` connector in the collector feeds it.

mod annotate;
mod block;
mod config;
mod extract;
/// Planted spans and samples with known answers, for tests and benches only.
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
#[cfg(test)]
mod hostile;
mod index;
mod join;
mod model;
mod release;
#[cfg(test)]
mod tests;
mod timeline;
mod waits;

pub use annotate::collapsed;
pub use config::{HeldCompression, SpanProfileConfig};
pub use join::{Join, JoinStats};
pub use model::Rule;
