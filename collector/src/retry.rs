//! Retrying with backoff: otelcol's `retry_on_failure` policy and the one loop that applies
//! it, for exporters (sending to a backend) and for stages handing data they already
//! acknowledged to the next consumer.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hotspan_config::FieldError;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// otelcol's `retry_on_failure`: exponential backoff with jitter for retryable failures.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub initial_interval: Duration,
    /// Each wait is the backoff times a random factor in [1 - r, 1 + r].
    pub randomization_factor: f64,
    pub multiplier: f64,
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub max_interval: Duration,
    /// Give up on a batch after retrying this long; 0 retries until shutdown.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub max_elapsed_time: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            randomization_factor: 0.5,
            multiplier: 1.5,
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
        }
    }
}

impl RetryConfig {
    pub fn disabled() -> Self {
        RetryConfig {
            enabled: false,
            ..Default::default()
        }
    }

    /// For data a stage already acknowledged upstream: quick retries, no jitter, no time
    /// limit but shutdown's deadline.
    pub fn until_shutdown() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: Duration::from_millis(50),
            randomization_factor: 0.0,
            multiplier: 2.0,
            max_interval: Duration::from_secs(5),
            max_elapsed_time: Duration::ZERO,
        }
    }

    pub fn validate(&self, path: &str, errs: &mut Vec<FieldError>) {
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            errs.push(FieldError {
                path: format!("{path}.randomization_factor"),
                message: "must be between 0 and 1".into(),
            });
        }
        if self.multiplier < 1.0 {
            errs.push(FieldError {
                path: format!("{path}.multiplier"),
                message: "must be at least 1".into(),
            });
        }
        if self.enabled && self.initial_interval.is_zero() {
            errs.push(FieldError {
                path: format!("{path}.initial_interval"),
                message: "must be greater than 0".into(),
            });
        }
    }
}

/// The waits between attempts for one batch.
pub struct Backoff<'a> {
    config: &'a RetryConfig,
    current: Duration,
    /// Cheap per-backoff pseudo-randomness; jitter needs spread, not quality.
    seed: u64,
}

impl<'a> Backoff<'a> {
    pub fn new(config: &'a RetryConfig) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64 | 1)
            .unwrap_or(0x9e37_79b9);
        Backoff {
            config,
            current: config.initial_interval,
            seed,
        }
    }

    /// The next wait, honouring a server's hint when it gives one.
    pub fn next(&mut self, hint: Option<Duration>) -> Duration {
        let base = self.current;
        self.current = self
            .current
            .mul_f64(self.config.multiplier)
            .min(self.config.max_interval);
        if let Some(hint) = hint {
            return hint;
        }
        // xorshift
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let unit = (self.seed % 10_000) as f64 / 10_000.0; // [0, 1)
        let r = self.config.randomization_factor;
        base.mul_f64(1.0 - r + 2.0 * r * unit)
    }
}

/// What one attempt came to. `item` is what the next attempt needs back (a batch a consumer
/// returned with its refusal; `()` when the caller keeps it).
pub enum Attempt<T> {
    Done,
    /// Failed; another attempt may succeed, after `after` if the other side said so.
    Retry {
        reason: String,
        after: Option<Duration>,
        item: T,
    },
    /// Failed for good.
    Fail(String),
}

/// Why retrying ended without success.
#[derive(Debug)]
pub enum GaveUp<T> {
    /// The last attempt failed for good.
    Failed(String),
    /// Retryable, but retry is off, its time ran out, or shutdown's deadline came first.
    Exhausted { reason: String, item: T },
    /// Shutdown began and the caller keeps the item safe elsewhere (a persistent queue).
    Stopped { reason: String, item: T },
}

/// For [`Retrier::stop_at_shutdown`]: retry until shutdown's deadline.
pub static UNTIL_DEADLINE: AtomicBool = AtomicBool::new(false);

/// One retry loop with otelcol's policy, bounded by shutdown: its deadline (set when shutdown
/// begins) and, for callers whose data is safe elsewhere, its start.
pub struct Retrier<'a> {
    pub policy: &'a RetryConfig,
    /// Set when shutdown begins: no wait goes past it.
    pub deadline: &'a OnceLock<Instant>,
    /// Cancelled when shutdown begins, to cut a wait short.
    pub stopping: Option<&'a CancellationToken>,
    /// Stop at once when shutdown begins ([`GaveUp::Stopped`]) instead of retrying until its
    /// deadline; read at every turn, so it may be set while a retry waits.
    pub stop_at_shutdown: &'a AtomicBool,
}

impl Retrier<'_> {
    /// Makes attempts until one succeeds or fails for good, or retrying must end.
    /// `on_retry(reason, wait)` is told of every wait, for logs.
    pub async fn run<T, F, Fut>(
        &self,
        mut item: T,
        mut attempt: F,
        mut on_retry: impl FnMut(&str, Duration),
    ) -> Result<(), GaveUp<T>>
    where
        F: FnMut(T) -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let started = Instant::now();
        let mut backoff = Backoff::new(self.policy);
        loop {
            let (reason, after) = match attempt(item).await {
                Attempt::Done => return Ok(()),
                Attempt::Fail(reason) => return Err(GaveUp::Failed(reason)),
                Attempt::Retry {
                    reason,
                    after,
                    item: back,
                } => {
                    item = back;
                    (reason, after)
                }
            };
            let stopping = self.stopping.is_some_and(CancellationToken::is_cancelled);
            if !self.policy.enabled {
                let reason = format!("{reason} (retry disabled)");
                return Err(GaveUp::Exhausted { reason, item });
            }
            if self.stop_at_shutdown.load(Ordering::Acquire) && stopping {
                return Err(GaveUp::Stopped { reason, item });
            }
            let wait = backoff.next(after);
            let elapsed = started.elapsed();
            let limit = self.policy.max_elapsed_time;
            if !limit.is_zero() && elapsed + wait > limit {
                let reason = format!("{reason}; no more retries after {elapsed:?}");
                return Err(GaveUp::Exhausted { reason, item });
            }
            let wake = Instant::now() + wait;
            if self.deadline.get().is_some_and(|d| wake > *d) {
                let reason = format!("{reason}; shutdown deadline reached");
                return Err(GaveUp::Exhausted { reason, item });
            }
            on_retry(&reason, wait);
            match self.stopping {
                Some(stop) if !stopping => {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        // Shutdown began: stop now, or wait no later than its deadline.
                        _ = stop.cancelled() => {
                            if self.stop_at_shutdown.load(Ordering::Acquire) {
                                return Err(GaveUp::Stopped { reason, item });
                            }
                            if let Some(d) = self.deadline.get() {
                                tokio::time::sleep_until(wake.min(*d).into()).await;
                            }
                        }
                    }
                }
                _ => tokio::time::sleep(wait).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_within_jitter() {
        let cfg = RetryConfig {
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_millis(400),
            multiplier: 2.0,
            randomization_factor: 0.5,
            ..Default::default()
        };
        let mut b = Backoff::new(&cfg);
        let bases = [100, 200, 400, 400, 400];
        for base in bases {
            let wait = b.next(None).as_millis() as u64;
            assert!(
                wait >= base / 2 && wait <= base * 3 / 2,
                "wait {wait} for base {base}"
            );
        }
        assert_eq!(b.next(Some(Duration::from_secs(3))), Duration::from_secs(3));
    }
}
