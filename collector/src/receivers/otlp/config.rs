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
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: "127.0.0.1:4317".into(),
            max_recv_msg_size_mib: 4,
            tls: None,
            auth: None,
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
            for (key, path) in [
                ("traces_url_path", &h.traces_url_path),
                ("profiles_url_path", &h.profiles_url_path),
                ("metrics_url_path", &h.metrics_url_path),
                ("logs_url_path", &h.logs_url_path),
            ] {
                if !path.starts_with('/') {
                    errs.push(FieldError {
                        path: format!("protocols.http.{key}"),
                        message: "must start with /".into(),
                    });
                }
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
