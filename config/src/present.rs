//! A key written with nothing after it (`grpc:`) means "on, with defaults", as in otelcol.
//!
//! ```
//! # use serde::Deserialize;
//! #[derive(Deserialize, Default, Debug, PartialEq)]
//! #[serde(default, deny_unknown_fields)]
//! struct Grpc { endpoint: String }
//!
//! #[derive(Deserialize, Debug)]
//! struct Protocols {
//!     #[serde(default, deserialize_with = "hotspan_config::present::or_default")]
//!     grpc: Option<Grpc>,
//! }
//!
//! let p: Protocols = yaml_serde::from_str("grpc:").unwrap();
//! assert_eq!(p.grpc, Some(Grpc::default()));
//! let p: Protocols = yaml_serde::from_str("{}").unwrap();
//! assert_eq!(p.grpc, None);
//! ```

use serde::{Deserialize, Deserializer};

/// Present-but-null gives `Some(T::default())`, a value gives `Some(value)`. Absent keys never
/// reach this function: pair it with `#[serde(default)]` so they give None.
pub fn or_default<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(deserializer)?.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Default, Debug, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Grpc {
        endpoint: String,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Protocols {
        #[serde(default, deserialize_with = "super::or_default")]
        grpc: Option<Grpc>,
        #[serde(default, deserialize_with = "super::or_default")]
        http: Option<Grpc>,
    }

    fn parse(yaml: &str) -> Result<Protocols, String> {
        yaml_serde::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn null_is_default_absent_is_none() {
        let p = parse("grpc:\n").unwrap();
        assert_eq!(p.grpc, Some(Grpc::default()));
        assert_eq!(p.http, None);

        let p = parse("grpc: ~\nhttp: {endpoint: \"x:1\"}\n").unwrap();
        assert_eq!(p.grpc, Some(Grpc::default()));
        assert_eq!(
            p.http,
            Some(Grpc {
                endpoint: "x:1".into()
            })
        );

        let p = parse("{}").unwrap();
        assert_eq!(
            p,
            Protocols {
                grpc: None,
                http: None
            }
        );
    }

    #[test]
    fn inner_errors_still_surface() {
        let err = parse("grpc: {port: 1}\n").unwrap_err();
        assert!(err.contains("unknown field `port`"), "{err}");
        let err = parse("grpc: 5\n").unwrap_err();
        assert!(err.contains("invalid type"), "{err}");
    }

    #[test]
    fn works_from_a_value() {
        let v: yaml_serde::Value = yaml_serde::from_str("grpc:\n").unwrap();
        let p: Protocols = yaml_serde::from_value(v).unwrap();
        assert_eq!(p.grpc, Some(Grpc::default()));
    }
}
