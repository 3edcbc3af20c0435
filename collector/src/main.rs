use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use hotspan::registry::Registry;
use hotspan::service::Service;
use hotspan::telemetry::init_logging;
use hotspan_config::{Config, ConfigError};
use tracing::{error, info, warn};

/// An OTLP collector that annotates spans with the code that burned their CPU.
#[derive(Parser)]
#[command(name = "hotspan", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file (the OpenTelemetry Collector's shape). Without it, `run` uses the embedded
    /// default: OTLP on 127.0.0.1:4317/4318 -> batch -> debug.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// How long SIGTERM/SIGINT may take to drain every pipeline before hotspan gives up.
    #[arg(long, global = true, default_value = "20s", value_parser = parse_duration)]
    shutdown_timeout: Duration,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector (the default).
    Run,
    /// Check a config file without running it; prints every problem and exits non-zero.
    Validate,
    /// List every component type with its signals.
    Components,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    hotspan_config::duration::parse(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Validate => validate(cli.config),
        Command::Components => components(),
        Command::Run => run(cli.config, cli.shutdown_timeout),
    }
}

fn print_errors(source: &str, errors: &[ConfigError]) {
    for e in errors {
        eprintln!("{source}: {e}");
    }
}

fn load(path: &Option<PathBuf>) -> Result<(Config, String), ExitCode> {
    let (loaded, source) = match path {
        Some(p) => (hotspan::load_config(p), p.display().to_string()),
        None => (hotspan::default_config(), "embedded default config".to_string()),
    };
    match loaded {
        Ok(config) => Ok((config, source)),
        Err(errors) => {
            print_errors(&source, &errors);
            eprintln!("{source}: {} problem(s)", errors.len());
            Err(ExitCode::FAILURE)
        }
    }
}

fn validate(path: Option<PathBuf>) -> ExitCode {
    let Some(path) = path else {
        eprintln!("validate needs --config FILE");
        return ExitCode::from(2);
    };
    match load(&Some(path)) {
        Ok((_, source)) => {
            println!("{source}: ok");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn components() -> ExitCode {
    let r = Registry::default();
    let signals =
        |s: &[hotspan_config::Signal]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ");
    let aliases = |a: &[&str]| {
        if a.is_empty() {
            String::new()
        } else {
            format!(" (alias {})", a.join(", "))
        }
    };
    println!("receivers:");
    for f in &r.receivers {
        println!(
            "  {}{}: {}",
            f.type_name(),
            aliases(f.aliases()),
            signals(f.signals())
        );
    }
    println!("processors:");
    for f in &r.processors {
        println!(
            "  {}{}: {}",
            f.type_name(),
            aliases(f.aliases()),
            signals(f.signals())
        );
    }
    println!("exporters:");
    for f in &r.exporters {
        println!(
            "  {}{}: {}",
            f.type_name(),
            aliases(f.aliases()),
            signals(f.signals())
        );
    }
    println!("connectors:");
    for f in &r.connectors {
        let pairs: Vec<String> = f.pairs().iter().map(|(a, b)| format!("{a} -> {b}")).collect();
        println!(
            "  {}{}: {}",
            f.type_name(),
            aliases(f.aliases()),
            pairs.join(", ")
        );
    }
    println!("extensions:");
    for f in &r.extensions {
        println!("  {}", f.type_name());
    }
    ExitCode::SUCCESS
}

fn run(path: Option<PathBuf>, shutdown_timeout: Duration) -> ExitCode {
    let (config, source) = match load(&path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    init_logging(&config.service.telemetry.logs);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        if path.is_none() {
            info!("no --config given: running the embedded default config (OTLP on 127.0.0.1:4317 and :4318 -> batch -> debug)");
        }
        let mut service = match Service::build(&config, &Registry::default()) {
            Ok(s) => s,
            Err(e) => {
                error!(config = %source, error = %e, "cannot build pipelines");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = service.start().await {
            error!(config = %source, error = %e, "cannot start");
            service.shutdown(Instant::now() + shutdown_timeout).await;
            return ExitCode::FAILURE;
        }
        info!(config = %source, pipelines = config.service.pipelines.len(), "hotspan is running");
        let signal = wait_for_signal().await;
        info!(signal, "shutting down: draining pipelines");
        // A second signal means "now": exit without waiting for the drain.
        tokio::spawn(async {
            let again = wait_for_signal().await;
            warn!(signal = again, "second signal: exiting without draining");
            std::process::exit(1);
        });
        service.shutdown(Instant::now() + shutdown_timeout).await;
        info!("hotspan stopped");
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
