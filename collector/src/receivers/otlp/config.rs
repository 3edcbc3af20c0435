use std::collections::BTreeMap;
use std::time::Duration;

use hotspan_config::{ComponentConfig, ExtensionRef, FieldError};
use serde::Deserialize;

use crate::extensions::bearertokenauth::AuthConfig;
use crate::receivers::body::check_limit;
use crate::tls::TlsServerConfig;

/// otelcol's `otlp` receiver: a gRPC and an HTTP listener, each present to be enabled.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpReceiverConfig {
    pub protocols: Protocols,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Protocols {
    #[serde(deserialize_with = "hotspan_config::present::or_default")]
    pub grpc: Option<GrpcConfig>,
    #[serde(deserialize_with = "hotspan_config::present::or_default")]
    pub http: Option<HttpConfig>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// host:port to listen on.
    pub endpoint: String,
    /// Largest request accepted, after decompression.
    pub max_recv_msg_size_mib: usize,
    /// Serve TLS (mTLS with `client_ca_file`).
    pub tls: Option<TlsServerConfig>,
    /// `authenticator`: callers must carry this `bearertokenauth` extension's token.
    pub auth: Option<AuthConfig>,
    /// otelcol's client metadata for downstream components; no hotspan component reads it.
    pub include_metadata: bool,
    /// Streams one connection may carry at once; 0: no limit of hotspan's own.
    pub max_concurrent_streams: u32,
    pub keepalive: GrpcKeepalive,
}

/// otelcol's (grpc-go's) server keepalive.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcKeepalive {
    pub server_parameters: ServerParameters,
    pub enforcement_policy: EnforcementPolicy,
}

/// Durations of 0 leave the setting off.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerParameters {
    /// A connection with no call in flight for this long is closed (GOAWAY first).
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub max_connection_idle: Duration,
    /// A connection is asked to close (GOAWAY) this long after it opened, so clients
    /// reconnect and spread over a gateway's replicas.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub max_connection_age: Duration,
    /// Past its age, how long a connection's calls get to finish before it is closed.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub max_connection_age_grace: Duration,
    /// An idle connection is pinged this often...
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub time: Duration,
    /// ...and closed when a ping is not answered within this.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub timeout: Duration,
}

/// grpc-go's limits on clients' pings: accepted for otelcol configs, not enforced (every ping
/// is answered).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EnforcementPolicy {
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub min_time: Duration,
    pub permit_without_stream: bool,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: "127.0.0.1:4317".into(),
            max_recv_msg_size_mib: 4,
            tls: None,
            auth: None,
            include_metadata: false,
            max_concurrent_streams: 0,
            keepalive: GrpcKeepalive::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// host:port to listen on.
    pub endpoint: String,
    /// Largest request body accepted, in bytes, compressed and again after decompression.
    pub max_request_body_size: usize,
    pub traces_url_path: String,
    pub profiles_url_path: String,
    pub metrics_url_path: String,
    pub logs_url_path: String,
    /// Serve TLS (mTLS with `client_ca_file`).
    pub tls: Option<TlsServerConfig>,
    /// `authenticator`: callers must carry this `bearertokenauth` extension's token.
    pub auth: Option<AuthConfig>,
    /// Browsers on these origins may send (the OpenTelemetry JS web SDK).
    pub cors: Option<CorsConfig>,
    /// The `Content-Encoding`s taken ("" for none); others are refused with 400.
    pub compression_algorithms: Vec<String>,
    /// Added to every response.
    pub response_headers: BTreeMap<String, String>,
    /// otelcol's client metadata for downstream components; no hotspan component reads it.
    pub include_metadata: bool,
    /// Go's `http.Server` timeouts, with otelcol's defaults; 0 leaves one off.
    /// The whole request, body included, must have arrived within this (408 if not).
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub read_timeout: Duration,
    /// An HTTP/1 request's header must have arrived within this; 0: `read_timeout`.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub read_header_timeout: Duration,
    /// The answer must be written within this: it caps how long the pipeline gets (503 past it).
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub write_timeout: Duration,
    /// A connection with no request in flight this long is closed; 0: `read_timeout`.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub idle_timeout: Duration,
}

/// Every `Content-Encoding` the HTTP receiver reads, "" being none: otelcol's default list.
pub const HTTP_ENCODINGS: [&str; 8] = [
    "",
    "gzip",
    "zstd",
    "zlib",
    "snappy",
    "deflate",
    "lz4",
    "x-snappy-framed",
];

/// otelcol's `cors`, with its meaning: nothing is allowed until `allowed_origins` names an
/// origin (`*` stands for any run of characters, once in each).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    pub allowed_origins: Vec<String>,
    /// Beyond Accept, Accept-Language, Content-Type and Content-Language (and
    /// X-Requested-With when none is listed); `*` allows any.
    pub allowed_headers: Vec<String>,
    pub exposed_headers: Vec<String>,
    /// Seconds a browser may keep a preflight's answer; 0: it does not say.
    pub max_age: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: "127.0.0.1:4318".into(),
            max_request_body_size: 20 * 1024 * 1024,
            traces_url_path: "/v1/traces".into(),
            profiles_url_path: "/v1development/profiles".into(),
            metrics_url_path: "/v1/metrics".into(),
            logs_url_path: "/v1/logs".into(),
            tls: None,
            auth: None,
            cors: None,
            compression_algorithms: HTTP_ENCODINGS.iter().map(|e| e.to_string()).collect(),
            response_headers: BTreeMap::new(),
            include_metadata: false,
            read_timeout: Duration::ZERO,
            read_header_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl GrpcConfig {
    pub fn connections(&self) -> crate::net::GrpcConnections {
        let set = |d: Duration| (!d.is_zero()).then_some(d);
        let p = &self.keepalive.server_parameters;
        crate::net::GrpcConnections {
            max_concurrent_streams: (self.max_concurrent_streams > 0).then_some(self.max_concurrent_streams),
            ping_every: set(p.time),
            ping_timeout: set(p.timeout),
            max_idle: set(p.max_connection_idle),
            max_age: set(p.max_connection_age),
            max_age_grace: set(p.max_connection_age_grace),
        }
    }
}

impl HttpConfig {
    /// Go's rule: a zero header or idle timeout falls back on `read_timeout`.
    pub fn connections(&self) -> crate::net::HttpConnections {
        let or_read = |d: Duration| {
            let d = if d.is_zero() { self.read_timeout } else { d };
            (!d.is_zero()).then_some(d)
        };
        crate::net::HttpConnections {
            header_read: or_read(self.read_header_timeout),
            idle: or_read(self.idle_timeout),
        }
    }

    /// A signal's path, with the leading `/` otelcol adds when it is left out.
    pub fn url_path(&self, signal: hotspan_config::Signal) -> String {
        use hotspan_config::Signal;
        let path = match signal {
            Signal::Traces => &self.traces_url_path,
            Signal::Profiles => &self.profiles_url_path,
            Signal::Metrics => &self.metrics_url_path,
            Signal::Logs => &self.logs_url_path,
        };
        match path.starts_with('/') {
            true => path.clone(),
            false => format!("/{path}"),
        }
    }
}

impl CorsConfig {
    fn validate(&self, path: &str, errs: &mut Vec<FieldError>) {
        for origin in &self.allowed_origins {
            if origin.matches('*').count() > 1 {
                errs.push(FieldError {
                    path: format!("{path}.allowed_origins"),
                    message: format!("{origin:?} has more than one *"),
                });
            }
        }
        let named = self.allowed_headers.iter().chain(&self.exposed_headers);
        for name in named.filter(|h| *h != "*") {
            if axum::http::HeaderName::try_from(name.as_str()).is_err() {
                errs.push(FieldError {
                    path: path.into(),
                    message: format!("{name:?} is not a header name"),
                });
            }
        }
    }
}

/// A listen address must name a port; the host may be a name.
pub(crate) fn check_endpoint(endpoint: &str, path: &str, errs: &mut Vec<FieldError>) {
    let port_ok = endpoint
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        errs.push(FieldError {
            path: path.into(),
            message: format!("\"{endpoint}\" is not host:port"),
        });
    }
}

impl ComponentConfig for OtlpReceiverConfig {
    fn extensions(&self) -> Vec<ExtensionRef> {
        let p = &self.protocols;
        let grpc = p.grpc.as_ref().and_then(|g| g.auth.as_ref());
        let http = p.http.as_ref().and_then(|h| h.auth.as_ref());
        let grpc = grpc.map(|a| a.extension_ref("protocols.grpc.auth"));
        grpc.into_iter()
            .chain(http.map(|a| a.extension_ref("protocols.http.auth")))
            .collect()
    }

    fn validate(&self, errs: &mut Vec<FieldError>) {
        let p = &self.protocols;
        if p.grpc.is_none() && p.http.is_none() {
            errs.push(FieldError {
                path: "protocols".into(),
                message: "enable at least one of grpc, http".into(),
            });
        }
        if let Some(g) = &p.grpc {
            check_endpoint(&g.endpoint, "protocols.grpc.endpoint", errs);
            check_limit(
                g.max_recv_msg_size_mib,
                1024 * 1024,
                "protocols.grpc.max_recv_msg_size_mib",
                errs,
            );
            if let Some(tls) = &g.tls {
                tls.validate("protocols.grpc.tls", errs);
            }
            if let Some(auth) = &g.auth {
                auth.validate("protocols.grpc.auth", errs);
            }
        }
        if let Some(h) = &p.http {
            check_endpoint(&h.endpoint, "protocols.http.endpoint", errs);
            check_limit(
                h.max_request_body_size,
                1,
                "protocols.http.max_request_body_size",
                errs,
            );
            for encoding in &h.compression_algorithms {
                if !HTTP_ENCODINGS.contains(&encoding.as_str()) {
                    errs.push(FieldError {
                        path: "protocols.http.compression_algorithms".into(),
                        message: format!("{encoding:?} is not one of {HTTP_ENCODINGS:?}"),
                    });
                }
            }
            for (name, value) in &h.response_headers {
                let ok = axum::http::HeaderName::try_from(name.as_str()).is_ok()
                    && axum::http::HeaderValue::try_from(value.as_str()).is_ok();
                if !ok {
                    errs.push(FieldError {
                        path: format!("protocols.http.response_headers.{name}"),
                        message: "is not a valid HTTP header".into(),
                    });
                }
            }
            if let Some(cors) = &h.cors {
                cors.validate("protocols.http.cors", errs);
            }
            if let Some(tls) = &h.tls {
                tls.validate("protocols.http.tls", errs);
            }
            if let Some(auth) = &h.auth {
                auth.validate("protocols.http.auth", errs);
            }
        }
    }
}
