//! The consumer contract: one call, `consume(batch)`; after it returns the caller no longer
//! owns the data, and an error says whether a retry can help.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hotspan_config::Signal;
use hotspan_proto::Batch;
use thiserror::Error;

/// Why a consumer did not take a batch. Receivers map this to the protocol's status.
#[derive(Debug, Error, PartialEq)]
pub enum ConsumeError {
    /// Overload, a full queue, shutting down, a backend away: the sender should retry.
    /// The refused batch comes back with it where the consumer still has it, so a caller
    /// that must not lose data can retry without having kept a copy.
    #[error("{reason}")]
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
        batch: Option<Box<Batch>>,
    },
    /// The data itself is unacceptable; retrying will not help.
    #[error("{0}")]
    Permanent(String),
}

impl ConsumeError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        ConsumeError::Retryable {
            reason: reason.into(),
            retry_after: None,
            batch: None,
        }
    }

    /// A retryable refusal that hands the batch back.
    pub fn refused(reason: impl Into<String>, batch: Batch) -> Self {
        ConsumeError::Retryable {
            reason: reason.into(),
            retry_after: None,
            batch: Some(Box::new(batch)),
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, ConsumeError::Retryable { .. })
    }
}

/// A boxed future, so consumers can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait Consumer: Send + Sync {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, Result<(), ConsumeError>>;
    /// Whether a request of `bytes` may come in now: receivers ask before they read or decode
    /// it, so an overloaded pipeline costs a refused request, not a decoded one.
    fn admit(&self, _bytes: usize) -> Result<(), ConsumeError> {
        Ok(())
    }
}

pub type SharedConsumer = Arc<dyn Consumer>;

/// Hands a batch to several consumers; clones only for the extra ones.
pub struct Fanout {
    consumers: Vec<SharedConsumer>,
}

impl Fanout {
    /// One consumer needs no fan-out: it is returned as it is.
    pub fn of(mut consumers: Vec<SharedConsumer>) -> SharedConsumer {
        if consumers.len() == 1 {
            if let Some(only) = consumers.pop() {
                return only;
            }
        }
        Arc::new(Fanout { consumers })
    }
}

impl Consumer for Fanout {
    fn admit(&self, bytes: usize) -> Result<(), ConsumeError> {
        self.consumers.iter().try_for_each(|c| c.admit(bytes))
    }

    fn consume(&self, batch: Batch) -> BoxFuture<'_, Result<(), ConsumeError>> {
        Box::pin(async move {
            let Some((last, rest)) = self.consumers.split_last() else {
                return Ok(());
            };
            // All must take it. A retryable refusal wins over a permanent one, so the sender
            // retries (duplicating to those that took it, as otelcol does) rather than drops.
            let mut results = Vec::with_capacity(self.consumers.len());
            for c in rest {
                results.push(c.consume(batch.clone()).await);
            }
            // Whichever refusal is reported carries a copy of the batch back if any did.
            results.push(last.consume(batch).await);
            let mut permanent = None;
            let mut retryable: Option<ConsumeError> = None;
            for err in results.into_iter().filter_map(Result::err) {
                match (err, &mut retryable) {
                    (ConsumeError::Permanent(msg), _) => permanent = permanent.or(Some(msg)),
                    (e @ ConsumeError::Retryable { .. }, slot @ None) => *slot = Some(e),
                    (
                        ConsumeError::Retryable {
                            batch: returned @ Some(_),
                            ..
                        },
                        Some(ConsumeError::Retryable {
                            batch: kept @ None, ..
                        }),
                    ) => *kept = returned,
                    _ => {}
                }
            }
            match (retryable, permanent) {
                (Some(e), _) => Err(e),
                (None, Some(msg)) => Err(ConsumeError::Permanent(msg)),
                (None, None) => Ok(()),
            }
        })
    }
}

/// The next consumer for each signal a component emits.
#[derive(Clone, Default)]
pub struct SignalConsumers {
    consumers: Vec<(Signal, SharedConsumer)>,
}

impl SignalConsumers {
    pub fn insert(&mut self, signal: Signal, consumer: SharedConsumer) {
        self.consumers.retain(|(s, _)| *s != signal);
        self.consumers.push((signal, consumer));
    }

    pub fn get(&self, signal: Signal) -> Option<&SharedConsumer> {
        self.consumers.iter().find(|(s, _)| *s == signal).map(|(_, c)| c)
    }

    pub fn signals(&self) -> impl Iterator<Item = Signal> + '_ {
        self.consumers.iter().map(|(s, _)| *s)
    }
}
