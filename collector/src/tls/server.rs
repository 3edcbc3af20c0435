//! otelcol's server `tls` block, shared by every receiver.

use std::sync::Arc;

use hotspan_config::FieldError;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use serde::Deserialize;

use super::{check_min_version, protocol_versions, provider, read_certs, read_key, read_roots, TlsError};

/// otelcol's server `tls` block. Present means TLS on; `client_ca_file` adds mTLS.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsServerConfig {
    /// PEM certificate chain the server presents, leaf first.
    pub cert_file: String,
    /// PEM private key of the leaf certificate.
    pub key_file: String,
    /// PEM CA certificates: when set, clients must present a certificate they signed.
    pub client_ca_file: Option<String>,
    /// Oldest TLS version accepted: "1.2" (default) or "1.3".
    pub min_version: Option<String>,
}

impl TlsServerConfig {
    pub fn validate(&self, path: &str, errs: &mut Vec<FieldError>) {
        for (key, value) in [("cert_file", &self.cert_file), ("key_file", &self.key_file)] {
            if value.is_empty() {
                errs.push(FieldError::new(
                    format!("{path}.{key}"),
                    "is required to serve TLS",
                ));
            }
        }
        if self.client_ca_file.as_deref() == Some("") {
            errs.push(FieldError::new(
                format!("{path}.client_ca_file"),
                "is empty: remove it or name a PEM file",
            ));
        }
        check_min_version(&self.min_version, &format!("{path}.min_version"), errs);
    }

    /// Reads the files and builds the server config, offering `alpn` (e.g. `h2` for gRPC).
    pub fn load(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(protocol_versions(&self.min_version))
            .map_err(|e| TlsError::Config(format!("TLS versions: {e}")))?;
        let builder = match &self.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(read_roots(path)?), provider)
                        .build()
                        .map_err(|e| TlsError::Pem {
                            path: path.clone(),
                            what: format!("cannot verify clients with it: {e}"),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let certs = read_certs(&self.cert_file)?;
        let key = read_key(&self.key_file)?;
        let mut config = builder.with_single_cert(certs, key).map_err(|e| {
            TlsError::Config(format!(
                "{} and {} do not make a usable certificate and key: {e}",
                self.cert_file, self.key_file
            ))
        })?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// ALPN for a gRPC listener: HTTP/2 only.
pub const ALPN_GRPC: &[&[u8]] = &[b"h2"];
/// ALPN for an HTTP listener: HTTP/2 or HTTP/1.1.
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Loads an optional server `tls` block for a receiver being built.
pub fn load_server(
    tls: &Option<TlsServerConfig>,
    alpn: &[&[u8]],
    path: &str,
) -> Result<Option<Arc<ServerConfig>>, String> {
    tls.as_ref()
        .map(|t| t.load(alpn))
        .transpose()
        .map_err(|e| format!("{path}: {e}"))
}
