//! What the kafka receiver and exporter share: otelcol's client keys (`brokers`, `client_id`,
//! `tls`, `auth.sasl`), the per-signal topic and encoding, and (with the `kafka` feature) how
//! those become librdkafka settings and how librdkafka's errors are judged.

#[cfg(feature = "kafka")]
mod client;
mod partition;

use hotspan_config::{FieldError, Signal};
use hotspan_proto::Encoding;
use serde::Deserialize;

#[cfg(feature = "kafka")]
pub use client::{client_config, is_retryable, ClientContext};
pub use partition::sarama_partition;

use crate::exporters::TlsClientConfig;

/// otelcol's default topic for each signal.
pub fn default_topic(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "otlp_spans",
        Signal::Metrics => "otlp_metrics",
        Signal::Logs => "otlp_logs",
        Signal::Profiles => "otlp_profiles",
    }
}

/// The message encodings both ends take: OTLP export requests, one per message.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MessageEncoding {
    #[default]
    OtlpProto,
    OtlpJson,
}

impl MessageEncoding {
    pub fn encoding(self) -> Encoding {
        match self {
            MessageEncoding::OtlpProto => Encoding::Protobuf,
            MessageEncoding::OtlpJson => Encoding::Json,
        }
    }
}

/// `auth`: otelcol's `auth.sasl` (PLAIN and SCRAM; the password from `${env:...}`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub sasl: Option<SaslConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SaslConfig {
    pub username: String,
    pub password: String,
    pub mechanism: String,
}

/// The SASL mechanisms librdkafka speaks without extra libraries.
const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// Where the brokers are and how to reach them: the keys every Kafka component has.
#[derive(Clone, Debug, PartialEq)]
pub struct Connection {
    pub brokers: Vec<String>,
    pub client_id: String,
    /// otelcol's semantics: no `tls` block, or `insecure: true`, is plaintext.
    pub tls: Option<TlsClientConfig>,
    pub auth: AuthConfig,
}

impl Connection {
    pub fn uses_tls(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| !t.insecure)
    }

    pub fn validate(&self, errs: &mut Vec<FieldError>) {
        if self.brokers.is_empty() {
            errs.push(FieldError::new("brokers", "must name at least one broker"));
        }
        for (i, b) in self.brokers.iter().enumerate() {
            let port = b.rsplit_once(':').and_then(|(host, p)| {
                (!host.is_empty()).then_some(())?;
                p.parse::<u16>().ok()
            });
            if port.is_none() {
                errs.push(FieldError::new(
                    format!("brokers[{i}]"),
                    format!("\"{b}\" is not host:port"),
                ));
            }
        }
        if let Some(tls) = &self.tls {
            tls.validate("", "tls", errs);
            if tls.server_name_override.is_some() {
                errs.push(FieldError::new(
                    "tls.server_name_override",
                    "is not supported by the kafka client (librdkafka checks the broker's own name)",
                ));
            }
            if tls.min_version.as_deref().is_some_and(|v| v != "1.2") {
                errs.push(FieldError::new(
                    "tls.min_version",
                    "only \"1.2\" is supported by the kafka client (it negotiates 1.2 or 1.3)",
                ));
            }
        }
        if let Some(sasl) = &self.auth.sasl {
            if !MECHANISMS.contains(&sasl.mechanism.as_str()) {
                errs.push(FieldError::new(
                    "auth.sasl.mechanism",
                    format!(
                        "\"{}\" is not one of {} (AWS_MSK_IAM_OAUTHBEARER, OAUTHBEARER and kerberos are not supported)",
                        sasl.mechanism,
                        MECHANISMS.join(", ")
                    ),
                ));
            }
            if sasl.username.is_empty() {
                errs.push(FieldError::new("auth.sasl.username", "is required"));
            }
            if sasl.password.is_empty() {
                errs.push(FieldError::new("auth.sasl.password", "is required"));
            }
        }
    }
}

pub fn default_brokers() -> Vec<String> {
    vec!["localhost:9092".into()]
}

pub fn default_client_id() -> String {
    "otel-collector".into()
}

/// The error a Kafka config gets from a build without the `kafka` feature.
#[cfg(not(feature = "kafka"))]
pub fn not_built(what: &str) -> crate::component::BoxError {
    format!(
        "the {what} is not in this build of hotspan: build it with `cargo build --release --features kafka`"
    )
    .into()
}
