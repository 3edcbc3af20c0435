//! Sampling policies, evaluated as otelcol v0.165's `tailsamplingprocessor` evaluates them:
//! the same walk over a trace's pieces (resource first, then its spans, in arrival order), the
//! same reading of values (`Int()` of a non-int is 0, `Str()` of a non-string is empty), the
//! same hash for `probabilistic`, so two collectors, hotspan or otelcol, agree on a trace.

use std::collections::HashMap;
use std::time::Instant;

use hotspan_proto::otlp::common::v1::any_value::Value;
use hotspan_proto::otlp::common::v1::AnyValue;
use hotspan_proto::raw::{AttributeKey, RawSpan, ResourceSpansRaw};
use regex::Regex;

use super::config::PolicyConfig;
use super::probabilistic;

/// What one policy says about a trace. otelcol v0.165's policies give no other outcome
/// (`invert_match` gives Sampled or NotSampled, no longer the deprecated inverted decisions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Sampled,
    NotSampled,
    /// A `drop` policy matched: the trace goes, whatever the others say.
    Dropped,
}

impl Decision {
    pub const ALL: [Decision; 3] = [Decision::Sampled, Decision::NotSampled, Decision::Dropped];

    pub fn index(self) -> usize {
        self as usize
    }

    /// otelcol's metric labels: `sampled` and `decision`.
    pub fn labels(self) -> (&'static str, &'static str) {
        match self {
            Decision::Sampled => ("true", "sampled"),
            Decision::NotSampled => ("false", "not_sampled"),
            Decision::Dropped => ("false", "dropped"),
        }
    }
}

/// A trace as the policies see it: every piece received so far, in arrival order.
pub struct TraceView<'a> {
    pub id: u128,
    pub span_count: i64,
    pub pieces: &'a [ResourceSpansRaw],
}

impl TraceView<'_> {
    fn spans(&self) -> impl Iterator<Item = &RawSpan> {
        self.pieces
            .iter()
            .flat_map(|r| r.scopes().iter().flat_map(|s| s.spans()))
    }
}

/// The clock the stateful policies read.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub now: Instant,
    /// Unix seconds: `composite`'s budgets restart with each second.
    pub unix_second: i64,
}

/// A config problem, located relative to the component.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyError {
    pub path: String,
    pub message: String,
}

/// Where a policy sits decides which types it may have, as in otelcol.
#[derive(Clone, Copy, PartialEq)]
enum Level {
    Top,
    /// Under `composite`: `and` or a plain policy.
    Composite,
    /// Under `and` or `drop`: `not` or a plain policy.
    And,
    /// Under `not`: a plain policy.
    Not,
}

const PLAIN: &[&str] = &[
    "always_sample",
    "latency",
    "numeric_attribute",
    "probabilistic",
    "status_code",
    "string_attribute",
    "boolean_attribute",
    "span_count",
    "rate_limiting",
];
/// otelcol's types hotspan does not have.
const NOT_SUPPORTED: &[&str] = &["trace_state", "ottl_condition", "bytes_limiting", "trace_flags"];

fn known(level: Level) -> String {
    let extra: &[&str] = match level {
        Level::Top => &["and", "drop", "not", "composite"],
        Level::Composite => &["and"],
        Level::And => &["not"],
        Level::Not => &[],
    };
    PLAIN.iter().chain(extra).copied().collect::<Vec<_>>().join(", ")
}

pub enum Policy {
    AlwaysSample,
    Latency {
        lower_ms: i64,
        upper_ms: i64,
    },
    Numeric {
        key: AttributeKey,
        min: i64,
        max: i64,
        invert: bool,
    },
    Probabilistic {
        salt: Vec<u8>,
        threshold: u64,
    },
    StatusCode {
        codes: Vec<i32>,
    },
    String {
        key: AttributeKey,
        matcher: Matcher,
        invert: bool,
    },
    Boolean {
        key: AttributeKey,
        value: bool,
        invert: bool,
    },
    SpanCount {
        min: i64,
        max: i64,
    },
    RateLimiting(TokenBucket),
    And(Vec<Policy>),
    Drop(Vec<Policy>),
    Not(Box<Policy>),
    Composite(Composite),
}

/// A top-level policy with its name.
pub struct NamedPolicy {
    pub name: String,
    pub policy: Policy,
}

impl NamedPolicy {
    pub fn is_drop(&self) -> bool {
        matches!(self.policy, Policy::Drop(_))
    }
}

impl Policy {
    /// The top-level policies, `drop` ones first (they are evaluated first, as in otelcol).
    pub fn build_all(configs: &[PolicyConfig]) -> Result<Vec<NamedPolicy>, PolicyError> {
        let mut out = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            let path = format!("policies[{i}]");
            if c.name.is_empty() {
                return Err(PolicyError {
                    path: format!("{path}.name"),
                    message: "every policy needs a name".into(),
                });
            }
            out.push(NamedPolicy {
                name: c.name.clone(),
                policy: Policy::build(c, Level::Top, &path)?,
            });
        }
        out.sort_by_key(|p| !p.is_drop());
        Ok(out)
    }

    fn build(c: &PolicyConfig, level: Level, path: &str) -> Result<Policy, PolicyError> {
        let err = |field: &str, message: String| PolicyError {
            path: format!("{path}.{field}"),
            message,
        };
        let subs = |list: &[PolicyConfig], field: &str, level: Level| -> Result<Vec<Policy>, PolicyError> {
            if list.is_empty() {
                return Err(err(field, "needs at least one sub-policy".into()));
            }
            list.iter()
                .enumerate()
                .map(|(i, s)| Policy::build(s, level, &format!("{path}.{field}[{i}]")))
                .collect()
        };
        let kind = c.kind.as_str();
        Ok(match (kind, level) {
            ("and", Level::Top | Level::Composite) => {
                Policy::And(subs(&c.and.and_sub_policy, "and.and_sub_policy", Level::And)?)
            }
            ("drop", Level::Top) => {
                Policy::Drop(subs(&c.drop.drop_sub_policy, "drop.drop_sub_policy", Level::And)?)
            }
            ("not", Level::Top | Level::And) => {
                let sub = c
                    .not
                    .not_sub_policy
                    .as_deref()
                    .ok_or_else(|| err("not.not_sub_policy", "is required".into()))?;
                Policy::Not(Box::new(Policy::build(
                    sub,
                    Level::Not,
                    &format!("{path}.not.not_sub_policy"),
                )?))
            }
            ("composite", Level::Top) => Policy::Composite(Composite::build(c, path)?),
            ("always_sample", _) => Policy::AlwaysSample,
            ("latency", _) => Policy::Latency {
                lower_ms: c.latency.threshold_ms,
                upper_ms: c.latency.upper_threshold_ms,
            },
            ("numeric_attribute", _) => {
                let n = &c.numeric_attribute;
                if n.min_value == 0 && n.max_value == 0 {
                    return Err(err(
                        "numeric_attribute",
                        "set min_value or max_value (0 means unbounded, as in otelcol)".into(),
                    ));
                }
                Policy::Numeric {
                    key: AttributeKey::new(&n.key),
                    min: if n.min_value == 0 { i64::MIN } else { n.min_value },
                    max: if n.max_value == 0 { i64::MAX } else { n.max_value },
                    invert: n.invert_match,
                }
            }
            ("probabilistic", _) => {
                let p = &c.probabilistic;
                if p.sampling_percentage.is_nan() {
                    return Err(err(
                        "probabilistic.sampling_percentage",
                        "must be a number".into(),
                    ));
                }
                let salt = if p.hash_salt.is_empty() {
                    probabilistic::DEFAULT_SALT
                } else {
                    &p.hash_salt
                };
                Policy::Probabilistic {
                    salt: salt.as_bytes().to_vec(),
                    threshold: probabilistic::threshold(p.sampling_percentage / 100.0),
                }
            }
            ("status_code", _) => {
                let names = &c.status_code.status_codes;
                if names.is_empty() {
                    return Err(err(
                        "status_code.status_codes",
                        "expected at least one status code".into(),
                    ));
                }
                let codes = names
                    .iter()
                    .map(|n| match n.as_str() {
                        "UNSET" => Ok(0),
                        "OK" => Ok(1),
                        "ERROR" => Ok(2),
                        other => Err(err(
                            "status_code.status_codes",
                            format!("unknown status code {other:?}, supported: OK, ERROR, UNSET"),
                        )),
                    })
                    .collect::<Result<_, _>>()?;
                Policy::StatusCode { codes }
            }
            ("string_attribute", _) => {
                let s = &c.string_attribute;
                let matcher = if s.enabled_regex_matching {
                    let regexes = s
                        .values
                        .iter()
                        .map(|v| {
                            Regex::new(v).map_err(|e| {
                                err("string_attribute.values", format!("invalid regex `{v}`: {e}"))
                            })
                        })
                        .collect::<Result<_, _>>()?;
                    let size = if s.cache_max_size <= 0 {
                        128
                    } else {
                        s.cache_max_size as usize
                    };
                    Matcher::Regex {
                        regexes,
                        memo: HashMap::new(),
                        size,
                    }
                } else {
                    Matcher::Exact(s.values.iter().filter(|v| !v.is_empty()).cloned().collect())
                };
                Policy::String {
                    key: AttributeKey::new(&s.key),
                    matcher,
                    invert: s.invert_match,
                }
            }
            ("boolean_attribute", _) => Policy::Boolean {
                key: AttributeKey::new(&c.boolean_attribute.key),
                value: c.boolean_attribute.value,
                invert: c.boolean_attribute.invert_match,
            },
            ("span_count", _) => Policy::SpanCount {
                min: c.span_count.min_spans.into(),
                max: c.span_count.max_spans.into(),
            },
            ("rate_limiting", _) => {
                let r = &c.rate_limiting;
                let burst = if r.burst_capacity > 0 {
                    r.burst_capacity
                } else {
                    r.spans_per_second.saturating_mul(2)
                };
                Policy::RateLimiting(TokenBucket::new(r.spans_per_second, burst))
            }
            (other, _) => {
                let message = if NOT_SUPPORTED.contains(&other) {
                    format!(
                        "policy type {other:?} is otelcol's but hotspan does not have it; known here: {}",
                        known(level)
                    )
                } else if other.is_empty() {
                    format!("required; known: {}", known(level))
                } else {
                    format!(
                        "unknown sampling policy type {other:?}; known here: {}",
                        known(level)
                    )
                };
                return Err(err("type", message));
            }
        })
    }

    pub fn evaluate(&mut self, trace: &TraceView, clock: Clock) -> Decision {
        let sampled = |yes: bool| {
            if yes {
                Decision::Sampled
            } else {
                Decision::NotSampled
            }
        };
        match self {
            Policy::AlwaysSample => Decision::Sampled,
            Policy::Latency { lower_ms, upper_ms } => {
                // otelcol decides as it goes: the first span at which the trace so far spans
                // more than the threshold (and, with an upper one, not more than that) samples.
                let (mut min, mut max) = (0u64, 0u64);
                sampled(trace.spans().any(|s| {
                    if min == 0 || s.index.start < min {
                        min = s.index.start;
                    }
                    if max == 0 || s.index.end > max {
                        max = s.index.end;
                    }
                    let ms = max.wrapping_sub(min) as i64 / 1_000_000;
                    if *upper_ms == 0 {
                        ms > *lower_ms
                    } else {
                        *lower_ms < ms && ms <= *upper_ms
                    }
                }))
            }
            Policy::Numeric {
                key,
                min,
                max,
                invert,
            } => by_attribute(trace, key, *invert, |v, _| (*min..=*max).contains(&int(v))),
            Policy::Probabilistic { salt, threshold } => {
                sampled(probabilistic::hash(salt, &trace.id.to_be_bytes()) <= *threshold)
            }
            Policy::StatusCode { codes } => sampled(trace.spans().any(|s| codes.contains(&s.status_code()))),
            // otelcol skips empty span values (the resource's it does not).
            Policy::String { key, matcher, invert } => by_attribute(trace, key, *invert, |v, on_span| {
                let v = str_of(v);
                !(on_span && v.is_empty()) && matcher.matches(v)
            }),
            Policy::Boolean { key, value, invert } => {
                by_attribute(trace, key, *invert, |v, _| bool_of(v) == *value)
            }
            Policy::SpanCount { min, max } => {
                let n = trace.span_count;
                sampled(n >= *min && (*max == 0 || n <= *max))
            }
            Policy::RateLimiting(bucket) => sampled(bucket.allow(trace.span_count, clock.now)),
            Policy::And(subs) => {
                for sub in subs {
                    if sub.evaluate(trace, clock) == Decision::NotSampled {
                        return Decision::NotSampled;
                    }
                }
                Decision::Sampled
            }
            Policy::Drop(subs) => {
                for sub in subs {
                    if sub.evaluate(trace, clock) == Decision::NotSampled {
                        return Decision::NotSampled;
                    }
                }
                Decision::Dropped
            }
            Policy::Not(sub) => match sub.evaluate(trace, clock) {
                Decision::Sampled => Decision::NotSampled,
                Decision::NotSampled => Decision::Sampled,
                other => other,
            },
            Policy::Composite(c) => c.evaluate(trace, clock),
        }
    }
}

/// otelcol's `Value.Int()`: 0 for anything but an int.
fn int(v: &AnyValue) -> i64 {
    match v.value {
        Some(Value::IntValue(i)) => i,
        _ => 0,
    }
}

/// `Value.Str()`: empty for anything but a string.
fn str_of(v: &AnyValue) -> &str {
    match &v.value {
        Some(Value::StringValue(s)) => s,
        _ => "",
    }
}

/// `Value.Bool()`: false for anything but a bool.
fn bool_of(v: &AnyValue) -> bool {
    matches!(v.value, Some(Value::BoolValue(true)))
}

/// otelcol's walk for attribute policies: piece by piece, the resource's attribute `key`, then
/// its spans'. `test` says whether a value matches (and is told whether it is a span's).
/// Without `invert`, any match samples; with it, any match does not, and a trace where `key`
/// is nowhere is sampled.
fn by_attribute(
    trace: &TraceView,
    key: &AttributeKey,
    invert: bool,
    mut test: impl FnMut(&AnyValue, bool) -> bool,
) -> Decision {
    let found = trace.pieces.iter().any(|r| {
        r.head()
            .resource_attribute(key.as_str())
            .is_some_and(|v| test(&v, false))
            || r.scopes()
                .iter()
                .flat_map(|s| s.spans())
                .any(|s| s.attribute(key).is_some_and(|v| test(&v, true)))
    });
    if found != invert {
        Decision::Sampled
    } else {
        Decision::NotSampled
    }
}

pub enum Matcher {
    Exact(Vec<String>),
    /// Unanchored, as otelcol's (Go's `MatchString`); results remembered up to `size` values.
    Regex {
        regexes: Vec<Regex>,
        memo: HashMap<String, bool>,
        size: usize,
    },
}

impl Matcher {
    fn matches(&mut self, value: &str) -> bool {
        match self {
            Matcher::Exact(values) => values.iter().any(|v| v == value),
            Matcher::Regex { regexes, memo, size } => {
                if let Some(m) = memo.get(value) {
                    return *m;
                }
                let m = regexes.iter().any(|r| r.is_match(value));
                if memo.len() >= *size {
                    memo.clear();
                }
                memo.insert(value.to_string(), m);
                m
            }
        }
    }
}

/// A token bucket as Go's `x/time/rate` keeps one: full at first, refilled continuously at
/// `rate` a second up to `burst`; a trace passes if its spans fit in what is there.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    fn new(rate: i64, burst: i64) -> Self {
        TokenBucket {
            rate: rate as f64,
            burst: burst as f64,
            tokens: burst as f64,
            last: None,
        }
    }

    fn allow(&mut self, n: i64, now: Instant) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        }
        if self.last.is_none_or(|l| now > l) {
            self.last = Some(now);
        }
        let n = n as f64;
        if n > self.burst || n > self.tokens {
            return false;
        }
        self.tokens -= n;
        true
    }
}

/// `composite`: the first sub-policy that samples a trace decides, within its share of
/// `max_total_spans_per_second` for the current second.
pub struct Composite {
    max_total: i64,
    subs: Vec<(Policy, i64)>,
    spent: Vec<i64>,
    second: i64,
}

impl Composite {
    fn build(c: &PolicyConfig, path: &str) -> Result<Composite, PolicyError> {
        let cfg = &c.composite;
        let list = &cfg.composite_sub_policy;
        if list.is_empty() {
            return Err(PolicyError {
                path: format!("{path}.composite.composite_sub_policy"),
                message: "needs at least one sub-policy".into(),
            });
        }
        let max = cfg.max_total_spans_per_second as f64;
        let share = max / list.len() as f64;
        let mut subs = Vec::with_capacity(list.len());
        for (i, s) in list.iter().enumerate() {
            let policy = Policy::build(
                s,
                Level::Composite,
                &format!("{path}.composite.composite_sub_policy[{i}]"),
            )?;
            // otelcol: a listed positive percent of the total, else an equal share; truncated.
            let rate = match cfg.rate_allocation.iter().rev().find(|r| r.policy == s.name) {
                Some(r) if r.percent > 0 => (r.percent as f64 / 100.0) * max,
                _ => share,
            };
            subs.push((policy, rate as i64));
        }
        Ok(Composite {
            max_total: cfg.max_total_spans_per_second,
            spent: vec![0; subs.len()],
            subs,
            second: i64::MIN,
        })
    }

    fn evaluate(&mut self, trace: &TraceView, clock: Clock) -> Decision {
        if clock.unix_second != self.second {
            self.second = clock.unix_second;
            self.spent.iter_mut().for_each(|s| *s = 0);
        }
        for (i, (policy, allocated)) in self.subs.iter_mut().enumerate() {
            if policy.evaluate(trace, clock) == Decision::Sampled {
                let after = self.spent[i] + trace.span_count;
                if after <= *allocated && after <= self.max_total {
                    self.spent[i] = after;
                    return Decision::Sampled;
                }
                return Decision::NotSampled;
            }
        }
        Decision::NotSampled
    }
}
