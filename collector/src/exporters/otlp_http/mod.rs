//! The `otlp_http` exporter (alias `otlphttp`): OTLP/HTTP POSTs to `endpoint` + signal path.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use async_trait::async_trait;
use hotspan_config::{check_component, parse_component, ComponentConfig, FieldError, Signal};
use hotspan_proto::{Batch, Encoding};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use serde::Deserialize;

use crate::component::{BoxError, BuildContext, BuiltExporter, Exporter, ExporterFactory};
use crate::exporters::otlp_grpc::{log_partial_success, Compression};
use crate::exporters::{check_headers, ExportError, QueueConfig, RetryConfig, TlsClientConfig};
use crate::grpc::http_path;

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
    /// Full URL for traces, used as is.
    pub traces_endpoint: Option<String>,
    /// Full URL for profiles, used as is.
    pub profiles_endpoint: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub compression: Compression,
    pub encoding: BodyEncoding,
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub timeout: Duration,
    pub tls: TlsClientConfig,
    pub sending_queue: QueueConfig,
    pub retry_on_failure: RetryConfig,
}

impl Default for OtlpHttpConfig {
    fn default() -> Self {
        OtlpHttpConfig {
            endpoint: String::new(),
            traces_endpoint: None,
            profiles_endpoint: None,
            headers: BTreeMap::new(),
            compression: Compression::Gzip,
            encoding: BodyEncoding::Proto,
            timeout: Duration::from_secs(30),
            tls: TlsClientConfig::default(),
            sending_queue: QueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
        }
    }
}

impl OtlpHttpConfig {
    fn url(&self, signal: Signal) -> String {
        match (signal, &self.traces_endpoint, &self.profiles_endpoint) {
            (Signal::Traces, Some(url), _) | (Signal::Profiles, _, Some(url)) => url.clone(),
            _ => format!("{}{}", self.endpoint.trim_end_matches('/'), http_path(signal)),
        }
    }
}

impl ComponentConfig for OtlpHttpConfig {
    fn validate(&self, errs: &mut Vec<FieldError>) {
        let mut urls = vec![("endpoint", self.endpoint.as_str())];
        if let Some(t) = &self.traces_endpoint {
            urls.push(("traces_endpoint", t));
        }
        if let Some(p) = &self.profiles_endpoint {
            urls.push(("profiles_endpoint", p));
        }
        if self.endpoint.is_empty() && self.traces_endpoint.is_none() && self.profiles_endpoint.is_none() {
            errs.push(FieldError {
                path: "endpoint".into(),
                message: "is required".into(),
            });
        }
        for (path, url) in urls.into_iter().filter(|(_, u)| !u.is_empty()) {
            if reqwest::Url::parse(url).is_err()
                || !(url.starts_with("http://") || url.starts_with("https://"))
            {
                errs.push(FieldError {
                    path: path.into(),
                    message: format!("\"{url}\" is not an http(s) URL"),
                });
            } else {
                self.tls.validate(url, "tls", errs);
            }
        }
        errs.extend(check_headers(&self.headers, "headers"));
        self.sending_queue.validate("sending_queue", errs);
        self.retry_on_failure.validate("retry_on_failure", errs);
    }
}

pub struct Factory;

impl ExporterFactory for Factory {
    fn type_name(&self) -> &'static str {
        "otlp_http"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["otlphttp"]
    }
    fn signals(&self) -> &'static [Signal] {
        &[Signal::Traces, Signal::Profiles]
    }
    fn check(&self, config: &serde_yaml::Value) -> Vec<FieldError> {
        check_component::<OtlpHttpConfig>(config)
    }
    fn build(&self, _ctx: &BuildContext, config: &serde_yaml::Value) -> Result<BuiltExporter, BoxError> {
        let config: OtlpHttpConfig = parse_component(config)?;
        let mut headers = HeaderMap::new();
        for (k, v) in &config.headers {
            headers.insert(
                HeaderName::try_from(k.as_str())?,
                HeaderValue::try_from(v.as_str())?,
            );
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .tcp_nodelay(true)
            .default_headers(headers)
            .build()?;
        Ok(BuiltExporter {
            exporter: std::sync::Arc::new(OtlpHttpExporter {
                client,
                config: config.clone(),
            }),
            queue: config.sending_queue,
            retry: config.retry_on_failure,
        })
    }
}

struct OtlpHttpExporter {
    client: reqwest::Client,
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
        let mut request = self
            .client
            .post(self.config.url(batch.signal()))
            .header(CONTENT_TYPE, encoding.content_type());
        if self.config.compression == Compression::Gzip {
            let mut gz = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::fast(),
            );
            body = gz
                .write_all(&body)
                .and_then(|_| gz.finish())
                .map_err(|e| ExportError::Permanent(format!("gzip: {e}")))?;
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| ExportError::retryable(format!("sending: {e}")))?;
        let status = response.status();
        if status.is_success() {
            if encoding == Encoding::Protobuf {
                if let Ok(bytes) = response.bytes().await {
                    log_partial_success(&bytes);
                }
            }
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.unwrap_or_default();
        let reason = format!("HTTP {status}: {}", text.chars().take(200).collect::<String>());
        // OTLP/HTTP: only these are worth retrying.
        match status.as_u16() {
            429 | 502 | 503 | 504 => Err(ExportError::Retryable { reason, retry_after }),
            _ => Err(ExportError::Permanent(reason)),
        }
    }
}
