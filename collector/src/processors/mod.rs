//! Processors that need the process itself (its memory); the rest live in hotspan-processors.

pub mod memory_limiter;
