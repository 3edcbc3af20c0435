//! otelcol's Kafka client keys as librdkafka settings, librdkafka's logs as hotspan's, and which
//! of Kafka's errors are worth retrying.

use rdkafka::client::ClientContext as RdClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode as Code;
use tracing::{debug, error, info, warn};

use super::Connection;

/// The librdkafka settings every client of `conn` starts from.
pub fn client_config(conn: &Connection) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", conn.brokers.join(","))
        .set("client.id", &conn.client_id)
        // Its own logs go through `ClientContext::log`, at the level tracing asks for.
        .set_log_level(RDKafkaLogLevel::Info);
    let sasl = conn.auth.sasl.as_ref();
    let protocol = match (conn.uses_tls(), sasl.is_some()) {
        (false, false) => "plaintext",
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    c.set("security.protocol", protocol);
    if let Some(sasl) = sasl {
        c.set("sasl.mechanism", &sasl.mechanism)
            .set("sasl.username", &sasl.username)
            .set("sasl.password", &sasl.password);
    }
    if let Some(tls) = conn.tls.as_ref().filter(|_| conn.uses_tls()) {
        // Without ca_file, OpenSSL's default paths: the system's roots.
        if let Some(ca) = &tls.ca_file {
            c.set("ssl.ca.location", ca);
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            c.set("ssl.certificate.location", cert)
                .set("ssl.key.location", key);
        }
        if tls.insecure_skip_verify {
            c.set("enable.ssl.certificate.verification", "false")
                .set("ssl.endpoint.identification.algorithm", "none");
        } else {
            c.set("ssl.endpoint.identification.algorithm", "https");
        }
    }
    c
}

/// Routes librdkafka's log lines and errors to tracing, under the component's name.
pub struct ClientContext {
    pub component: String,
}

impl RdClientContext for ClientContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let name = &self.component;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => error!(component = %name, facility, "kafka: {message}"),
            RDKafkaLogLevel::Warning => warn!(component = %name, facility, "kafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                info!(component = %name, facility, "kafka: {message}")
            }
            RDKafkaLogLevel::Debug => debug!(component = %name, facility, "kafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Brokers going away and coming back are routine; librdkafka reconnects on its own.
        match error.rdkafka_error_code() {
            Some(Code::BrokerTransportFailure | Code::AllBrokersDown | Code::Resolve) => {
                warn!(component = %self.component, error = %error, "kafka: {reason}")
            }
            _ => error!(component = %self.component, error = %error, "kafka: {reason}"),
        }
    }
}

/// Whether sending again could succeed. Permanent: what Kafka's protocol marks non-retriable
/// for a produce (the record or request is too large or malformed, the topic name is invalid,
/// authorization or authentication was refused, a setting the broker does not accept) and
/// librdkafka's own refusals of the record. Everything else (brokers down, leaders moving, not
/// enough replicas, timeouts, a full local queue, a topic not created yet) is retryable.
pub fn is_retryable(error: &KafkaError) -> bool {
    let Some(code) = error.rdkafka_error_code() else {
        // Errors without a code (a bad setting, a client that could not be made) are the
        // config's, and another attempt changes nothing.
        return !matches!(
            error,
            KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_)
        );
    };
    !matches!(
        code,
        Code::InvalidMessage
            | Code::InvalidMessageSize
            | Code::MessageSizeTooLarge
            | Code::MessageBatchTooLarge
            | Code::InvalidTopic
            | Code::InvalidRequiredAcks
            | Code::TopicAuthorizationFailed
            | Code::ClusterAuthorizationFailed
            | Code::TransactionalIdAuthorizationFailed
            | Code::UnsupportedSASLMechanism
            | Code::IllegalSASLState
            | Code::SaslAuthenticationFailed
            | Code::UnsupportedVersion
            | Code::UnsupportedForMessageFormat
            | Code::UnsupportedCompressionType
            | Code::InvalidRecord
            | Code::InvalidConfig
            | Code::InvalidRequest
            | Code::PolicyViolation
            | Code::SecurityDisabled
            | Code::BadMessage
            | Code::InvalidArgument
            | Code::UnknownPartition
            | Code::Authentication
            | Code::SSL
            | Code::KeySerialization
            | Code::ValueSerialization
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafkas_retriable_errors_are_retried_and_the_rest_are_not() {
        let produce = |c| KafkaError::MessageProduction(c);
        for code in [
            Code::MessageTimedOut,
            Code::QueueFull,
            Code::AllBrokersDown,
            Code::BrokerTransportFailure,
            Code::NotLeaderForPartition,
            Code::LeaderNotAvailable,
            Code::NotEnoughReplicas,
            Code::RequestTimedOut,
            Code::UnknownTopicOrPartition,
            Code::UnknownTopic,
            Code::Fatal,
        ] {
            assert!(is_retryable(&produce(code)), "{code:?}");
        }
        for code in [
            Code::MessageSizeTooLarge,
            Code::InvalidTopic,
            Code::TopicAuthorizationFailed,
            Code::SaslAuthenticationFailed,
            Code::Authentication,
            Code::UnsupportedCompressionType,
        ] {
            assert!(!is_retryable(&produce(code)), "{code:?}");
        }
    }
}
