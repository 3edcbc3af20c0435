//! What every receiver does with a payload once it has one: decode, drop what is invalid,
//! hand it to the pipeline, count, and say what the client should hear.

use std::time::Duration;

use bytes::Bytes;
use hotspan_config::Signal;
use hotspan_proto::{Batch, Encoding};
use tracing::debug;

use crate::consumer::{ConsumeError, SignalConsumers};
use crate::exporterhelper::item_unit;
use crate::telemetry::{Counter, Telemetry};

/// How long a receiver waits for a full pipeline before telling the client to retry.
pub const PIPELINE_WAIT: Duration = Duration::from_secs(5);

/// Why a payload was not accepted, in terms a protocol can map to a status.
#[derive(Debug)]
pub enum IngestError {
    /// The payload is malformed: 400 / INVALID_ARGUMENT.
    BadData(String),
    /// No pipeline takes this signal from this receiver: 404 / UNIMPLEMENTED.
    NoPipeline(Signal),
    /// The pipeline refused or timed out.
    Refused(ConsumeError),
}

/// The outcome a client hears on success: items rejected as invalid, and why.
#[derive(Debug, Default)]
pub struct Accepted {
    pub rejected: usize,
    pub message: String,
}

struct Counters {
    accepted: Counter,
    refused: Counter,
    bad_requests: Counter,
    /// Requests refused whole before decoding (memory_limiter), items unknown.
    refused_requests: Counter,
}

/// One per receiver and transport (`grpc`, `http`).
pub struct Ingest {
    next: SignalConsumers,
    counters: Vec<(Signal, Counters)>,
    /// How long the pipeline gets to take a batch; `None`: as long as it needs.
    pipeline_wait: Option<Duration>,
}

impl Ingest {
    pub fn new(receiver: &str, transport: &str, next: SignalConsumers, telemetry: &Telemetry) -> Self {
        let m = &telemetry.metrics;
        let labels = [("receiver", receiver), ("transport", transport)];
        let counters = Signal::ALL
            .iter()
            .map(|&s| {
                let unit = item_unit(s);
                let counters = Counters {
                    accepted: m.counter(
                        &format!("otelcol_receiver_accepted_{unit}"),
                        "Items accepted into the pipeline.",
                        &labels,
                    ),
                    refused: m.counter(
                        &format!("otelcol_receiver_refused_{unit}"),
                        "Items refused: invalid, or the pipeline could not take them.",
                        &labels,
                    ),
                    bad_requests: m.counter(
                        "hotspan_receiver_bad_requests",
                        "Requests refused as malformed, oversized or of an unsupported type.",
                        &labels,
                    ),
                    refused_requests: m.counter(
                        "hotspan_receiver_refused_requests",
                        "Requests refused before decoding because a pipeline was over its memory limit.",
                        &labels,
                    ),
                };
                (s, counters)
            })
            .collect();
        Ingest {
            next,
            counters,
            pipeline_wait: Some(PIPELINE_WAIT),
        }
    }

    /// For a receiver no client is waiting on (Kafka): the pipeline gets as long as it needs,
    /// since giving up on it only means taking the same data again.
    pub fn without_deadline(mut self) -> Self {
        self.pipeline_wait = None;
        self
    }

    /// The pipeline gets at most `wait` (HTTP's `write_timeout`, when shorter than the default).
    pub fn with_pipeline_wait_at_most(mut self, wait: Duration) -> Self {
        self.pipeline_wait = self.pipeline_wait.map(|w| w.min(wait));
        self
    }

    pub fn accepts(&self, signal: Signal) -> bool {
        self.next.get(signal).is_some()
    }

    fn counters(&self, signal: Signal) -> &Counters {
        // Every signal got counters in `new`.
        &self
            .counters
            .iter()
            .find(|(s, _)| *s == signal)
            .unwrap_or(&self.counters[0])
            .1
    }

    /// Counts a request refused before it could be decoded.
    pub fn bad_request(&self, signal: Signal, reason: &str) {
        debug!(%signal, reason, "bad request");
        self.counters(signal).bad_requests.add(1);
    }

    /// Admission before decoding: a pipeline over its memory limit refuses the request whole.
    pub fn admit(&self, signal: Signal, bytes: usize) -> Result<(), IngestError> {
        let Some(next) = self.next.get(signal) else {
            return Err(IngestError::NoPipeline(signal));
        };
        next.admit(bytes).map_err(|e| {
            self.counters(signal).refused_requests.add(1);
            IngestError::Refused(e)
        })
    }

    /// Decodes an OTLP export request and delivers it. Callers admit the request first
    /// ([`Ingest::admit`]), as early as their protocol allows.
    pub async fn otlp(
        &self,
        signal: Signal,
        bytes: Bytes,
        encoding: Encoding,
    ) -> Result<Accepted, IngestError> {
        if !self.accepts(signal) {
            return Err(IngestError::NoPipeline(signal));
        }
        let batch = Batch::decode_bytes(signal, bytes, encoding).map_err(|e| {
            self.bad_request(signal, &e.to_string());
            IngestError::BadData(e.to_string())
        })?;
        self.forward(batch).await
    }

    /// Admits a batch a receiver made itself (from pprof), then hands it on.
    pub async fn deliver(&self, batch: Batch) -> Result<Accepted, IngestError> {
        self.admit(batch.signal(), batch.encoded_len())?;
        self.forward(batch).await
    }

    /// Drops invalid items, hands the rest to the pipeline and waits for its answer.
    async fn forward(&self, mut batch: Batch) -> Result<Accepted, IngestError> {
        let signal = batch.signal();
        let Some(next) = self.next.get(signal) else {
            return Err(IngestError::NoPipeline(signal));
        };
        let counters = self.counters(signal);
        let rejected = batch.remove_invalid();
        counters.refused.add(rejected.items as u64);
        let items = batch.item_count() as u64;
        if items > 0 {
            let result = match self.pipeline_wait {
                Some(wait) => match tokio::time::timeout(wait, next.consume(batch)).await {
                    Ok(r) => r,
                    Err(_) => Err(ConsumeError::retryable("pipeline is full")),
                },
                None => next.consume(batch).await,
            };
            if let Err(e) = result {
                counters.refused.add(items);
                return Err(IngestError::Refused(e));
            }
            counters.accepted.add(items);
        }
        Ok(Accepted {
            rejected: rejected.reported,
            message: rejected.reason.unwrap_or_default(),
        })
    }
}
