//! A cgroup reading as OTLP metrics, named as the contrib `docker_stats` receiver (and
//! cAdvisor's fields before it) name them: semantic conventions have nothing for throttling.

use hotspan_proto::otlp::common::v1::{InstrumentationScope, KeyValue};
use hotspan_proto::otlp::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum,
};
use hotspan_proto::otlp::resource::v1::Resource;

use super::fs::CpuReading;

pub const SCOPE: &str = "hotspan/cgroup";
pub const USAGE_TOTAL: &str = "container.cpu.usage.total";
pub const PERIODS: &str = "container.cpu.throttling_data.periods";
pub const THROTTLED_PERIODS: &str = "container.cpu.throttling_data.throttled_periods";
pub const THROTTLED_TIME: &str = "container.cpu.throttling_data.throttled_time";
pub const LIMIT: &str = "container.cpu.limit";

/// A cumulative, monotonic integer Sum with one point.
fn counter(name: &str, description: &str, unit: &str, value: u64, start: u64, time: u64) -> Metric {
    Metric {
        name: name.to_owned(),
        description: description.to_owned(),
        unit: unit.to_owned(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![NumberDataPoint {
                start_time_unix_nano: start,
                time_unix_nano: time,
                value: Some(number_data_point::Value::AsInt(
                    i64::try_from(value).unwrap_or(i64::MAX),
                )),
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

/// The metrics of one target's poll: usage when the cgroup exposes it, the throttling
/// counters when it has CPU bandwidth control, the limit when one is set.
pub fn resource_metrics(
    resource: Vec<KeyValue>,
    reading: &CpuReading,
    start: u64,
    time: u64,
) -> ResourceMetrics {
    let mut metrics = Vec::with_capacity(5);
    if let Some(usage) = reading.usage_ns {
        metrics.push(counter(
            USAGE_TOTAL,
            "Total CPU time consumed.",
            "ns",
            usage,
            start,
            time,
        ));
    }
    if let Some(t) = reading.throttling {
        metrics.push(counter(
            PERIODS,
            "Number of periods with throttling active.",
            "{periods}",
            t.periods,
            start,
            time,
        ));
        metrics.push(counter(
            THROTTLED_PERIODS,
            "Number of periods when the container hits its throttling limit.",
            "{periods}",
            t.throttled_periods,
            start,
            time,
        ));
        metrics.push(counter(
            THROTTLED_TIME,
            "Aggregate time the container was throttled.",
            "ns",
            t.throttled_ns,
            start,
            time,
        ));
    }
    if let Some(cores) = reading.limit_cores {
        metrics.push(Metric {
            name: LIMIT.to_owned(),
            description: "CPU limit set for the container.".to_owned(),
            unit: "{cpus}".to_owned(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    time_unix_nano: time,
                    value: Some(number_data_point::Value::AsDouble(cores)),
                    ..Default::default()
                }],
            })),
            ..Default::default()
        });
    }
    ResourceMetrics {
        resource: Some(Resource {
            attributes: resource,
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: SCOPE.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                ..Default::default()
            }),
            metrics,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}
