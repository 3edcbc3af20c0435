//! Helpers shared by several test files (each includes this module on its own).

pub mod pki;
