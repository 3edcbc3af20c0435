//! The four OTLP signals: what every batch is and every pipeline carries.

use std::fmt;
use std::str::FromStr;

/// A telemetry signal; every pipeline carries exactly one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
    Profiles,
}

impl Signal {
    /// All signals, in the order error messages list them.
    pub const ALL: [Signal; 4] = [Signal::Traces, Signal::Metrics, Signal::Logs, Signal::Profiles];

    /// The lower-case name used in pipeline ids.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
            Signal::Profiles => "profiles",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a signal name.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("unknown signal {0:?}; expected one of traces, metrics, logs, profiles")]
pub struct ParseSignalError(pub String);

impl FromStr for Signal {
    type Err = ParseSignalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Signal::ALL
            .into_iter()
            .find(|sig| sig.as_str() == s)
            .ok_or_else(|| ParseSignalError(s.to_owned()))
    }
}
