//! Loads and validates a YAML config in the OpenTelemetry Collector's shape.
//!
//! This crate knows the file's shape and the rules between its parts; each component's own
//! config is checked through the [`Catalog`] the caller supplies.
#![forbid(unsafe_code)]
// A panic on input would take the collector down: errors are handled; tests may unwrap.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::path::Path;

pub mod bounds;
mod component;
pub mod duration;
mod expand;
mod id;
mod lines;
mod model;
pub mod present;
mod sources;
mod validate;

pub use component::{
    check_component, from_yaml, parse_yaml, yaml_errors, Checked, ComponentConfig, ComponentSettings,
    ComponentValue, ExtensionRef, Parsed,
};
pub use id::{ComponentId, Kind, ParseIdError, ParseSignalError, PipelineId, Signal};
pub use model::{
    Catalog, ComponentInfo, Config, ConfigError, FieldError, LogEncoding, LogLevel, LogsTelemetry,
    MetricsLevel, MetricsTelemetry, Pipeline, Service, Telemetry,
};
pub use sources::{load_sources, Source};

/// Parses, env-expands and validates a config. Every problem is reported, each with its dotted
/// path and (where known) its line in `text`, sorted by line.
pub fn load(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    catalog: &dyn Catalog,
) -> Result<Config, Vec<ConfigError>> {
    let lines = lines::LineIndex::build(text);
    let mut root: yaml_serde::Value = match yaml_serde::from_str(text) {
        Ok(root) => root,
        Err(e) => return Err(syntax_errors(&e, &lines)),
    };
    // otelcol's YAML library applies `<<: *anchor` merge keys; yaml_serde leaves them as keys.
    if let Err(e) = root.apply_merge() {
        return Err(vec![ConfigError {
            path: String::new(),
            line: None,
            message: format!(
                "invalid merge key (<<): {}",
                component::strip_location(&e.to_string())
            ),
        }]);
    }
    let mut env_errs = Vec::new();
    let mut unset = Vec::new();
    expand::expand_tree(&mut root, "", env, &mut env_errs, &mut unset);
    let (config, mut errs) = validate::validate(root, catalog);
    // A value that is wrong because a variable was not set says so.
    for (path, message) in &mut errs {
        let names: Vec<&str> = unset
            .iter()
            .filter(|(at, _)| at == path)
            .map(|(_, name)| name.as_str())
            .collect();
        if !names.is_empty() {
            let vars: Vec<String> = names.iter().map(|n| format!("${{env:{n}}}")).collect();
            let verb = if names.len() == 1 { "is" } else { "are" };
            message.push_str(&format!(
                " (it comes from {}, which {verb} not set)",
                vars.join(" and ")
            ));
        }
    }
    // A value that failed to expand was left as written; anything else said about it (or
    // under it) would only repeat the problem.
    errs.retain(|(path, _)| !env_errs.iter().any(|(bad, _)| is_at_or_under(path, bad)));
    errs.extend(env_errs);
    if errs.is_empty() {
        return Ok(config);
    }
    let mut errors: Vec<ConfigError> = errs
        .into_iter()
        .map(|(path, message)| ConfigError {
            line: lines.line(&path),
            path,
            message,
        })
        .collect();
    // Stable: problems on one line keep the order they were found in; unknown lines go last.
    errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    Err(errors)
}

/// Reads `path` and [`load`]s it with the process environment.
pub fn load_file(path: &Path, catalog: &dyn Catalog) -> Result<Config, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            path: String::new(),
            line: None,
            message: format!("cannot read config file {}: {e}", path.display()),
        }]
    })?;
    load(&text, &|name| std::env::var(name).ok(), catalog)
}

/// yaml_serde stops at the first repeated key and points at its mapping; the index knows every
/// repeat and its own line, so those are reported instead when there are any.
fn syntax_errors(e: &yaml_serde::Error, lines: &lines::LineIndex) -> Vec<ConfigError> {
    let message = component::strip_location(&e.to_string());
    if message.contains("duplicate entry") && !lines.duplicates().is_empty() {
        return lines
            .duplicates()
            .iter()
            .map(|(path, line)| ConfigError {
                path: path.clone(),
                line: Some(*line),
                message: "key is repeated; each key may appear only once".to_owned(),
            })
            .collect();
    }
    vec![ConfigError {
        path: String::new(),
        line: e.location().map(|l| l.line()),
        message: format!("invalid YAML: {message}"),
    }]
}

/// Whether `path` is `ancestor` or lies below it (`a.b`, `a.b.c`, `a.b[0]`).
fn is_at_or_under(path: &str, ancestor: &str) -> bool {
    match path.strip_prefix(ancestor) {
        Some(rest) => rest.is_empty() || rest.starts_with('.') || rest.starts_with('['),
        None => false,
    }
}

#[cfg(test)]
mod tests;
