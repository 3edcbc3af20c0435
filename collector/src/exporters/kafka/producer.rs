//! Producing with librdkafka: every message of a batch handed to the client at once, then
//! each acknowledgement awaited; the batch is sent when all are, and otherwise fails
//! retryably or for good by Kafka's error codes (the exporter helper retries the whole batch,
//! so a partly sent batch is sent again: duplicates, never losses).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hotspan_proto::Batch;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use tracing::{error, warn};

use super::{records, Compression, KafkaExporterConfig, RequiredAcks};
use crate::component::{BoxError, Exporter};
use crate::exporters::kafka::records::Plan;
use crate::exporters::ExportError;
use crate::kafka::{client_config, is_retryable, ClientContext};

/// How long a topic's partition count is trusted before it is asked again.
const PARTITIONS_TTL: Duration = Duration::from_secs(30);

type Client = FutureProducer<ClientContext>;

pub struct KafkaProducer {
    name: String,
    config: KafkaExporterConfig,
    /// Replaced when librdkafka reports a fatal error (an idempotent producer that lost its
    /// sequence): a fatal client refuses everything after.
    client: RwLock<Arc<Client>>,
    /// Partition counts by topic, for exporters that pick partitions themselves.
    partitions: Mutex<HashMap<String, (i32, Instant)>>,
}

impl KafkaProducer {
    pub fn new(name: String, config: KafkaExporterConfig) -> Result<Self, BoxError> {
        let client = make_client(&name, &config)?;
        Ok(KafkaProducer {
            name,
            config,
            client: RwLock::new(Arc::new(client)),
            partitions: Mutex::new(HashMap::new()),
        })
    }

    fn client(&self) -> Arc<Client> {
        self.client.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn replace_client(&self, broken: &Arc<Client>) {
        let mut slot = self.client.write().unwrap_or_else(|p| p.into_inner());
        if !Arc::ptr_eq(&slot, broken) {
            return; // another export replaced it already
        }
        match make_client(&self.name, &self.config) {
            Ok(fresh) => {
                warn!(exporter = %self.name, "kafka producer hit a fatal error; a new one takes over");
                let old = std::mem::replace(&mut *slot, Arc::new(fresh));
                // Dropping a client waits for its threads: not on an async worker.
                tokio::task::spawn_blocking(move || drop(old));
            }
            Err(e) => error!(exporter = %self.name, error = %e, "kafka producer could not be made again"),
        }
    }

    /// The topic's partition count, from the cluster's metadata (cached).
    async fn partition_count(&self, topic: &str) -> Result<i32, ExportError> {
        if let Some((n, at)) = self.lock_partitions().get(topic) {
            if at.elapsed() < PARTITIONS_TTL {
                return Ok(*n);
            }
        }
        let client = self.client();
        let (topic_name, timeout) = (topic.to_string(), self.config.timeout);
        let found = tokio::task::spawn_blocking(move || {
            let metadata = client.client().fetch_metadata(Some(&topic_name), timeout)?;
            let partitions = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic_name)
                .map(|t| (t.error(), t.partitions().len()));
            Ok::<_, KafkaError>(partitions)
        })
        .await
        .map_err(|e| ExportError::retryable(format!("metadata lookup: {e}")))?
        .map_err(|e| ExportError::retryable(format!("metadata for topic {topic}: {e}")))?;
        match found {
            Some((None, n)) if n > 0 => {
                let n = i32::try_from(n).unwrap_or(i32::MAX);
                self.lock_partitions()
                    .insert(topic.to_string(), (n, Instant::now()));
                Ok(n)
            }
            Some((Some(e), _)) => Err(ExportError::retryable(format!(
                "topic {topic}: {}",
                RDKafkaErrorCode::from(e)
            ))),
            _ => Err(ExportError::retryable(format!(
                "topic {topic} has no partitions yet"
            ))),
        }
    }

    fn lock_partitions(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i32, Instant)>> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn make_client(name: &str, config: &KafkaExporterConfig) -> Result<Client, BoxError> {
    let p = &config.producer;
    let mut c = client_config(&config.connection());
    let acks = match p.required_acks {
        RequiredAcks::None => "0",
        RequiredAcks::Leader => "1",
        RequiredAcks::All => "all",
    };
    let codec = match p.compression {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
    };
    c.set("acks", acks)
        // With every replica's acknowledgement, the broker also drops duplicates of librdkafka's
        // own retries (as franz-go does for otelcol); idempotence needs acks=all.
        .set(
            "enable.idempotence",
            (p.required_acks == RequiredAcks::All).to_string(),
        )
        .set("compression.codec", codec)
        // otelcol's key hash (Sarama's FNV-1a), so keyed messages land where otelcol's would.
        .set("partitioner", "fnv1a_random")
        .set("message.timeout.ms", config.timeout.as_millis().to_string())
        .set("linger.ms", p.linger.as_millis().to_string())
        .set("queue.buffering.max.messages", p.flush_max_messages.to_string())
        .set(
            "allow.auto.create.topics",
            p.allow_auto_topic_creation.to_string(),
        )
        // Messages are cut to max_message_bytes; the protocol's framing needs a little more.
        .set(
            "message.max.bytes",
            (p.max_message_bytes + 64 * 1024).min(1_000_000_000).to_string(),
        );
    if let Some(level) = p.compression_params.level {
        c.set("compression.level", level.to_string());
    }
    let context = ClientContext {
        component: name.to_string(),
    };
    Ok(c.create_with_context(context)
        .map_err(|e| format!("kafka producer: {e}"))?)
}

/// The first error of a batch decides: one permanent error fails it for good.
fn judge(errors: Vec<KafkaError>, acked: usize, total: usize) -> Result<(), ExportError> {
    let Some(first) = errors.first() else {
        return Ok(());
    };
    let reason = format!(
        "{} of {total} kafka messages failed ({acked} acknowledged): {first}",
        errors.len()
    );
    if errors.iter().all(is_retryable) {
        Err(ExportError::retryable(reason))
    } else {
        Err(ExportError::Permanent(reason))
    }
}

#[async_trait]
impl Exporter for KafkaProducer {
    async fn export(&self, batch: &Batch) -> Result<(), ExportError> {
        let signal = batch.signal();
        let target = self.config.signal(signal);
        let topic = self.config.topic(signal);
        let profile_partitions = match batch {
            Batch::Profiles(_) if self.config.partition_profiles_by_id => {
                Some(self.partition_count(topic).await?)
            }
            _ => None,
        };
        let plan = Plan {
            encoding: target.encoding.encoding(),
            max_bytes: self.config.producer.max_message_bytes,
            traces_by_id: self.config.partition_traces_by_id,
            profile_partitions,
        };
        let (records, oversize) = records(batch, &plan);
        let client = self.client();
        let mut pending: Vec<DeliveryFuture> = Vec::with_capacity(records.len());
        let mut errors = Vec::new();
        let mut acked = 0;
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        for r in &records {
            let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(&r.payload[..]);
            if let Some(key) = &r.key {
                record = record.key(&key[..]);
            }
            if let Some(p) = r.partition {
                record = record.partition(p);
            }
            loop {
                match client.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    // The client's buffer is full: wait for the oldest of ours to be answered
                    // (or a moment, when none of ours is out), up to the attempt's timeout.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if tokio::time::Instant::now() < deadline =>
                    {
                        record = back;
                        if pending.is_empty() {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        } else {
                            match settle(pending.remove(0)).await {
                                Ok(()) => acked += 1,
                                Err(e) => errors.push(e),
                            }
                        }
                    }
                    Err((e, _)) => {
                        errors.push(e);
                        break;
                    }
                }
            }
            if !errors.is_empty() {
                break;
            }
        }
        for delivery in pending {
            match settle(delivery).await {
                Ok(()) => acked += 1,
                Err(e) => errors.push(e),
            }
        }
        if errors
            .iter()
            .any(|e| e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal))
        {
            self.replace_client(&client);
        }
        judge(errors, acked, records.len())?;
        match oversize {
            None => Ok(()),
            Some((items, bytes)) => Err(ExportError::PartlySent {
                failed: items as u64,
                reason: format!(
                    "{items} items were larger than producer.max_message_bytes ({}) even alone (the smallest {bytes} bytes); the rest was sent",
                    self.config.producer.max_message_bytes
                ),
            }),
        }
    }

    async fn shutdown(&self) {
        let client = self.client();
        let timeout = self.config.timeout;
        let flushed = tokio::task::spawn_blocking(move || client.flush(timeout)).await;
        if let Ok(Err(e)) = flushed {
            warn!(exporter = %self.name, error = %e, "kafka producer: flushing at shutdown");
        }
    }
}

/// A message's acknowledgement, or why it has none.
async fn settle(delivery: DeliveryFuture) -> Result<(), KafkaError> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e),
        // The client went away before answering: nothing says the message was written.
        Err(_) => Err(KafkaError::Canceled),
    }
}
