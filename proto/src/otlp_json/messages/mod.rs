//! The [`Msg`](super::Msg) mapping of every message of the four export requests.

mod common;
mod logs;
mod metrics;
mod profiles;
mod traces;
