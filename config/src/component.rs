//! What a component's config is to this crate: YAML behind [`ComponentValue`], parsed and
//! validated once into the component's own struct ([`Parsed`]), plus the extensions it names.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use yaml_serde::Value;

use crate::model::FieldError;
use crate::Signal;

/// A component's YAML after env expansion (null normalized to an empty mapping). The YAML
/// library stays behind this type: components see only their own parsed config struct.
#[derive(Clone, PartialEq, Default)]
pub struct ComponentValue(pub(crate) Value);

impl ComponentValue {
    /// Parses YAML text, for tests and tools that build a component without a whole file.
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let value: Value = yaml_serde::from_str(text).map_err(|e| strip_location(&e.to_string()))?;
        Ok(ComponentValue::normalized(value))
    }

    pub(crate) fn normalized(value: Value) -> Self {
        match value {
            Value::Null => ComponentValue(Value::Mapping(Default::default())),
            v => ComponentValue(v),
        }
    }

    /// Deserializes and validates this as `T`: every problem, with paths relative to the
    /// component.
    pub fn parse<T: ComponentConfig>(&self) -> Result<T, Vec<FieldError>> {
        let parsed: T = parse_component(&self.0).map_err(|e| vec![e])?;
        let mut errs = Vec::new();
        parsed.validate(&mut errs);
        if errs.is_empty() {
            Ok(parsed)
        } else {
            Err(errs)
        }
    }
}

impl fmt::Debug for ComponentValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match yaml_serde::to_string(&self.0) {
            Ok(text) => f.write_str(text.trim_end()),
            Err(_) => write!(f, "{:?}", self.0),
        }
    }
}

/// A component's config after parsing and validation: its own struct, behind `Any` so the
/// config crate can hold every component type's. Built from once, never parsed twice.
#[derive(Clone)]
pub struct Parsed(Arc<dyn Any + Send + Sync>);

impl Parsed {
    pub fn new<T: Any + Send + Sync>(config: T) -> Self {
        Parsed(Arc::new(config))
    }

    /// The config as `T`, if that is what it is.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }
}

impl Default for Parsed {
    /// Stands in for a component whose config did not parse; such a config never runs.
    fn default() -> Self {
        Parsed::new(())
    }
}

impl fmt::Debug for Parsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Parsed")
    }
}

/// An extension a component's config names (`auth.authenticator`, `sending_queue.storage`):
/// validation checks it is defined, of the right type and started, as running would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionRef {
    /// Relative to the component, e.g. `sending_queue.storage`.
    pub path: String,
    /// The id as written.
    pub id: String,
    /// The extension type it must be, e.g. `file_storage`.
    pub type_name: &'static str,
}

/// A component's config as loading left it: what was written, what it parsed into, and the
/// extensions it names.
#[derive(Clone, Debug, Default)]
pub struct ComponentSettings {
    pub value: ComponentValue,
    pub parsed: Parsed,
    pub extensions: Vec<ExtensionRef>,
    /// The signals this config cannot take, and why ([`ComponentConfig::cannot_take`]).
    pub cannot_take: Vec<(Signal, String)>,
}

impl PartialEq for ComponentSettings {
    /// Equal when written the same: the parsed form follows from the text.
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

/// What a successful check hands the config: the parsed struct and the extensions it names.
pub struct Checked {
    pub parsed: Parsed,
    pub extensions: Vec<ExtensionRef>,
    pub cannot_take: Vec<(Signal, String)>,
}

/// Parses and validates YAML text as a component config `T`: the config, or every problem.
/// For tests and tools; a YAML syntax error comes back as one problem at the root.
pub fn parse_yaml<T: ComponentConfig>(text: &str) -> Result<T, Vec<FieldError>> {
    ComponentValue::from_yaml(text)
        .map_err(|e| vec![FieldError::new("", e)])?
        .parse()
}

/// Deserializes YAML text as any `T` (a part of a component's config), for tests.
pub fn from_yaml<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    yaml_serde::from_str(text).map_err(|e| strip_location(&e.to_string()))
}

/// The problems [`parse_yaml`] finds; empty when `text` is a good `T`.
pub fn yaml_errors<T: ComponentConfig>(text: &str) -> Vec<FieldError> {
    parse_yaml::<T>(text).err().unwrap_or_default()
}

/// Parses, validates and wraps a component's config; the catalog's `check` for one type.
pub fn check_component<T: ComponentConfig + Send + Sync + 'static>(
    value: &ComponentValue,
) -> Result<Checked, Vec<FieldError>> {
    let parsed: T = value.parse()?;
    let extensions = parsed.extensions();
    let cannot_take = Signal::ALL
        .into_iter()
        .filter_map(|signal| Some((signal, parsed.cannot_take(signal)?)))
        .collect();
    Ok(Checked {
        parsed: Parsed::new(parsed),
        extensions,
        cannot_take,
    })
}

/// Deserializes a component's config, with the error located by a path relative to the
/// component (`protocols.grpc.endpoint`), ready to be returned from `Catalog::check`.
fn parse_component<T: DeserializeOwned>(config: &Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(config).map_err(|err| {
        let path = dotted(err.path());
        FieldError {
            path,
            message: strip_location(&err.into_inner().to_string()),
        }
    })
}

/// Writes the path as the rest of this crate does, stopping at segments serde cannot name
/// (inside `flatten` or untagged enums) so the path is never wrong, only shorter.
fn dotted(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => break,
        }
    }
    out
}

/// Drops yaml_serde's " at line N column M" (and " at position N"): positions within a value
/// are meaningless here, and the caller supplies the file's line instead.
pub(crate) fn strip_location(message: &str) -> String {
    let mut out = message.to_owned();
    for marker in [" at line ", " at position "] {
        if let Some(start) = out.find(marker) {
            let tail = &out[start + marker.len()..];
            // Skip "N column M" or "N": digits, optionally " column " and digits.
            let mut len = tail.bytes().take_while(u8::is_ascii_digit).count();
            if len == 0 {
                continue;
            }
            if let Some(after) = tail[len..].strip_prefix(" column ") {
                let col = after.bytes().take_while(u8::is_ascii_digit).count();
                if col > 0 {
                    len += " column ".len() + col;
                }
            }
            out.replace_range(start..start + marker.len() + len, "");
        }
    }
    out
}

/// A component's own config: plain data with defaults, and checks that need no I/O.
pub trait ComponentConfig: DeserializeOwned {
    /// Problems beyond the shape serde already checked, with paths relative to the component.
    fn validate(&self, _errs: &mut Vec<FieldError>) {}
    /// The extensions it uses at run time.
    fn extensions(&self) -> Vec<ExtensionRef> {
        Vec::new()
    }
    /// Why this config cannot take `signal`, though its type can (an exporter given only
    /// another signal's URL): a pipeline of that signal using it is refused at load.
    fn cannot_take(&self, _signal: Signal) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, Default, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Grpc {
        endpoint: String,
        port: u16,
    }

    #[derive(Deserialize, Debug, Default, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Protocols {
        grpc: Option<Grpc>,
        list: Vec<Grpc>,
    }

    #[derive(Deserialize, Debug, Default, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Receiver {
        protocols: Protocols,
    }

    fn value(yaml: &str) -> Value {
        yaml_serde::from_str(yaml).unwrap()
    }

    #[test]
    fn parses() {
        let r: Receiver = parse_component(&value("protocols: {grpc: {endpoint: \"a:1\"}}")).unwrap();
        assert_eq!(r.protocols.grpc.unwrap().endpoint, "a:1");
        let r: Receiver = parse_component(&value("{}")).unwrap();
        assert_eq!(r, Receiver::default());
    }

    #[test]
    fn error_paths() {
        let err = parse_component::<Receiver>(&value("protocols: {grpc: {port: x}}")).unwrap_err();
        assert_eq!(err.path, "protocols.grpc.port");
        assert_eq!(err.message, "invalid type: string \"x\", expected u16");

        let err = parse_component::<Receiver>(&value("protocols: {grpc: {bogus: 1}}")).unwrap_err();
        assert_eq!(err.path, "protocols.grpc.bogus");
        assert!(
            err.message.starts_with("unknown field `bogus`"),
            "{}",
            err.message
        );

        let err = parse_component::<Receiver>(&value("protocols: {list: [{}, {port: 99999}]}")).unwrap_err();
        assert_eq!(err.path, "protocols.list[1].port");

        let err = parse_component::<Receiver>(&value("[1]")).unwrap_err();
        assert_eq!(err.path, "");
        assert!(
            err.message.starts_with("invalid type: sequence"),
            "{}",
            err.message
        );
    }

    #[test]
    fn strips_locations() {
        assert_eq!(strip_location("bad thing at line 3 column 7"), "bad thing");
        assert_eq!(
            strip_location("did not find expected key at line 3 column 1, while parsing a block mapping"),
            "did not find expected key, while parsing a block mapping"
        );
        assert_eq!(strip_location("oops at position 12"), "oops");
        assert_eq!(strip_location("at line end"), "at line end");
    }
}
