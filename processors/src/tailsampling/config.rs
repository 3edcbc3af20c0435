//! otelcol's `tail_sampling` keys. A policy is `name`, `type` and a block named after its type
//! (`latency: {threshold_ms: 100}`); blocks for other types are accepted and ignored, as
//! otelcol ignores them.

use std::time::Duration;

use hotspan_config::{bounds, ComponentConfig, FieldError};
use serde::Deserialize;

use super::policy::Policy;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TailSamplingConfig {
    /// How long after its first span a trace is decided.
    #[serde(deserialize_with = "hotspan_config::duration::deserialize")]
    pub decision_wait: Duration,
    /// Traces waiting for their decision, at most; past it the oldest is decided early.
    pub num_traces: u64,
    /// A sizing hint for the trace table.
    pub expected_new_traces_per_sec: u64,
    pub decision_cache: DecisionCacheConfig,
    /// Stop evaluating at the first policy that samples.
    pub sample_on_first_match: bool,
    /// On shutdown, traces still waiting are dropped instead of decided with what they have.
    pub drop_pending_traces_on_shutdown: bool,
    pub policies: Vec<PolicyConfig>,
}

impl Default for TailSamplingConfig {
    fn default() -> Self {
        TailSamplingConfig {
            decision_wait: Duration::from_secs(30),
            num_traces: 50_000,
            expected_new_traces_per_sec: 0,
            decision_cache: DecisionCacheConfig::default(),
            sample_on_first_match: false,
            drop_pending_traces_on_shutdown: false,
            policies: Vec::new(),
        }
    }
}

/// How many decisions are remembered, so spans that come after their trace was decided follow
/// it. 0 (otelcol's default, where decided traces stay among `num_traces`) remembers the last
/// `num_traces` of each kind.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionCacheConfig {
    pub sampled_cache_size: usize,
    pub non_sampled_cache_size: usize,
}

/// One policy, at the top level or under `and`, `drop`, `not` or `composite`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub latency: LatencyConfig,
    pub numeric_attribute: NumericAttributeConfig,
    pub probabilistic: ProbabilisticConfig,
    pub status_code: StatusCodeConfig,
    pub string_attribute: StringAttributeConfig,
    pub boolean_attribute: BooleanAttributeConfig,
    pub span_count: SpanCountConfig,
    pub rate_limiting: RateLimitingConfig,
    pub and: AndConfig,
    pub drop: DropConfig,
    pub not: NotConfig,
    pub composite: CompositeConfig,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyConfig {
    pub threshold_ms: i64,
    /// 0: no upper bound.
    pub upper_threshold_ms: i64,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NumericAttributeConfig {
    pub key: String,
    /// 0: no lower bound (as in otelcol).
    pub min_value: i64,
    /// 0: no upper bound.
    pub max_value: i64,
    pub invert_match: bool,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProbabilisticConfig {
    /// Empty: otelcol's default salt, so instances without one agree.
    pub hash_salt: String,
    pub sampling_percentage: f64,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StatusCodeConfig {
    pub status_codes: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StringAttributeConfig {
    pub key: String,
    pub values: Vec<String>,
    pub enabled_regex_matching: bool,
    /// Regex results remembered; 0: 128.
    pub cache_max_size: i64,
    pub invert_match: bool,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BooleanAttributeConfig {
    pub key: String,
    pub value: bool,
    pub invert_match: bool,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpanCountConfig {
    pub min_spans: i32,
    /// 0: no upper bound.
    pub max_spans: i32,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitingConfig {
    pub spans_per_second: i64,
    /// 0: twice `spans_per_second`.
    pub burst_capacity: i64,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AndConfig {
    pub and_sub_policy: Vec<PolicyConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DropConfig {
    pub drop_sub_policy: Vec<PolicyConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NotConfig {
    pub not_sub_policy: Option<Box<PolicyConfig>>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompositeConfig {
    pub max_total_spans_per_second: i64,
    /// Accepted for otelcol's configs; otelcol v0.165 evaluates sub-policies in the order of
    /// `composite_sub_policy` and so does hotspan.
    pub policy_order: Vec<String>,
    pub composite_sub_policy: Vec<PolicyConfig>,
    pub rate_allocation: Vec<RateAllocationConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateAllocationConfig {
    pub policy: String,
    pub percent: i64,
}

impl ComponentConfig for TailSamplingConfig {
    fn validate(&self, errs: &mut Vec<FieldError>) {
        // Each bound keeps what the processor holds or sets aside from its numbers in memory.
        const MAX_TRACES: u64 = 10_000_000;
        bounds::check_duration(
            self.decision_wait,
            Duration::from_nanos(1)..=Duration::from_secs(3600),
            "decision_wait",
            errs,
        );
        bounds::check(self.num_traces, 1..=MAX_TRACES, "num_traces", errs);
        bounds::check(
            self.expected_new_traces_per_sec,
            0..=MAX_TRACES,
            "expected_new_traces_per_sec",
            errs,
        );
        for (size, key) in [
            (
                self.decision_cache.sampled_cache_size,
                "decision_cache.sampled_cache_size",
            ),
            (
                self.decision_cache.non_sampled_cache_size,
                "decision_cache.non_sampled_cache_size",
            ),
        ] {
            bounds::check(size as u64, 0..=MAX_TRACES, key, errs);
        }
        if self.policies.is_empty() {
            errs.push(FieldError::new("policies", "at least one policy is required"));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, p) in self.policies.iter().enumerate() {
            if !p.name.is_empty() && !names.insert(p.name.as_str()) {
                errs.push(FieldError::new(
                    format!("policies[{i}].name"),
                    format!("duplicate policy name {:?}", p.name),
                ));
            }
        }
        if let Err(e) = Policy::build_all(&self.policies) {
            errs.push(FieldError::new(e.path, e.message));
        }
    }
}
