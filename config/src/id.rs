//! Names used in a config file: signals, component kinds, component ids and pipeline ids.

use std::fmt;
use std::str::FromStr;

pub use hotspan_proto::{ParseSignalError, Signal};

/// The five kinds of component, one per top-level section.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Kind {
    Receiver,
    Processor,
    Exporter,
    Connector,
    Extension,
}

impl Kind {
    /// All kinds, in the order their sections usually appear in a file.
    pub const ALL: [Kind; 5] = [
        Kind::Receiver,
        Kind::Processor,
        Kind::Exporter,
        Kind::Connector,
        Kind::Extension,
    ];

    /// The top-level key that holds components of this kind.
    pub fn section(&self) -> &'static str {
        match self {
            Kind::Receiver => "receivers",
            Kind::Processor => "processors",
            Kind::Exporter => "exporters",
            Kind::Connector => "connectors",
            Kind::Extension => "extensions",
        }
    }

    /// The singular name used in messages.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Receiver => "receiver",
            Kind::Processor => "processor",
            Kind::Exporter => "exporter",
            Kind::Connector => "connector",
            Kind::Extension => "extension",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a component or pipeline id; the message names the input.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{0}")]
pub struct ParseIdError(pub String);

/// A component's id: `type` or `type/name`, as written in the config file.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ComponentId {
    /// Selects the implementation (`otlp`, `batch`).
    pub type_name: String,
    /// Tells apart several instances of one type (`otlp/internal`).
    pub name: Option<String>,
}

impl ComponentId {
    /// Builds an id from code (not input), so nothing is validated.
    pub fn new(type_name: impl Into<String>, name: Option<&str>) -> Self {
        ComponentId {
            type_name: type_name.into(),
            name: name.map(str::to_owned),
        }
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{}/{}", self.type_name, name),
            None => f.write_str(&self.type_name),
        }
    }
}

impl FromStr for ComponentId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |why: &str| ParseIdError(format!("invalid component id {s:?}: {why}"));
        // otelcol trims spaces around both parts, so "otlp / a" is "otlp/a".
        let (type_part, name_part) = match s.split_once('/') {
            Some((t, n)) => (t.trim(), Some(n.trim())),
            None => (s.trim(), None),
        };
        check_type(type_part).map_err(|why| fail(&why))?;
        let name = match name_part {
            Some(n) => {
                check_name(n).map_err(|why| fail(&why))?;
                Some(n.to_owned())
            }
            None => None,
        };
        Ok(ComponentId {
            type_name: type_part.to_owned(),
            name,
        })
    }
}

/// A pipeline's id: `signal` or `signal/name`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PipelineId {
    /// What the pipeline carries.
    pub signal: Signal,
    /// Tells apart several pipelines of one signal (`traces/in`).
    pub name: Option<String>,
}

impl PipelineId {
    /// Builds an id from code (not input), so nothing is validated.
    pub fn new(signal: Signal, name: Option<&str>) -> Self {
        PipelineId {
            signal,
            name: name.map(str::to_owned),
        }
    }
}

impl fmt::Display for PipelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{}/{}", self.signal, name),
            None => write!(f, "{}", self.signal),
        }
    }
}

impl FromStr for PipelineId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |why: &str| ParseIdError(format!("invalid pipeline id {s:?}: {why}"));
        let (signal_part, name_part) = match s.split_once('/') {
            Some((t, n)) => (t.trim(), Some(n.trim())),
            None => (s.trim(), None),
        };
        if signal_part.is_empty() {
            return Err(fail("the signal is empty"));
        }
        let signal = signal_part.parse::<Signal>().map_err(|e| fail(&e.to_string()))?;
        let name = match name_part {
            Some(n) => {
                check_name(n).map_err(|why| fail(&why))?;
                Some(n.to_owned())
            }
            None => None,
        };
        Ok(PipelineId { signal, name })
    }
}

/// The type part: `^[a-zA-Z][0-9a-zA-Z_]{0,62}$`, as otelcol requires.
fn check_type(t: &str) -> Result<(), String> {
    let mut chars = t.chars();
    let Some(first) = chars.next() else {
        return Err("the type is empty".to_owned());
    };
    if !first.is_ascii_alphabetic() {
        return Err(format!("the type {t:?} must start with a letter"));
    }
    if let Some(bad) = chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
        return Err(format!(
            "the type {t:?} may contain only letters, digits and '_', not {bad:?}"
        ));
    }
    if t.len() > 63 {
        return Err(format!("the type {t:?} is longer than 63 characters"));
    }
    Ok(())
}

/// The name part (already trimmed): anything printable, but not empty.
fn check_name(n: &str) -> Result<(), String> {
    if n.is_empty() {
        return Err("the name after '/' is empty".to_owned());
    }
    // Control characters would garble every message and log line that quotes the id.
    if let Some(bad) = n.chars().find(|c| c.is_control()) {
        return Err(format!("the name contains the control character {bad:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_round_trip() {
        for sig in Signal::ALL {
            assert_eq!(sig.to_string().parse::<Signal>(), Ok(sig));
        }
        let err = "spans".parse::<Signal>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown signal \"spans\"; expected one of traces, metrics, logs, profiles"
        );
        assert!(
            "Traces".parse::<Signal>().is_err(),
            "signal names are case-sensitive"
        );
    }

    #[test]
    fn kind_names() {
        assert_eq!(Kind::Receiver.to_string(), "receiver");
        assert_eq!(Kind::Connector.section(), "connectors");
        assert_eq!(Kind::Extension.section(), "extensions");
        assert_eq!(Kind::ALL.len(), 5);
    }

    #[test]
    fn component_id_parses() {
        let id: ComponentId = "otlp".parse().unwrap();
        assert_eq!(id, ComponentId::new("otlp", None));
        assert_eq!(id.to_string(), "otlp");

        let id: ComponentId = "otlp/internal".parse().unwrap();
        assert_eq!(id, ComponentId::new("otlp", Some("internal")));
        assert_eq!(id.to_string(), "otlp/internal");

        // Only the first '/' separates; the name may hold more of them and other symbols.
        let id: ComponentId = "otlp/a/b.c:d".parse().unwrap();
        assert_eq!(id.name.as_deref(), Some("a/b.c:d"));

        let id: ComponentId = " otlp / x ".parse().unwrap();
        assert_eq!(id.to_string(), "otlp/x");

        let id: ComponentId = "memory_limiter".parse().unwrap();
        assert_eq!(id.type_name, "memory_limiter");
        let long = format!("a{}", "b".repeat(62));
        assert!(long.parse::<ComponentId>().is_ok());
    }

    #[test]
    fn component_id_rejects() {
        let msg = |s: &str| s.parse::<ComponentId>().unwrap_err().to_string();
        assert_eq!(
            msg("otlp/"),
            "invalid component id \"otlp/\": the name after '/' is empty"
        );
        assert_eq!(
            msg("otlp/   "),
            "invalid component id \"otlp/   \": the name after '/' is empty"
        );
        assert_eq!(msg(""), "invalid component id \"\": the type is empty");
        assert_eq!(msg("/x"), "invalid component id \"/x\": the type is empty");
        assert_eq!(
            msg("1otlp"),
            "invalid component id \"1otlp\": the type \"1otlp\" must start with a letter"
        );
        assert_eq!(
            msg("ot-lp"),
            "invalid component id \"ot-lp\": the type \"ot-lp\" may contain only letters, digits and '_', not '-'"
        );
        assert!(msg(&format!("a{}", "b".repeat(63))).contains("longer than 63"));
        assert!(msg("otlp/a\nb").contains("control character"));
    }

    #[test]
    fn component_id_orders_by_type_then_name() {
        let mut ids: Vec<ComponentId> = ["otlp/b", "batch", "otlp", "otlp/a"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        ids.sort();
        let shown: Vec<String> = ids.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["batch", "otlp", "otlp/a", "otlp/b"]);
    }

    #[test]
    fn pipeline_id_parses() {
        let id: PipelineId = "traces".parse().unwrap();
        assert_eq!(id, PipelineId::new(Signal::Traces, None));
        assert_eq!(id.to_string(), "traces");
        let id: PipelineId = "profiles/in".parse().unwrap();
        assert_eq!(id, PipelineId::new(Signal::Profiles, Some("in")));
        assert_eq!(id.to_string(), "profiles/in");
        assert!(PipelineId::new(Signal::Traces, None) < PipelineId::new(Signal::Traces, Some("a")));
        assert!(PipelineId::new(Signal::Traces, Some("z")) < PipelineId::new(Signal::Metrics, None));
    }

    #[test]
    fn pipeline_id_rejects() {
        let msg = |s: &str| s.parse::<PipelineId>().unwrap_err().to_string();
        assert_eq!(
            msg("spans/in"),
            "invalid pipeline id \"spans/in\": unknown signal \"spans\"; expected one of traces, metrics, logs, profiles"
        );
        assert_eq!(
            msg("traces/"),
            "invalid pipeline id \"traces/\": the name after '/' is empty"
        );
        assert_eq!(msg(""), "invalid pipeline id \"\": the signal is empty");
    }
}
