//! The `bearertokenauth` extension, as otelcol's: one static token (`token`, or the content of
//! `filename`, re-read when the file changes so rotation needs no restart), sent by exporters
//! as `<header>: <scheme> <token>` and required by receivers from their callers.
//!
//! Receivers name it under `auth.authenticator` (in `protocols.grpc`/`protocols.http` of
//! `otlp`, at the top of `pprof`); exporters at their top level.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hotspan_config::{ComponentConfig, ComponentId, ExtensionRef, FieldError};
use http::{HeaderName, HeaderValue, StatusCode};
use serde::Deserialize;
use tracing::{debug, warn};

use crate::component::{BoxError, BuildContext, BuiltExtension, ComponentType, ExtensionType, Lifecycle};
use crate::telemetry::{Counter, Telemetry};

#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BearerTokenAuthConfig {
    /// The token itself; use `${env:VAR}` rather than writing it in the file.
    pub token: Option<String>,
    /// A file whose content (surrounding whitespace trimmed) is the token.
    pub filename: Option<String>,
    /// Put before the token, with a space; empty sends the bare token.
    pub scheme: String,
    /// Header that carries it.
    pub header: String,
}

impl Default for BearerTokenAuthConfig {
    fn default() -> Self {
        BearerTokenAuthConfig {
            token: None,
            filename: None,
            scheme: "Bearer".into(),
            header: "authorization".into(),
        }
    }
}

/// Never prints the token.
impl std::fmt::Debug for BearerTokenAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerTokenAuthConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("filename", &self.filename)
            .field("scheme", &self.scheme)
            .field("header", &self.header)
            .finish()
    }
}

impl ComponentConfig for BearerTokenAuthConfig {
    fn validate(&self, errs: &mut Vec<FieldError>) {
        match (&self.token, &self.filename) {
            (None, None) => errs.push(FieldError::new("token", "set token or filename")),
            (Some(_), Some(_)) => errs.push(FieldError::new(
                "filename",
                "set either token or filename, not both",
            )),
            (Some(t), None) => {
                if t.trim().is_empty() {
                    errs.push(FieldError::new("token", "is empty"));
                } else if HeaderValue::try_from(header_text(&self.scheme, t.trim())).is_err() {
                    errs.push(FieldError::new(
                        "token",
                        "has characters an HTTP header cannot carry",
                    ));
                }
            }
            (None, Some(f)) => {
                if f.is_empty() {
                    errs.push(FieldError::new("filename", "is empty"));
                }
            }
        }
        if self.scheme.chars().any(|c| c.is_whitespace() || c.is_control()) {
            errs.push(FieldError::new("scheme", "must be one word"));
        }
        if HeaderName::try_from(self.header.as_str()).is_err() {
            errs.push(FieldError::new(
                "header",
                format!("\"{}\" is not an HTTP header name", self.header),
            ));
        }
    }
}

fn header_text(scheme: &str, token: &str) -> String {
    if scheme.is_empty() {
        token.to_string()
    } else {
        format!("{scheme} {token}")
    }
}

impl ComponentType for BearerTokenAuth {
    const TYPE_NAME: &'static str = "bearertokenauth";
    type Config = BearerTokenAuthConfig;
}

impl ExtensionType for BearerTokenAuth {
    fn build(_ctx: &BuildContext, config: BearerTokenAuthConfig) -> Result<BuiltExtension, BoxError> {
        Ok(BuiltExtension::of(Arc::new(BearerTokenAuth::new(config)?)))
    }
}

/// What a file looked like when it was last read: a change in any of these re-reads it.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    /// A rotation by rename (as Kubernetes mounts secrets) changes the inode.
    inode: u64,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode,
        }
    }
}

/// The current header value, and the stamp of the file it came from.
struct Current {
    value: HeaderValue,
    stamp: Option<FileStamp>,
}

/// The built extension: the token and how it travels. Receivers call [`Self::check`],
/// exporters [`Self::header`].
pub struct BearerTokenAuth {
    header: HeaderName,
    scheme: String,
    filename: Option<String>,
    current: Mutex<Current>,
}

impl BearerTokenAuth {
    fn new(config: BearerTokenAuthConfig) -> Result<Self, BoxError> {
        let header = HeaderName::try_from(config.header.as_str())?;
        let (value, stamp) = match (&config.token, &config.filename) {
            (Some(token), _) => (
                value_of(&config.scheme, token).map_err(|e| format!("token {e}"))?,
                None,
            ),
            (None, Some(path)) => {
                let (value, stamp) = read_token(path, &config.scheme)?;
                (value, Some(stamp))
            }
            (None, None) => return Err("set token or filename".into()),
        };
        Ok(BearerTokenAuth {
            header,
            scheme: config.scheme,
            filename: config.filename,
            current: Mutex::new(Current { value, stamp }),
        })
    }

    /// The header name and value an exporter sends.
    pub fn header(&self) -> (HeaderName, HeaderValue) {
        (self.header.clone(), self.value())
    }

    /// Whether a request's headers carry the token, compared in constant time.
    pub fn check(&self, headers: &http::HeaderMap) -> bool {
        let expected = self.value();
        let mut ok = false;
        // Any one of repeated headers may carry it; all are compared, whatever matched.
        for got in headers.get_all(&self.header) {
            ok |= constant_time_eq(got.as_bytes(), expected.as_bytes());
        }
        ok
    }

    /// The current value, after re-reading the file if it changed since the last read. A
    /// `stat` per call: cheap next to the request it guards, and rotation takes effect at once.
    fn value(&self) -> HeaderValue {
        let Some(path) = &self.filename else {
            return self.lock().value.clone();
        };
        // Stat outside the lock: concurrent callers only serialize when the file changed.
        let stamp = std::fs::metadata(path).map(|m| FileStamp::of(&m));
        let mut current = self.lock();
        match stamp {
            Ok(stamp) if Some(stamp) != current.stamp => match read_token(path, &self.scheme) {
                Ok((value, stamp)) => {
                    debug!(path = %path, "bearer token file changed; re-read it");
                    *current = Current {
                        value,
                        stamp: Some(stamp),
                    };
                }
                Err(e) => {
                    // Keep the last good token until the file changes again.
                    warn!(error = %e, "bearer token file changed but cannot be used; keeping the previous token");
                    current.stamp = Some(stamp);
                }
            },
            Ok(_) => {}
            Err(e) => {
                if current.stamp.is_some() {
                    warn!(path = %path, error = %e, "bearer token file is gone; keeping the previous token");
                    current.stamp = None;
                }
            }
        }
        current.value.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn value_of(scheme: &str, token: &str) -> Result<HeaderValue, String> {
    let token = token.trim();
    if token.is_empty() {
        return Err("is empty".into());
    }
    let mut value = HeaderValue::try_from(header_text(scheme, token))
        .map_err(|_| "has characters an HTTP header cannot carry".to_string())?;
    value.set_sensitive(true);
    Ok(value)
}

fn read_token(path: &str, scheme: &str) -> Result<(HeaderValue, FileStamp), BoxError> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read token file {path}: {e}"))?;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read token file {path}: {e}"))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| format!("token file {path} is not UTF-8"))?;
    let value = value_of(scheme, text).map_err(|e| format!("token file {path} {e}"))?;
    Ok((value, FileStamp::of(&meta)))
}

/// Equal bytes, in time that depends on the lengths only, not on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
        diff = std::hint::black_box(diff);
    }
    diff == 0
}

#[async_trait]
impl Lifecycle for BearerTokenAuth {}

/// How a receiver turns away a caller without the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// gRPC status UNAUTHENTICATED.
    Grpc,
    /// HTTP 401.
    Http,
}

/// A receiver's guard: the authenticator, what to answer, and what to count.
#[derive(Clone)]
pub struct ServerAuth {
    auth: Arc<BearerTokenAuth>,
    protocol: Protocol,
    refused: Counter,
}

/// otelcol's `auth` block under a receiver's protocol (or an exporter).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Id of a `bearertokenauth` extension listed in `service.extensions`.
    pub authenticator: String,
}

impl AuthConfig {
    pub fn validate(&self, path: &str, errs: &mut Vec<FieldError>) {
        if self.authenticator.is_empty() {
            errs.push(FieldError::new(format!("{path}.authenticator"), "is required"));
        } else if let Err(e) = self.authenticator.parse::<ComponentId>() {
            errs.push(FieldError::new(format!("{path}.authenticator"), e.to_string()));
        }
    }

    /// The `bearertokenauth` extension this needs, for validation.
    pub fn extension_ref(&self, path: &str) -> ExtensionRef {
        ExtensionRef {
            path: format!("{path}.authenticator"),
            id: self.authenticator.clone(),
            type_name: "bearertokenauth",
        }
    }

    /// The extension this names, from those built before this component.
    pub fn find(&self, ctx: &BuildContext, path: &str) -> Result<Arc<BearerTokenAuth>, BoxError> {
        let id: ComponentId = self
            .authenticator
            .parse()
            .map_err(|e| format!("{path}.authenticator: {e}"))?;
        ctx.extensions
            .get::<BearerTokenAuth>(&id, "bearertokenauth extension")
            .map_err(|e| format!("{path}.authenticator: {e}").into())
    }
}

impl ServerAuth {
    /// Looks up the authenticator for a receiver's protocol, with its refusal counter.
    pub fn build(
        config: &Option<AuthConfig>,
        ctx: &BuildContext,
        path: &str,
        protocol: Protocol,
        transport: &str,
    ) -> Result<Option<ServerAuth>, BoxError> {
        let Some(config) = config else {
            return Ok(None);
        };
        let auth = config.find(ctx, path)?;
        Ok(Some(ServerAuth {
            auth,
            protocol,
            refused: unauthenticated_counter(ctx.telemetry, &ctx.name(), transport),
        }))
    }

    /// Wraps `router` so every request must carry the token before anything reads its body.
    pub fn guard(auth: Option<ServerAuth>, router: axum::Router) -> axum::Router {
        match auth {
            None => router,
            Some(auth) => router.layer(axum::middleware::from_fn_with_state(auth, require_token)),
        }
    }
}

fn unauthenticated_counter(telemetry: &Telemetry, receiver: &str, transport: &str) -> Counter {
    telemetry.metrics.counter(
        "hotspan_receiver_unauthenticated_requests",
        "Requests refused because they did not carry the authenticator's token.",
        &[("receiver", receiver), ("transport", transport)],
    )
}

async fn require_token(State(auth): State<ServerAuth>, request: Request, next: Next) -> Response {
    if auth.auth.check(request.headers()) {
        return next.run(request).await;
    }
    auth.refused.add(1);
    let missing = !request.headers().contains_key(&auth.auth.header);
    debug!(path = %request.uri().path(), missing, "refused a request without the right token");
    let message = if missing {
        "missing authentication token"
    } else {
        "invalid authentication token"
    };
    match auth.protocol {
        Protocol::Grpc => {
            let (parts, ()) = tonic::Status::unauthenticated(message)
                .into_http::<()>()
                .into_parts();
            Response::from_parts(parts, axum::body::Body::empty())
        }
        Protocol::Http => {
            let mut response = (StatusCode::UNAUTHORIZED, message).into_response();
            let challenge = if auth.auth.scheme.is_empty() {
                "Bearer"
            } else {
                auth.auth.scheme.as_str()
            };
            if let Ok(v) = HeaderValue::try_from(challenge) {
                response.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"Bearer abc", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer abc", b"Bearer abd"));
        assert!(!constant_time_eq(b"Bearer abc", b"Bearer ab"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn config_defaults_and_validation() {
        let c: BearerTokenAuthConfig = hotspan_config::parse_yaml("token: s3cret").expect("parses");
        assert_eq!(
            (c.scheme.as_str(), c.header.as_str()),
            ("Bearer", "authorization")
        );
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "Debug must not print the token"
        );
        let paths = |s: &str| -> Vec<String> {
            hotspan_config::yaml_errors::<BearerTokenAuthConfig>(s)
                .into_iter()
                .map(|e| e.path)
                .collect()
        };
        assert_eq!(paths("{}"), ["token"]);
        assert_eq!(paths("{token: a, filename: b}"), ["filename"]);
        assert_eq!(paths("{token: a, header: 'bad header'}"), ["header"]);
        assert_eq!(paths("{token: \"a\\nb\"}"), ["token"]);
        assert!(paths("{filename: /x, scheme: Token, header: x-api-key}").is_empty());
    }

    #[test]
    fn checks_headers_and_rereads_a_rotated_file() {
        let dir = std::env::temp_dir().join(format!("hotspan-bearer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("token");
        std::fs::write(&path, "first\n").expect("write");
        let auth = BearerTokenAuth::new(BearerTokenAuthConfig {
            filename: Some(path.display().to_string()),
            ..Default::default()
        })
        .expect("builds");
        let headers = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert("authorization", HeaderValue::try_from(v).expect("value"));
            h
        };
        assert!(auth.check(&headers("Bearer first")));
        assert!(!auth.check(&headers("Bearer firs")));
        assert!(!auth.check(&http::HeaderMap::new()));
        assert_eq!(auth.header().1, "Bearer first");
        // A different length makes the change visible whatever the clock's granularity.
        std::fs::write(&path, "second-token").expect("write");
        assert!(auth.check(&headers("Bearer second-token")));
        assert!(!auth.check(&headers("Bearer first")));
        // A broken file keeps the last good token.
        std::fs::write(&path, "  \n").expect("write");
        assert!(auth.check(&headers("Bearer second-token")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_file_is_a_build_error_naming_it() {
        let err = BearerTokenAuth::new(BearerTokenAuthConfig {
            filename: Some("/nonexistent/hotspan-token".into()),
            ..Default::default()
        })
        .err()
        .expect("fails");
        assert!(err.to_string().contains("/nonexistent/hotspan-token"), "{err}");
    }
}
