use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use hotspan::registry::Registry;
use hotspan::service::Service;
use hotspan::telemetry::init_logging;
use hotspan_config::{ComponentInfo, Config, ConfigError};
use tracing::{error, info, warn};

/// jemalloc returns memory to the OS after a spike and counts the live bytes memory_limiter
/// and the process metrics read. The binary's choice: tests and tools linking the library keep
/// their own allocator.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// An OTLP collector that annotates spans with the code that burned their CPU.
#[derive(Parser)]
#[command(name = "hotspan", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config (the OpenTelemetry Collector's shape): a file path, or as otelcol's `--config`
    /// takes it, `file:PATH`, `env:VAR` or `yaml:...`; given more than once, merged in order.
    /// Without it, `run` uses the embedded default: OTLP on 127.0.0.1:4317/4318 -> batch -> debug.
    #[arg(long, global = true)]
    config: Vec<String>,
    /// How long SIGTERM/SIGINT may take to drain every pipeline before hotspan gives up.
    #[arg(long, global = true, default_value = "20s", value_parser = parse_duration)]
    shutdown_timeout: Duration,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector (the default).
    Run,
    /// Check a config file without running it; prints every problem and exits non-zero.
    Validate {
        /// The file (or give it with --config).
        file: Option<PathBuf>,
    },
    /// List every component type with its signals.
    Components,
    /// Summarise what the file exporter wrote: per span name and per label set, with
    /// `--html` a page of flame graphs.
    Report(hotspan::report::ReportArgs),
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    hotspan_config::duration::parse(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Validate { file } => {
            let mut sources = cli.config;
            sources.extend(file.map(|f| f.display().to_string()));
            validate(&sources)
        }
        Command::Components => components(),
        Command::Report(args) => hotspan::report::main(&args),
        Command::Run => run(cli.config, cli.shutdown_timeout),
    }
}

fn print_errors(source: &str, errors: &[ConfigError]) {
    for e in errors {
        eprintln!("{source}: {e}");
    }
}

/// The config `sources` give (the embedded default when there are none), and how to name it.
fn load(sources: &[String]) -> Result<(Config, String), ExitCode> {
    let (loaded, source) = match sources {
        [] => (hotspan::default_config(), "embedded default config".to_string()),
        uris => (hotspan::load_config_sources(uris), uris.join(", ")),
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

fn validate(sources: &[String]) -> ExitCode {
    if sources.is_empty() {
        eprintln!("validate needs a config file: hotspan validate FILE");
        return ExitCode::from(2);
    }
    match load(sources) {
        Ok((_, source)) => {
            println!("{source}: ok");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn components() -> ExitCode {
    let registry = Registry::default();
    let mut section = None;
    for (kind, f) in registry.all() {
        if section != Some(kind) {
            println!("{}:", kind.section());
            section = Some(kind);
        }
        let aliases = match f.aliases() {
            [] => String::new(),
            a => format!(" (alias {})", a.join(", ")),
        };
        let what = match f.info() {
            ComponentInfo::Signals(s) => s.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
            ComponentInfo::Connector(pairs) => pairs
                .iter()
                .map(|(a, b)| format!("{a} -> {b}"))
                .collect::<Vec<_>>()
                .join(", "),
            ComponentInfo::Extension => {
                println!("  {}", f.type_name());
                continue;
            }
        };
        println!("  {}{aliases}: {what}", f.type_name());
    }
    ExitCode::SUCCESS
}

fn run(sources: Vec<String>, shutdown_timeout: Duration) -> ExitCode {
    let (config, source) = match load(&sources) {
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
        if sources.is_empty() {
            info!("no --config given: running the embedded default config (OTLP on 127.0.0.1:4317 and :4318 -> batch -> debug)");
        }
        // Listen before starting, so a signal during start-up is handled, not fatal.
        let mut signals = match Signals::new() {
            Ok(s) => s,
            Err(e) => {
                error!(error = %e, "cannot listen for signals");
                return ExitCode::FAILURE;
            }
        };
        let mut service = match start(&config, &source, shutdown_timeout).await {
            Some(s) => s,
            None => return ExitCode::FAILURE,
        };
        loop {
            match signals.next().await {
                Signal::Reload => {
                    service = reload(service, &sources, &source, shutdown_timeout).await;
                }
                Signal::Stop(name) => {
                    info!(signal = name, "shutting down: draining pipelines");
                    // A second signal means "now": exit without waiting for the drain.
                    tokio::spawn(async move {
                        let again = signals.next_stop().await;
                        warn!(signal = again, "second signal: exiting without draining");
                        std::process::exit(1);
                    });
                    service.shutdown(Instant::now() + shutdown_timeout).await;
                    info!("hotspan stopped");
                    return ExitCode::SUCCESS;
                }
            }
        }
    })
}

/// Builds and starts a service; on failure logs why and returns None.
async fn start(config: &Config, source: &str, shutdown_timeout: Duration) -> Option<Service> {
    let mut service = match Service::build(config, &Registry::default()) {
        Ok(s) => s,
        Err(e) => {
            error!(config = %source, error = %e, "cannot build pipelines");
            return None;
        }
    };
    if let Err(e) = service.start().await {
        error!(config = %source, error = %e, "cannot start");
        service.shutdown(Instant::now() + shutdown_timeout).await;
        return None;
    }
    info!(config = %source, pipelines = config.service.pipelines.len(), "hotspan is running");
    Some(service)
}

/// SIGHUP: a bad file leaves the running pipelines alone; a good one replaces them without
/// closing a listening socket: the old ones drain what they acknowledged, exporters whose
/// config changed hand what they hold to their successors, unchanged ones carry on.
async fn reload(service: Service, sources: &[String], source: &str, shutdown_timeout: Duration) -> Service {
    info!(config = %source, "SIGHUP: reloading the config");
    let loaded = match sources {
        [] => hotspan::default_config(),
        uris => hotspan::load_config_sources(uris),
    };
    let config = match loaded {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors {
                error!(config = %source, problem = %e, "config reload refused");
            }
            error!(config = %source, problems = errors.len(), "config reload refused; the running pipelines keep serving");
            return service;
        }
    };
    // Build before stopping anything, so a config that cannot be built changes nothing.
    // Extensions and exporters whose config is unchanged are taken over as they run.
    let mut next = match service.build_next(&config, &Registry::default()) {
        Ok(s) => s,
        Err(e) => {
            error!(config = %source, error = %e, "config reload refused: cannot build pipelines; the running ones keep serving");
            return service;
        }
    };
    match service
        .replace_with(&mut next, Instant::now() + shutdown_timeout)
        .await
    {
        Ok(()) => {
            info!(config = %source, pipelines = config.service.pipelines.len(), "config reloaded");
            next
        }
        Err(e) => {
            error!(config = %source, error = %e, "the reloaded config did not start; exiting so a supervisor restarts hotspan");
            next.shutdown(Instant::now() + shutdown_timeout).await;
            std::process::exit(1);
        }
    }
}

enum Signal {
    Reload,
    Stop(&'static str),
}

/// SIGTERM and SIGINT stop; SIGHUP reloads.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop("SIGTERM"),
            _ = self.int.recv() => Signal::Stop("SIGINT"),
            _ = self.hup.recv() => Signal::Reload,
        }
    }

    async fn next_stop(&mut self) -> &'static str {
        loop {
            if let Signal::Stop(name) = self.next().await {
                return name;
            }
        }
    }
}
