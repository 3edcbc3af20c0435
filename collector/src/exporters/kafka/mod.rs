//! The `kafka` exporter: each batch as OTLP export requests (protobuf or JSON), one message
//! per request, to the signal's topic; otelcol's keys. With `partition_traces_by_id`, one
//! message per trace keyed by its id in hex, as otelcol sends them; with
//! `partition_profiles_by_id` (hotspan's own), samples go to the partition their trace's spans
//! go to, so a consumer group of gateways gets every trace's spans and samples together.

#[cfg(feature = "kafka")]
mod producer;
mod records;

use std::time::Duration;

use hotspan_config::{ComponentConfig, ExtensionRef, FieldError, Signal};
use serde::{Deserialize, Deserializer};

use crate::component::{BoxError, BuildContext, BuiltExporter, ComponentType, ExporterType};
use crate::exporters::{QueueConfig, RetryConfig, TlsClientConfig};
use crate::kafka::{
    default_brokers, default_client_id, default_topic, AuthConfig, Connection, MessageEncoding,
};

pub use records::{records, Record};

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SignalConfig {
    /// Default: otelcol's topic for the signal (`otlp_spans`, `otlp_profiles`, ...).
    pub topic: Option<String>,
    pub encoding: MessageEncoding,
}

/// `producer.required_acks`: `all` (or -1), 0 or 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequiredAcks {
    None,
    Leader,
    All,
}

impl<'de> Deserialize<'de> for RequiredAcks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(-1) => Ok(RequiredAcks::All),
            Raw::Int(0) => Ok(RequiredAcks::None),
            Raw::Int(1) => Ok(RequiredAcks::Leader),
            Raw::Text(t) if t == "all" || t == "-1" => Ok(RequiredAcks::All),
            Raw::Text(t) if t == "0" => Ok(RequiredAcks::None),
            Raw::Text(t) if t == "1" => Ok(RequiredAcks::Leader),
            _ => Err(serde::de::Error::custom("expected 'all' (-1), 0 or 1")),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionParams {
    /// -1: the codec's default.
    pub level: Option<i32>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerConfig {
    /// The largest message, before compression; larger batches are split to fit.
    pub max_message_bytes: usize,
    pub required_acks: RequiredAcks,
    pub compression: Compression,
    pub compression_params: CompressionParams,
    /// Messages buffered in the client at most, across partitions.
    pub flush_max_messages: usize,
    /// How long a partition's messages wait for more before a request is sent.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub linger: Duration,
    pub allow_auto_topic_creation: bool,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            max_message_bytes: 1_000_000,
            required_acks: RequiredAcks::Leader,
            compression: Compression::None,
            compression_params: CompressionParams::default(),
            flush_max_messages: 10_000,
            linger: Duration::from_millis(10),
            allow_auto_topic_creation: true,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaExporterConfig {
    pub brokers: Vec<String>,
    pub client_id: String,
    pub tls: Option<TlsClientConfig>,
    pub auth: AuthConfig,
    /// Per attempt: how long a message may take to be acknowledged, librdkafka's own retries
    /// included.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub timeout: Duration,
    pub producer: ProducerConfig,
    pub traces: SignalConfig,
    pub metrics: SignalConfig,
    pub logs: SignalConfig,
    pub profiles: SignalConfig,
    pub partition_traces_by_id: bool,
    pub partition_profiles_by_id: bool,
    pub sending_queue: QueueConfig,
    pub retry_on_failure: RetryConfig,
    /// otelcol's (Sarama's) broker protocol version; librdkafka asks the broker instead.
    pub protocol_version: Option<String>,
}

impl Default for KafkaExporterConfig {
    fn default() -> Self {
        KafkaExporterConfig {
            brokers: default_brokers(),
            client_id: default_client_id(),
            tls: None,
            auth: AuthConfig::default(),
            timeout: Duration::from_secs(5),
            producer: ProducerConfig::default(),
            traces: SignalConfig::default(),
            metrics: SignalConfig::default(),
            logs: SignalConfig::default(),
            profiles: SignalConfig::default(),
            partition_traces_by_id: false,
            partition_profiles_by_id: false,
            sending_queue: QueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
            protocol_version: None,
        }
    }
}

impl KafkaExporterConfig {
    pub fn connection(&self) -> Connection {
        Connection {
            brokers: self.brokers.clone(),
            client_id: self.client_id.clone(),
            tls: self.tls.clone(),
            auth: self.auth.clone(),
        }
    }

    /// The topic the signal goes to.
    pub fn topic(&self, signal: Signal) -> &str {
        self.signal(signal)
            .topic
            .as_deref()
            .unwrap_or(default_topic(signal))
    }

    pub fn signal(&self, signal: Signal) -> &SignalConfig {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
            Signal::Profiles => &self.profiles,
        }
    }
}

impl ComponentConfig for KafkaExporterConfig {
    fn extensions(&self) -> Vec<ExtensionRef> {
        self.sending_queue
            .extension_ref("sending_queue")
            .into_iter()
            .collect()
    }

    fn validate(&self, errs: &mut Vec<FieldError>) {
        self.connection().validate(errs);
        for s in Signal::ALL {
            if self.topic(s).is_empty() {
                errs.push(FieldError::new(format!("{s}.topic"), "must not be empty"));
            }
        }
        let p = &self.producer;
        if p.max_message_bytes < 1024 || p.max_message_bytes > 1_000_000_000 {
            errs.push(FieldError::new(
                "producer.max_message_bytes",
                "must be between 1024 and 1000000000",
            ));
        }
        if p.flush_max_messages < 1 {
            errs.push(FieldError::new(
                "producer.flush_max_messages",
                "must be at least 1",
            ));
        }
        if p.linger > Duration::from_secs(900) {
            errs.push(FieldError::new("producer.linger", "must be at most 15m"));
        }
        if let Some(level) = p.compression_params.level {
            let range = match p.compression {
                Compression::Gzip => Some(-1..=9),
                Compression::Lz4 => Some(-1..=12),
                Compression::Zstd => Some(-1..=22),
                Compression::None | Compression::Snappy => None,
            };
            if !range.is_some_and(|r| r.contains(&level)) {
                errs.push(FieldError::new(
                    "producer.compression_params.level",
                    "is not a level of the chosen compression (gzip -1..9, lz4 -1..12, zstd -1..22)",
                ));
            }
        }
        if self.timeout.is_zero() {
            errs.push(FieldError::new("timeout", "must be greater than 0"));
        } else if self.timeout <= p.linger {
            errs.push(FieldError::new("timeout", "must be longer than producer.linger"));
        }
        self.sending_queue.validate("sending_queue", errs);
        self.retry_on_failure.validate("retry_on_failure", errs);
    }
}

pub struct KafkaExporter;

impl ComponentType for KafkaExporter {
    const TYPE_NAME: &'static str = "kafka";
    type Config = KafkaExporterConfig;
}

impl ExporterType for KafkaExporter {
    const SIGNALS: &'static [Signal] = &Signal::ALL;

    #[cfg(feature = "kafka")]
    fn build(ctx: &BuildContext, config: KafkaExporterConfig) -> Result<BuiltExporter, BoxError> {
        let exporter = producer::KafkaProducer::new(ctx.name(), config.clone())?;
        Ok(BuiltExporter {
            exporter: std::sync::Arc::new(exporter),
            queue: config.sending_queue,
            retry: config.retry_on_failure,
        })
    }

    #[cfg(not(feature = "kafka"))]
    fn build(_ctx: &BuildContext, _config: KafkaExporterConfig) -> Result<BuiltExporter, BoxError> {
        Err(crate::kafka::not_built("kafka exporter"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(yaml: &str) -> Vec<String> {
        hotspan_config::yaml_errors::<KafkaExporterConfig>(yaml)
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn otelcols_keys_and_defaults() {
        let c: KafkaExporterConfig = hotspan_config::parse_yaml(
            "{brokers: [k1:9092, k2:9092], partition_traces_by_id: true, producer: {required_acks: all, compression: zstd, max_message_bytes: 2000000}, traces: {encoding: otlp_json}, auth: {sasl: {username: u, password: p, mechanism: SCRAM-SHA-512}}, tls: {ca_file: /ca.pem}}",
        )
        .expect("parses");
        assert_eq!(c.topic(Signal::Traces), "otlp_spans");
        assert_eq!(c.topic(Signal::Profiles), "otlp_profiles");
        assert_eq!(c.traces.encoding, MessageEncoding::OtlpJson);
        assert_eq!(c.producer.required_acks, RequiredAcks::All);
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert!(c.connection().uses_tls());
        assert!(errors("{brokers: [k1:9092], producer: {required_acks: 1}}").is_empty());
        let d = KafkaExporterConfig::default();
        assert_eq!(d.brokers, ["localhost:9092"]);
        assert_eq!(d.producer.required_acks, RequiredAcks::Leader);
        assert!(!d.connection().uses_tls());
    }

    #[test]
    fn bad_values_are_named() {
        let errs = errors(
            "{brokers: [nohost], producer: {compression: gzip, compression_params: {level: 12}}, auth: {sasl: {username: u, mechanism: GSSAPI}}, tls: {server_name_override: x}}",
        );
        for want in [
            "brokers[0]",
            "producer.compression_params.level",
            "auth.sasl.mechanism",
            "auth.sasl.password",
            "tls.server_name_override",
        ] {
            assert!(errs.iter().any(|e| e.starts_with(want)), "{want} in {errs:?}");
        }
        assert!(errors("{producer: {required_acks: 2}}")
            .iter()
            .any(|e| e.starts_with("producer.required_acks")));
        assert!(errors("{producer: {compression: brotli}}")
            .iter()
            .any(|e| e.starts_with("producer.compression")));
    }
}
