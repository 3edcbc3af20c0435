//! Connectors: exporters at the end of one pipeline and receivers at the head of another.

pub mod forward;
pub mod spanprofile;
