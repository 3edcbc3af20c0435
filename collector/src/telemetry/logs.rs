use hotspan_config::{LogEncoding, LogLevel, LogsTelemetry};
use tracing_subscriber::EnvFilter;

/// Logs go to stderr. `RUST_LOG`, when set, overrides the configured level.
pub fn init_logging(config: &LogsTelemetry) {
    let level = match config.level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests, reload) keeps the first subscriber.
    let _ = match config.encoding {
        LogEncoding::Json => builder.json().try_init(),
        LogEncoding::Console => builder.with_ansi(false).try_init(),
    };
}
