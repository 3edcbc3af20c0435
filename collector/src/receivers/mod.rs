//! Receivers: where data enters. Each is one module registered in `registry.rs`.

mod body;
pub mod cgroup;
pub mod ingest;
pub mod kafka;
pub mod otlp;
pub mod pprof;
mod pprof_common;
pub mod pprof_scrape;
