//! The loaded config, the errors loading reports, and the catalog a caller supplies.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::component::{Checked, ComponentSettings, ComponentValue};
use crate::id::{ComponentId, Kind, PipelineId, Signal};

/// A whole config file after env expansion and validation.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct Config {
    /// Each component's config as written and as parsed, already checked by the catalog.
    pub receivers: BTreeMap<ComponentId, ComponentSettings>,
    pub processors: BTreeMap<ComponentId, ComponentSettings>,
    pub exporters: BTreeMap<ComponentId, ComponentSettings>,
    pub connectors: BTreeMap<ComponentId, ComponentSettings>,
    pub extensions: BTreeMap<ComponentId, ComponentSettings>,
    pub service: Service,
}

impl Config {
    /// The components of one kind, so callers can loop over kinds instead of naming fields.
    pub fn section(&self, kind: Kind) -> &BTreeMap<ComponentId, ComponentSettings> {
        match kind {
            Kind::Receiver => &self.receivers,
            Kind::Processor => &self.processors,
            Kind::Exporter => &self.exporters,
            Kind::Connector => &self.connectors,
            Kind::Extension => &self.extensions,
        }
    }

    pub(crate) fn section_mut(&mut self, kind: Kind) -> &mut BTreeMap<ComponentId, ComponentSettings> {
        match kind {
            Kind::Receiver => &mut self.receivers,
            Kind::Processor => &mut self.processors,
            Kind::Exporter => &mut self.exporters,
            Kind::Connector => &mut self.connectors,
            Kind::Extension => &mut self.extensions,
        }
    }
}

/// The `service` section: what actually runs.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct Service {
    /// Extensions to start, in the order listed.
    pub extensions: Vec<ComponentId>,
    pub pipelines: BTreeMap<PipelineId, Pipeline>,
    pub telemetry: Telemetry,
}

/// One pipeline: receivers fan in, processors run in order, exporters fan out.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Pipeline {
    /// Receivers or connectors feeding this pipeline.
    pub receivers: Vec<ComponentId>,
    pub processors: Vec<ComponentId>,
    /// Exporters or connectors this pipeline feeds.
    pub exporters: Vec<ComponentId>,
}

/// `service.telemetry`: how the collector reports on itself.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Telemetry {
    pub logs: LogsTelemetry,
    pub metrics: MetricsTelemetry,
}

/// `service.telemetry.logs`.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct LogsTelemetry {
    pub level: LogLevel,
    pub encoding: LogEncoding,
}

/// `service.telemetry.metrics`.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct MetricsTelemetry {
    /// Where to serve Prometheus text metrics; None serves nothing.
    pub address: Option<String>,
    pub level: MetricsLevel,
}

/// `service.telemetry.logs.level`; default `info`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

/// `service.telemetry.logs.encoding`; default `console`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub enum LogEncoding {
    #[default]
    Console,
    Json,
}

/// `service.telemetry.metrics.level`; default `normal`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub enum MetricsLevel {
    None,
    Basic,
    #[default]
    Normal,
    Detailed,
}

/// Names, Display and case-insensitive FromStr for the telemetry enums above.
macro_rules! named_enum {
    ($name:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// Every accepted name, for messages.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The canonical lower-case name.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $(
                    if s.eq_ignore_ascii_case($text) {
                        return Ok($name::$variant);
                    }
                )+
                Err(format!(
                    concat!("invalid ", $what, " {:?}; expected one of {}"),
                    s,
                    Self::NAMES.join(", ")
                ))
            }
        }
    };
}

named_enum!(LogLevel, "log level", {
    Debug => "debug",
    Info => "info",
    Warn => "warn",
    Error => "error",
});

named_enum!(LogEncoding, "log encoding", {
    Console => "console",
    Json => "json",
});

named_enum!(MetricsLevel, "metrics level", {
    None => "none",
    Basic => "basic",
    Normal => "normal",
    Detailed => "detailed",
});

/// One problem in a config file, located by dotted path and (when known) line.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ConfigError {
    /// Dotted path, e.g. `service.pipelines.traces.exporters[1]`; empty for the file itself.
    pub path: String,
    /// 1-based line in the original text.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A problem inside one component's config, reported by the component's own checks.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FieldError {
    /// Relative to the component (`protocols.grpc.endpoint`); empty for the component itself.
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for FieldError {}

/// What a component type can do, as far as wiring pipelines is concerned.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ComponentInfo {
    /// Receivers, processors and exporters: the signals the type handles.
    Signals(Vec<Signal>),
    /// Connectors: supported (exporter-side signal, receiver-side signal) pairs.
    Connector(Vec<(Signal, Signal)>),
    /// Extensions are not in pipelines.
    Extension,
}

/// The component types a build knows; supplied by the caller so this crate needs none of them.
pub trait Catalog {
    /// None when the type is unknown for that kind. Aliases (e.g. "otlphttp" for "otlp_http")
    /// are the catalog's business.
    fn component(&self, kind: Kind, type_name: &str) -> Option<ComponentInfo>;

    /// Deserializes and validates the component's own config, once: what it parsed into and
    /// the extensions it names, or every problem. `config` is the component's value after env
    /// expansion, with null normalized to an empty mapping.
    fn check(&self, kind: Kind, type_name: &str, config: &ComponentValue)
        -> Result<Checked, Vec<FieldError>>;
}
