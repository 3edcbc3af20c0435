//! The consumer contract: one call, `consume(batch)`; after it returns the caller no longer
//! owns the data, and an error says whether a retry can help.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hotspan_config::Signal;
use hotspan_proto::Batch;
use thiserror::Error;
use tracing::warn;

use crate::retry::{Attempt, GaveUp, Retrier, RetryConfig};

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

    /// The same error without the batch it may carry, for each of several senders to hear.
    pub fn without_batch(&self) -> Self {
        match self {
            ConsumeError::Retryable {
                reason, retry_after, ..
            } => ConsumeError::Retryable {
                reason: reason.clone(),
                retry_after: *retry_after,
                batch: None,
            },
            ConsumeError::Permanent(reason) => ConsumeError::Permanent(reason.clone()),
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

    /// The same refusal, handing `batch` back if it is retryable.
    fn with_batch(self, batch: Batch) -> Self {
        match self {
            ConsumeError::Retryable {
                reason, retry_after, ..
            } => ConsumeError::Retryable {
                reason,
                retry_after,
                batch: Some(Box::new(batch)),
            },
            permanent => permanent,
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

/// How long a request waits in a paused [`Switch`] before it is refused retryably: a reload
/// repoints it within milliseconds unless the new pipelines fail to start.
const SWITCH_PAUSE_LIMIT: Duration = Duration::from_secs(10);

/// A receiver's way into its pipelines, which a reload can re-point: a receiver whose config is
/// unchanged keeps running (and keeps its clients' connections) while the pipelines behind it
/// are replaced. Between the old pipelines draining and the new ones starting it is paused,
/// and requests wait in it.
pub struct Switch {
    target: tokio::sync::watch::Sender<Option<SharedConsumer>>,
}

impl Switch {
    pub fn new(target: SharedConsumer) -> Arc<Switch> {
        Arc::new(Switch {
            target: tokio::sync::watch::Sender::new(Some(target)),
        })
    }

    /// Requests from now on wait until [`Switch::point_to`].
    pub fn pause(&self) {
        self.target.send_replace(None);
    }

    pub fn point_to(&self, target: SharedConsumer) {
        self.target.send_replace(Some(target));
    }

    async fn current(&self) -> Result<SharedConsumer, ConsumeError> {
        if let Some(target) = self.target.borrow().clone() {
            return Ok(target);
        }
        let mut rx = self.target.subscribe();
        let target = match tokio::time::timeout(SWITCH_PAUSE_LIMIT, rx.wait_for(Option::is_some)).await {
            Ok(Ok(target)) => target.clone(),
            _ => None,
        };
        target.ok_or_else(|| ConsumeError::retryable("the pipelines are reloading"))
    }
}

impl Consumer for Switch {
    fn admit(&self, bytes: usize) -> Result<(), ConsumeError> {
        let target = self.target.borrow().clone();
        target.map_or(Ok(()), |t| t.admit(bytes))
    }

    fn consume(&self, batch: Batch) -> BoxFuture<'_, Result<(), ConsumeError>> {
        Box::pin(async move {
            let target = match self.current().await {
                Ok(t) => t,
                Err(e) => return Err(e.with_batch(batch)),
            };
            target.consume(batch).await
        })
    }
}

/// Hands `batch` to `next` for a stage that already acknowledged it upstream: a retryable
/// refusal that hands the batch back is retried (holding the caller, which is the
/// backpressure) until taken, refused for good, or shutdown's `deadline` passes. The error
/// says why the batch was dropped.
pub async fn hand_on(
    component: &str,
    next: &SharedConsumer,
    batch: Batch,
    deadline: &OnceLock<Instant>,
) -> Result<(), String> {
    let policy = RetryConfig::until_shutdown();
    let retrier = Retrier {
        policy: &policy,
        deadline,
        stopping: None,
        stop_at_shutdown: &crate::retry::UNTIL_DEADLINE,
    };
    let attempt = |batch: Batch| async move {
        match next.consume(batch).await {
            Ok(()) => Attempt::Done,
            Err(ConsumeError::Retryable {
                reason,
                retry_after,
                batch: Some(back),
            }) => Attempt::Retry {
                reason,
                after: retry_after,
                item: *back,
            },
            Err(ConsumeError::Retryable {
                reason, batch: None, ..
            }) => Attempt::Fail(format!(
                "downstream refused data and kept none to retry: {reason}"
            )),
            Err(ConsumeError::Permanent(reason)) => {
                Attempt::Fail(format!("downstream refused data for good: {reason}"))
            }
        }
    };
    let on_retry = |reason: &str, wait: Duration| {
        warn!(component, error = %reason, retry_in = ?wait, "downstream busy, retrying");
    };
    retrier
        .run(batch, attempt, on_retry)
        .await
        .map_err(|gave_up| match gave_up {
            GaveUp::Failed(reason) | GaveUp::Exhausted { reason, .. } | GaveUp::Stopped { reason, .. } => {
                reason
            }
        })
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
