//! The `otlp_http` exporter (alias `otlphttp`): OTLP/HTTP POSTs to `endpoint` + signal path.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hotspan_config::{bounds, ComponentConfig, ExtensionRef, FieldError, Signal};
use hotspan_proto::{Batch, Encoding};
use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, LOCATION, RETRY_AFTER,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use serde::Deserialize;

use crate::component::{BoxError, BuildContext, BuiltExporter, ComponentType, Exporter, ExporterType};
use crate::exporters::otlp_grpc::{log_partial_success, Compression, CompressionParams};
use crate::exporters::{
    check_headers, ExportError, QueueConfig, RetryConfig, TlsClientConfig, EXPORT_TIMEOUTS,
};
use crate::extensions::bearertokenauth::{AuthConfig, BearerTokenAuth};
use crate::grpc::http_path;
use crate::net::error_chain;
use crate::tls::Connector;

/// The most of a response body read: enough for a partial success or an error message.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BodyEncoding {
    #[default]
    Proto,
    Json,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpHttpConfig {
    /// Base URL; the signal's path (`/v1/traces`) is appended.
    pub endpoint: String,
    /// Full URL for each signal, used as is instead of `endpoint`'s.
    pub traces_endpoint: Option<String>,
    pub metrics_endpoint: Option<String>,
    pub logs_endpoint: Option<String>,
    pub profiles_endpoint: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub compression: Compression,
    pub compression_params: CompressionParams,
    pub encoding: BodyEncoding,
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub timeout: Duration,
    pub tls: TlsClientConfig,
    /// `authenticator`: a `bearertokenauth` extension whose token goes with every request.
    pub auth: Option<AuthConfig>,
    pub sending_queue: QueueConfig,
    pub retry_on_failure: RetryConfig,
}

impl Default for OtlpHttpConfig {
    fn default() -> Self {
        OtlpHttpConfig {
            endpoint: String::new(),
            traces_endpoint: None,
            metrics_endpoint: None,
            logs_endpoint: None,
            profiles_endpoint: None,
            headers: BTreeMap::new(),
            compression: Compression::Gzip,
            compression_params: CompressionParams::default(),
            encoding: BodyEncoding::Proto,
            timeout: Duration::from_secs(30),
            tls: TlsClientConfig::default(),
            auth: None,
            sending_queue: QueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
        }
    }
}

impl OtlpHttpConfig {
    /// The signal's own URL key and value.
    fn signal_endpoint(&self, signal: Signal) -> (&'static str, &Option<String>) {
        match signal {
            Signal::Traces => ("traces_endpoint", &self.traces_endpoint),
            Signal::Metrics => ("metrics_endpoint", &self.metrics_endpoint),
            Signal::Logs => ("logs_endpoint", &self.logs_endpoint),
            Signal::Profiles => ("profiles_endpoint", &self.profiles_endpoint),
        }
    }

    fn url(&self, signal: Signal) -> String {
        match self.signal_endpoint(signal) {
            (_, Some(url)) => url.clone(),
            _ => format!("{}{}", self.endpoint.trim_end_matches('/'), http_path(signal)),
        }
    }
}

impl ComponentConfig for OtlpHttpConfig {
    fn extensions(&self) -> Vec<ExtensionRef> {
        let auth = self.auth.as_ref().map(|a| a.extension_ref("auth"));
        auth.into_iter()
            .chain(self.sending_queue.extension_ref("sending_queue"))
            .collect()
    }

    /// As otelcol: a signal with neither `endpoint` nor its own URL has nowhere to go.
    fn cannot_take(&self, signal: Signal) -> Option<String> {
        let (key, url) = self.signal_endpoint(signal);
        (self.endpoint.is_empty() && url.is_none()).then(|| format!("it has neither `endpoint` nor `{key}`"))
    }

    fn validate(&self, errs: &mut Vec<FieldError>) {
        let mut urls = vec![("endpoint", self.endpoint.as_str())];
        for signal in Signal::ALL {
            if let (key, Some(url)) = self.signal_endpoint(signal) {
                urls.push((key, url));
            }
        }
        if let Err(e) = hotspan_proto::compression::level(self.compression, self.compression_params) {
            errs.push(FieldError {
                path: "compression_params.level".into(),
                message: e.to_string(),
            });
        }
        if self.endpoint.is_empty() && Signal::ALL.iter().all(|s| self.signal_endpoint(*s).1.is_none()) {
            errs.push(FieldError {
                path: "endpoint".into(),
                message: "is required".into(),
            });
        }
        let mut first_tls: Option<bool> = None;
        for (path, url) in urls.into_iter().filter(|(_, u)| !u.is_empty()) {
            if reqwest::Url::parse(url).is_err()
                || !(url.starts_with("http://") || url.starts_with("https://"))
            {
                errs.push(FieldError {
                    path: path.into(),
                    message: format!("\"{url}\" is not an http(s) URL"),
                });
                continue;
            }
            // One client serves every URL, so they share one TLS setting.
            let tls = url.starts_with("https://");
            if *first_tls.get_or_insert(tls) != tls {
                errs.push(FieldError {
                    path: path.into(),
                    message: "mixes http:// and https:// with the other URLs; use one scheme".into(),
                });
            }
        }
        // otelcol reads 0 as "no timeout"; here every export would time out at once.
        bounds::check_duration(self.timeout, EXPORT_TIMEOUTS, "timeout", errs);
        self.tls.validate(&self.endpoint, "tls", errs);
        if let Some(auth) = &self.auth {
            auth.validate("auth", errs);
        }
        errs.extend(check_headers(&self.headers, "headers"));
        self.sending_queue.validate("sending_queue", errs);
        self.retry_on_failure.validate("retry_on_failure", errs);
    }
}

impl ComponentType for OtlpHttpExporter {
    const TYPE_NAME: &'static str = "otlp_http";
    const ALIASES: &'static [&'static str] = &["otlphttp"];
    type Config = OtlpHttpConfig;
}

impl ExporterType for OtlpHttpExporter {
    const SIGNALS: &'static [Signal] = &Signal::ALL;

    fn build(ctx: &BuildContext, config: OtlpHttpConfig) -> Result<BuiltExporter, BoxError> {
        let mut headers = HeaderMap::new();
        for (k, v) in &config.headers {
            headers.insert(
                HeaderName::try_from(k.as_str())?,
                HeaderValue::try_from(v.as_str())?,
            );
        }
        let auth = config.auth.as_ref().map(|a| a.find(ctx, "auth")).transpose()?;
        // One TLS setting for every URL: the endpoint's scheme, or the signal URL's when only
        // those are given (validation checked each against the tls block).
        let scheme_of = Signal::ALL
            .iter()
            .filter_map(|s| config.signal_endpoint(*s).1.as_deref())
            .fold(config.endpoint.as_str(), |first, url| {
                if first.is_empty() {
                    url
                } else {
                    first
                }
            });
        let connector = config
            .tls
            .connector(scheme_of, crate::tls::ALPN_HTTP, config.timeout)?;
        let tls = connector.is_tls();
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        Ok(BuiltExporter {
            exporter: Arc::new(OtlpHttpExporter {
                client,
                tls,
                headers,
                auth,
                config: config.clone(),
            }),
            queue: config.sending_queue,
            retry: config.retry_on_failure,
        })
    }
}

pub struct OtlpHttpExporter {
    /// Pools connections (HTTP/1.1, or h2 when TLS negotiates it).
    client: Client<Connector, Full<Bytes>>,
    /// Whether the connector speaks TLS; URLs must then be https://.
    tls: bool,
    /// `headers` from the config, sent with every request.
    headers: HeaderMap,
    /// Adds its token (read fresh, for rotation) to every request.
    auth: Option<Arc<BearerTokenAuth>>,
    config: OtlpHttpConfig,
}

#[async_trait]
impl Exporter for OtlpHttpExporter {
    async fn export(&self, batch: &Batch) -> Result<(), ExportError> {
        let encoding = match self.config.encoding {
            BodyEncoding::Proto => Encoding::Protobuf,
            BodyEncoding::Json => Encoding::Json,
        };
        let mut body = batch.encode(encoding);
        let url = self.config.url(batch.signal());
        if url.starts_with("https://") != self.tls {
            return Err(ExportError::Permanent(format!(
                "{url}: its scheme does not match the exporter's TLS setting; give every URL the same scheme"
            )));
        }
        let mut content_encoding = None;
        if let Some(name) = self.config.compression.header() {
            let level =
                hotspan_proto::compression::level(self.config.compression, self.config.compression_params)
                    .map_err(|e| ExportError::Permanent(e.to_string()))?;
            body = crate::exporterhelper::compress(self.config.compression, level, body, false)
                .await
                .map_err(|e| ExportError::Permanent(e.to_string()))?;
            content_encoding = Some(name);
        }
        let body = Bytes::from(body);
        let request = |to: &str, credentials: bool| {
            let mut request = http::Request::post(to).header(CONTENT_TYPE, encoding.content_type());
            if let Some(headers) = request.headers_mut() {
                headers.extend(self.headers.clone());
                if let Some(auth) = &self.auth {
                    let (name, value) = auth.header();
                    headers.insert(name, value);
                }
                if !credentials {
                    headers.remove(http::header::AUTHORIZATION);
                }
            }
            if let Some(name) = content_encoding {
                request = request.header(CONTENT_ENCODING, name);
            }
            request
                .body(Full::new(body.clone()))
                .map_err(|e| ExportError::Permanent(format!("{to}: {e}")))
        };
        // The whole exchange, answer body and redirects included, within `timeout`. A 307 or
        // 308 is followed with the same body, as Go's client (otelcol's) follows it, at most
        // 10 times; credentials go only to the same host.
        let exchange = async {
            let mut to = url.clone();
            for _ in 0..=MAX_REDIRECTS {
                let credentials = same_origin(&to, &url);
                let response = self
                    .client
                    .request(request(&to, credentials)?)
                    .await
                    .map_err(|e| ExportError::retryable(format!("sending: {}", error_chain(&e))))?;
                let (parts, body) = response.into_parts();
                if matches!(parts.status.as_u16(), 307 | 308) {
                    let next = parts.headers.get(LOCATION).and_then(|l| l.to_str().ok());
                    if let Some(next) = next.and_then(|l| redirect_target(&to, l)) {
                        to = next;
                        if to.starts_with("https://") != self.tls {
                            return Err(ExportError::Permanent(format!(
                                "redirected to {to}, whose scheme does not match the exporter's TLS setting"
                            )));
                        }
                        continue;
                    }
                }
                // A body too long or cut short only loses detail from the log, not the status.
                let bytes = Limited::new(body, MAX_RESPONSE_BODY)
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                return Ok::<_, ExportError>((parts, bytes));
            }
            Err(ExportError::Permanent(format!(
                "{url}: stopped after {MAX_REDIRECTS} redirects"
            )))
        };
        let (response, bytes) = tokio::time::timeout(self.config.timeout, exchange)
            .await
            .map_err(|_| ExportError::retryable(format!("no answer within {:?}", self.config.timeout)))??;
        let status = response.status;
        if status.is_success() {
            // Read as the answer says it is written, else as the request was.
            log_partial_success(&bytes, response_encoding(&response.headers).unwrap_or(encoding));
            return Ok(());
        }
        let retry_after = response
            .headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after);
        let reason = format!("HTTP {status}: {}", error_text(&response.headers, &bytes));
        // OTLP/HTTP: only these are worth retrying.
        match status.as_u16() {
            429 | 502 | 503 | 504 => Err(ExportError::Retryable { reason, retry_after }),
            _ => Err(ExportError::Permanent(reason)),
        }
    }
}

/// The OTLP encoding an answer's `Content-Type` names.
fn response_encoding(headers: &HeaderMap) -> Option<Encoding> {
    let t = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    match t.split(';').next().unwrap_or("").trim() {
        "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
        "application/json" => Some(Encoding::Json),
        _ => None,
    }
}

/// Redirects followed before giving up, as Go's client.
const MAX_REDIRECTS: usize = 10;

/// Whether two URLs have the same scheme, host and port.
fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

/// Where a `Location` sends a request to `from`, resolved as a browser resolves it; `None`
/// when it is not a URL.
fn redirect_target(from: &str, location: &str) -> Option<String> {
    Some(url::Url::parse(from).ok()?.join(location).ok()?.to_string())
}

/// What an error answer says: the message of its `google.rpc.Status`, as OTLP/HTTP servers
/// send one (protobuf or JSON, as the response's type says), else the body's first 200
/// characters.
fn error_text(headers: &HeaderMap, body: &[u8]) -> String {
    let status = response_encoding(headers).and_then(|e| hotspan_proto::rpc::Status::read(body, e));
    match status {
        Some(s) if !s.message.is_empty() => s.message,
        _ => String::from_utf8_lossy(body).chars().take(200).collect(),
    }
}

/// A `Retry-After` value: seconds, or an HTTP date (a date already past means now).
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    match value.parse::<u64>() {
        Ok(seconds) => Some(Duration::from_secs(seconds)),
        Err(_) => httpdate::parse_http_date(value).ok().map(|when| {
            when.duration_since(std::time::SystemTime::now())
                .unwrap_or_default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_resolve_as_a_browser_resolves_them() {
        let from = "http://b:4318/v1/traces";
        let to = |l| redirect_target(from, l);
        assert_eq!(to("/v2/traces").as_deref(), Some("http://b:4318/v2/traces"));
        assert_eq!(to("logs").as_deref(), Some("http://b:4318/v1/logs"));
        assert_eq!(to("//c:9/x").as_deref(), Some("http://c:9/x"));
        assert_eq!(to("https://c/x").as_deref(), Some("https://c/x"));
        assert!(same_origin(from, "http://b:4318/v9"));
        assert!(!same_origin(from, "http://localhost:4318/v1/traces"));
        assert!(!same_origin(from, "https://b:4318/v1/traces"));
    }

    fn paths(yaml: &str) -> Vec<String> {
        hotspan_config::yaml_errors::<OtlpHttpConfig>(yaml)
            .into_iter()
            .map(|e| e.path)
            .collect()
    }

    #[test]
    fn tls_auth_and_url_schemes_are_validated() {
        assert!(paths("endpoint: https://backend:4318").is_empty());
        assert!(paths(
            "{endpoint: https://b, tls: {ca_file: /ca.pem, cert_file: /c.pem, key_file: /k.pem, server_name_override: b.internal}, auth: {authenticator: bearertokenauth/out}}"
        )
        .is_empty());
        assert_eq!(
            paths("{endpoint: https://b, traces_endpoint: 'http://b/v1/traces'}"),
            ["traces_endpoint"]
        );
        assert_eq!(
            paths("{endpoint: https://b, tls: {cert_file: /c.pem}, auth: {authenticator: 'bad id/'}}"),
            ["tls.key_file", "auth.authenticator"]
        );
    }

    #[test]
    fn each_signal_goes_to_its_own_url_or_the_endpoints_path() {
        let config: OtlpHttpConfig = hotspan_config::parse_yaml(
            "{endpoint: 'http://b:4318/', metrics_endpoint: 'http://m/x', logs_endpoint: 'http://l/y'}",
        )
        .expect("valid");
        assert_eq!(config.url(Signal::Traces), "http://b:4318/v1/traces");
        assert_eq!(config.url(Signal::Metrics), "http://m/x");
        assert_eq!(config.url(Signal::Logs), "http://l/y");
        assert_eq!(
            config.url(Signal::Profiles),
            "http://b:4318/v1development/profiles"
        );
        assert!(Signal::ALL.iter().all(|s| config.cannot_take(*s).is_none()));
        assert_eq!(
            paths("{endpoint: http://b, logs_endpoint: 'https://l/y'}"),
            ["logs_endpoint"],
            "one scheme for every URL"
        );
    }

    #[test]
    fn every_export_has_a_time_limit() {
        assert!(paths("{endpoint: http://b, timeout: 1ns}").is_empty());
        assert_eq!(paths("{endpoint: http://b, timeout: 0s}"), ["timeout"]);
        assert!(paths("{endpoint: http://b, timeout: 1h}").is_empty());
        assert_eq!(paths("{endpoint: http://b, timeout: 1h0m0.001s}"), ["timeout"]);
    }
}
