//! The `kafka` receiver: a member of a consumer group that reads OTLP export requests (one per
//! message) from each signal's topics and hands them to the signal's pipeline. A message's
//! offset is committed only once the pipeline took it; a retryable refusal rewinds the
//! partition to that message and tries again after a pause, so a crash or a rebalance
//! replays, never loses. Partitions are assigned with the `range` strategy: a member gets the
//! same partition numbers of every topic, so spans and samples sent to the same partitions of
//! `otlp_spans` and `otlp_profiles` reach the same gateway.

#[cfg(feature = "kafka")]
mod consumer;

use std::time::Duration;

use hotspan_config::{FieldError, Signal};
use serde::Deserialize;

use crate::component::{BoxError, BuildContext, ComponentType, Lifecycle, ReceiverType};
use crate::consumer::SignalConsumers;
use crate::exporters::TlsClientConfig;
use crate::kafka::{
    default_brokers, default_client_id, default_topic, AuthConfig, Connection, MessageEncoding,
};

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Default: otelcol's topic for the signal (`otlp_spans`, `otlp_profiles`, ...).
    pub topics: Option<Vec<String>>,
    pub encoding: MessageEncoding,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InitialOffset {
    #[default]
    Latest,
    Earliest,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AutoCommit {
    /// Commit taken offsets every `interval`; off, each message's offset is committed as soon
    /// as its pipeline took it.
    pub enable: bool,
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub interval: Duration,
}

impl Default for AutoCommit {
    fn default() -> Self {
        AutoCommit {
            enable: true,
            interval: Duration::from_secs(1),
        }
    }
}

/// otelcol's `message_marking`. hotspan marks a message once the pipeline took it and never
/// on a retryable refusal (`after: true`, `on_error: false`), and always skips, logs and counts
/// one that can never be taken, or its partition would stall: `on_error: true` and
/// `on_permanent_error: false` ask for something else and are refused.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MessageMarking {
    pub after: bool,
    pub on_error: bool,
    pub on_permanent_error: Option<bool>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaReceiverConfig {
    pub brokers: Vec<String>,
    pub client_id: String,
    pub tls: Option<TlsClientConfig>,
    pub auth: AuthConfig,
    pub group_id: String,
    /// Static membership: a restarted member gets its partitions back without a rebalance.
    pub group_instance_id: Option<String>,
    pub initial_offset: InitialOffset,
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub session_timeout: Duration,
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub heartbeat_interval: Duration,
    pub autocommit: AutoCommit,
    pub min_fetch_size: i32,
    pub max_fetch_size: i32,
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub max_fetch_wait: Duration,
    pub max_partition_fetch_size: i32,
    pub traces: TopicsConfig,
    pub metrics: TopicsConfig,
    pub logs: TopicsConfig,
    pub profiles: TopicsConfig,
    pub message_marking: MessageMarking,
    /// Only `range`, which the join needs (a member holds the same partitions of each topic).
    pub group_rebalance_strategy: Option<String>,
    /// otelcol's (Sarama's) broker protocol version; librdkafka asks the broker instead.
    pub protocol_version: Option<String>,
}

/// librdkafka's largest `fetch.max.bytes`: what otelcol's `max_fetch_size: 0`, no limit, means.
pub const NO_FETCH_LIMIT: i32 = 2_147_483_135;

impl Default for KafkaReceiverConfig {
    fn default() -> Self {
        KafkaReceiverConfig {
            brokers: default_brokers(),
            client_id: default_client_id(),
            tls: None,
            auth: AuthConfig::default(),
            group_id: "otel-collector".into(),
            group_instance_id: None,
            initial_offset: InitialOffset::Latest,
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(3),
            autocommit: AutoCommit::default(),
            min_fetch_size: 1,
            max_fetch_size: 1_048_576,
            max_fetch_wait: Duration::from_millis(250),
            max_partition_fetch_size: 1_048_576,
            traces: TopicsConfig::default(),
            metrics: TopicsConfig::default(),
            logs: TopicsConfig::default(),
            profiles: TopicsConfig::default(),
            message_marking: MessageMarking::default(),
            group_rebalance_strategy: None,
            protocol_version: None,
        }
    }
}

impl KafkaReceiverConfig {
    /// `fetch.max.bytes`: `max_fetch_size`, 0 being no limit.
    pub fn fetch_max_bytes(&self) -> i32 {
        match self.max_fetch_size {
            0 => NO_FETCH_LIMIT,
            n => n,
        }
    }

    pub fn connection(&self) -> Connection {
        Connection {
            brokers: self.brokers.clone(),
            client_id: self.client_id.clone(),
            tls: self.tls.clone(),
            auth: self.auth.clone(),
        }
    }

    /// The topics the signal is read from.
    pub fn topic_names(&self, signal: Signal) -> Vec<String> {
        match &self.topics(signal).topics {
            Some(t) => t.clone(),
            None => vec![default_topic(signal).to_string()],
        }
    }

    pub fn topics(&self, signal: Signal) -> &TopicsConfig {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
            Signal::Profiles => &self.profiles,
        }
    }
}

impl hotspan_config::ComponentConfig for KafkaReceiverConfig {
    fn validate(&self, errs: &mut Vec<FieldError>) {
        self.connection().validate(errs);
        if self.group_id.is_empty() {
            errs.push(FieldError::new("group_id", "must not be empty"));
        }
        let all: Vec<(Signal, Vec<String>)> = Signal::ALL
            .into_iter()
            .map(|s| (s, self.topic_names(s)))
            .collect();
        let mut seen: Vec<(&str, Signal)> = Vec::new();
        for (s, names) in &all {
            let s = *s;
            if names.is_empty() {
                errs.push(FieldError::new(
                    format!("{s}.topics"),
                    "must name at least one topic",
                ));
            }
            for (i, t) in names.iter().enumerate() {
                let path = format!("{s}.topics[{i}]");
                if t.is_empty() {
                    errs.push(FieldError::new(path, "must not be empty"));
                } else if t.starts_with('^') {
                    errs.push(FieldError::new(
                        path,
                        "regular expressions are not supported: name each topic",
                    ));
                } else if let Some((_, other)) = seen.iter().find(|(n, _)| *n == t.as_str()) {
                    errs.push(FieldError::new(
                        path,
                        format!("\"{t}\" is also a {other} topic: each topic carries one signal"),
                    ));
                } else {
                    seen.push((t.as_str(), s));
                }
            }
        }
        if self.session_timeout < Duration::from_secs(1) {
            errs.push(FieldError::new("session_timeout", "must be at least 1s"));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.session_timeout {
            errs.push(FieldError::new(
                "heartbeat_interval",
                "must be greater than 0 and shorter than session_timeout",
            ));
        }
        if self.autocommit.enable && self.autocommit.interval.is_zero() {
            errs.push(FieldError::new("autocommit.interval", "must be greater than 0"));
        }
        if self.min_fetch_size < 1 || self.fetch_max_bytes() < self.min_fetch_size {
            errs.push(FieldError::new(
                "max_fetch_size",
                "min_fetch_size must be at least 1 and max_fetch_size at least min_fetch_size (or 0: no limit)",
            ));
        }
        if self.message_marking.on_error || self.message_marking.on_permanent_error == Some(false) {
            errs.push(FieldError::new(
                "message_marking",
                "hotspan marks a message once its pipeline took it, never after a retryable refusal (on_error: false), and always skips one that can never be taken (on_permanent_error: true)",
            ));
        }
        if let Some(s) = self.group_rebalance_strategy.as_deref().filter(|s| *s != "range") {
            errs.push(FieldError::new(
                "group_rebalance_strategy",
                format!("\"{s}\": only range, which keeps each trace's spans and samples on one member"),
            ));
        }
        if self.max_partition_fetch_size < 1 {
            errs.push(FieldError::new("max_partition_fetch_size", "must be at least 1"));
        }
    }
}

pub struct KafkaReceiver;

impl ComponentType for KafkaReceiver {
    const TYPE_NAME: &'static str = "kafka";
    type Config = KafkaReceiverConfig;
}

impl ReceiverType for KafkaReceiver {
    const SIGNALS: &'static [Signal] = &Signal::ALL;

    #[cfg(feature = "kafka")]
    fn build(
        ctx: &BuildContext,
        config: KafkaReceiverConfig,
        next: SignalConsumers,
    ) -> Result<std::sync::Arc<dyn Lifecycle>, BoxError> {
        Ok(std::sync::Arc::new(consumer::KafkaConsumer::new(
            ctx, config, next,
        )?))
    }

    #[cfg(not(feature = "kafka"))]
    fn build(
        _ctx: &BuildContext,
        _config: KafkaReceiverConfig,
        _next: SignalConsumers,
    ) -> Result<std::sync::Arc<dyn Lifecycle>, BoxError> {
        Err(crate::kafka::not_built("kafka receiver"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(yaml: &str) -> Vec<String> {
        hotspan_config::yaml_errors::<KafkaReceiverConfig>(yaml)
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn otelcols_keys_and_defaults() {
        let c: KafkaReceiverConfig = hotspan_config::parse_yaml(
            "{brokers: [k:9092], group_id: gateways, initial_offset: earliest, profiles: {topics: [p1, p2], encoding: otlp_json}, autocommit: {interval: 500ms}}",
        )
        .expect("parses");
        assert_eq!(c.topic_names(Signal::Traces), ["otlp_spans"]);
        assert_eq!(c.topic_names(Signal::Profiles), ["p1", "p2"]);
        assert_eq!(c.profiles.encoding, MessageEncoding::OtlpJson);
        assert_eq!(c.initial_offset, InitialOffset::Earliest);
        assert_eq!(c.autocommit.interval, Duration::from_millis(500));
        let d = KafkaReceiverConfig::default();
        assert_eq!(d.group_id, "otel-collector");
        assert_eq!(d.initial_offset, InitialOffset::Latest);
        assert_eq!(d.session_timeout, Duration::from_secs(10));
    }

    #[test]
    fn otelcol_configs_keys_hotspan_honours_load() {
        let c: KafkaReceiverConfig = hotspan_config::parse_yaml(
            "{protocol_version: 2.1.0, max_fetch_size: 0, message_marking: {after: true}, group_rebalance_strategy: range}",
        )
        .expect("parses");
        assert_eq!(c.fetch_max_bytes(), NO_FETCH_LIMIT);
        assert_eq!(
            errors("{protocol_version: 2.1.0, max_fetch_size: 0, message_marking: {after: true}}"),
            Vec::<String>::new()
        );
        let errs = errors(
            "{message_marking: {after: true, on_error: true}, group_rebalance_strategy: cooperative-sticky}",
        );
        assert!(errs.iter().any(|e| e.starts_with("message_marking")), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.starts_with("group_rebalance_strategy")),
            "{errs:?}"
        );
        let errs = errors("{message_marking: {after: true, on_permanent_error: false}}");
        assert!(errs.iter().any(|e| e.starts_with("message_marking")), "{errs:?}");
    }

    #[test]
    fn bad_values_are_named() {
        let errs = errors(
            "{initial_offset: oldest, traces: {topics: ['^otlp.*']}, profiles: {topics: [otlp_spans]}}",
        );
        assert!(errs.iter().any(|e| e.starts_with("initial_offset")), "{errs:?}");
        let errs = errors("{traces: {topics: ['^otlp.*']}, profiles: {topics: [otlp_metrics]}}");
        assert!(errs.iter().any(|e| e.starts_with("traces.topics[0]")), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.starts_with("profiles.topics[0]")),
            "{errs:?}"
        );
        let errs = errors("{heartbeat_interval: 20s, group_id: ''}");
        assert!(
            errs.iter().any(|e| e.starts_with("heartbeat_interval")),
            "{errs:?}"
        );
        assert!(errs.iter().any(|e| e.starts_with("group_id")), "{errs:?}");
    }
}
