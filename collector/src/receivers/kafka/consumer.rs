//! The consumer loop: one librdkafka group member, messages handed to the pipelines one at a
//! time, offsets stored for commit only once a pipeline took the message (or the message was
//! refused for good: bad data is skipped, counted and logged, or it would block its partition).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use hotspan_config::Signal;
use hotspan_proto::Encoding;
use rdkafka::client::ClientContext as RdClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::Offset;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{InitialOffset, KafkaReceiverConfig};
use crate::component::{BoxError, BuildContext, Lifecycle};
use crate::consumer::{ConsumeError, SignalConsumers};
use crate::kafka::{client_config, ClientContext};
use crate::receivers::ingest::{Ingest, IngestError};
use crate::telemetry::{Counter, Gauge};

/// Pauses after a retryable refusal: short first, doubling while the pipeline keeps refusing.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// librdkafka's callbacks: logs, errors, and the partitions this member holds.
struct Context {
    client: ClientContext,
    partitions: Gauge,
}

impl RdClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.client.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.client.error(error, reason);
    }
}

impl ConsumerContext for Context {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let held: Vec<String> = tpl
                    .elements()
                    .iter()
                    .map(|e| format!("{}/{}", e.topic(), e.partition()))
                    .collect();
                info!(receiver = %self.client.component, partitions = %held.join(" "), "kafka: partitions assigned");
                self.partitions.set(held.len() as i64);
            }
            Rebalance::Revoke(_) => {
                info!(receiver = %self.client.component, "kafka: partitions revoked");
                self.partitions.set(0);
            }
            Rebalance::Error(e) => {
                warn!(receiver = %self.client.component, error = %e, "kafka: rebalance failed")
            }
        }
    }
}

type Client = StreamConsumer<Context>;

pub struct KafkaConsumer {
    name: String,
    config: KafkaReceiverConfig,
    ingest: Arc<Ingest>,
    /// Topic -> the signal and encoding its messages have.
    topics: Arc<HashMap<String, (Signal, Encoding)>>,
    partitions: Gauge,
    rewinds: Counter,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl KafkaConsumer {
    pub fn new(
        ctx: &BuildContext,
        config: KafkaReceiverConfig,
        next: SignalConsumers,
    ) -> Result<Self, BoxError> {
        let name = ctx.name();
        let ingest = Ingest::new(&name, "kafka", next, ctx.telemetry).without_deadline();
        // Only the topics of signals some pipeline takes from this receiver.
        let topics: HashMap<String, (Signal, Encoding)> = Signal::ALL
            .into_iter()
            .filter(|s| ingest.accepts(*s))
            .flat_map(|s| {
                let encoding = config.topics(s).encoding.encoding();
                config
                    .topic_names(s)
                    .into_iter()
                    .map(move |topic| (topic, (s, encoding)))
            })
            .collect();
        if topics.is_empty() {
            return Err(format!("{name}: no pipeline takes any signal from it").into());
        }
        let labels = [("receiver", name.as_str())];
        let m = &ctx.telemetry.metrics;
        Ok(KafkaConsumer {
            partitions: m.gauge(
                "hotspan_kafka_receiver_partitions",
                "Kafka partitions assigned to this consumer group member.",
                &labels,
            ),
            rewinds: m.counter(
                "hotspan_kafka_receiver_rewinds",
                "Messages a pipeline refused retryably: their partition was rewound to read them again.",
                &labels,
            ),
            name,
            config,
            ingest: Arc::new(ingest),
            topics: Arc::new(topics),
            stop: CancellationToken::new(),
            task: Mutex::new(None),
        })
    }

    fn client(&self) -> Result<Client, BoxError> {
        let c = &self.config;
        let mut settings = client_config(&c.connection());
        settings
            .set("group.id", &c.group_id)
            .set(
                "auto.offset.reset",
                match c.initial_offset {
                    InitialOffset::Latest => "latest",
                    InitialOffset::Earliest => "earliest",
                },
            )
            // Offsets are stored by hand, once the pipeline took the message; what is stored is
            // committed every interval (and when partitions are revoked or the member leaves).
            .set("enable.auto.offset.store", "false")
            .set("enable.auto.commit", c.autocommit.enable.to_string())
            .set(
                "auto.commit.interval.ms",
                c.autocommit.interval.as_millis().max(1).to_string(),
            )
            // Same partition numbers of every topic to the same member: the join needs a
            // trace's spans and samples together.
            .set("partition.assignment.strategy", "range")
            .set("session.timeout.ms", c.session_timeout.as_millis().to_string())
            .set(
                "heartbeat.interval.ms",
                c.heartbeat_interval.as_millis().to_string(),
            )
            .set("fetch.min.bytes", c.min_fetch_size.to_string())
            .set("fetch.max.bytes", c.fetch_max_bytes().to_string())
            .set("fetch.wait.max.ms", c.max_fetch_wait.as_millis().to_string())
            .set(
                "max.partition.fetch.bytes",
                c.max_partition_fetch_size.to_string(),
            )
            // Topics created after the member subscribed are found within seconds.
            .set("topic.metadata.refresh.interval.ms", "10000");
        if let Some(id) = &c.group_instance_id {
            settings.set("group.instance.id", id);
        }
        let context = Context {
            client: ClientContext {
                component: self.name.clone(),
            },
            partitions: self.partitions.clone(),
        };
        let client: Client = settings
            .create_with_context(context)
            .map_err(|e| format!("{}: kafka consumer: {e}", self.name))?;
        let topics: Vec<&str> = self.topics.keys().map(String::as_str).collect();
        client
            .subscribe(&topics)
            .map_err(|e| format!("{}: subscribing to {topics:?}: {e}", self.name))?;
        Ok(client)
    }
}

#[async_trait]
impl Lifecycle for KafkaConsumer {
    async fn start(&self) -> Result<(), BoxError> {
        let client = self.client()?;
        let run = Run {
            name: self.name.clone(),
            ingest: self.ingest.clone(),
            topics: self.topics.clone(),
            commit_each: !self.config.autocommit.enable,
            rewinds: self.rewinds.clone(),
            stop: self.stop.clone(),
        };
        let task = tokio::spawn(run.consume(client));
        *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) {
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline.into(), task).await.is_err() {
                warn!(receiver = %self.name, "kafka consumer did not stop by the deadline");
                abort.abort();
            }
        }
    }
}

/// What the consumer task needs.
struct Run {
    name: String,
    ingest: Arc<Ingest>,
    topics: Arc<HashMap<String, (Signal, Encoding)>>,
    commit_each: bool,
    rewinds: Counter,
    stop: CancellationToken,
}

/// What became of one message.
enum Outcome {
    /// Taken, or refused for good: its offset may be committed.
    Done,
    /// Refused for now: read it again.
    Again(String),
}

impl Run {
    async fn consume(self, client: Client) {
        let mut backoff = BACKOFF_MIN;
        // The error consuming last ended with, while it lasts.
        let mut failing: Option<String> = None;
        loop {
            let message = tokio::select! {
                _ = self.stop.cancelled() => break,
                m = client.recv() => m,
            };
            let message = match message {
                Ok(m) => {
                    if failing.take().is_some() {
                        info!(receiver = %self.name, "kafka: consuming again");
                    }
                    m
                }
                Err(e) => {
                    // A topic not created yet, a broker away: librdkafka keeps trying. Each new
                    // error is said once at warn (it comes back every 200 ms while it lasts),
                    // so a receiver that reads nothing says why.
                    let text = e.to_string();
                    if failing.as_deref() == Some(text.as_str()) {
                        debug!(receiver = %self.name, error = %text, "kafka: consume");
                    } else {
                        let mut topics: Vec<&String> = self.topics.keys().collect();
                        topics.sort();
                        warn!(receiver = %self.name, error = %text, ?topics, "kafka: cannot consume; trying again");
                        failing = Some(text);
                    }
                    tokio::select! {
                        _ = self.stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                    }
                }
            };
            let (topic, partition, offset) =
                (message.topic().to_string(), message.partition(), message.offset());
            let payload = Bytes::copy_from_slice(message.payload().unwrap_or_default());
            drop(message);
            // The pipeline gets as long as it needs (a backend slow to answer, an exporter
            // retrying), as otelcol's receiver gives it, except at shutdown: then the message
            // is left uncommitted, for the next owner of its partition.
            let outcome = tokio::select! {
                _ = self.stop.cancelled() => break,
                o = self.handle(&topic, partition, offset, payload) => o,
            };
            match outcome {
                Outcome::Done => {
                    backoff = BACKOFF_MIN;
                    // Fails only when the partition was taken away meanwhile: its next owner
                    // reads the message again.
                    if let Err(e) = client.store_offset(&topic, partition, offset) {
                        debug!(receiver = %self.name, error = %e, topic, partition, offset, "kafka: offset not stored");
                    } else if self.commit_each {
                        if let Err(e) = client.commit_consumer_state(CommitMode::Async) {
                            debug!(receiver = %self.name, error = %e, "kafka: commit");
                        }
                    }
                }
                Outcome::Again(reason) => {
                    self.rewinds.add(1);
                    debug!(receiver = %self.name, topic, partition, offset, reason, retry_in = ?backoff, "kafka: pipeline refused a message; reading it again");
                    // Messages of this partition already fetched behind it are dropped: the
                    // partition is read again from this one.
                    if let Err(e) = client.seek(&topic, partition, Offset::Offset(offset), Duration::ZERO) {
                        warn!(receiver = %self.name, error = %e, topic, partition, "kafka: rewinding");
                    }
                    tokio::select! {
                        _ = self.stop.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        // What was taken is committed before the member leaves the group.
        let name = self.name.clone();
        let left = tokio::task::spawn_blocking(move || {
            match client.commit_consumer_state(CommitMode::Sync) {
                Ok(()) | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => warn!(receiver = %name, error = %e, "kafka: committing at shutdown"),
            }
            drop(client);
        })
        .await;
        if left.is_err() {
            warn!(receiver = %self.name, "kafka consumer did not close cleanly");
        }
    }

    async fn handle(&self, topic: &str, partition: i32, offset: i64, payload: Bytes) -> Outcome {
        let Some(&(signal, encoding)) = self.topics.get(topic) else {
            return Outcome::Done;
        };
        let result = match self.ingest.admit(signal, payload.len()) {
            Ok(()) => self.ingest.otlp(signal, payload, encoding).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(_) => Outcome::Done,
            Err(IngestError::Refused(ConsumeError::Retryable { reason, .. })) => Outcome::Again(reason),
            Err(IngestError::BadData(reason))
            | Err(IngestError::Refused(ConsumeError::Permanent(reason))) => {
                warn!(receiver = %self.name, topic, partition, offset, reason, "kafka: message skipped: it can never be taken");
                Outcome::Done
            }
            Err(IngestError::NoPipeline(_)) => Outcome::Done,
        }
    }
}
