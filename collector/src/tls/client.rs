//! otelcol's client `tls` block for exporters, and the connector both OTLP exporters dial
//! with: TCP (TCP_NODELAY on), then TLS with rustls when the endpoint asks for it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hotspan_config::FieldError;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{check_min_version, protocol_versions, provider, read_certs, read_key, read_roots};
use crate::component::BoxError;

/// otelcol's client `tls` block. TLS is on for `https://` endpoints, and for endpoints with no
/// scheme unless `insecure`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsClientConfig {
    /// Plaintext (h2c / http) when the endpoint has no `https://`.
    pub insecure: bool,
    /// Accept any server certificate. For tests and debugging only.
    pub insecure_skip_verify: bool,
    /// PEM CA certificates to trust instead of the system's.
    pub ca_file: Option<String>,
    /// PEM client certificate (mTLS), with `key_file`.
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// Name to expect in the server's certificate (and send as SNI) instead of the endpoint's host.
    pub server_name_override: Option<String>,
    /// Oldest TLS version used: "1.2" (default) or "1.3".
    pub min_version: Option<String>,
}

impl TlsClientConfig {
    /// Whether the connection would use TLS, given the endpoint's scheme.
    pub fn wants_tls(&self, endpoint: &str) -> bool {
        if endpoint.starts_with("https://") {
            return true;
        }
        if endpoint.starts_with("http://") {
            return false;
        }
        !self.insecure
    }

    pub fn validate(&self, _endpoint: &str, path: &str, errs: &mut Vec<FieldError>) {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => errs.push(FieldError::new(
                format!("{path}.key_file"),
                "is required with cert_file",
            )),
            (None, Some(_)) => errs.push(FieldError::new(
                format!("{path}.cert_file"),
                "is required with key_file",
            )),
            _ => {}
        }
        for (key, value) in [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ] {
            if value.as_deref() == Some("") {
                errs.push(FieldError::new(
                    format!("{path}.{key}"),
                    "is empty: remove it or name a PEM file",
                ));
            }
        }
        if let Some(name) = &self.server_name_override {
            if ServerName::try_from(name.as_str()).is_err() {
                errs.push(FieldError::new(
                    format!("{path}.server_name_override"),
                    format!("\"{name}\" is not a DNS name or IP address"),
                ));
            }
        }
        check_min_version(&self.min_version, &format!("{path}.min_version"), errs);
    }

    /// The rustls config for this block, reading its files: `ca_file` or the system's roots,
    /// the client certificate if any, and `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<ClientConfig, BoxError> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(protocol_versions(&self.min_version))
            .map_err(|e| format!("tls: {e}"))?;
        let builder = if self.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider)))
        } else {
            let roots = match &self.ca_file {
                Some(path) => read_roots(path).map_err(|e| format!("tls.ca_file: {e}"))?,
                None => system_roots()?,
            };
            builder.with_root_certificates(roots)
        };
        let mut config = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let certs = read_certs(cert).map_err(|e| format!("tls.cert_file: {e}"))?;
                let key = read_key(key).map_err(|e| format!("tls.key_file: {e}"))?;
                builder.with_client_auth_cert(certs, key).map_err(|e| {
                    format!("tls: {cert} and its key_file do not make a usable client certificate: {e}")
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// The connector for an endpoint: TLS per this block when the endpoint wants it.
    pub fn connector(
        &self,
        endpoint: &str,
        alpn: &[&[u8]],
        connect_timeout: Duration,
    ) -> Result<Connector, BoxError> {
        let tls = if self.wants_tls(endpoint) {
            let server_name = match &self.server_name_override {
                Some(name) => Some(ServerName::try_from(name.clone()).map_err(|_| {
                    format!("tls.server_name_override: \"{name}\" is not a DNS name or IP address")
                })?),
                None => None,
            };
            Some(TlsDial {
                connector: TlsConnector::from(Arc::new(self.client_config(alpn)?)),
                server_name,
            })
        } else {
            None
        };
        Ok(Connector {
            tls: tls.map(Arc::new),
            connect_timeout,
        })
    }
}

/// The system's trust store, as otelcol uses when no `ca_file` is given.
fn system_roots() -> Result<RootCertStore, BoxError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "none found".into());
        return Err(format!("tls: no system CA certificates ({why}); set tls.ca_file").into());
    }
    Ok(roots)
}

/// `insecure_skip_verify`: any certificate is accepted, but the handshake's signatures are
/// still checked so the session is at least with the holder of the presented key.
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

struct TlsDial {
    connector: TlsConnector,
    /// `server_name_override`; else the URI's host.
    server_name: Option<ServerName<'static>>,
}

/// Dials `host:port` of a URI: TCP with TCP_NODELAY, then TLS if configured (whatever the
/// URI's scheme, so the gRPC exporter can keep tonic's own TLS switch out of the way).
#[derive(Clone)]
pub struct Connector {
    tls: Option<Arc<TlsDial>>,
    connect_timeout: Duration,
}

impl Connector {
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    async fn connect(self, uri: http::Uri) -> Result<Conn, BoxError> {
        let host = uri.host().ok_or_else(|| format!("{uri} has no host"))?;
        // IPv6 literals come bracketed in URIs.
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let https = uri.scheme_str() == Some("https");
        let port = uri
            .port_u16()
            .unwrap_or(if https || self.tls.is_some() { 443 } else { 80 });
        let dial = async {
            let tcp = connect_tcp(&host, port).await?;
            let _ = tcp.set_nodelay(true);
            let Some(tls) = &self.tls else {
                return Ok::<_, BoxError>(Conn::Plain(TokioIo::new(tcp)));
            };
            let name = match &tls.server_name {
                Some(name) => name.clone(),
                None => ServerName::try_from(host.clone())
                    .map_err(|_| format!("\"{host}\" is not a DNS name or IP address"))?,
            };
            let stream = tls
                .connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake with {host}:{port}: {e}"))?;
            Ok(Conn::Tls(Box::new(TokioIo::new(stream))))
        };
        tokio::time::timeout(self.connect_timeout, dial)
            .await
            .map_err(|_| {
                format!(
                    "connecting to {host}:{port}: no answer within {:?}",
                    self.connect_timeout
                )
            })?
    }
}

/// Tries each address the name resolves to, in order.
async fn connect_tcp(host: &str, port: u16) -> Result<TcpStream, BoxError> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("resolving {host}: {e}"))?
    {
        match TcpStream::connect(addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = Some(format!("connecting to {addr}: {e}")),
        }
    }
    Err(last
        .unwrap_or_else(|| format!("{host} resolves to no address"))
        .into())
}

impl tonic::codegen::Service<http::Uri> for Connector {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// A dialled connection, plain or TLS.
pub enum Conn {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        match self {
            Conn::Plain(_) => Connected::new(),
            Conn::Tls(s) => {
                let h2 = s.inner().get_ref().1.alpn_protocol() == Some(b"h2");
                if h2 {
                    Connected::new().negotiated_h2()
                } else {
                    Connected::new()
                }
            }
        }
    }
}

impl Read for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Write for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_each_problem() {
        let c = TlsClientConfig {
            cert_file: Some("c.pem".into()),
            server_name_override: Some("not a name".into()),
            min_version: Some("1.0".into()),
            ..Default::default()
        };
        let mut errs = Vec::new();
        c.validate("https://x", "tls", &mut errs);
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["tls.key_file", "tls.server_name_override", "tls.min_version"]
        );
    }

    #[test]
    fn missing_ca_file_is_an_error_naming_it() {
        let c = TlsClientConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let err = c.client_config(&[b"h2"]).expect_err("fails");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn scheme_and_insecure_decide_tls() {
        let plain = TlsClientConfig {
            insecure: true,
            ..Default::default()
        };
        assert!(!plain.wants_tls("host:4317"));
        assert!(plain.wants_tls("https://host:4317"));
        assert!(TlsClientConfig::default().wants_tls("host:4317"));
        assert!(!TlsClientConfig::default().wants_tls("http://host:4317"));
    }
}
