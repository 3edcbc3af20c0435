//! TLS with rustls and the ring provider: otelcol's server `tls` block (receivers), its client
//! `tls` block (exporters, scrapers) and the PEM loading both use. Files are read when a
//! component is built; every error names the file.

mod client;
mod server;

pub use client::{Conn, Connector, TlsClientConfig};
pub use server::{load_server, TlsServerConfig, ALPN_GRPC, ALPN_HTTP};

use std::sync::Arc;

use hotspan_config::FieldError;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{RootCertStore, SupportedProtocolVersion};
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
