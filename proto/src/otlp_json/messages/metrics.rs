//! The [`Msg`] mapping of every message in a metrics export request.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric, number_data_point, AggregationTemporality, Exemplar, ExponentialHistogram,
    ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use serde::de::MapAccess;
use serde::ser::SerializeMap;

use crate::otlp_json::read::{
    double, doubles, enumeration, hex, int, ints, msg, msgs, oneof, optional_double, skip, string,
};
use crate::otlp_json::scalars::{DoubleIn, Enum, IntIn};
use crate::otlp_json::write::{AsStr, Double, Out, J};
use crate::otlp_json::Msg;

/// How a number oneof's two members are made: from a double, from an int.
type NumberMembers<V> = (fn(f64) -> V, fn(i64) -> V);

/// The number oneof of a data point or an exemplar: `asDouble` or `asInt` (`key`) into `slot`,
/// made by `as_double` or `as_int`; a second member is an error.
fn number<'de, A: MapAccess<'de>, V>(
    slot: &mut Option<V>,
    key: &str,
    a: &mut A,
    (as_double, as_int): NumberMembers<V>,
    what: &str,
) -> Result<(), A::Error> {
    let value = if key == "asDouble" {
        a.next_value::<Option<DoubleIn>>()?.map(|v| as_double(v.0))
    } else {
        a.next_value::<Option<IntIn<i64>>>()?.map(|v| as_int(v.0))
    };
    oneof(slot, value, what)
}

impl Enum for AggregationTemporality {
    const NAME: &'static str = "AggregationTemporality";
    fn number(name: &str) -> Option<i32> {
        Self::from_str_name(name).map(|v| v as i32)
    }
}

impl Msg for ExportMetricsServiceRequest {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msgs("resourceMetrics", &self.resource_metrics)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "resourceMetrics" => self.resource_metrics = msgs(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for ResourceMetrics {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msg("resource", &self.resource)?;
        o.msgs("scopeMetrics", &self.scope_metrics)?;
        o.string("schemaUrl", &self.schema_url)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "resource" => self.resource = msg(a)?,
            "scopeMetrics" => self.scope_metrics = msgs(a)?,
            "schemaUrl" => self.schema_url = string(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for ScopeMetrics {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msg("scope", &self.scope)?;
        o.msgs("metrics", &self.metrics)?;
        o.string("schemaUrl", &self.schema_url)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "scope" => self.scope = msg(a)?,
            "metrics" => self.metrics = msgs(a)?,
            "schemaUrl" => self.schema_url = string(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

/// `data` is a oneof: the member that is set is written even when empty (`"gauge":{}`), so
/// the kind of metric survives a round trip.
impl Msg for Metric {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.string("name", &self.name)?;
        o.string("description", &self.description)?;
        o.string("unit", &self.unit)?;
        match &self.data {
            None => {}
            Some(metric::Data::Gauge(v)) => o.entry("gauge", &J(v))?,
            Some(metric::Data::Sum(v)) => o.entry("sum", &J(v))?,
            Some(metric::Data::Histogram(v)) => o.entry("histogram", &J(v))?,
            Some(metric::Data::ExponentialHistogram(v)) => o.entry("exponentialHistogram", &J(v))?,
            Some(metric::Data::Summary(v)) => o.entry("summary", &J(v))?,
        }
        o.msgs("metadata", &self.metadata)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        let data = &mut self.data;
        match key {
            "name" => self.name = string(a)?,
            "description" => self.description = string(a)?,
            "unit" => self.unit = string(a)?,
            "metadata" => self.metadata = msgs(a)?,
            "gauge" => oneof(data, msg(a)?.map(metric::Data::Gauge), "a Metric")?,
            "sum" => oneof(data, msg(a)?.map(metric::Data::Sum), "a Metric")?,
            "histogram" => oneof(data, msg(a)?.map(metric::Data::Histogram), "a Metric")?,
            "exponentialHistogram" => {
                oneof(data, msg(a)?.map(metric::Data::ExponentialHistogram), "a Metric")?;
            }
            "summary" => oneof(data, msg(a)?.map(metric::Data::Summary), "a Metric")?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for Sum {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msgs("dataPoints", &self.data_points)?;
        o.int("aggregationTemporality", self.aggregation_temporality)?;
        if self.is_monotonic {
            o.entry("isMonotonic", &true)?;
        }
        Ok(())
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "dataPoints" => self.data_points = msgs(a)?,
            "aggregationTemporality" => {
                self.aggregation_temporality = enumeration::<A, AggregationTemporality>(a)?;
            }
            "isMonotonic" => self.is_monotonic = a.next_value::<Option<bool>>()?.unwrap_or_default(),
            _ => skip(a)?,
        }
        Ok(())
    }
}

/// The two histograms: their points and their temporality, nothing else.
macro_rules! histogram {
    ($($ty:ty),*) => {$(
        impl Msg for $ty {
            fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
                o.msgs("dataPoints", &self.data_points)?;
                o.int("aggregationTemporality", self.aggregation_temporality)
            }

            fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
                match key {
                    "dataPoints" => self.data_points = msgs(a)?,
                    "aggregationTemporality" => {
                        self.aggregation_temporality = enumeration::<A, AggregationTemporality>(a)?;
                    }
                    _ => skip(a)?,
                }
                Ok(())
            }
        }
    )*};
}

histogram!(Histogram, ExponentialHistogram);
list_wrapper!(Gauge => "dataPoints" data_points, Summary => "dataPoints" data_points);

impl Msg for NumberDataPoint {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msgs("attributes", &self.attributes)?;
        o.int("startTimeUnixNano", self.start_time_unix_nano)?;
        o.int("timeUnixNano", self.time_unix_nano)?;
        // The oneof member that is set is written even when it is 0.
        match self.value {
            None => {}
            Some(number_data_point::Value::AsDouble(v)) => o.entry("asDouble", &Double(v))?,
            Some(number_data_point::Value::AsInt(v)) => o.entry("asInt", &AsStr(v))?,
        }
        o.msgs("exemplars", &self.exemplars)?;
        o.int("flags", self.flags)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "attributes" => self.attributes = msgs(a)?,
            "startTimeUnixNano" => self.start_time_unix_nano = int(a)?,
            "timeUnixNano" => self.time_unix_nano = int(a)?,
            "exemplars" => self.exemplars = msgs(a)?,
            "flags" => self.flags = int(a)?,
            "asDouble" | "asInt" => number(
                &mut self.value,
                key,
                a,
                (
                    number_data_point::Value::AsDouble,
                    number_data_point::Value::AsInt,
                ),
                "a NumberDataPoint",
            )?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for HistogramDataPoint {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msgs("attributes", &self.attributes)?;
        o.int("startTimeUnixNano", self.start_time_unix_nano)?;
        o.int("timeUnixNano", self.time_unix_nano)?;
        o.int("count", self.count)?;
        o.optional_double("sum", self.sum)?;
        o.ints("bucketCounts", &self.bucket_counts)?;
        o.doubles("explicitBounds", &self.explicit_bounds)?;
        o.msgs("exemplars", &self.exemplars)?;
        o.int("flags", self.flags)?;
        o.optional_double("min", self.min)?;
        o.optional_double("max", self.max)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "attributes" => self.attributes = msgs(a)?,
            "startTimeUnixNano" => self.start_time_unix_nano = int(a)?,
            "timeUnixNano" => self.time_unix_nano = int(a)?,
            "count" => self.count = int(a)?,
            "sum" => self.sum = optional_double(a)?,
            "bucketCounts" => self.bucket_counts = ints(a)?,
            "explicitBounds" => self.explicit_bounds = doubles(a)?,
            "exemplars" => self.exemplars = msgs(a)?,
            "flags" => self.flags = int(a)?,
            "min" => self.min = optional_double(a)?,
            "max" => self.max = optional_double(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for ExponentialHistogramDataPoint {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msgs("attributes", &self.attributes)?;
        o.int("startTimeUnixNano", self.start_time_unix_nano)?;
        o.int("timeUnixNano", self.time_unix_nano)?;
        o.int("count", self.count)?;
        o.optional_double("sum", self.sum)?;
        o.int("scale", self.scale)?;
        o.int("zeroCount", self.zero_count)?;
        o.msg("positive", &self.positive)?;
        o.msg("negative", &self.negative)?;
        o.int("flags", self.flags)?;
        o.msgs("exemplars", &self.exemplars)?;
        o.optional_double("min", self.min)?;
        o.optional_double("max", self.max)?;
        o.double("zeroThreshold", self.zero_threshold)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "attributes" => self.attributes = msgs(a)?,
            "startTimeUnixNano" => self.start_time_unix_nano = int(a)?,
            "timeUnixNano" => self.time_unix_nano = int(a)?,
            "count" => self.count = int(a)?,
            "sum" => self.sum = optional_double(a)?,
            "scale" => self.scale = int(a)?,
            "zeroCount" => self.zero_count = int(a)?,
            "positive" => self.positive = msg(a)?,
            "negative" => self.negative = msg(a)?,
            "flags" => self.flags = int(a)?,
            "exemplars" => self.exemplars = msgs(a)?,
            "min" => self.min = optional_double(a)?,
            "max" => self.max = optional_double(a)?,
            "zeroThreshold" => self.zero_threshold = double(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for Buckets {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.int("offset", self.offset)?;
        o.ints("bucketCounts", &self.bucket_counts)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "offset" => self.offset = int(a)?,
            "bucketCounts" => self.bucket_counts = ints(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for SummaryDataPoint {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msgs("attributes", &self.attributes)?;
        o.int("startTimeUnixNano", self.start_time_unix_nano)?;
        o.int("timeUnixNano", self.time_unix_nano)?;
        o.int("count", self.count)?;
        o.double("sum", self.sum)?;
        o.msgs("quantileValues", &self.quantile_values)?;
        o.int("flags", self.flags)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "attributes" => self.attributes = msgs(a)?,
            "startTimeUnixNano" => self.start_time_unix_nano = int(a)?,
            "timeUnixNano" => self.time_unix_nano = int(a)?,
            "count" => self.count = int(a)?,
            "sum" => self.sum = double(a)?,
            "quantileValues" => self.quantile_values = msgs(a)?,
            "flags" => self.flags = int(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for ValueAtQuantile {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.double("quantile", self.quantile)?;
        o.double("value", self.value)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "quantile" => self.quantile = double(a)?,
            "value" => self.value = double(a)?,
            _ => skip(a)?,
        }
        Ok(())
    }
}

impl Msg for Exemplar {
    fn write<M: SerializeMap>(&self, o: &mut Out<'_, M>) -> Result<(), M::Error> {
        o.msgs("filteredAttributes", &self.filtered_attributes)?;
        o.int("timeUnixNano", self.time_unix_nano)?;
        match self.value {
            None => {}
            Some(exemplar::Value::AsDouble(v)) => o.entry("asDouble", &Double(v))?,
            Some(exemplar::Value::AsInt(v)) => o.entry("asInt", &AsStr(v))?,
        }
        o.hex("spanId", &self.span_id)?;
        o.hex("traceId", &self.trace_id)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, a: &mut A) -> Result<(), A::Error> {
        match key {
            "filteredAttributes" => self.filtered_attributes = msgs(a)?,
            "timeUnixNano" => self.time_unix_nano = int(a)?,
            "spanId" => self.span_id = hex(a)?,
            "traceId" => self.trace_id = hex(a)?,
            "asDouble" | "asInt" => number(
                &mut self.value,
                key,
                a,
                (exemplar::Value::AsDouble, exemplar::Value::AsInt),
                "an Exemplar",
            )?,
            _ => skip(a)?,
        }
        Ok(())
    }
}
