use std::time::Duration;

use hotspan_config::{bounds, ComponentConfig, FieldError};
use serde::Deserialize;

/// otelcol's batch processor keys and defaults.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Items that make a batch worth sending without waiting for the timeout.
    pub send_batch_size: usize,
    /// Upper bound on a sent batch's items; 0 means no bound.
    pub send_batch_max_size: usize,
    /// How long items may wait for company; 0 sends every batch as it comes.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            send_batch_size: 8192,
            send_batch_max_size: 0,
            timeout: Duration::from_millis(200),
        }
    }
}

/// Most items in a batch: a batch is one export request, and past this it is more than the
/// receivers' 2 GiB request limit takes.
const MAX_BATCH: usize = 1_000_000;

impl ComponentConfig for BatchConfig {
    fn validate(&self, errs: &mut Vec<FieldError>) {
        // 0: no size trigger (send_batch_size) or no split (send_batch_max_size), as in otelcol.
        bounds::check(self.send_batch_size, 0..=MAX_BATCH, "send_batch_size", errs);
        bounds::check(
            self.send_batch_max_size,
            0..=MAX_BATCH,
            "send_batch_max_size",
            errs,
        );
        // Data held longer than a minute is late for the join downstream.
        let minute = Duration::from_secs(60);
        bounds::check_duration(self.timeout, Duration::ZERO..=minute, "timeout", errs);
        if self.send_batch_max_size != 0 && self.send_batch_max_size < self.send_batch_size {
            errs.push(FieldError {
                path: "send_batch_max_size".into(),
                message: format!(
                    "must be 0 or at least send_batch_size ({}), got {}",
                    self.send_batch_size, self.send_batch_max_size
                ),
            });
        }
    }
}
