//! The `pprof` receiver: pprof pushed over HTTP, as a Pyroscope client sends it to `/ingest`
//! (raw or multipart body) or raw to `/v1/pprof`, converted into OTLP profiles.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::body::{check_limit, read_limited, BodyError};
use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use hotspan_config::{ComponentConfig, ExtensionRef, FieldError, Signal};
use hotspan_proto::otlp::common::v1::KeyValue;
use serde::Deserialize;
use tracing::info;

use super::pprof_common::{attributes, convert, string_attribute, CorrelationLabels};
use crate::component::{BoxError, BuildContext, ComponentType, Lifecycle, ReceiverType};
use crate::consumer::{ConsumeError, SignalConsumers};
use crate::extensions::bearertokenauth::{AuthConfig, Protocol, ServerAuth};
use crate::net::{bind, serve_http_tls, HttpConnections, ServerHandle};
use crate::receivers::ingest::{Ingest, IngestError};
use crate::receivers::otlp::check_endpoint;
use crate::telemetry::Telemetry;
use crate::tls::{load_server, TlsServerConfig, ALPN_HTTP};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PprofConfig {
    /// host:port; Pyroscope's own port by default so clients need only the host changed.
    pub endpoint: String,
    /// Largest body accepted, compressed and again decompressed.
    pub max_request_body_size: usize,
    /// Keep the received bytes in the first Profile's `original_payload`.
    pub include_original_payload: bool,
    /// Added to every profile's resource.
    pub resource_attributes: BTreeMap<String, String>,
    pub correlation: CorrelationLabels,
    /// Serve TLS (mTLS with `client_ca_file`).
    pub tls: Option<TlsServerConfig>,
    /// `authenticator`: pushers must carry this `bearertokenauth` extension's token.
    pub auth: Option<AuthConfig>,
}

impl Default for PprofConfig {
    fn default() -> Self {
        PprofConfig {
            endpoint: "127.0.0.1:4040".into(),
            max_request_body_size: 32 * 1024 * 1024,
            include_original_payload: false,
            resource_attributes: BTreeMap::new(),
            correlation: CorrelationLabels::default(),
            tls: None,
            auth: None,
        }
    }
}

impl ComponentConfig for PprofConfig {
    fn extensions(&self) -> Vec<ExtensionRef> {
        self.auth.iter().map(|a| a.extension_ref("auth")).collect()
    }

    fn validate(&self, errs: &mut Vec<FieldError>) {
        check_endpoint(&self.endpoint, "endpoint", errs);
        check_limit(self.max_request_body_size, 1, "max_request_body_size", errs);
        if let Some(tls) = &self.tls {
            tls.validate("tls", errs);
        }
        if let Some(auth) = &self.auth {
            auth.validate("auth", errs);
        }
    }
}

impl ComponentType for PprofReceiver {
    const TYPE_NAME: &'static str = "pprof";
    type Config = PprofConfig;
}

impl ReceiverType for PprofReceiver {
    const SIGNALS: &'static [Signal] = &[Signal::Profiles];

    fn build(
        ctx: &BuildContext,
        config: PprofConfig,
        next: SignalConsumers,
    ) -> Result<Arc<dyn Lifecycle>, BoxError> {
        Ok(Arc::new(PprofReceiver {
            name: ctx.name(),
            tls: load_server(&config.tls, ALPN_HTTP, "tls")?,
            auth: ServerAuth::build(&config.auth, ctx, "auth", Protocol::Http, "http")?,
            config,
            next,
            telemetry: ctx.telemetry.clone(),
            server: Mutex::new(None),
        }))
    }
}

pub struct PprofReceiver {
    name: String,
    config: PprofConfig,
    /// Loaded when built, so a bad certificate fails the build, not the start.
    tls: Option<Arc<rustls::ServerConfig>>,
    auth: Option<ServerAuth>,
    next: SignalConsumers,
    telemetry: Arc<Telemetry>,
    server: Mutex<Option<ServerHandle>>,
}

#[derive(Clone)]
struct Shared {
    ingest: Arc<Ingest>,
    config: Arc<PprofConfig>,
}

#[async_trait]
impl Lifecycle for PprofReceiver {
    async fn start(&self) -> Result<(), BoxError> {
        let shared = Shared {
            ingest: Arc::new(Ingest::new(
                &self.name,
                "http",
                self.next.clone(),
                &self.telemetry,
            )),
            config: Arc::new(self.config.clone()),
        };
        let router = axum::Router::new()
            .route("/ingest", post(pyroscope_ingest))
            .route("/v1/pprof", post(raw_pprof))
            .layer(axum::extract::DefaultBodyLimit::max(
                self.config.max_request_body_size,
            ))
            .with_state(shared);
        let router = ServerAuth::guard(self.auth.clone(), router);
        let server = serve_http_tls(
            bind(&self.config.endpoint).await?,
            router,
            self.tls.clone(),
            &HttpConnections::default(),
            tracing::Span::current(),
        )?;
        info!(receiver = %self.name, address = %server.addr, tls = self.tls.is_some(), "pprof push listening on /ingest and /v1/pprof");
        *self.server.lock().unwrap_or_else(|p| p.into_inner()) = Some(server);
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) {
        let server = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(server) = server {
            server.stop(deadline).await;
        }
    }
}

fn refuse(shared: &Shared, status: StatusCode, message: String) -> Response {
    shared.ingest.bad_request(Signal::Profiles, &message);
    (status, message).into_response()
}

/// `name=app.cpu{k=v,...}`: the application name and its tags.
pub(crate) fn parse_name(name: &str) -> Result<(String, Vec<(String, String)>), String> {
    let (app, tags) = match name.find('{') {
        None => (name, ""),
        Some(i) => {
            let inner = name[i + 1..]
                .strip_suffix('}')
                .ok_or_else(|| format!("name {name:?}: unclosed {{"))?;
            (&name[..i], inner)
        }
    };
    let app = app.trim();
    if app.is_empty() {
        return Err("name has no application name".into());
    }
    let mut out = Vec::new();
    for pair in tags.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("tag {pair:?} is not key=value"))?;
        out.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok((app.to_string(), out))
}

/// Pyroscope names carry the profile type as a suffix (`shop.cpu`); the service is the rest.
pub(crate) fn service_of(app: &str) -> &str {
    const TYPES: [&str; 12] = [
        ".cpu",
        ".itimer",
        ".wall",
        ".alloc_objects",
        ".alloc_space",
        ".inuse_objects",
        ".inuse_space",
        ".goroutines",
        ".mutex_count",
        ".mutex_duration",
        ".block_count",
        ".block_duration",
    ];
    TYPES.iter().find_map(|t| app.strip_suffix(t)).unwrap_or(app)
}

/// Unix time in s, ms, us or ns, told apart by digit count as Pyroscope does.
pub(crate) fn parse_time(value: &str) -> Option<u64> {
    let n: u64 = value.trim().parse().ok()?;
    let digits = value.trim().len();
    Some(match digits {
        0..=10 => n.checked_mul(1_000_000_000)?,
        11..=13 => n.checked_mul(1_000_000)?,
        14..=16 => n.checked_mul(1_000)?,
        _ => n,
    })
}

async fn pyroscope_ingest(
    State(shared): State<Shared>,
    Query(params): Query<BTreeMap<String, String>>,
    request: Request,
) -> Response {
    let format = params.get("format").map(String::as_str).unwrap_or("pprof");
    if format != "pprof" {
        return refuse(
            &shared,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("format {format:?} is not supported; send format=pprof"),
        );
    }
    let Some(name) = params.get("name") else {
        return refuse(
            &shared,
            StatusCode::BAD_REQUEST,
            "the name parameter is required".into(),
        );
    };
    let (app, tags) = match parse_name(name) {
        Ok(parsed) => parsed,
        Err(e) => return refuse(&shared, StatusCode::BAD_REQUEST, e),
    };
    let mut resource = attributes(&shared.config.resource_attributes);
    resource.push(string_attribute("service.name", service_of(&app)));
    for (k, v) in &tags {
        resource.push(string_attribute(k, v));
    }
    if let Some(spy) = params.get("spyName") {
        resource.push(string_attribute("pyroscope.spy.name", spy));
    }
    let window = (
        params.get("from").and_then(|f| parse_time(f)),
        params.get("until").and_then(|u| parse_time(u)),
    );
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("multipart/"));
    let body = if multipart {
        match profile_part(request).await {
            Ok(b) => b,
            Err(e) => return refuse(&shared, StatusCode::BAD_REQUEST, e),
        }
    } else {
        match read_body(request.into_body(), shared.config.max_request_body_size).await {
            Ok(b) => b,
            Err((status, e)) => return refuse(&shared, status, e),
        }
    };
    accept(&shared, body, resource, window).await
}

async fn raw_pprof(
    State(shared): State<Shared>,
    Query(params): Query<BTreeMap<String, String>>,
    body: Body,
) -> Response {
    let body = match read_body(body, shared.config.max_request_body_size).await {
        Ok(b) => b,
        Err((status, e)) => return refuse(&shared, status, e),
    };
    let mut resource = attributes(&shared.config.resource_attributes);
    if let Some(service) = params.get("service.name").or_else(|| params.get("service_name")) {
        resource.push(string_attribute("service.name", service));
    }
    accept(&shared, body, resource, (None, None)).await
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, (StatusCode, String)> {
    read_limited(body, limit).await.map_err(|e| match e {
        BodyError::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body is larger than {limit} bytes"),
        ),
        BodyError::Read(e) => (StatusCode::BAD_REQUEST, format!("could not read body: {e}")),
    })
}

/// The `profile` part of a Pyroscope multipart upload.
async fn profile_part(request: Request) -> Result<Bytes, String> {
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| format!("multipart body: {e}"))?;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| format!("multipart body: {e}"))?
    {
        if field.name() == Some("profile") {
            return field
                .bytes()
                .await
                .map_err(|e| format!("multipart profile part: {e}"));
        }
    }
    Err("multipart body has no \"profile\" part".into())
}

async fn accept(
    shared: &Shared,
    body: Bytes,
    resource: Vec<KeyValue>,
    window: (Option<u64>, Option<u64>),
) -> Response {
    let batch = match convert(
        body,
        resource,
        &shared.config.correlation,
        shared.config.include_original_payload,
        None,
    )
    .await
    {
        Ok(b) => b,
        Err(e) => return refuse(shared, StatusCode::BAD_REQUEST, e),
    };
    let batch = match window {
        (Some(from), until) => batch.with_default_window(from, until.map(|u| u.saturating_sub(from))),
        _ => batch,
    };
    match shared.ingest.deliver(hotspan_proto::Batch::Profiles(batch)).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(IngestError::NoPipeline(_)) => {
            (StatusCode::NOT_FOUND, "no pipeline takes profiles here").into_response()
        }
        Err(IngestError::BadData(e)) | Err(IngestError::Refused(ConsumeError::Permanent(e))) => {
            (StatusCode::BAD_REQUEST, e).into_response()
        }
        Err(IngestError::Refused(ConsumeError::Retryable { reason, .. })) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            reason,
        )
            .into_response(),
    }
}
