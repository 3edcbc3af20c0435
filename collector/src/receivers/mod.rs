//! Receivers: where data enters. Each is one module registered in `registry.rs`.

pub mod ingest;
pub mod otlp;
pub mod pprof;
mod pprof_common;
pub mod pprof_scrape;
