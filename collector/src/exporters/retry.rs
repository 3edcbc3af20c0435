use std::time::Duration;

use hotspan_config::FieldError;
use serde::Deserialize;

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
