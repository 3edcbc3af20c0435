use std::collections::BTreeMap;
use std::time::Duration;

use hotspan_config::{ComponentConfig, FieldError};
use serde::Deserialize;

use crate::receivers::pprof_common::CorrelationLabels;

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
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PprofScrapeConfig {
    /// Also the length of each CPU profile.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub scrape_interval: Duration,
    /// For snapshots, the whole request; for CPU, allowed on top of the profile's own seconds.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub scrape_timeout: Duration,
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
            profiles: vec![ProfileKind::Cpu],
            targets: Vec::new(),
            include_original_payload: false,
            correlation: CorrelationLabels::default(),
        }
    }
}

impl PprofScrapeConfig {
    pub fn timeout_for(&self, kind: ProfileKind) -> Duration {
        match kind {
            ProfileKind::Cpu => self.scrape_interval + self.scrape_timeout,
            _ => self.scrape_timeout,
        }
    }
}

impl ComponentConfig for PprofScrapeConfig {
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
        if self.scrape_timeout.is_zero() {
            errs.push(FieldError::new("scrape_timeout", "must be greater than 0"));
        }
        if self.profiles.is_empty() {
            errs.push(FieldError::new("profiles", "name at least one profile"));
        }
        if self.targets.is_empty() {
            errs.push(FieldError::new("targets", "name at least one target"));
        }
        for (i, t) in self.targets.iter().enumerate() {
            if !(t.endpoint.starts_with("http://") || t.endpoint.starts_with("https://")) {
                errs.push(FieldError::new(
                    format!("targets[{i}].endpoint"),
                    "must be an http:// or https:// URL",
                ));
            }
            if t.service_name.is_empty() {
                errs.push(FieldError::new(
                    format!("targets[{i}].service_name"),
                    "is required",
                ));
            }
        }
    }
}
