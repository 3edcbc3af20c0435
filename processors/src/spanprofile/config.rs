use std::collections::BTreeMap;
use std::time::Duration;

use hotspan_config::{bounds, ComponentConfig, FieldError};
use serde::Deserialize;

/// The `spanprofile` connector's settings (DESIGN.md, "The join").
/// Most `clock_skew`: hosts whose clocks differ by more need NTP, not a wider join.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);
/// Most `hot_path_frames`: Go's own stack depth limit for profiles is 128 (512 since 1.23).
const MAX_FRAMES: usize = 1024;
/// Most `hot_paths` and `top_functions`: each one is attributes on every annotated span.
const MAX_LISTED: usize = 100;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpanProfileConfig {
    /// How long a span is held after it arrives, waiting for the samples taken while it ran;
    /// sized for the profile reporting interval (a 15 s scrape plus delivery).
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub wait: Duration,
    /// Slack allowed when comparing sample timestamps with span start and end.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub clock_skew: Duration,
    /// Spans held at once; past it the oldest leave early with what they have.
    pub max_buffered_spans: usize,
    /// Encoded bytes of held spans; past it the oldest leave early.
    pub max_buffered_bytes: usize,
    /// Samples waiting for their span; past it the oldest are counted unjoined and dropped.
    pub max_pending_samples: usize,
    /// Sample attributes (labels) read as span ids when a sample has no Link.
    pub span_id_labels: Vec<String>,
    /// Sample attributes read as trace ids when a sample has no Link.
    pub trace_id_labels: Vec<String>,
    /// Prefix of every attribute the join writes.
    pub attribute_prefix: String,
    /// Span events `profile.hot_path`, one per heaviest stack, this many at most.
    pub hot_paths: usize,
    /// Frames kept in a hot path, leaf-most first.
    pub hot_path_frames: usize,
    /// Functions listed in `profile.top_functions`.
    pub top_functions: usize,
    pub emit_events: bool,
    /// Leaf frames that stand for the frame below them: Go's preemption trampoline shows up
    /// as the leaf of ~10% of busy-loop samples and would split every hot path in two.
    pub ignore_leaf_frames: Vec<String>,
    /// For profiles whose resource names no `service.name` (the eBPF profiler's): the service
    /// of each `process.executable.name`. Without one, such a profile matches spans of the
    /// same `process.pid` or `container.id`.
    pub service_by_executable: BTreeMap<String, String>,
    /// A sidecar beside one service: profiles still without a service are that service's.
    pub default_service: Option<String>,
    /// How held spans are kept: `snappy` compresses each request's spans (about 4x smaller on
    /// real spans, about 0.4 µs a span), `none` keeps them as received.
    pub held_compression: HeldCompression,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HeldCompression {
    #[default]
    Snappy,
    None,
}

impl Default for SpanProfileConfig {
    fn default() -> Self {
        SpanProfileConfig {
            wait: Duration::from_secs(20),
            clock_skew: Duration::from_millis(50),
            max_buffered_spans: 100_000,
            max_buffered_bytes: 64 * 1024 * 1024,
            max_pending_samples: 1_000_000,
            span_id_labels: [
                "span_id",
                "profile_id",
                "span id",
                "local root span id",
                "process.context.label.span_id",
            ]
            .map(String::from)
            .to_vec(),
            trace_id_labels: ["trace_id", "trace id", "process.context.label.trace_id"]
                .map(String::from)
                .to_vec(),
            attribute_prefix: "profile.".into(),
            hot_paths: 3,
            hot_path_frames: 32,
            top_functions: 5,
            emit_events: true,
            ignore_leaf_frames: vec!["runtime.asyncPreempt".into()],
            service_by_executable: BTreeMap::new(),
            default_service: None,
            held_compression: HeldCompression::Snappy,
        }
    }
}

impl ComponentConfig for SpanProfileConfig {
    fn validate(&self, errs: &mut Vec<FieldError>) {
        if self.wait.is_zero() {
            errs.push(FieldError::new("wait", "must be greater than 0"));
        }
        // Spans are held in memory for `wait`: a day is already far past any useful setting.
        if self.wait > Duration::from_secs(24 * 3600) {
            errs.push(FieldError::new("wait", "must be at most 24h"));
        }
        if self.default_service.as_deref() == Some("") {
            errs.push(FieldError::new(
                "default_service",
                "must name a service (or be left out)",
            ));
        }
        // A sample this far off its span's edges belongs to another span.
        bounds::check_duration(
            self.clock_skew,
            Duration::ZERO..=MAX_CLOCK_SKEW,
            "clock_skew",
            errs,
        );
        // The buffers' sizes are reserved against as data comes; each bound is past what the
        // sidecar or a gateway holds for `wait`, yet well inside memory.
        for (key, value, max) in [
            ("max_buffered_spans", self.max_buffered_spans, 10_000_000),
            ("max_buffered_bytes", self.max_buffered_bytes, 16 << 30),
            ("max_pending_samples", self.max_pending_samples, 100_000_000),
            // A span's attributes: these many paths of these many frames each, these many
            // functions.
            ("hot_path_frames", self.hot_path_frames, MAX_FRAMES),
        ] {
            bounds::check(value, 1..=max, key, errs);
        }
        bounds::check(self.hot_paths, 0..=MAX_LISTED, "hot_paths", errs);
        bounds::check(self.top_functions, 0..=MAX_LISTED, "top_functions", errs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(wait: Duration) -> Vec<String> {
        let mut errs = Vec::new();
        SpanProfileConfig {
            wait,
            ..Default::default()
        }
        .validate(&mut errs);
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn sizes_and_counts_are_bounded() {
        let errors = |yaml: &str| -> Vec<String> {
            hotspan_config::yaml_errors::<SpanProfileConfig>(yaml)
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        let most = "{clock_skew: 1m, max_buffered_spans: 10000000, max_buffered_bytes: 17179869184, \
                    max_pending_samples: 100000000, hot_paths: 100, hot_path_frames: 1024, top_functions: 100}";
        assert_eq!(errors(most), Vec::<String>::new());
        assert_eq!(
            errors("{hot_paths: 0, top_functions: 0, clock_skew: 0s}"),
            Vec::<String>::new()
        );
        let over = "{clock_skew: 1m0.001s, max_buffered_spans: 0, max_buffered_bytes: 17179869185, \
                    max_pending_samples: 18446744073709551615, hot_paths: 101, hot_path_frames: 0, top_functions: 101}";
        assert_eq!(
            errors(over),
            [
                "clock_skew: must be from 0s to 1m0s",
                "max_buffered_spans: must be from 1 to 10000000",
                "max_buffered_bytes: must be from 1 to 17179869184",
                "max_pending_samples: must be from 1 to 100000000",
                "hot_path_frames: must be from 1 to 1024",
                "hot_paths: must be from 0 to 100",
                "top_functions: must be from 0 to 100",
            ]
        );
    }

    #[test]
    fn wait_must_be_positive_and_at_most_a_day() {
        assert!(errors(Duration::from_secs(20)).is_empty());
        assert!(errors(Duration::from_secs(24 * 3600)).is_empty());
        assert_eq!(errors(Duration::ZERO), ["wait: must be greater than 0"]);
        assert_eq!(
            errors(Duration::from_secs(24 * 3600 + 1)),
            ["wait: must be at most 24h"]
        );
    }
}
