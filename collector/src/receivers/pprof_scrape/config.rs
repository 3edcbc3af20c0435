use std::collections::BTreeMap;
use std::time::Duration;

use hotspan_config::{ComponentConfig, ExtensionRef, FieldError};
use serde::Deserialize;

use crate::exporters::check_headers;
use crate::extensions::bearertokenauth::AuthConfig;
use crate::receivers::pprof_common::CorrelationLabels;
use crate::tls::TlsClientConfig;

/// Which `/debug/pprof` endpoint to scrape.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProfileKind {
    Cpu,
    Goroutine,
    Heap,
    Allocs,
    Mutex,
    Block,
    /// The Go execution trace, read for stop-the-world pauses (a logs signal, not profiles).
    Trace,
}

impl ProfileKind {
    pub fn path(self) -> &'static str {
        match self {
            ProfileKind::Cpu => "profile",
            ProfileKind::Goroutine => "goroutine",
            ProfileKind::Heap => "heap",
            ProfileKind::Allocs => "allocs",
            ProfileKind::Mutex => "mutex",
            ProfileKind::Block => "block",
            ProfileKind::Trace => "trace",
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Target {
    /// Base URL of the Go service's HTTP server, e.g. http://127.0.0.1:6060.
    pub endpoint: String,
    /// The `service.name` its profiles get; must match its spans' for the join.
    pub service_name: String,
    /// More resource attributes for its profiles.
    pub attributes: BTreeMap<String, String>,
    /// otelcol's client `tls` block, for `https://` endpoints.
    pub tls: TlsClientConfig,
    /// `authenticator`: a `bearertokenauth` extension whose token goes with every request.
    pub auth: Option<AuthConfig>,
    /// Sent with every request (a tenant header, a proxy's key).
    pub headers: BTreeMap<String, String>,
}

/// The most any one period may be: longer would mean the data is hours late.
const MAX_PERIOD: Duration = Duration::from_secs(3600);
/// Bounds of `max_trace_bytes`: below 64 KiB not even a second of an idle service fits; the
/// parser holds a generation at a time, but nothing needs more than 1 GiB per trace.
const MIN_TRACE_BYTES: u64 = 64 << 10;
const MAX_TRACE_BYTES: u64 = 1 << 30;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PprofScrapeConfig {
    /// Also the length of each CPU profile.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub scrape_interval: Duration,
    /// For snapshots, the whole request; for CPU and traces, allowed on top of their own length.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub scrape_timeout: Duration,
    /// How often goroutine snapshots are taken: also the wall time each goroutine in one
    /// stands for.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub goroutine_interval: Duration,
    /// Length of one execution trace.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub trace_duration: Duration,
    /// Start to start; `None`: equal to `trace_duration` (traces back to back).
    #[serde(deserialize_with = "hotspan_config::duration::deserialize_option")]
    pub trace_interval: Option<Duration>,
    /// A trace longer than this is refused (and counted) instead of parsed.
    pub max_trace_bytes: u64,
    pub profiles: Vec<ProfileKind>,
    pub targets: Vec<Target>,
    pub include_original_payload: bool,
    pub correlation: CorrelationLabels,
}

impl Default for PprofScrapeConfig {
    fn default() -> Self {
        PprofScrapeConfig {
            scrape_interval: Duration::from_secs(15),
            scrape_timeout: Duration::from_secs(10),
            goroutine_interval: Duration::from_secs(1),
            trace_duration: Duration::from_secs(5),
            trace_interval: None,
            max_trace_bytes: 64 << 20,
            profiles: vec![ProfileKind::Cpu],
            targets: Vec::new(),
            include_original_payload: false,
            correlation: CorrelationLabels::default(),
        }
    }
}

impl PprofScrapeConfig {
    /// How long one request may take.
    pub fn timeout_for(&self, kind: ProfileKind) -> Duration {
        match kind {
            ProfileKind::Cpu => self.scrape_interval + self.scrape_timeout,
            ProfileKind::Trace => self.trace_duration + self.scrape_timeout,
            _ => self.scrape_timeout,
        }
    }

    /// Start to start: how often a kind is scraped.
    pub fn period_for(&self, kind: ProfileKind) -> Duration {
        match kind {
            ProfileKind::Goroutine => self.goroutine_interval,
            ProfileKind::Trace => self.trace_interval(),
            _ => self.scrape_interval,
        }
    }

    pub fn trace_interval(&self) -> Duration {
        self.trace_interval.unwrap_or(self.trace_duration)
    }
}

fn at_most(value: Duration, max: Duration, path: &str, errs: &mut Vec<FieldError>) {
    if value > max {
        errs.push(FieldError::new(
            path,
            format!("must be at most {}", hotspan_config::duration::format(max)),
        ));
    }
}

impl ComponentConfig for PprofScrapeConfig {
    fn extensions(&self) -> Vec<ExtensionRef> {
        self.targets
            .iter()
            .enumerate()
            .filter_map(|(i, t)| Some(t.auth.as_ref()?.extension_ref(&format!("targets[{i}].auth"))))
            .collect()
    }

    fn validate(&self, errs: &mut Vec<FieldError>) {
        if self.scrape_interval < Duration::from_secs(1) {
            errs.push(FieldError::new(
                "scrape_interval",
                "must be at least 1s (CPU profiles are whole seconds)",
            ));
        }
        if self.scrape_interval.subsec_nanos() != 0 {
            errs.push(FieldError::new(
                "scrape_interval",
                "must be whole seconds (it is the CPU profile's length)",
            ));
        }
        at_most(self.scrape_interval, MAX_PERIOD, "scrape_interval", errs);
        if self.scrape_timeout.is_zero() {
            errs.push(FieldError::new("scrape_timeout", "must be greater than 0"));
        }
        at_most(self.scrape_timeout, MAX_PERIOD, "scrape_timeout", errs);
        if self.goroutine_interval < Duration::from_millis(100) {
            errs.push(FieldError::new(
                "goroutine_interval",
                "must be at least 100ms (each snapshot stops the world for a moment)",
            ));
        }
        at_most(self.goroutine_interval, MAX_PERIOD, "goroutine_interval", errs);
        if self.trace_duration < Duration::from_secs(1) {
            errs.push(FieldError::new("trace_duration", "must be at least 1s"));
        }
        at_most(self.trace_duration, MAX_PERIOD, "trace_duration", errs);
        if let Some(interval) = self.trace_interval {
            if interval < self.trace_duration {
                errs.push(FieldError::new(
                    "trace_interval",
                    format!(
                        "must be at least trace_duration ({:?}): it runs start to start",
                        self.trace_duration
                    ),
                ));
            }
            at_most(interval, MAX_PERIOD, "trace_interval", errs);
        }
        if !(MIN_TRACE_BYTES..=MAX_TRACE_BYTES).contains(&self.max_trace_bytes) {
            errs.push(FieldError::new(
                "max_trace_bytes",
                format!("must be between {MIN_TRACE_BYTES} and {MAX_TRACE_BYTES}"),
            ));
        }
        if self.profiles.is_empty() {
            errs.push(FieldError::new("profiles", "name at least one profile"));
        }
        for (i, kind) in self.profiles.iter().enumerate() {
            if self.profiles[..i].contains(kind) {
                errs.push(FieldError::new(
                    format!("profiles[{i}]"),
                    format!("{} is listed twice", kind.path()),
                ));
            }
        }
        if self.targets.is_empty() {
            errs.push(FieldError::new("targets", "name at least one target"));
        }
        for (i, t) in self.targets.iter().enumerate() {
            let path = format!("targets[{i}]");
            let https = t.endpoint.starts_with("https://");
            if !https && !t.endpoint.starts_with("http://") || reqwest::Url::parse(&t.endpoint).is_err() {
                errs.push(FieldError::new(
                    format!("{path}.endpoint"),
                    "must be an http:// or https:// URL",
                ));
            }
            if t.service_name.is_empty() {
                errs.push(FieldError::new(format!("{path}.service_name"), "is required"));
            }
            t.tls.validate(&t.endpoint, &format!("{path}.tls"), errs);
            let tls_set = TlsClientConfig {
                insecure: false,
                ..t.tls.clone()
            } != TlsClientConfig::default();
            if tls_set && !https {
                errs.push(FieldError::new(
                    format!("{path}.tls"),
                    "is set but the endpoint is http://: use https:// for TLS",
                ));
            }
            if let Some(auth) = &t.auth {
                auth.validate(&format!("{path}.auth"), errs);
            }
            errs.extend(check_headers(&t.headers, &format!("{path}.headers")));
        }
    }
}
