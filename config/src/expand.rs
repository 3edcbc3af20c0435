//! `${...}` expansion in values, as otelcol's config resolver does it, applied to string values
//! after parsing so lines still match the file: `${env:VAR}` (and the old `${VAR}`), with
//! `:-default`; `${file:PATH}` and `${yaml:TEXT}`, whose content is read as YAML, so a value
//! that is one such reference may become a mapping or a list (`processors: ${file:p.yaml}`).

use yaml_serde::Value;

use crate::lines::join_key;

/// Looks a variable up; None means unset.
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Providers otelcol has that hotspan does not, named so the error can say so plainly.
const OTHER_PROVIDERS: &[&str] = &["http", "https", "s3"];

/// How deep `${file:}` and `${yaml:}` content may refer to more such content; a file that
/// names itself stops here instead of looping.
const MAX_DEPTH: usize = 8;

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
    expand_tree_at(value, path, env, errs, unset, 0)
}

fn expand_tree_at(
    value: &mut Value,
    path: &str,
    env: Lookup<'_>,
    errs: &mut Vec<(String, String)>,
    unset: &mut Vec<(String, String)>,
    depth: usize,
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
            match expand_scalar_at(s, env, depth) {
                Ok(expanded) => *value = expanded,
                Err(msg) => errs.push((path.to_owned(), msg)),
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_tree_at(item, &format!("{path}[{i}]"), env, errs, unset, depth);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let at = join_key(path, &key_text(key));
                expand_tree_at(item, &at, env, errs, unset, depth);
            }
        }
        Value::Tagged(tagged) => expand_tree_at(&mut tagged.value, path, env, errs, unset, depth),
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

/// Expands one string value. A value that is exactly one reference takes the type of what
/// it refers to: `port: ${env:PORT}` becomes a number, as in otelcol, and `${file:}` or
/// `${yaml:}` content may be a mapping or a list.
#[cfg(test)]
pub(crate) fn expand_scalar(s: &str, env: Lookup<'_>) -> Result<Value, String> {
    expand_scalar_at(s, env, 0)
}

fn expand_scalar_at(s: &str, env: Lookup<'_>, depth: usize) -> Result<Value, String> {
    if let Some(body) = whole_reference(s) {
        return Ok(match resolve(body, s, env, depth)? {
            Retrieved::Text(text) => retype(&text).unwrap_or(Value::String(text)),
            Retrieved::Yaml(value) => value,
        });
    }
    expand_str(s, env, depth).map(Value::String)
}

/// The inside of `s` when `s` is exactly one `${...}`.
fn whole_reference(s: &str) -> Option<&str> {
    let body = s.strip_prefix("${")?;
    (matching_brace(body)? + 1 == body.len()).then(|| &body[..body.len() - 1])
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

/// Expands every reference in `s` into text.
fn expand_str(s: &str, env: Lookup<'_>, depth: usize) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
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
            match resolve(&body_and_tail[..close], reference, env, depth)? {
                Retrieved::Text(text) => out.push_str(&text),
                Retrieved::Yaml(value) => out.push_str(&embedded_text(value, reference)?),
            }
            rest = &body_and_tail[close + 1..];
        } else {
            // A lone '$' (like "$HOME" or "price: 5$") is text; otelcol's bare $VAR is gone.
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Byte offset of the '}' closing a reference whose body starts at `body[0]`, counting nested
/// `${` so defaults and paths may hold references.
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

/// What one reference stands for.
enum Retrieved {
    /// An environment variable's text; as a whole value only a scalar's type is taken from it.
    Text(String),
    /// `file:` or `yaml:` content, read as YAML and expanded in turn.
    Yaml(Value),
}

/// Resolves the inside of one `${...}`.
fn resolve(body: &str, reference: &str, env: Lookup<'_>, depth: usize) -> Result<Retrieved, String> {
    let Some((provider, rest)) = body.split_once(':') else {
        // The old form `${VAR}` means `${env:VAR}`.
        check_var_name(body, reference)?;
        return Ok(Retrieved::Text(env(body).unwrap_or_default()));
    };
    match provider.trim() {
        "env" => resolve_env(rest, reference, env, depth).map(Retrieved::Text),
        "file" => {
            // The path may itself hold references: `${file:${env:SECRETS}/token}`.
            let path = expand_str(rest, env, depth)?;
            let content =
                read_file(&path).map_err(|e| format!("cannot read {path:?} for {reference:?}: {e}"))?;
            read_yaml(&content, reference, env, depth).map(Retrieved::Yaml)
        }
        // As otelcol, innermost references first: `${yaml:[a, ${env:B}]}` is a list. The text
        // is then expanded, so its YAML is not expanded again.
        "yaml" => Ok(Retrieved::Yaml(parse_yaml(
            &expand_str(rest, env, depth)?,
            reference,
        )?)),
        other if OTHER_PROVIDERS.contains(&other) => Err(format!(
            "config provider {other:?} in {reference:?} is not supported; env, file and yaml are"
        )),
        other => Err(format!(
            "unknown config provider {other:?} in {reference:?}; env, file and yaml are supported"
        )),
    }
}

fn resolve_env(rest: &str, reference: &str, env: Lookup<'_>, depth: usize) -> Result<String, String> {
    let (name, default) = match rest.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (rest, None),
    };
    check_var_name(name, reference)?;
    match (env(name), default) {
        (Some(value), _) => Ok(value),
        // As in otelcol, the default applies only when the variable is unset, not when empty.
        (None, Some(default)) => expand_str(default, env, depth),
        (None, None) => Ok(String::new()),
    }
}

/// The most a `${file:}` may hold: config, not data, and never a device read forever.
const MAX_FILE_BYTES: u64 = 16 << 20;

fn read_file(path: &str) -> Result<String, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("it is past {} MiB", MAX_FILE_BYTES >> 20));
    }
    Ok(text)
}

/// `file:` content as otelcol reads it: YAML when it parses (so a token file's trailing
/// newline goes), its text when not; then its own references are expanded.
fn read_yaml(text: &str, reference: &str, env: Lookup<'_>, depth: usize) -> Result<Value, String> {
    if depth >= MAX_DEPTH {
        return Err(format!(
            "{reference:?} is content referring to more content {MAX_DEPTH} deep; does a file refer to itself?"
        ));
    }
    let mut value = parse_yaml(text, reference)?;
    let mut errs = Vec::new();
    expand_tree_at(&mut value, "", env, &mut errs, &mut Vec::new(), depth + 1);
    match errs.into_iter().next() {
        None => Ok(value),
        Some((at, message)) if at.is_empty() => Err(message),
        Some((at, message)) => Err(format!("in {reference:?} at {at}: {message}")),
    }
}

fn parse_yaml(text: &str, reference: &str) -> Result<Value, String> {
    let mut value = yaml_serde::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_owned()));
    value
        .apply_merge()
        .map_err(|e| format!("invalid merge key (<<) in {reference:?}: {e}"))?;
    Ok(value)
}

/// A retrieved value standing inside a longer string: scalars only, as otelcol allows.
fn embedded_text(value: Value, reference: &str) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => Err(format!(
            "{reference:?} is a mapping or a list, which cannot stand inside a longer string"
        )),
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
            Err("unknown config provider \"foo\" in \"${foo:bar}\"; env, file and yaml are supported".into())
        );
        assert_eq!(
            expand("${https://example.com/x}"),
            Err("config provider \"https\" in \"${https://example.com/x}\" is not supported; env, file and yaml are".into())
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

    #[test]
    fn file_and_yaml_content_is_yaml_and_is_expanded_in_turn() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path.display().to_string()
        };
        let token = write("token", "s3cr3t\n");
        let procs = write(
            "procs.yaml",
            "batch:\n  timeout: ${env:PORT}ms\nmemory_limiter: {}\n",
        );
        let port = write("port", "4317\n");
        let looped = dir.path().join("loop").display().to_string();
        std::fs::write(&looped, format!("${{file:{looped}}}")).expect("write");

        // A token file's newline goes; embedded, the content is text.
        assert_eq!(expand(&format!("${{file:{token}}}")), Ok(text("s3cr3t")));
        assert_eq!(
            expand(&format!("Bearer ${{file:{token}}}")),
            Ok(text("Bearer s3cr3t"))
        );
        // A whole value takes the content's shape, and the content's references are expanded.
        let expected: Value =
            yaml_serde::from_str("{batch: {timeout: 4317ms}, memory_limiter: {}}").expect("yaml");
        assert_eq!(expand(&format!("${{file:{procs}}}")), Ok(expected));
        assert_eq!(
            expand(&format!("${{file:{port}}}")),
            Ok(Value::Number(4317.into()))
        );
        assert_eq!(
            expand(&format!("127.0.0.1:${{file:{port}}}")),
            Ok(text("127.0.0.1:4317"))
        );
        // The path may come from a variable.
        let env_dir = |name: &str| (name == "DIR").then(|| dir.path().display().to_string());
        assert_eq!(
            expand_scalar("${file:${env:DIR}/token}", &env_dir),
            Ok(text("s3cr3t"))
        );
        assert_eq!(expand("${env:NOPE:-${yaml:8}}"), Ok(Value::Number(8.into())));

        let list: Value = yaml_serde::from_str("[a, example.com]").expect("yaml");
        assert_eq!(expand("${yaml:[a, ${env:HOST}]}"), Ok(list));
        assert_eq!(
            expand("${yaml:verbosity: detailed}"),
            Ok(yaml_serde::from_str("{verbosity: detailed}").expect("yaml"))
        );

        let err = expand(&format!("x ${{file:{procs}}}")).unwrap_err();
        assert!(err.contains("is a mapping or a list"), "{err}");
        let err = expand("${file:/no/such/file}").unwrap_err();
        assert!(err.contains("cannot read \"/no/such/file\""), "{err}");
        let err = expand("${file:/dev/zero}").unwrap_err();
        assert!(err.contains("past 16 MiB"), "{err}");
        let err = expand(&format!("${{file:{looped}}}")).unwrap_err();
        assert!(err.contains("does a file refer to itself"), "{err}");
    }
}
