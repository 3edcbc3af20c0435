//! Processors, one module each; their logic may live in hotspan-processors (socket-free) or
//! here (memory_limiter reads the process's own memory).

pub mod batch;
pub mod memory_limiter;
pub mod tail_sampling;
