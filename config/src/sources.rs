//! Where a config comes from, as otelcol's `--config` URIs say: `file:PATH` (or a bare path),
//! `env:VAR` (the whole YAML in one variable) and `yaml:...` (inline YAML, where `::` separates
//! nested keys: `yaml:exporters::debug::verbosity: detailed`). Several are merged in order as
//! otelcol merges them: maps key by key, and for anything else (lists too) the later one wins.

use std::path::PathBuf;

use yaml_serde::{Mapping, Value};

use crate::{component, load, Catalog, Config, ConfigError};

/// One `--config` value.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    File(PathBuf),
    Env(String),
    Yaml(String),
}

impl Source {
    pub fn parse(uri: &str) -> Result<Source, String> {
        match uri.split_once(':') {
            Some(("file", path)) => Ok(Source::File(path.into())),
            Some(("env", name)) => Ok(Source::Env(name.into())),
            Some(("yaml", text)) => Ok(Source::Yaml(text.into())),
            Some((scheme @ ("http" | "https" | "s3"), _)) => Err(format!(
                "the {scheme}: config provider is not supported; file:, env: and yaml: are"
            )),
            _ => Ok(Source::File(uri.into())),
        }
    }

    fn read(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
        match self {
            Source::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read config file {}: {e}", path.display())),
            Source::Env(name) => env(name).ok_or_else(|| format!("environment variable {name} is not set")),
            Source::Yaml(text) => Ok(text.clone()),
        }
    }
}

/// Loads the config the `--config` values give, merged in order. One file (or variable) keeps
/// its line numbers in problems; merged sources have none to point at.
pub fn load_sources(
    uris: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    catalog: &dyn Catalog,
) -> Result<Config, Vec<ConfigError>> {
    let problem = |message: String| {
        vec![ConfigError {
            path: String::new(),
            line: None,
            message,
        }]
    };
    let sources = uris
        .iter()
        .map(|uri| Source::parse(uri).map_err(|e| problem(format!("--config {uri}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if let [one @ (Source::File(_) | Source::Env(_))] = sources.as_slice() {
        return load(&one.read(env).map_err(problem)?, env, catalog);
    }
    let mut merged = Value::Mapping(Mapping::new());
    for (uri, source) in uris.iter().zip(&sources) {
        let text = source.read(env).map_err(problem)?;
        let mut value: Value = yaml_serde::from_str(&text).map_err(|e| {
            problem(format!(
                "--config {uri}: invalid YAML: {}",
                component::strip_location(&e.to_string())
            ))
        })?;
        nest_keys(&mut value);
        merge(&mut merged, value);
    }
    let text = yaml_serde::to_string(&merged).map_err(|e| problem(format!("merging the configs: {e}")))?;
    load(&text, env, catalog).map_err(|errs| {
        errs.into_iter()
            .map(|e| ConfigError { line: None, ..e })
            .collect()
    })
}

/// `a::b: v` becomes `a: {b: v}`, as otelcol reads `::` in keys.
fn nest_keys(value: &mut Value) {
    let Value::Mapping(map) = value else { return };
    let mut nested = Value::Mapping(Mapping::new());
    for (key, mut item) in std::mem::take(map) {
        nest_keys(&mut item);
        let path: Vec<String> = match &key {
            Value::String(s) if s.contains("::") => s.split("::").map(str::to_owned).collect(),
            _ => {
                merge(&mut nested, Value::Mapping(Mapping::from_iter([(key, item)])));
                continue;
            }
        };
        let inner = path.into_iter().rev().fold(item, |v, k| {
            Value::Mapping(Mapping::from_iter([(Value::String(k), v)]))
        });
        merge(&mut nested, inner);
    }
    *value = nested;
}

/// Merges `over` into `base`: maps key by key, anything else replaced.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(base), Value::Mapping(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_their_provider_and_a_bare_path_is_a_file() {
        assert_eq!(
            Source::parse("file:/etc/a.yaml"),
            Ok(Source::File("/etc/a.yaml".into()))
        );
        assert_eq!(
            Source::parse("conf/a.yaml"),
            Ok(Source::File("conf/a.yaml".into()))
        );
        assert_eq!(Source::parse("env:CFG"), Ok(Source::Env("CFG".into())));
        assert_eq!(Source::parse("yaml:a::b: 1"), Ok(Source::Yaml("a::b: 1".into())));
        assert!(Source::parse("https://example.com/c.yaml")
            .is_err_and(|e| e.contains("https: config provider is not supported")));
    }

    #[test]
    fn later_sources_win_and_maps_merge() {
        let mut base: Value = yaml_serde::from_str("a: {b: 1, c: [1, 2]}\nd: x").expect("yaml");
        let mut over: Value = yaml_serde::from_str("a::c: [3]\na::e: 2\nd: y").expect("yaml");
        nest_keys(&mut over);
        merge(&mut base, over);
        let want: Value = yaml_serde::from_str("a: {b: 1, c: [3], e: 2}\nd: y").expect("yaml");
        assert_eq!(base, want);
    }
}
