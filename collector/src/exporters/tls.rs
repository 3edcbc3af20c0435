use hotspan_config::FieldError;
use serde::Deserialize;

/// otelcol's client `tls` block. Only plaintext is implemented so far; asking for TLS is a
/// config error rather than a silent plaintext connection.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsClientConfig {
    /// Plaintext (h2c / http) when the endpoint has no `https://`.
    pub insecure: bool,
    pub insecure_skip_verify: bool,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
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

    pub fn validate(&self, endpoint: &str, path: &str, errs: &mut Vec<FieldError>) {
        if self.wants_tls(endpoint) {
            errs.push(FieldError {
                path: path.into(),
                message: "TLS exporters are not supported yet: use an http:// endpoint or tls.insecure: true"
                    .into(),
            });
        }
    }
}
