//! TLS with rustls and the ring provider: otelcol's server-side `tls` block, shared by every
//! receiver, and the PEM loading that exporters' client side uses too. Files are read when a
//! component is built; every error names the file.

use std::sync::Arc;

use hotspan_config::FieldError;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use serde::Deserialize;
use thiserror::Error;

/// A TLS setting that could not be turned into a working config.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {what}")]
    Pem { path: String, what: String },
    #[error("{0}")]
    Config(String),
}

/// The one crypto provider hotspan uses, passed explicitly so nothing depends on a
/// process-wide default being installed.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// otelcol's `min_version`: "1.2" (the default) or "1.3". rustls has nothing older.
pub(crate) fn check_min_version(version: &Option<String>, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(v) = version {
        if !matches!(v.as_str(), "1.2" | "1.3") {
            errs.push(FieldError::new(
                path,
                format!("\"{v}\" is not a TLS version hotspan supports: use \"1.2\" or \"1.3\""),
            ));
        }
    }
}

pub(crate) fn protocol_versions(
    min_version: &Option<String>,
) -> &'static [&'static SupportedProtocolVersion] {
    static TLS13_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    match min_version.as_deref() {
        Some("1.3") => &TLS13_ONLY,
        _ => rustls::ALL_VERSIONS,
    }
}

fn read(path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_string(),
        source,
    })
}

/// Every certificate in a PEM file; at least one.
pub(crate) fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_string(),
            what: format!("not valid PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_string(),
            what: "holds no PEM certificate".into(),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub(crate) fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        path: path.to_string(),
        what: match e {
            rustls::pki_types::pem::Error::NoItemsFound => "holds no PEM private key".into(),
            other => format!("not a valid PEM private key: {other}"),
        },
    })
}

/// A root store from a PEM file of CA certificates.
pub(crate) fn read_roots(path: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            path: path.to_string(),
            what: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

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
