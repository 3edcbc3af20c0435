//! The `otlp_grpc` exporter (alias `otlp`): OTLP/gRPC export calls to `endpoint`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hotspan_config::{bounds, ComponentConfig, ExtensionRef, FieldError, Signal};
use hotspan_proto::{Batch, Encoding};
use serde::Deserialize;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use crate::component::{BoxError, BuildContext, BuiltExporter, ComponentType, Exporter, ExporterType};
use crate::exporters::{
    check_headers, ExportError, QueueConfig, RetryConfig, TlsClientConfig, EXPORT_TIMEOUTS,
};
use crate::extensions::bearertokenauth::{AuthConfig, BearerTokenAuth};
use crate::grpc::{export_path, RawCodec};

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    None,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpGrpcConfig {
    /// host:port, or a URL with http:// or https://.
    pub endpoint: String,
    pub headers: BTreeMap<String, String>,
    pub compression: Compression,
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
        gzip: config.compression == Compression::Gzip,
        timeout: config.timeout,
    }))
}

pub struct OtlpGrpcExporter {
    /// Cheap to clone; multiplexes every worker's calls over one HTTP/2 connection.
    channel: Channel,
    headers: MetadataMap,
    /// Adds its token (read fresh, for rotation) to every call.
    auth: Option<Arc<BearerTokenAuth>>,
    gzip: bool,
    timeout: Duration,
}

#[async_trait]
impl Exporter for OtlpGrpcExporter {
    async fn export(&self, batch: &Batch) -> Result<(), ExportError> {
        let body = Bytes::from(batch.encode(Encoding::Protobuf));
        let mut client = tonic::client::Grpc::new(self.channel.clone());
        if self.gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        client = client.accept_compressed(CompressionEncoding::Gzip);
        client
            .ready()
            .await
            .map_err(|e| ExportError::retryable(format!("connecting: {e}")))?;
        let mut request = tonic::Request::new(body);
        *request.metadata_mut() = self.headers.clone();
        if let Some(auth) = &self.auth {
            let (name, value) = auth.header();
            let key = MetadataKey::from_bytes(name.as_str().as_bytes());
            let value = MetadataValue::try_from(value.as_bytes());
            let (Ok(key), Ok(value)) = (key, value) else {
                return Err(ExportError::Permanent(
                    "the authenticator's header is not valid gRPC metadata (ASCII only)".into(),
                ));
            };
            request.metadata_mut().insert(key, value);
        }
        request.set_timeout(self.timeout);
        let path = http::uri::PathAndQuery::from_static(export_path(batch.signal()));
        let call = client.unary::<Bytes, Bytes, _>(request, path, RawCodec);
        let response = match tokio::time::timeout(self.timeout, call).await {
            Err(_) => {
                return Err(ExportError::retryable(format!(
                    "no answer within {:?}",
                    self.timeout
                )))
            }
            Ok(Ok(response)) => response,
            Ok(Err(status)) => return Err(classify(&status)),
        };
        log_partial_success(&response.into_inner());
        Ok(())
    }
}

/// OTLP/gRPC's list of retryable codes; everything else is permanent.
fn classify(status: &tonic::Status) -> ExportError {
    let reason = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Unavailable
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::DataLoss
        | Code::ResourceExhausted => ExportError::Retryable {
            reason,
            retry_after: None,
        },
        // A connection that broke mid-call (the backend died) surfaces as Unknown or Internal
        // with the transport error as its source: the backend never judged the data, so
        // retry it. A status the server sent carries no source.
        _ if std::error::Error::source(status).is_some() => ExportError::Retryable {
            reason,
            retry_after: None,
        },
        _ => ExportError::Permanent(reason),
    }
}

/// A partial success means the backend dropped some items for good; say so.
pub(crate) fn log_partial_success(response: &[u8]) {
    #[derive(prost::Message)]
    struct Partial {
        #[prost(int64, tag = "1")]
        rejected: i64,
        #[prost(string, tag = "2")]
        message: String,
    }
    #[derive(prost::Message)]
    struct Response {
        #[prost(message, optional, tag = "1")]
        partial_success: Option<Partial>,
    }
    if let Ok(Response {
        partial_success: Some(p),
    }) = <Response as prost::Message>::decode(response)
    {
        if p.rejected > 0 || !p.message.is_empty() {
            tracing::warn!(rejected = p.rejected, message = %p.message, "backend rejected part of an export");
        }
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
