//! Exporters: where data leaves. Each is one module registered in `registry.rs`;
//! `exporterhelper` gives every exporter its sending queue and retries.

pub mod debug;
pub mod file;
pub mod hotspan_ui;
pub mod kafka;
pub mod load_balancing;
pub mod otlp_grpc;
pub mod otlp_http;
pub mod split;

use std::time::Duration;

use thiserror::Error;

pub use crate::exporterhelper::{QueueBatchConfig, QueueConfig};
pub use crate::retry::RetryConfig;
pub use crate::tls::TlsClientConfig;

/// One failed attempt to send, and whether another attempt could succeed.
#[derive(Debug, Error)]
pub enum ExportError {
    #[error("{reason}")]
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    #[error("{0}")]
    Permanent(String),
    /// The rest of the batch was sent; `failed` of its items never can be.
    #[error("{reason}")]
    PartlySent { failed: u64, reason: String },
}

impl ExportError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        ExportError::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }
}

/// An export's time limit, in both OTLP exporters: past an hour a backend that does not answer
/// is better given up on and retried.
pub(crate) const EXPORT_TIMEOUTS: std::ops::RangeInclusive<Duration> =
    Duration::from_nanos(1)..=Duration::from_secs(3600);

/// Header maps in exporter configs, validated once at check time.
pub(crate) fn check_headers(
    headers: &std::collections::BTreeMap<String, String>,
    path: &str,
) -> Vec<hotspan_config::FieldError> {
    headers
        .iter()
        .filter(|(k, v)| {
            http::HeaderName::try_from(k.as_str()).is_err()
                || http::HeaderValue::try_from(v.as_str()).is_err()
        })
        .map(|(k, _)| hotspan_config::FieldError {
            path: format!("{path}.{k}"),
            message: "not a valid HTTP header name and value".into(),
        })
        .collect()
}
