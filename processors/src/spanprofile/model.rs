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
/// where both sides have them; for a side with no `service.name` (the eBPF profiler sends
/// none), the process: the same `process.pid`, or the same `container.id`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResourceKey {
    pub service: Option<Arc<str>>,
    pub instance: Option<Arc<str>>,
    pub host: Option<Arc<str>>,
    pub pid: Option<i64>,
    pub container: Option<Arc<str>>,
    /// `process.executable.name`: not matched on, but a profile's service can be named by it.
    pub executable: Option<Arc<str>>,
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
        let mut env_service = None;
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
                ("container.id", Some(any_value::Value::StringValue(s))) => {
                    key.container = Some(s.as_str().into())
                }
                ("process.executable.name", Some(any_value::Value::StringValue(s))) => {
                    key.executable = Some(s.as_str().into())
                }
                // The eBPF profiler copies environment variables it is told to; the SDKs'
                // service name is one.
                (
                    "process.environment_variable.OTEL_SERVICE_NAME",
                    Some(any_value::Value::StringValue(s)),
                ) => env_service = Some(s.as_str().into()),
                _ => {}
            }
        }
        key.service = key.service.or(env_service);
        key
    }

    pub fn matches(&self, other: &ResourceKey) -> bool {
        match (&self.service, &other.service) {
            (Some(a), Some(b)) => {
                a == b
                    && both_or_either(&self.instance, &other.instance)
                    && both_or_either(&self.host, &other.host)
                    && both_or_either(&self.pid, &other.pid)
            }
            // One side does not name its service: the same process, or the same container.
            _ => {
                let same_pid = matches!((self.pid, other.pid), (Some(a), Some(b)) if a == b)
                    && both_or_either(&self.host, &other.host);
                let same_container =
                    matches!((&self.container, &other.container), (Some(a), Some(b)) if a == b);
                same_pid || same_container
            }
        }
    }

    /// Who ran a sample, for the thread rule: its pid when it has one, else its service.
    pub fn process(&self) -> Process {
        match (self.pid, &self.service) {
            (Some(pid), _) => Process::Pid(pid),
            (None, Some(service)) => Process::Service(service.clone()),
            (None, None) => Process::Unknown,
        }
    }

    /// Every name a span's threads are found by: its pid and its service, so a sample naming
    /// either finds them (the eBPF profiler names the pid, pprof the service).
    pub fn processes(&self) -> impl Iterator<Item = Process> + '_ {
        let pid = self.pid.map(Process::Pid);
        let service = self.service.clone().map(Process::Service);
        let any = (pid.is_none() && service.is_none()).then_some(Process::Unknown);
        pid.into_iter().chain(service).chain(any)
    }
}

/// What identifies the process a thread id belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Process {
    Pid(i64),
    Service(Arc<str>),
    Unknown,
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
    /// What the sample says of the span's time: CPU, or (goroutine snapshots, off-CPU
    /// profiles) blocked or running for `wall_ns`.
    pub what: What,
    pub profile_id: Option<Arc<str>>,
    pub arrived: Instant,
}

/// What one event says of the span it joins.
#[derive(Clone, Debug, PartialEq)]
pub enum What {
    /// On a CPU: `cpu_ns` of it.
    Cpu,
    /// Not on a CPU for `wall_ns`, for `reason`, in `stack` (cut at the blocking call).
    Blocked {
        wall_ns: u64,
        reason: &'static str,
        stack: Frames,
        source: WaitSource,
    },
    /// Caught on a CPU or ready to run by a goroutine snapshot, standing for `wall_ns`.
    Running { wall_ns: u64 },
}

/// Where blocked time was seen: estimated from periodic goroutine snapshots, or measured by
/// an off-CPU profiler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WaitSource {
    Goroutine,
    OffCpu,
}

impl WaitSource {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitSource::Goroutine => "goroutine",
            WaitSource::OffCpu => "off_cpu",
        }
    }
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
    /// Time not on a CPU; allocated with the first blocked sample.
    pub wait: Option<Box<Waits>>,
    /// Time goroutine snapshots caught it on a CPU or ready to run.
    pub active_ns: u64,
    /// Blocked time of descendants that left before it, rolled up.
    pub children_wait_ns: u64,
}

/// Blocked time of one span: by stack (cut at the blocking call) and by reason.
#[derive(Debug, Default)]
pub struct Waits {
    pub total_ns: u64,
    pub stacks: HashMap<Frames, u64>,
    pub reasons: BTreeMap<&'static str, u64>,
    /// Every source seen, in order.
    pub sources: BTreeSet<WaitSource>,
}

impl Accumulator {
    pub fn add(&mut self, event: &Event, rule: Rule) {
        match &event.what {
            What::Cpu => self.add_cpu(event, rule),
            What::Running { wall_ns } => self.active_ns = self.active_ns.saturating_add(*wall_ns),
            What::Blocked {
                wall_ns,
                reason,
                stack,
                source,
            } => {
                let w = self.wait.get_or_insert_default();
                w.total_ns = w.total_ns.saturating_add(*wall_ns);
                *w.reasons.entry(reason).or_default() += wall_ns;
                w.sources.insert(*source);
                let stack = if w.stacks.len() >= MAX_STACKS_PER_SPAN && !w.stacks.contains_key(stack) {
                    Arc::from(vec![Arc::<str>::from("[other stacks]")])
                } else {
                    stack.clone()
                };
                let at = w.stacks.entry(stack).or_default();
                *at = at.saturating_add(*wall_ns);
            }
        }
        self.add_labels(event);
    }

    fn add_cpu(&mut self, event: &Event, rule: Rule) {
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
    }

    fn add_labels(&mut self, event: &Event) {
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

    /// No CPU samples of its own.
    pub fn is_empty(&self) -> bool {
        self.own == Weights::default()
    }

    /// Its own blocked time.
    pub fn wait_ns(&self) -> u64 {
        self.wait.as_ref().map_or(0, |w| w.total_ns)
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
