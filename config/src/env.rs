//! `${env:VAR}` expansion, applied to string values after parsing so lines still match the file.

use yaml_serde::Value;

use crate::lines::join_key;

/// Looks a variable up; None means unset.
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Providers otelcol has that hotspan does not, named so the error can say so plainly.
const OTHER_PROVIDERS: &[&str] = &["file", "http", "https", "yaml"];

/// Expands every string value under `value` (keys are left alone). Problems come back as
/// (path, message) pairs; the offending string is left unexpanded. Each value that used a
/// variable which is not set (with no default) is noted in `unset` as (path, variable), so a
/// later complaint about that value can say why it is empty.
pub(crate) fn expand_tree(
    value: &mut Value,
    path: &str,
    env: Lookup<'_>,
    errs: &mut Vec<(String, String)>,
    unset: &mut Vec<(String, String)>,
) {
    match value {
        Value::String(s) => {
            if !s.contains('$') {
                return;
            }
            unset.extend(
                unset_variables(s, env)
                    .into_iter()
                    .map(|name| (path.to_owned(), name)),
            );
            match expand_scalar(s, env) {
                Ok(expanded) => *value = expanded,
                Err(msg) => errs.push((path.to_owned(), msg)),
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_tree(item, &format!("{path}[{i}]"), env, errs, unset);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                expand_tree(item, &join_key(path, &key_text(key)), env, errs, unset);
            }
        }
        Value::Tagged(tagged) => expand_tree(&mut tagged.value, path, env, errs, unset),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The variables `s` names without a default (`${env:X}`, `${X}`) that are not set.
fn unset_variables(s: &str, env: Lookup<'_>) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = s;
    while let Some(at) = rest.find("${") {
        let body = &rest[at + 2..];
        let Some(close) = matching_brace(body) else { break };
        let inner = &body[..close];
        let name = match inner.split_once(':') {
            None => Some(inner),
            Some(("env", var)) if !var.contains(":-") => Some(var),
            _ => None,
        };
        if let Some(name) = name.filter(|n| env(n).is_none()) {
            names.push(name.to_owned());
        }
        rest = &body[close + 1..];
    }
    names
}

/// How a mapping key is written in a path.
pub(crate) fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => "null".to_owned(),
        // Complex keys cannot be named; this is only ever shown in messages.
        _ => "?".to_owned(),
    }
}

/// Expands one string value. A value that is exactly one reference is re-read as a YAML
/// scalar, so `port: ${env:PORT}` becomes a number, as in otelcol.
pub(crate) fn expand_scalar(s: &str, env: Lookup<'_>) -> Result<Value, String> {
    let (text, whole_reference) = expand_str(s, env)?;
    if whole_reference {
        if let Some(typed) = retype(&text) {
            return Ok(typed);
        }
    }
    Ok(Value::String(text))
}

/// The value `text` would have had if written bare in YAML, when that is a number, a bool or
/// an explicit null; None keeps it a string (including "" and anything structured).
fn retype(text: &str) -> Option<Value> {
    if text.trim().is_empty() {
        return None;
    }
    match yaml_serde::from_str::<Value>(text) {
        Ok(v @ (Value::Bool(_) | Value::Number(_) | Value::Null)) => Some(v),
        _ => None,
    }
}

/// Expands references in `s`; the flag says whether `s` was exactly one `${...}`.
fn expand_str(s: &str, env: Lookup<'_>) -> Result<(String, bool), String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut whole_reference = false;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body_and_tail) = after.strip_prefix('{') {
            let close = matching_brace(body_and_tail)
                .ok_or_else(|| format!("unclosed \"${{\" in {s:?} (write \"$$\" for a literal \"$\")"))?;
            let reference = &rest[dollar..dollar + 2 + close + 1];
            whole_reference = reference.len() == s.len();
            out.push_str(&resolve(&body_and_tail[..close], reference, env)?);
            rest = &body_and_tail[close + 1..];
        } else {
            // A lone '$' (like "$HOME" or "price: 5$") is text; otelcol's bare $VAR is gone.
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok((out, whole_reference))
}

/// Byte offset of the '}' closing a reference whose body starts at `body[0]`, counting nested
/// `${` so defaults may hold references.
fn matching_brace(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Resolves the inside of one `${...}`.
fn resolve(body: &str, reference: &str, env: Lookup<'_>) -> Result<String, String> {
    let Some((provider, rest)) = body.split_once(':') else {
        // The old form `${VAR}` means `${env:VAR}`.
        check_var_name(body, reference)?;
        return Ok(env(body).unwrap_or_default());
    };
    if provider != "env" {
        let provider = provider.trim();
        return Err(if OTHER_PROVIDERS.contains(&provider) {
            format!("config provider {provider:?} in {reference:?} is not supported; only env is")
        } else {
            format!("unknown config provider {provider:?} in {reference:?}; only env is supported")
        });
    }
    let (name, default) = match rest.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (rest, None),
    };
    check_var_name(name, reference)?;
    match (env(name), default) {
        (Some(value), _) => Ok(value),
        // As in otelcol, the default applies only when the variable is unset, not when empty.
        (None, Some(default)) => Ok(expand_str(default, env)?.0),
        (None, None) => Ok(String::new()),
    }
}

/// Environment variable names as otelcol accepts them: `[A-Za-z_][A-Za-z0-9_]*`.
fn check_var_name(name: &str, reference: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("missing variable name in {reference:?}"));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "invalid variable name {name:?} in {reference:?}; use letters, digits and '_', not starting with a digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example.com".into()),
            "PORT" => Some("4317".into()),
            "FLAG" => Some("true".into()),
            "RATIO" => Some("0.5".into()),
            "EMPTY" => Some(String::new()),
            "LIST" => Some("[a, b]".into()),
            "DOLLAR" => Some("a${env:HOST}".into()),
            "NULLISH" => Some("~".into()),
            _ => None,
        }
    }

    fn expand(s: &str) -> Result<Value, String> {
        expand_scalar(s, &env)
    }

    fn text(s: &str) -> Value {
        Value::String(s.to_owned())
    }

    #[test]
    fn interpolates() {
        assert_eq!(expand("${env:HOST}:${env:PORT}"), Ok(text("example.com:4317")));
        assert_eq!(expand("http://${HOST}/x"), Ok(text("http://example.com/x")));
        assert_eq!(expand("port ${env:PORT}"), Ok(text("port 4317")));
        assert_eq!(expand("no refs"), Ok(text("no refs")));
    }

    #[test]
    fn whole_reference_is_retyped() {
        assert_eq!(expand("${env:PORT}"), Ok(Value::Number(4317.into())));
        assert_eq!(expand("${PORT}"), Ok(Value::Number(4317.into())));
        assert_eq!(expand("${env:FLAG}"), Ok(Value::Bool(true)));
        assert_eq!(expand("${env:RATIO}"), Ok(Value::Number(0.5.into())));
        assert_eq!(expand("${env:NULLISH}"), Ok(Value::Null));
        assert_eq!(expand("${env:HOST}"), Ok(text("example.com")));
        // Structured text stays a string: an env var cannot inject a mapping or list.
        assert_eq!(expand("${env:LIST}"), Ok(text("[a, b]")));
        assert_eq!(expand("${env:EMPTY}"), Ok(text("")));
    }

    #[test]
    fn defaults_and_unset() {
        assert_eq!(expand("${env:NOPE}"), Ok(text("")));
        assert_eq!(expand("${NOPE}"), Ok(text("")));
        assert_eq!(expand("a${env:NOPE}b"), Ok(text("ab")));
        assert_eq!(expand("${env:NOPE:-8888}"), Ok(Value::Number(8888.into())));
        assert_eq!(expand("${env:NOPE:-localhost:4317}"), Ok(text("localhost:4317")));
        assert_eq!(expand("${env:HOST:-other}"), Ok(text("example.com")));
        // Set but empty is not unset.
        assert_eq!(expand("${env:EMPTY:-x}"), Ok(text("")));
        assert_eq!(expand("${env:NOPE:-}"), Ok(text("")));
        assert_eq!(expand("${env:NOPE:-${env:HOST}}"), Ok(text("example.com")));
        assert_eq!(expand("${env:NOPE:-$$5}"), Ok(text("$5")));
    }

    #[test]
    fn dollars() {
        assert_eq!(expand("$$"), Ok(text("$")));
        assert_eq!(expand("$${env:HOST}"), Ok(text("${env:HOST}")));
        assert_eq!(expand("a$$$$b"), Ok(text("a$$b")));
        assert_eq!(expand("$HOME"), Ok(text("$HOME")));
        assert_eq!(expand("5$"), Ok(text("5$")));
        // Values are not expanded again.
        assert_eq!(expand("${env:DOLLAR}"), Ok(text("a${env:HOST}")));
    }

    #[test]
    fn malformed() {
        assert_eq!(
            expand("${env:}"),
            Err("missing variable name in \"${env:}\"".into())
        );
        assert_eq!(
            expand("${foo:bar}"),
            Err("unknown config provider \"foo\" in \"${foo:bar}\"; only env is supported".into())
        );
        assert_eq!(
            expand("${file:/etc/x}"),
            Err("config provider \"file\" in \"${file:/etc/x}\" is not supported; only env is".into())
        );
        assert_eq!(
            expand("x ${env:HOST"),
            Err("unclosed \"${\" in \"x ${env:HOST\" (write \"$$\" for a literal \"$\")".into())
        );
        assert!(expand("${env:1X}")
            .unwrap_err()
            .contains("invalid variable name \"1X\""));
        assert!(expand("${A-B}")
            .unwrap_err()
            .contains("invalid variable name \"A-B\""));
        assert_eq!(expand("${}"), Err("missing variable name in \"${}\"".into()));
    }

    #[test]
    fn tree_expands_values_not_keys() {
        let mut v: Value = yaml_serde::from_str(
            "${env:HOST}: ${env:HOST}\nlist: [\"${env:PORT}\", plain, 7]\nbad: ${env:}\n",
        )
        .unwrap();
        let mut errs = Vec::new();
        expand_tree(&mut v, "", &env, &mut errs, &mut Vec::new());
        let expected: Value =
            yaml_serde::from_str("${env:HOST}: example.com\nlist: [4317, plain, 7]\nbad: ${env:}\n").unwrap();
        assert_eq!(v, expected);
        assert_eq!(
            errs,
            vec![(
                "bad".to_owned(),
                "missing variable name in \"${env:}\"".to_owned()
            )]
        );
    }
}
