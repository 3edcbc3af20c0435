//! Inputs with known answers for the join's tests and benchmarks: spans of one trace, and
//! profiles that plant samples for chosen spans (pprof-style or eBPF-style).

use hotspan_proto::otlp::collector::profiles::v1development::ExportProfilesServiceRequest;
use hotspan_proto::otlp::common::v1::{any_value, AnyValue, KeyValue};
use hotspan_proto::otlp::profiles::v1development::{
    Function, KeyValueAndUnit, Line, Link, Location, Profile, ProfilesDictionary, ResourceProfiles, Sample,
    ScopeProfiles, Stack, ValueType,
};
use hotspan_proto::otlp::resource::v1::Resource;
use hotspan_proto::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
use hotspan_proto::{ProfilesBatch, TracesBatch};

pub const T0: u64 = 1_700_000_000_000_000_000;
pub const MS: u64 = 1_000_000;
pub const TRACE: u128 = 0xabcdef;

pub fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

pub fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", s(service))],
        ..Default::default()
    })
}

/// A span of `TRACE` from `start` to `end` ms after T0.
pub fn span(id: u64, parent: Option<u64>, start_ms: u64, end_ms: u64) -> Span {
    span_in(TRACE, id, parent, start_ms, end_ms)
}

pub fn span_in(trace: u128, id: u64, parent: Option<u64>, start_ms: u64, end_ms: u64) -> Span {
    Span {
        trace_id: trace.to_be_bytes().to_vec(),
        span_id: id.to_be_bytes().to_vec(),
        parent_span_id: parent.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default(),
        name: format!("span {id}"),
        start_time_unix_nano: T0 + start_ms * MS,
        end_time_unix_nano: T0 + end_ms * MS,
        ..Default::default()
    }
}

/// Every span in `batches`, decoded, in order.
pub fn spans_of(batches: impl IntoIterator<Item = TracesBatch>) -> impl Iterator<Item = Span> {
    batches
        .into_iter()
        .flat_map(TracesBatch::into_resource_spans)
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
}

/// The spans in `batches` by span id (0 for an id not 8 bytes long); none may come twice.
pub fn spans_by_id(batches: impl IntoIterator<Item = TracesBatch>) -> std::collections::BTreeMap<u64, Span> {
    let mut by_id = std::collections::BTreeMap::new();
    for span in spans_of(batches) {
        let id = span.span_id.as_slice().try_into().map_or(0, u64::from_be_bytes);
        assert!(by_id.insert(id, span).is_none(), "span {id} came out twice");
    }
    by_id
}

pub fn traces(service: &str, spans: Vec<Span>) -> TracesBatch {
    TracesBatch::from_resource_spans(vec![ResourceSpans {
        resource: resource(service),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

/// One planted sample.
#[derive(Clone, Debug, Default)]
pub struct Plant {
    /// Leaf first.
    pub stack: Vec<&'static str>,
    pub count: u64,
    pub span: Option<u64>,
    pub trace: Option<u128>,
    /// Ids as labels (attributes) rather than a Link.
    pub as_labels: bool,
    pub thread: Option<i64>,
    /// ms after T0; with `ebpf`, one timestamp per sample of weight one period.
    pub times_ms: Vec<u64>,
    pub labels: Vec<(&'static str, &'static str)>,
}

/// Builds a profiles batch; `ebpf` makes one `samples/count` profile with timestamps and a
/// 10 ms CPU period (as the OTel eBPF profiler sends), otherwise pprof's two CPU profiles
/// (`samples/count` and `cpu/nanoseconds`, 10 ms a sample) over the same samples.
pub fn profiles(service: &str, plants: &[Plant], ebpf: bool) -> ProfilesBatch {
    let mut d = ProfilesDictionary {
        string_table: vec![String::new()],
        function_table: vec![Function::default()],
        location_table: vec![Location::default()],
        stack_table: vec![Stack::default()],
        link_table: vec![Link::default()],
        attribute_table: vec![KeyValueAndUnit::default()],
        mapping_table: vec![Default::default()],
    };
    fn intern(d: &mut ProfilesDictionary, v: &str) -> i32 {
        match d.string_table.iter().position(|x| x == v) {
            Some(i) => i as i32,
            None => {
                d.string_table.push(v.into());
                d.string_table.len() as i32 - 1
            }
        }
    }
    let mut count_samples = Vec::new();
    let mut cpu_samples = Vec::new();
    for p in plants {
        let mut locs = Vec::new();
        for f in &p.stack {
            let name = intern(&mut d, f);
            d.function_table.push(Function {
                name_strindex: name,
                ..Default::default()
            });
            let fi = d.function_table.len() as i32 - 1;
            d.location_table.push(Location {
                lines: vec![Line {
                    function_index: fi,
                    ..Default::default()
                }],
                ..Default::default()
            });
            locs.push(d.location_table.len() as i32 - 1);
        }
        d.stack_table.push(Stack {
            location_indices: locs,
        });
        let stack_index = d.stack_table.len() as i32 - 1;
        let mut attribute_indices = Vec::new();
        let mut link_index = 0;
        let mut attr = |d: &mut ProfilesDictionary, k: &str, v: any_value::Value| {
            let key = intern(d, k);
            d.attribute_table.push(KeyValueAndUnit {
                key_strindex: key,
                value: Some(AnyValue { value: Some(v) }),
                unit_strindex: 0,
            });
            attribute_indices.push(d.attribute_table.len() as i32 - 1);
        };
        if p.as_labels {
            if let Some(sp) = p.span {
                attr(&mut d, "span_id", s(&format!("{sp:016x}")));
            }
            if let Some(t) = p.trace {
                attr(&mut d, "trace_id", s(&format!("{t:032x}")));
            }
        } else if p.span.is_some() || p.trace.is_some() {
            d.link_table.push(Link {
                trace_id: p.trace.map(|t| t.to_be_bytes().to_vec()).unwrap_or_default(),
                span_id: p.span.map(|x| x.to_be_bytes().to_vec()).unwrap_or_default(),
            });
            link_index = d.link_table.len() as i32 - 1;
        }
        if let Some(th) = p.thread {
            attr(&mut d, "thread.id", any_value::Value::IntValue(th));
        }
        for (k, v) in &p.labels {
            attr(&mut d, k, s(v));
        }
        let times: Vec<u64> = p.times_ms.iter().map(|t| T0 + t * MS).collect();
        if ebpf {
            count_samples.push(Sample {
                stack_index,
                attribute_indices,
                link_index,
                values: vec![],
                timestamps_unix_nano: times,
            });
        } else {
            let values = if times.is_empty() {
                vec![p.count as i64]
            } else {
                vec![1; times.len()]
            };
            let cpu: Vec<i64> = values.iter().map(|v| v * 10 * MS as i64).collect();
            count_samples.push(Sample {
                stack_index,
                attribute_indices: attribute_indices.clone(),
                link_index,
                values,
                timestamps_unix_nano: times.clone(),
            });
            cpu_samples.push(Sample {
                stack_index,
                attribute_indices,
                link_index,
                values: cpu,
                timestamps_unix_nano: times,
            });
        }
    }
    let (samples_s, count_s, cpu_s, ns_s) = (
        intern(&mut d, "samples"),
        intern(&mut d, "count"),
        intern(&mut d, "cpu"),
        intern(&mut d, "nanoseconds"),
    );
    let period_type = Some(ValueType {
        type_strindex: cpu_s,
        unit_strindex: ns_s,
    });
    let mut profiles = vec![Profile {
        sample_type: Some(ValueType {
            type_strindex: samples_s,
            unit_strindex: count_s,
        }),
        samples: count_samples,
        period_type,
        period: 10 * MS as i64,
        time_unix_nano: T0,
        duration_nano: 10_000 * MS,
        ..Default::default()
    }];
    if !ebpf {
        profiles.push(Profile {
            sample_type: Some(ValueType {
                type_strindex: cpu_s,
                unit_strindex: ns_s,
            }),
            samples: cpu_samples,
            period_type,
            period: 10 * MS as i64,
            time_unix_nano: T0,
            duration_nano: 10_000 * MS,
            ..Default::default()
        });
    }
    ProfilesBatch::from_request(ExportProfilesServiceRequest {
        resource_profiles: vec![ResourceProfiles {
            resource: resource(service),
            scope_profiles: vec![ScopeProfiles {
                profiles,
                ..Default::default()
            }],
            ..Default::default()
        }],
        dictionary: Some(d),
    })
}

/// Stop-the-world pauses of `service` as `pprof_scrape` writes them: `(start ms, duration
/// µs, reason, gc)` each a `go.stw` log record.
pub fn pauses(service: &str, pauses: &[(u64, u64, &str, bool)]) -> hotspan_proto::LogsBatch {
    use hotspan_proto::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    let records = pauses
        .iter()
        .map(|&(start_ms, micros, reason, gc)| LogRecord {
            time_unix_nano: T0 + start_ms * MS,
            event_name: "go.stw".into(),
            attributes: vec![
                kv("go.stw.reason", s(reason)),
                kv("go.stw.gc", any_value::Value::BoolValue(gc)),
                kv(
                    "go.stw.duration_ns",
                    any_value::Value::IntValue(micros as i64 * 1000),
                ),
                kv("go.trace.clock_error_ns", any_value::Value::IntValue(64)),
            ],
            ..Default::default()
        })
        .collect();
    hotspan_proto::LogsBatch::from_resources(vec![ResourceLogs {
        resource: resource(service),
        scope_logs: vec![ScopeLogs {
            log_records: records,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

/// cgroup readings of `service` as the `cgroup` receiver writes them: `(at ms, cumulative
/// throttled ms, cumulative throttled periods)`, and the quota in cores.
pub fn cpu_stats(
    service: &str,
    readings: &[(u64, u64, u64)],
    quota: Option<f64>,
) -> hotspan_proto::MetricsBatch {
    use hotspan_proto::otlp::metrics::v1::{
        metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    };
    let sum = |name: &str, value: &dyn Fn(&(u64, u64, u64)) -> i64| Metric {
        name: name.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: readings
                .iter()
                .map(|r| NumberDataPoint {
                    time_unix_nano: T0 + r.0 * MS,
                    value: Some(number_data_point::Value::AsInt(value(r))),
                    ..Default::default()
                })
                .collect(),
            aggregation_temporality: 2,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    let mut metrics = vec![
        sum("container.cpu.throttling_data.throttled_time", &|r| {
            (r.1 * MS) as i64
        }),
        sum("container.cpu.throttling_data.throttled_periods", &|r| r.2 as i64),
    ];
    if let Some(q) = quota {
        metrics.push(Metric {
            name: "container.cpu.limit".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    time_unix_nano: T0,
                    value: Some(number_data_point::Value::AsDouble(q)),
                    ..Default::default()
                }],
            })),
            ..Default::default()
        });
    }
    hotspan_proto::MetricsBatch::from_resources(vec![ResourceMetrics {
        resource: resource(service),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

/// `plants` as a profile of another kind: eBPF-shaped (timestamps), with `sample_type`
/// `kind`/`unit`, `duration_nano` `duration_ns`, and each sample's values (one per timestamp)
/// from `value`.
fn retyped(
    service: &str,
    plants: &[Plant],
    kind: &str,
    unit: &str,
    duration_ns: u64,
    value: impl Fn(&Plant) -> i64,
) -> ProfilesBatch {
    let mut request = profiles(service, plants, true).request().clone();
    let Some(d) = request.dictionary.as_mut() else {
        return ProfilesBatch::from_request(request);
    };
    let mut intern = |v: &str| match d.string_table.iter().position(|x| x == v) {
        Some(i) => i as i32,
        None => {
            d.string_table.push(v.into());
            d.string_table.len() as i32 - 1
        }
    };
    let sample_type = ValueType {
        type_strindex: intern(kind),
        unit_strindex: intern(unit),
    };
    for p in request
        .resource_profiles
        .iter_mut()
        .flat_map(|r| &mut r.scope_profiles)
        .flat_map(|s| &mut s.profiles)
    {
        p.sample_type = Some(sample_type);
        p.period_type = None;
        p.period = 0;
        p.duration_nano = duration_ns;
        for (sample, plant) in p.samples.iter_mut().zip(plants) {
            sample.values = vec![value(plant); sample.timestamps_unix_nano.len()];
        }
    }
    ProfilesBatch::from_request(request)
}

/// Goroutine snapshots as `pprof_scrape` sends them: each plant one stack with `count`
/// goroutines, caught at each of its `times_ms`, every goroutine standing for `interval_ms`.
pub fn goroutines(service: &str, plants: &[Plant], interval_ms: u64) -> ProfilesBatch {
    retyped(service, plants, "goroutine", "count", interval_ms * MS, |p| {
        p.count as i64
    })
}

/// An off-CPU profile as the eBPF profiler sends it: each of a plant's `times_ms` is when a
/// thread came back on CPU after `count` ms off it.
pub fn off_cpu(service: &str, plants: &[Plant]) -> ProfilesBatch {
    retyped(service, plants, "off_cpu", "nanoseconds", 0, |p| {
        (p.count * MS) as i64
    })
}
