//! What the join works with: resource identities, events (weighted sample occurrences) and
//! per-span accumulations.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::HashMap;
use std::sync::Arc;
use std::time::Instant;

use hotspan_proto::otlp::common::v1::{any_value, KeyValue};

pub type TraceId = u128;
pub type SpanId = u64;
/// Frames of a stack, leaf first.
pub type Frames = Arc<[Arc<str>]>;
pub type Labels = Arc<[(Arc<str>, Arc<str>)]>;

/// The resource attributes the join matches on: `service.name`, plus instance, host and pid
/// where both sides have them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResourceKey {
    pub service: Option<Arc<str>>,
    pub instance: Option<Arc<str>>,
    pub host: Option<Arc<str>>,
    pub pid: Option<i64>,
}

fn both_or_either<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

impl ResourceKey {
    /// From attributes with inline keys and values: a profile's resource must be resolved
    /// first (`ProfilesBatch::resolved_attributes`), as it may refer to the string table.
    pub fn from_attributes(attrs: &[KeyValue]) -> Self {
        let mut key = ResourceKey::default();
        for kv in attrs {
            let value = kv.value.as_ref().and_then(|v| v.value.as_ref());
            match (kv.key.as_str(), value) {
                ("service.name", Some(any_value::Value::StringValue(s))) => {
                    key.service = Some(s.as_str().into())
                }
                ("service.instance.id", Some(any_value::Value::StringValue(s))) => {
                    key.instance = Some(s.as_str().into())
                }
                ("host.name", Some(any_value::Value::StringValue(s))) => key.host = Some(s.as_str().into()),
                ("process.pid", Some(any_value::Value::IntValue(i))) => key.pid = Some(*i),
                ("process.pid", Some(any_value::Value::StringValue(s))) => key.pid = s.parse().ok(),
                _ => {}
            }
        }
        key
    }

    pub fn matches(&self, other: &ResourceKey) -> bool {
        self.service == other.service
            && both_or_either(&self.instance, &other.instance)
            && both_or_either(&self.host, &other.host)
            && both_or_either(&self.pid, &other.pid)
    }
}

/// Which rule joined a sample to its span.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    Span = 0,
    Trace = 1,
    Thread = 2,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Span => "span",
            Rule::Trace => "trace",
            Rule::Thread => "thread",
        }
    }
}

/// One weighted occurrence of a stack: a pprof sample, or one timestamp of an OTLP sample.
#[derive(Clone, Debug)]
pub struct Event {
    pub resource: Arc<ResourceKey>,
    pub trace: Option<TraceId>,
    pub span: Option<SpanId>,
    pub thread: Option<i64>,
    /// When it was taken, if the sample says (unix nanos).
    pub time: Option<u64>,
    pub frames: Frames,
    pub labels: Labels,
    pub samples: u64,
    pub cpu_ns: u64,
    pub profile_id: Option<Arc<str>>,
    pub arrived: Instant,
}

/// Samples and CPU of one stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Weights {
    pub samples: u64,
    pub cpu_ns: u64,
}

impl Weights {
    pub fn add(&mut self, samples: u64, cpu_ns: u64) {
        self.samples = self.samples.saturating_add(samples);
        self.cpu_ns = self.cpu_ns.saturating_add(cpu_ns);
    }
}

/// Bounds on what one span accumulates, so a pathological profile cannot grow it forever.
pub const MAX_STACKS_PER_SPAN: usize = 2048;
pub const MAX_LABEL_KEYS: usize = 32;
pub const MAX_LABEL_VALUES: usize = 16;
pub const MAX_PROFILE_IDS: usize = 16;

/// What a held span has been given.
#[derive(Debug, Default)]
pub struct Accumulator {
    pub stacks: HashMap<Frames, Weights>,
    pub own: Weights,
    pub rules: [Weights; 3],
    pub labels: BTreeMap<Arc<str>, BTreeSet<Arc<str>>>,
    pub profile_ids: BTreeSet<Arc<str>>,
}

impl Accumulator {
    pub fn add(&mut self, event: &Event, rule: Rule) {
        self.own.add(event.samples, event.cpu_ns);
        self.rules[rule as usize].add(event.samples, event.cpu_ns);
        let frames = if self.stacks.len() >= MAX_STACKS_PER_SPAN && !self.stacks.contains_key(&event.frames) {
            Arc::from(vec![Arc::<str>::from("[other stacks]")])
        } else {
            event.frames.clone()
        };
        self.stacks
            .entry(frames)
            .or_default()
            .add(event.samples, event.cpu_ns);
        for (k, v) in event.labels.iter() {
            if self.labels.len() >= MAX_LABEL_KEYS && !self.labels.contains_key(k) {
                continue;
            }
            let values = self.labels.entry(k.clone()).or_default();
            if values.len() < MAX_LABEL_VALUES {
                values.insert(v.clone());
            }
        }
        if let Some(id) = &event.profile_id {
            if self.profile_ids.len() < MAX_PROFILE_IDS {
                self.profile_ids.insert(id.clone());
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.own == Weights::default()
    }
}

pub fn trace_id(bytes: &[u8]) -> Option<TraceId> {
    let id = u128::from_be_bytes(bytes.try_into().ok()?);
    (id != 0).then_some(id)
}

pub fn span_id(bytes: &[u8]) -> Option<SpanId> {
    let id = u64::from_be_bytes(bytes.try_into().ok()?);
    (id != 0).then_some(id)
}

/// A label value as an id: hex of the right length, else decimal (Datadog writes decimal).
pub fn parse_id(value: &str, hex_len: usize) -> Option<u128> {
    let v = value.trim();
    let id = if v.len() == hex_len && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        u128::from_str_radix(v, 16).ok()?
    } else {
        v.parse::<u64>().ok()? as u128
    };
    (id != 0).then_some(id)
}
