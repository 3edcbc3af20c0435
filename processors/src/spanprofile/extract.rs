//! Turning an OTLP profiles batch into join events: weights from pprof values or timestamps,
//! ids from Links or correlation labels, frames resolved through the dictionary.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use hotspan_proto::otlp::common::v1::{any_value, AnyValue};
use hotspan_proto::otlp::profiles::v1development::{Link, Profile, ProfilesDictionary, Sample};
use hotspan_proto::ProfilesBatch;

use super::config::SpanProfileConfig;
use super::model::{parse_id, span_id, trace_id, Event, Frames, Labels, ResourceKey, WaitSource, What};
use super::waits;

/// What kind of weight a profile carries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// `cpu/nanoseconds`: values are CPU time.
    CpuNanos,
    /// `samples/count`: values are sample counts (each one `period` of CPU when the period
    /// type is CPU nanoseconds).
    SampleCount,
    /// `goroutine/count`: a snapshot of every goroutine; each one seen stands for the
    /// profile's `duration_nano` of wall time (the snapshot interval).
    Goroutines,
    /// `off_cpu/nanoseconds` (the eBPF profiler): each value is time a thread spent off CPU,
    /// ending at its timestamp.
    OffCpu,
    Other,
}

struct Strings<'a>(&'a ProfilesDictionary);

impl<'a> Strings<'a> {
    fn get(&self, i: i32) -> &'a str {
        self.0
            .string_table
            .get(i as usize)
            .map(String::as_str)
            .unwrap_or("")
    }
}

fn kind_of(p: &Profile, s: &Strings) -> Kind {
    match p
        .sample_type
        .map(|t| (s.get(t.type_strindex), s.get(t.unit_strindex)))
    {
        Some(("cpu", "nanoseconds")) => Kind::CpuNanos,
        Some(("samples", "count")) => Kind::SampleCount,
        Some(("goroutine" | "goroutines", "count")) => Kind::Goroutines,
        Some(("off_cpu", "nanoseconds")) => Kind::OffCpu,
        _ => Kind::Other,
    }
}

/// CPU nanoseconds one sample of this profile stands for, when its period says.
fn period_ns(p: &Profile, s: &Strings) -> u64 {
    match p.period_type.map(|t| s.get(t.unit_strindex)) {
        Some("nanoseconds") => p.period.max(0) as u64,
        _ => 0,
    }
}

/// Caches per batch: dictionaries are per request, so stacks and labels are resolved once.
struct Resolver<'a> {
    dict: &'a ProfilesDictionary,
    strings: Strings<'a>,
    config: &'a SpanProfileConfig,
    stacks: HashMap<i32, Frames>,
    names: HashMap<i32, Arc<str>>,
}

/// Ids and labels of one sample.
struct Tags {
    trace: Option<u128>,
    span: Option<u64>,
    thread: Option<i64>,
    labels: Labels,
}

fn value_text(v: Option<&AnyValue>, s: &Strings) -> Option<String> {
    match v.and_then(|v| v.value.as_ref())? {
        any_value::Value::StringValue(x) => Some(x.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        any_value::Value::StringValueStrindex(i) => Some(s.get(*i).to_string()),
        _ => None,
    }
}

impl<'a> Resolver<'a> {
    fn frames(&mut self, stack_index: i32) -> Frames {
        if let Some(f) = self.stacks.get(&stack_index) {
            return f.clone();
        }
        let dict = self.dict;
        let mut names = Vec::new();
        if let Some(stack) = dict.stack_table.get(stack_index as usize) {
            for loc in stack
                .location_indices
                .iter()
                .filter_map(|l| dict.location_table.get(*l as usize))
            {
                for line in &loc.lines {
                    let name_index = dict
                        .function_table
                        .get(line.function_index as usize)
                        .map_or(0, |f| f.name_strindex);
                    let name = self
                        .names
                        .entry(name_index)
                        .or_insert_with(|| match self.strings.get(name_index) {
                            "" => Arc::from("[unknown]"),
                            n => Arc::from(n),
                        })
                        .clone();
                    names.push(name);
                }
            }
        }
        let skip = names
            .iter()
            .take_while(|n| self.config.ignore_leaf_frames.iter().any(|i| i.as_str() == &***n))
            .count();
        // Keep at least the last frame: a stack of nothing but ignored frames still happened.
        let skip = skip.min(names.len().saturating_sub(1));
        let frames: Frames = names.split_off(skip).into();
        self.stacks.insert(stack_index, frames.clone());
        frames
    }

    fn tags(&self, sample: &Sample) -> Tags {
        let link = self
            .dict
            .link_table
            .get(sample.link_index as usize)
            .cloned()
            .unwrap_or_default();
        let mut tags = Tags {
            trace: trace_id(&link.trace_id),
            span: span_id(&link.span_id),
            thread: None,
            labels: Arc::from([]),
        };
        let mut labels = Vec::new();
        for kv in sample
            .attribute_indices
            .iter()
            .filter_map(|a| self.dict.attribute_table.get(*a as usize))
        {
            let key = self.strings.get(kv.key_strindex);
            let value = kv.value.as_ref();
            if self.config.span_id_labels.iter().any(|k| k == key) {
                if tags.span.is_none() {
                    tags.span = value_text(value, &self.strings)
                        .and_then(|v| parse_id(&v, 16))
                        .map(|id| id as u64);
                }
                continue;
            }
            if self.config.trace_id_labels.iter().any(|k| k == key) {
                if tags.trace.is_none() {
                    tags.trace = value_text(value, &self.strings).and_then(|v| parse_id(&v, 32));
                }
                continue;
            }
            if key == "thread.id" {
                tags.thread = match value.and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::IntValue(i)) => Some(*i),
                    other => other
                        .and_then(|_| value_text(value, &self.strings))
                        .and_then(|t| t.parse().ok()),
                };
                continue;
            }
            if let Some(text) = value_text(value, &self.strings) {
                labels.push((Arc::from(key), Arc::from(text.as_str())));
            }
        }
        tags.labels = labels.into();
        tags
    }
}

/// Every CPU event in the batch. Non-CPU profiles (heap, goroutines, ...) carry nothing the
/// join adds up and are left out.
pub fn events(batch: &ProfilesBatch, config: &SpanProfileConfig, now: Instant) -> Vec<Event> {
    let empty = ProfilesDictionary::default();
    let dict = batch.dictionary().unwrap_or(&empty);
    let mut r = Resolver {
        dict,
        strings: Strings(dict),
        config,
        stacks: HashMap::new(),
        names: HashMap::new(),
    };
    let mut out = Vec::new();
    for rp in batch.resource_profiles() {
        // The OpenTelemetry Collector's exporters write resource attributes of profiles as
        // string-table references: resolve them, or `service.name` would never match.
        let mut key = rp
            .resource
            .as_ref()
            .map(|r| ResourceKey::from_attributes(&batch.resolved_attributes(&r.attributes)))
            .unwrap_or_default();
        if key.service.is_none() {
            // The eBPF profiler names processes, not services: the config may say whose.
            let by_executable = key
                .executable
                .as_deref()
                .and_then(|e| config.service_by_executable.get(e));
            key.service = by_executable
                .or(config.default_service.as_ref())
                .map(|s| Arc::from(s.as_str()));
            if key.service.is_some() {
                // Named by config, it matches as that service: the profiler's pid may be the
                // host's while the spans give the container's.
                key.pid = None;
                key.container = None;
            }
        }
        let resource = Arc::new(key);
        for sp in &rp.scope_profiles {
            let kinds: Vec<Kind> = sp.profiles.iter().map(|p| kind_of(p, &r.strings)).collect();
            let count = kinds.iter().position(|k| *k == Kind::SampleCount);
            let cpu = kinds.iter().position(|k| *k == Kind::CpuNanos);
            // pprof's two CPU sample types become two Profiles over the same samples in the same
            // order: read them as one, so each sample counts once with both weights.
            let paired = match (count, cpu) {
                (Some(c), Some(n)) => {
                    let (a, b) = (&sp.profiles[c].samples, &sp.profiles[n].samples);
                    a.len() == b.len()
                        && a.iter()
                            .zip(b)
                            .all(|(x, y)| x.stack_index == y.stack_index && x.link_index == y.link_index)
                }
                _ => false,
            };
            for (i, p) in sp.profiles.iter().enumerate() {
                let kind = kinds[i];
                let partner = match kind {
                    Kind::SampleCount if paired => cpu.map(|n| &sp.profiles[n]),
                    Kind::CpuNanos if paired => continue,
                    Kind::Other => continue,
                    _ => None,
                };
                let period = period_ns(p, &r.strings);
                // A snapshot with no interval stands for no time: nothing to estimate from.
                let interval = p.duration_nano;
                if kind == Kind::Goroutines && interval == 0 {
                    continue;
                }
                let profile_id = (!p.profile_id.is_empty() && p.profile_id.iter().any(|b| *b != 0))
                    .then(|| Arc::from(hex::encode(&p.profile_id)));
                for (si, sample) in p.samples.iter().enumerate() {
                    let cpu_values = partner.and_then(|q| q.samples.get(si)).map(|s| &s.values);
                    let tags = r.tags(sample);
                    // A goroutine no span labelled (idle, the runtime's own) is in no span's
                    // time: not a sample that failed to join.
                    if kind == Kind::Goroutines && tags.span.is_none() && tags.trace.is_none() {
                        continue;
                    }
                    let frames = r.frames(sample.stack_index);
                    // Read once per stack: where a goroutine or thread waited, if it did.
                    let state = match kind {
                        Kind::Goroutines => Some(waits::goroutine_state(&frames)),
                        Kind::OffCpu => {
                            let (reason, stack) = waits::off_cpu_reason(&frames);
                            Some(waits::State::Blocked { reason, stack })
                        }
                        _ => None,
                    };
                    let make = |time: Option<u64>, v: u64, cpu_v: Option<u64>| {
                        let wall = |ns: u64, source| match &state {
                            Some(waits::State::Blocked { reason, stack }) => What::Blocked {
                                wall_ns: ns,
                                reason,
                                stack: stack.clone(),
                                source,
                            },
                            _ => What::Running { wall_ns: ns },
                        };
                        let (samples, cpu_ns, what, time) = match kind {
                            Kind::CpuNanos => (1, v, What::Cpu, time),
                            Kind::Goroutines => (
                                v,
                                0,
                                wall(v.saturating_mul(interval), WaitSource::Goroutine),
                                time,
                            ),
                            // Placed at the middle of the time it was off CPU.
                            Kind::OffCpu => (
                                1,
                                0,
                                wall(v, WaitSource::OffCpu),
                                time.map(|t| t.saturating_sub(v / 2)),
                            ),
                            _ => (v, cpu_v.unwrap_or(v.saturating_mul(period)), What::Cpu, time),
                        };
                        Event {
                            resource: resource.clone(),
                            trace: tags.trace,
                            span: tags.span,
                            thread: tags.thread,
                            time,
                            frames: frames.clone(),
                            labels: tags.labels.clone(),
                            samples,
                            cpu_ns,
                            what,
                            profile_id: profile_id.clone(),
                            arrived: now,
                        }
                    };
                    let value = |v: &[i64], i: usize| v.get(i).copied().unwrap_or(0).max(0) as u64;
                    let ts = &sample.timestamps_unix_nano;
                    if !ts.is_empty() && (sample.values.is_empty() || sample.values.len() == ts.len()) {
                        for (ti, t) in ts.iter().enumerate() {
                            let v = if sample.values.is_empty() {
                                match kind {
                                    Kind::CpuNanos => period,
                                    // No value: nothing says how long it was off CPU.
                                    Kind::OffCpu => continue,
                                    _ => 1,
                                }
                            } else {
                                value(&sample.values, ti)
                            };
                            let cpu_v = cpu_values.map(|c| value(c, ti));
                            out.push(make(Some(*t), v, cpu_v));
                        }
                    } else {
                        let v: u64 = sample.values.iter().map(|x| (*x).max(0) as u64).sum();
                        let cpu_v = cpu_values.map(|c| c.iter().map(|x| (*x).max(0) as u64).sum());
                        if v > 0 || cpu_v.is_some_and(|c| c > 0) {
                            out.push(make(None, v, cpu_v));
                        }
                    }
                }
            }
        }
    }
    out
}

/// The batch with Links filled in for samples that carry their ids only as labels, so
/// backends reading OTLP profiles get standard correlation.
pub fn fill_links(batch: &ProfilesBatch, config: &SpanProfileConfig) -> ProfilesBatch {
    let mut request = batch.request().clone();
    let Some(dict) = request.dictionary.as_mut() else {
        return batch.clone();
    };
    if dict.link_table.is_empty() {
        dict.link_table.push(Link::default());
    }
    let mut known: HashMap<Link, i32> = dict
        .link_table
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), i as i32))
        .collect();
    let mut new_links = Vec::new();
    {
        let r = Resolver {
            dict,
            strings: Strings(dict),
            config,
            stacks: HashMap::new(),
            names: HashMap::new(),
        };
        for (ri, rp) in request.resource_profiles.iter().enumerate() {
            for (pi, p) in rp.scope_profiles.iter().flat_map(|s| &s.profiles).enumerate() {
                for (si, sample) in p.samples.iter().enumerate() {
                    if sample.link_index != 0 {
                        continue;
                    }
                    let tags = r.tags(sample);
                    if tags.trace.is_none() && tags.span.is_none() {
                        continue;
                    }
                    let link = Link {
                        trace_id: tags.trace.map(|t| t.to_be_bytes().to_vec()).unwrap_or_default(),
                        span_id: tags.span.map(|s| s.to_be_bytes().to_vec()).unwrap_or_default(),
                    };
                    new_links.push((ri, pi, si, link));
                }
            }
        }
    }
    if new_links.is_empty() {
        return batch.clone();
    }
    let mut assignments = Vec::with_capacity(new_links.len());
    for (ri, pi, si, link) in new_links {
        let next = dict.link_table.len() as i32;
        let index = *known.entry(link.clone()).or_insert_with(|| {
            dict.link_table.push(link);
            next
        });
        assignments.push((ri, pi, si, index));
    }
    for (ri, rp) in request.resource_profiles.iter_mut().enumerate() {
        let mut profiles: Vec<&mut Profile> = rp
            .scope_profiles
            .iter_mut()
            .flat_map(|s| &mut s.profiles)
            .collect();
        for (_, pi, si, index) in assignments.iter().filter(|a| a.0 == ri) {
            if let Some(sample) = profiles.get_mut(*pi).and_then(|p| p.samples.get_mut(*si)) {
                sample.link_index = *index;
            }
        }
    }
    ProfilesBatch::from_request(request)
}

#[cfg(test)]
mod tests {
    use hotspan_proto::otlp::common::v1::KeyValue;

    use super::super::fixtures::{profiles, Plant};
    use super::*;

    /// `batch` as the OpenTelemetry Collector writes it: resource attribute keys and string
    /// values, and the string values of sample attributes, as string-table references.
    fn by_reference(batch: &ProfilesBatch) -> ProfilesBatch {
        let mut request = batch.request().clone();
        let dict = request.dictionary.as_mut().expect("a dictionary");
        let mut intern = |s: &str| -> i32 {
            match dict.string_table.iter().position(|x| x == s) {
                Some(i) => i as i32,
                None => {
                    dict.string_table.push(s.into());
                    dict.string_table.len() as i32 - 1
                }
            }
        };
        let mut refer = |kv: &mut KeyValue| {
            kv.key_strindex = intern(&std::mem::take(&mut kv.key));
            if let Some(any_value::Value::StringValue(v)) = kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                let i = intern(&v.clone());
                kv.value = Some(AnyValue {
                    value: Some(any_value::Value::StringValueStrindex(i)),
                });
            }
        };
        for rp in &mut request.resource_profiles {
            for kv in rp.resource.iter_mut().flat_map(|r| &mut r.attributes) {
                refer(kv);
            }
        }
        let mut attribute_table = std::mem::take(&mut dict.attribute_table);
        for a in &mut attribute_table {
            if let Some(any_value::Value::StringValue(v)) = a.value.as_ref().and_then(|v| v.value.as_ref()) {
                let i = intern(&v.clone());
                a.value = Some(AnyValue {
                    value: Some(any_value::Value::StringValueStrindex(i)),
                });
            }
        }
        dict.attribute_table = attribute_table;
        ProfilesBatch::from_request(request)
    }

    /// What the join reads of an event: service, trace, span, labels, CPU.
    type Summary = (
        Option<Arc<str>>,
        Option<u128>,
        Option<u64>,
        Vec<(String, String)>,
        u64,
    );

    fn summary(events: &[Event]) -> Vec<Summary> {
        events
            .iter()
            .map(|e| {
                let labels = e
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                (e.resource.service.clone(), e.trace, e.span, labels, e.cpu_ns)
            })
            .collect()
    }

    #[test]
    fn resources_and_labels_by_reference_read_as_inline_ones() {
        let plants = [
            Plant {
                stack: vec!["main.work"],
                count: 3,
                span: Some(0x11),
                trace: Some(0xabc),
                as_labels: true,
                labels: vec![("stage", "pricing")],
                ..Default::default()
            },
            Plant {
                stack: vec!["main.other"],
                count: 2,
                span: Some(0x22),
                ..Default::default()
            },
        ];
        let inline = profiles("shop", &plants, false);
        let referenced = by_reference(&inline);
        let resource = &referenced.resource_profiles()[0]
            .resource
            .as_ref()
            .expect("resource")
            .attributes;
        assert!(resource.iter().all(|kv| kv.key.is_empty() && kv.key_strindex > 0));

        let config = SpanProfileConfig::default();
        let now = Instant::now();
        let want = summary(&events(&inline, &config, now));
        assert_eq!(
            want,
            vec![
                (
                    Some("shop".into()),
                    Some(0xabc),
                    Some(0x11),
                    vec![("stage".into(), "pricing".into())],
                    30_000_000
                ),
                (Some("shop".into()), None, Some(0x22), vec![], 20_000_000),
            ]
        );
        assert_eq!(summary(&events(&referenced, &config, now)), want);
    }
}
