//! Helpers for the crates that own component config structs.

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use serde_yaml::Value;

use crate::model::FieldError;

/// Deserializes a component's config, with the error located by a path relative to the
/// component (`protocols.grpc.endpoint`), ready to be returned from `Catalog::check`.
pub fn parse_component<T: DeserializeOwned>(config: &Value) -> Result<T, FieldError> {
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

/// Drops serde_yaml's " at line N column M" (and " at position N"): positions within a value
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
}

/// Parses and validates a component config, for `Catalog::check`: empty means fine.
pub fn check_component<T: ComponentConfig>(config: &Value) -> Vec<FieldError> {
    match parse_component::<T>(config) {
        Err(e) => vec![e],
        Ok(parsed) => {
            let mut errs = Vec::new();
            parsed.validate(&mut errs);
            errs
        }
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
        serde_yaml::from_str(yaml).unwrap()
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
