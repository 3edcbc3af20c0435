//! Retrying with backoff: otelcol's `retry_on_failure` policy and the one loop that applies
//! it, for exporters (sending to a backend) and for stages handing data they already
//! acknowledged to the next consumer.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hotspan_config::{bounds, FieldError};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// Largest `multiplier`: a hundredfold growth per retry reaches any `max_interval` within a
/// few retries already, and below it the grown wait always fits a `Duration`.
pub const MAX_MULTIPLIER: f64 = 100.0;

/// Longest wait between two attempts: a backend away for longer is retried hourly.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// Longest a batch is retried (0: until shutdown); a persistent queue keeps it past a restart.
pub const MAX_ELAPSED_TIME: Duration = Duration::from_secs(7 * 24 * 3600);

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
        let key = |name: &str| format!("{path}.{name}");
        bounds::check(
            self.randomization_factor,
            0.0..=1.0,
            key("randomization_factor"),
            errs,
        );
        // NaN and infinity fail this too: growing a wait by either panics.
        bounds::check(self.multiplier, 1.0..=MAX_MULTIPLIER, key("multiplier"), errs);
        if self.enabled {
            // Every wait after the first is capped by max_interval: 0 would retry in a tight loop.
            for (name, value) in [
                ("initial_interval", self.initial_interval),
                ("max_interval", self.max_interval),
            ] {
                bounds::check_duration(value, Duration::from_nanos(1)..=MAX_INTERVAL, key(name), errs);
            }
            bounds::check_duration(
                self.max_elapsed_time,
                Duration::ZERO..=MAX_ELAPSED_TIME,
                key("max_elapsed_time"),
                errs,
            );
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

    /// The next wait: the jittered backoff, or a server's hint when it asks for longer. As in
    /// otelcol, a hint never shortens the backoff: `Retry-After: 0` from a struggling server
    /// must not turn retries into a tight loop. A hint past [`MAX_INTERVAL`] waits that long.
    pub fn next(&mut self, hint: Option<Duration>) -> Duration {
        let base = self.current;
        self.current = self
            .current
            .mul_f64(self.config.multiplier)
            .min(self.config.max_interval);
        // xorshift
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let unit = (self.seed % 10_000) as f64 / 10_000.0; // [0, 1)
        let r = self.config.randomization_factor;
        let wait = base.mul_f64(1.0 - r + 2.0 * r * unit);
        hint.map_or(wait, |hint| wait.max(hint.min(MAX_INTERVAL)))
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
            // Kept rather than dropped, retry or not: an exporter that retries inside itself
            // (load_balancing) runs with the runtime's retry off and gives up at shutdown.
            if self.stop_at_shutdown.load(Ordering::Acquire) && stopping {
                return Err(GaveUp::Stopped { reason, item });
            }
            if !self.policy.enabled {
                let reason = format!("{reason} (retry disabled)");
                return Err(GaveUp::Exhausted { reason, item });
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
        // A shorter hint than the backoff changes nothing; one past the longest wait is capped.
        let wait = b.next(Some(Duration::ZERO)).as_millis();
        assert!(
            (200..=600).contains(&wait),
            "wait {wait} for base 400 and a hint of 0"
        );
        assert_eq!(b.next(Some(Duration::from_secs(1 << 40))), MAX_INTERVAL);
    }

    fn problems(yaml: &str) -> Vec<String> {
        let cfg: RetryConfig = hotspan_config::from_yaml(yaml).unwrap();
        let mut errs = Vec::new();
        cfg.validate("retry_on_failure", &mut errs);
        errs.into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect()
    }

    #[test]
    fn numbers_that_would_panic_or_spin_are_refused() {
        assert!(problems("{multiplier: 100, max_interval: 1ns}").is_empty());
        for multiplier in [".nan", ".inf", "-.inf", "0.5", "100.5", "1e300"] {
            assert_eq!(
                problems(&format!("{{multiplier: {multiplier}}}")),
                ["retry_on_failure.multiplier: must be from 1 to 100"],
                "{multiplier}"
            );
        }
        assert_eq!(
            problems("{randomization_factor: .nan, max_interval: 0s}"),
            [
                "retry_on_failure.randomization_factor: must be from 0 to 1",
                "retry_on_failure.max_interval: must be greater than 0s and at most 1h0m0s"
            ]
        );
        assert!(problems("{initial_interval: 1h, max_interval: 1h, max_elapsed_time: 168h}").is_empty());
        assert_eq!(
            problems("{initial_interval: 1h0m1s, max_interval: 2562047h, max_elapsed_time: 168h0m1s}"),
            [
                "retry_on_failure.initial_interval: must be greater than 0s and at most 1h0m0s",
                "retry_on_failure.max_interval: must be greater than 0s and at most 1h0m0s",
                "retry_on_failure.max_elapsed_time: must be from 0s to 168h0m0s"
            ]
        );
        assert!(problems("{enabled: false, initial_interval: 0s, max_interval: 0s}").is_empty());
    }

    /// Durations as the config parser bounds them: 0 to Go's largest.
    fn duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            Just(Duration::ZERO),
            Just(Duration::from_nanos(1)),
            Just(Duration::from_nanos(i64::MAX as u64)),
            (0u64..=i64::MAX as u64).prop_map(Duration::from_nanos),
            (0u64..100_000).prop_map(Duration::from_millis),
        ]
    }

    /// Mostly from `valid`, and the edges and anything else besides.
    fn factor(valid: std::ops::RangeInclusive<f64>) -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => valid.clone(),
            1 => Just(*valid.start()),
            1 => Just(*valid.end()),
            1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, -1.0, 0.0, 1e300]),
            1 => any::<f64>(),
        ]
    }

    use proptest::prelude::*;

    proptest! {
        /// Any policy that validates computes every wait of a long retry without panicking,
        /// and waits no longer than its larger interval, doubled by jitter.
        #[test]
        fn a_valid_policy_never_panics_while_backing_off(
            initial_interval in duration(),
            max_interval in duration(),
            max_elapsed_time in duration(),
            multiplier in factor(1.0..=MAX_MULTIPLIER),
            randomization_factor in factor(0.0..=1.0),
        ) {
            let cfg = RetryConfig {
                enabled: true,
                initial_interval,
                randomization_factor,
                multiplier,
                max_interval,
                max_elapsed_time,
            };
            let mut errs = Vec::new();
            cfg.validate("retry_on_failure", &mut errs);
            if !errs.is_empty() {
                return Ok(());
            }
            let mut backoff = Backoff::new(&cfg);
            let longest = initial_interval.max(max_interval).saturating_mul(2);
            for _ in 0..200 {
                let wait = backoff.next(None);
                prop_assert!(wait <= longest, "{wait:?} > {longest:?}");
            }
        }
    }
}
