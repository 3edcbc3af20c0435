//! hotspan: an OTLP collector that joins profile samples to the spans that were running when
//! they were taken. The binary is `main.rs`; this library is everything it runs.
#![forbid(unsafe_code)]
// A panic on input would take the collector down: errors are handled; tests may unwrap.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod component;
pub mod connectors;
pub mod consumer;
pub mod exporterhelper;
pub mod exporters;
pub mod extensions;
pub mod grpc;
pub mod kafka;
pub mod net;
pub mod processors;
pub mod receivers;
pub mod registry;
pub mod report;
pub mod retry;
pub mod service;
pub mod telemetry;
pub mod tls;
pub mod views;

use hotspan_config::{Config, ConfigError};

/// The config `hotspan` runs when given none: OTLP in on 127.0.0.1, batched, to the log.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/examples/default.yaml");

/// Loads the config `--config` values give (`file:`, `env:`, `yaml:` or a path), merged in
/// order as otelcol merges them.
pub fn load_config_sources(uris: &[String]) -> Result<Config, Vec<ConfigError>> {
    hotspan_config::load_sources(
        uris,
        &|name| std::env::var(name).ok(),
        &registry::Registry::default(),
    )
}

/// Sleeps until `at`; never returns when it is `None` (a `select!` arm with no deadline).
pub(crate) async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// Loads the embedded default config.
pub fn default_config() -> Result<Config, Vec<ConfigError>> {
    hotspan_config::load(
        DEFAULT_CONFIG,
        &|k| std::env::var(k).ok(),
        &registry::Registry::default(),
    )
}
