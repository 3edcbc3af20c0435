//! The `otlp_grpc` exporter (alias `otlp`): OTLP/gRPC export calls to `endpoint`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hotspan_config::{bounds, ComponentConfig, ExtensionRef, FieldError, Signal};
pub use hotspan_proto::compression::{Compression, CompressionParams};
use hotspan_proto::{compression, Batch, Encoding};
use serde::Deserialize;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use crate::component::{BoxError, BuildContext, BuiltExporter, ComponentType, Exporter, ExporterType};
use crate::exporters::{
    check_headers, ExportError, QueueConfig, RetryConfig, TlsClientConfig, EXPORT_TIMEOUTS,
};
use crate::extensions::bearertokenauth::{AuthConfig, BearerTokenAuth};
use crate::grpc::export_path;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpGrpcConfig {
    /// host:port, or a URL with http:// or https://.
    pub endpoint: String,
    pub headers: BTreeMap<String, String>,
    pub compression: Compression,
    pub compression_params: CompressionParams,
    /// Per attempt.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub timeout: Duration,
    pub tls: TlsClientConfig,
    /// `authenticator`: a `bearertokenauth` extension whose token goes with every call.
    pub auth: Option<AuthConfig>,
    pub sending_queue: QueueConfig,
    pub retry_on_failure: RetryConfig,
}

impl Default for OtlpGrpcConfig {
    fn default() -> Self {
        OtlpGrpcConfig {
            endpoint: String::new(),
            headers: BTreeMap::new(),
            compression: Compression::Gzip,
            compression_params: CompressionParams::default(),
            timeout: Duration::from_secs(5),
            tls: TlsClientConfig::default(),
            auth: None,
            sending_queue: QueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
        }
    }
}

impl ComponentConfig for OtlpGrpcConfig {
    fn extensions(&self) -> Vec<ExtensionRef> {
        let auth = self.auth.as_ref().map(|a| a.extension_ref("auth"));
        auth.into_iter()
            .chain(self.sending_queue.extension_ref("sending_queue"))
            .collect()
    }

    fn validate(&self, errs: &mut Vec<FieldError>) {
        if self.endpoint.is_empty() {
            errs.push(FieldError {
                path: "endpoint".into(),
                message: "is required".into(),
            });
        } else if channel_uri(&self.endpoint).parse::<http::Uri>().is_err() {
            errs.push(FieldError {
                path: "endpoint".into(),
                message: format!("\"{}\" is not host:port or a URL", self.endpoint),
            });
        }
        if !self.compression.over_grpc() {
            errs.push(FieldError {
                path: "compression".into(),
                message: format!(
                    "{:?} is not a gRPC codec; use gzip, zstd, snappy or none (or otlp_http)",
                    self.compression.name()
                ),
            });
        } else if let Err(e) = compression::level(self.compression, self.compression_params) {
            errs.push(FieldError {
                path: "compression_params.level".into(),
                message: e.to_string(),
            });
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

fn channel_uri(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

/// The channel to `endpoint`: tonic's own plaintext connector, or ours with rustls. With TLS
/// the channel dials an `http://` URI (so tonic's own TLS switch, present when another crate
/// enables it, stays out of the way) while requests carry the `https` origin.
fn channel(config: &OtlpGrpcConfig) -> Result<Channel, BoxError> {
    let uri = channel_uri(&config.endpoint);
    if !config.tls.wants_tls(&config.endpoint) {
        return Ok(Channel::from_shared(uri)?
            .connect_timeout(config.timeout)
            .tcp_nodelay(true)
            .connect_lazy());
    }
    let authority = uri
        .parse::<http::Uri>()?
        .authority()
        .cloned()
        .ok_or_else(|| format!("endpoint \"{}\" has no host", config.endpoint))?;
    let connector = config
        .tls
        .connector(&config.endpoint, crate::tls::ALPN_GRPC, config.timeout)?;
    Ok(Endpoint::from_shared(format!("http://{authority}"))?
        .origin(format!("https://{authority}").parse()?)
        .connect_with_connector_lazy(connector))
}

impl ComponentType for OtlpGrpcExporter {
    const TYPE_NAME: &'static str = "otlp_grpc";
    const ALIASES: &'static [&'static str] = &["otlp"];
    type Config = OtlpGrpcConfig;
}

impl ExporterType for OtlpGrpcExporter {
    const SIGNALS: &'static [Signal] = &Signal::ALL;

    fn build(ctx: &BuildContext, config: OtlpGrpcConfig) -> Result<BuiltExporter, BoxError> {
        let auth = config.auth.as_ref().map(|a| a.find(ctx, "auth")).transpose()?;
        Ok(BuiltExporter {
            exporter: exporter(&config, auth)?,
            queue: config.sending_queue,
            retry: config.retry_on_failure,
        })
    }
}

/// The bare exporter for `config` (no queue, no retry), with its authenticator already found:
/// `load_balancing` builds one per backend, also after DNS changes when no build context is
/// at hand.
pub(crate) fn exporter(
    config: &OtlpGrpcConfig,
    auth: Option<Arc<BearerTokenAuth>>,
) -> Result<Arc<dyn Exporter>, BoxError> {
    let channel = channel(config)?;
    let mut headers = MetadataMap::new();
    for (k, v) in &config.headers {
        headers.insert(
            MetadataKey::from_bytes(k.as_bytes())?,
            MetadataValue::try_from(v.as_str())?,
        );
    }
    Ok(Arc::new(OtlpGrpcExporter {
        channel,
        headers,
        auth,
        compression: config.compression,
        level: compression::level(config.compression, config.compression_params)?,
        timeout: config.timeout,
    }))
}

pub struct OtlpGrpcExporter {
    /// Cheap to clone; multiplexes every worker's calls over one HTTP/2 connection.
    channel: Channel,
    headers: MetadataMap,
    /// Adds its token (read fresh, for rotation) to every call.
    auth: Option<Arc<BearerTokenAuth>>,
    compression: Compression,
    level: i32,
    timeout: Duration,
}

#[async_trait]
impl Exporter for OtlpGrpcExporter {
    async fn export(&self, batch: &Batch) -> Result<(), ExportError> {
        let body = batch.encode(Encoding::Protobuf);
        let call = self.call(export_path(batch.signal()), body);
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(ExportError::retryable(format!(
                "no answer within {:?}",
                self.timeout
            ))),
            Ok(Ok(response)) => {
                log_partial_success(&response, hotspan_proto::Encoding::Protobuf);
                Ok(())
            }
            Ok(Err(CallError::Status(status))) => Err(classify(&status)),
            Ok(Err(CallError::Transport(e))) => Err(ExportError::retryable(e)),
            Ok(Err(CallError::Local(e))) => Err(ExportError::Permanent(e)),
        }
    }
}

/// Why a call failed: the server's verdict, the connection, or this side.
enum CallError {
    Status(tonic::Status),
    Transport(String),
    Local(String),
}

/// The most of a response read: a partial success or an error, never bulk data.
const MAX_RESPONSE: usize = 64 * 1024;

impl OtlpGrpcExporter {
    /// One unary gRPC call, framed here rather than by tonic's client: tonic compresses only
    /// gzip and zstd, each at one fixed level, with zlib's deflate; this takes otelcol's codecs
    /// and levels, and gzip from libdeflate (`hotspan_proto::compression`).
    async fn call(&self, path: &'static str, body: Vec<u8>) -> Result<Bytes, CallError> {
        let (flag, payload) = match self.compression {
            Compression::None => (0u8, body),
            c => (
                1,
                crate::exporterhelper::compress(c, self.level, body, true)
                    .await
                    .map_err(|e| CallError::Local(e.to_string()))?,
            ),
        };
        let len = u32::try_from(payload.len()).map_err(|_| {
            CallError::Local(format!("a {} byte message is past gRPC's 4 GiB", payload.len()))
        })?;
        let mut frame = Vec::with_capacity(5 + payload.len());
        frame.push(flag);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&payload);
        drop(payload);

        let mut request = http::Request::post(path)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .header("grpc-accept-encoding", "gzip")
            .header("grpc-timeout", format!("{}m", self.timeout.as_millis().max(1)));
        if let Some(name) = self.compression.header() {
            request = request.header("grpc-encoding", name);
        }
        let mut request = request
            .body(tonic::body::Body::new(http_body_util::Full::new(Bytes::from(
                frame,
            ))))
            .map_err(|e| CallError::Local(e.to_string()))?;
        let headers = request.headers_mut();
        headers.extend(self.headers.clone().into_headers());
        if let Some(auth) = &self.auth {
            let (name, value) = auth.header();
            headers.insert(name, value);
        }

        let mut channel = self.channel.clone();
        std::future::poll_fn(|cx| tonic::codegen::Service::poll_ready(&mut channel, cx))
            .await
            .map_err(|e| CallError::Transport(format!("connecting: {}", crate::net::error_chain(&e))))?;
        let response = tonic::codegen::Service::call(&mut channel, request)
            .await
            .map_err(|e| CallError::Transport(format!("sending: {}", crate::net::error_chain(&e))))?;
        let (parts, body) = response.into_parts();
        if parts.status != http::StatusCode::OK {
            // gRPC's mapping of HTTP statuses from a proxy or a non-gRPC server.
            let code = match parts.status.as_u16() {
                400 => Code::Internal,
                401 => Code::Unauthenticated,
                403 => Code::PermissionDenied,
                404 => Code::Unimplemented,
                429 | 502 | 503 | 504 => Code::Unavailable,
                _ => Code::Unknown,
            };
            return Err(CallError::Status(tonic::Status::new(
                code,
                format!("HTTP status {}", parts.status),
            )));
        }
        // As grpc-go: a 200 that is not gRPC comes from something that does not speak it (a
        // login page, a misrouted proxy), whatever its body holds.
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        if !content_type.starts_with("application/grpc") {
            return Err(CallError::Status(tonic::Status::unknown(format!(
                "the answer is not gRPC (content-type {content_type:?})"
            ))));
        }
        // Trailers-only: the verdict is in the headers and there is no message.
        let in_headers = verdict(&parts.headers);
        if let Some(status) = in_headers.as_ref().filter(|s| s.code() != Code::Ok) {
            return Err(CallError::Status(status.clone()));
        }
        let collected = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, MAX_RESPONSE))
            .await
            .map_err(|e| CallError::Transport(format!("reading the answer: {e}")))?;
        match collected.trailers().and_then(verdict).or(in_headers) {
            Some(status) if status.code() == Code::Ok => {}
            Some(status) => return Err(CallError::Status(status)),
            // A stream a proxy cut short can end cleanly; without a verdict nothing says the
            // backend took the data (grpc-go: INTERNAL, "server closed the stream without
            // sending trailers").
            None => {
                return Err(CallError::Status(tonic::Status::internal(
                    "the answer ended without a gRPC status (a stream cut short?)",
                )))
            }
        }
        let bytes = collected.to_bytes();
        if bytes.len() < 5 {
            return Ok(Bytes::new());
        }
        let message = bytes.slice(5..);
        if bytes[0] == 0 {
            return Ok(message);
        }
        let encoding = parts
            .headers
            .get("grpc-encoding")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let codec = match encoding {
            "gzip" => Compression::Gzip,
            "zstd" => Compression::Zstd,
            "snappy" => Compression::Snappy,
            // An answer we cannot read is still an accepted export.
            _ => return Ok(Bytes::new()),
        };
        Ok(compression::decompress_grpc(codec, &message, MAX_RESPONSE)
            .map(Bytes::from)
            .unwrap_or_default())
    }
}

/// The gRPC verdict in `headers` (a response's headers or trailers), if they hold one, read
/// by tonic, except that status details that are not base64 are left out: tonic's reader
/// panics on them, and they come from the backend.
fn verdict(headers: &http::HeaderMap) -> Option<tonic::Status> {
    use base64::Engine as _;
    // tonic's own reading of the header: padding optional.
    const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    const DETAILS: &str = "grpc-status-details-bin";
    match headers.get(DETAILS) {
        Some(details) if BASE64.decode(details.as_bytes()).is_err() => {
            let mut headers = headers.clone();
            headers.remove(DETAILS);
            tonic::Status::from_header_map(&headers)
        }
        _ => tonic::Status::from_header_map(headers),
    }
}

/// OTLP/gRPC's list of retryable codes, as otelcol reads them; everything else is permanent.
/// A `google.rpc.RetryInfo` in the status says how long to wait.
fn classify(status: &tonic::Status) -> ExportError {
    use tonic_types::StatusExt as _;
    let reason = format!("{:?}: {}", status.code(), status.message());
    let retry_info = status.get_details_retry_info();
    let retryable = match status.code() {
        Code::Unavailable
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::DataLoss => true,
        // Only when the server says when: grpc-go answers a message over its size limit with
        // RESOURCE_EXHAUSTED, which no retry of the same batch would pass.
        Code::ResourceExhausted => retry_info.is_some(),
        // A connection that broke mid-call (the backend died) surfaces as Unknown or Internal
        // with the transport error as its source: the backend never judged the data, so
        // retry it. A status the server sent carries no source.
        _ => std::error::Error::source(status).is_some(),
    };
    if retryable {
        ExportError::Retryable {
            reason,
            retry_after: retry_info.and_then(|i| i.retry_delay),
        }
    } else {
        ExportError::Permanent(reason)
    }
}

/// A partial success means the backend dropped some items for good; say so.
pub(crate) fn log_partial_success(response: &[u8], encoding: hotspan_proto::Encoding) {
    if let Some((rejected, message)) = hotspan_proto::rpc::read_partial_success(response, encoding) {
        tracing::warn!(rejected, message = %message, "backend rejected part of an export");
    }
}

#[cfg(test)]
mod classify_tests {
    use super::*;

    #[test]
    fn numbers_are_bounded() {
        let problems = |yaml: &str| -> Vec<String> {
            hotspan_config::yaml_errors::<OtlpGrpcConfig>(yaml)
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert!(problems("{endpoint: b:4317, timeout: 1ns}").is_empty());
        assert_eq!(
            problems(
                "{endpoint: b:4317, timeout: 0s, sending_queue: {queue_size: 18446744073709551615, num_consumers: 100000}, retry_on_failure: {multiplier: .nan, max_interval: 0s}}"
            ),
            [
                "timeout: must be greater than 0s and at most 1h0m0s",
                "sending_queue.num_consumers: must be from 1 to 1000",
                "sending_queue.queue_size: must be from 1 to 4294967295",
                "retry_on_failure.multiplier: must be from 1 to 100",
                "retry_on_failure.max_interval: must be greater than 0s and at most 1h0m0s",
            ]
        );
    }

    #[test]
    fn broken_connections_are_retryable_and_backend_verdicts_are_not() {
        let broken = tonic::Status::from_error(Box::new(std::io::Error::other("connection reset")));
        assert_eq!(broken.code(), Code::Unknown);
        assert!(matches!(classify(&broken), ExportError::Retryable { .. }));
        let h2 = tonic::Status::from_error(Box::new(std::io::Error::other("h2 protocol error")));
        assert!(matches!(classify(&h2), ExportError::Retryable { .. }));
        assert!(matches!(
            classify(&tonic::Status::internal("backend says internal")),
            ExportError::Permanent(_)
        ));
        assert!(matches!(
            classify(&tonic::Status::unknown("backend bug")),
            ExportError::Permanent(_)
        ));
        assert!(matches!(
            classify(&tonic::Status::invalid_argument("bad")),
            ExportError::Permanent(_)
        ));
        assert!(matches!(
            classify(&tonic::Status::unavailable("down")),
            ExportError::Retryable { .. }
        ));
    }
}
