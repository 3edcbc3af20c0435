//! One batch type for the signals whose requests are resources > scopes > items and that
//! travel decoded (metrics, logs); traces travel as bytes, profiles have their own.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics};
use prost::Message;

use crate::otlp_json::{self, Request};
use crate::tree::{self, Level};
use crate::{DecodeError, Encoding};

/// An OTLP export request whose items live under resources and scopes.
pub trait TreeRequest: Message + Default + Clone + PartialEq + Request {
    type Resource: Level<Child = Self::Scope>;
    type Scope: Level<Child = Self::Item>;
    type Item;
    fn resources(&self) -> &Vec<Self::Resource>;
    fn resources_mut(&mut self) -> &mut Vec<Self::Resource>;
    fn from_resources(resources: Vec<Self::Resource>) -> Self;
    /// How much one item counts: 1 for a span or log record, data points for a metric.
    fn weight(item: &Self::Item) -> usize;
    /// Cuts items weighing more than `max` into items of at most `max`, where the signal
    /// allows it (a metric's data points).
    fn split_heavy(resources: &mut [Self::Resource], max: usize);
}

macro_rules! tree_request {
    ($req:ty, $res:ty, $scope:ty, $item:ty, $field:ident, $weight:expr, $split_heavy:expr) => {
        impl TreeRequest for $req {
            type Resource = $res;
            type Scope = $scope;
            type Item = $item;
            fn resources(&self) -> &Vec<$res> {
                &self.$field
            }
            fn resources_mut(&mut self) -> &mut Vec<$res> {
                &mut self.$field
            }
            fn from_resources(resources: Vec<$res>) -> Self {
                Self { $field: resources }
            }
            fn weight(item: &$item) -> usize {
                $weight(item)
            }
            fn split_heavy(resources: &mut [$res], max: usize) {
                $split_heavy(resources, max)
            }
        }
    };
}

tree_request!(
    ExportLogsServiceRequest,
    ResourceLogs,
    opentelemetry_proto::tonic::logs::v1::ScopeLogs,
    LogRecord,
    resource_logs,
    |_: &LogRecord| 1,
    |_: &mut [ResourceLogs], _| {}
);
tree_request!(
    ExportMetricsServiceRequest,
    ResourceMetrics,
    opentelemetry_proto::tonic::metrics::v1::ScopeMetrics,
    Metric,
    resource_metrics,
    tree::data_points,
    tree::split_heavy_metrics
);

/// A batch of one signal as it travels through a pipeline. Components use its methods, so
/// the representation can become received bytes plus a lazy index later.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OtlpBatch<R: TreeRequest> {
    pub(crate) request: R,
    /// Kept in step with `request` so counting is free on the hot path.
    pub(crate) items: usize,
}

impl<R: TreeRequest> OtlpBatch<R> {
    pub fn from_resources(resources: Vec<R::Resource>) -> Self {
        let items = tree::count(&resources, R::weight);
        OtlpBatch {
            request: R::from_resources(resources),
            items,
        }
    }

    /// Decodes an export request body.
    pub fn decode(bytes: &[u8], encoding: Encoding) -> Result<Self, DecodeError> {
        let request: R = match encoding {
            Encoding::Protobuf => R::decode(bytes)?,
            Encoding::Json => otlp_json::decode(bytes)?,
        };
        let items = tree::count(request.resources(), R::weight);
        Ok(OtlpBatch { request, items })
    }

    /// Encodes the batch as an export request body.
    pub fn encode(&self, encoding: Encoding) -> Vec<u8> {
        match encoding {
            Encoding::Protobuf => self.request.encode_to_vec(),
            Encoding::Json => otlp_json::encode(&self.request),
        }
    }

    /// Size of the protobuf encoding, for byte-based limits.
    pub fn encoded_len(&self) -> usize {
        self.request.encoded_len()
    }

    /// Spans, log records or metric data points.
    pub fn item_count(&self) -> usize {
        self.items
    }

    pub fn is_empty(&self) -> bool {
        self.items == 0
    }

    pub fn resources(&self) -> &[R::Resource] {
        self.request.resources()
    }

    pub fn into_resources(mut self) -> Vec<R::Resource> {
        std::mem::take(self.request.resources_mut())
    }

    /// Moves every item of `other` into this batch.
    pub fn append(&mut self, mut other: Self) {
        self.items += other.items;
        let theirs = std::mem::take(other.request.resources_mut());
        self.request.resources_mut().extend(theirs);
    }

    /// Splits off the first items weighing up to `max` (at least one item) into a new batch.
    /// A resource or scope cut in two is copied into both halves.
    pub fn split_front(&mut self, max: usize) -> Self {
        if max == 0 {
            return Self::default();
        }
        if max >= self.items {
            return std::mem::take(self);
        }
        R::split_heavy(self.request.resources_mut(), max);
        let (front, taken) = tree::split_front(self.request.resources_mut(), max, R::weight);
        self.items -= taken;
        OtlpBatch {
            request: R::from_resources(front),
            items: taken,
        }
    }
}

pub type LogsBatch = OtlpBatch<ExportLogsServiceRequest>;
pub type MetricsBatch = OtlpBatch<ExportMetricsServiceRequest>;

/// Whether a trace and a span id have lengths pdata takes: empty, or 16 and 8 bytes.
fn ids_fit(trace_id: &[u8], span_id: &[u8]) -> bool {
    matches!(trace_id.len(), 0 | 16) && matches!(span_id.len(), 0 | 8)
}

impl MetricsBatch {
    /// Drops the data points with an exemplar whose trace or span id is neither empty nor 16
    /// and 8 bytes, and says how many went and why: otelcol's pdata refuses a whole request
    /// for one such id, so passed on, it would cost the batch it joins downstream.
    pub fn remove_invalid_points(&mut self) -> (usize, Option<String>) {
        use opentelemetry_proto::tonic::metrics::v1::{metric::Data, Exemplar};
        fn keep<P>(points: &mut Vec<P>, exemplars: impl Fn(&P) -> &[Exemplar], rejected: &mut usize) {
            points.retain(|p| {
                let fits = exemplars(p).iter().all(|e| ids_fit(&e.trace_id, &e.span_id));
                *rejected += usize::from(!fits);
                fits
            });
        }
        let mut rejected = 0;
        let metrics = self
            .request
            .resource_metrics
            .iter_mut()
            .flat_map(|r| &mut r.scope_metrics);
        for metric in metrics.flat_map(|s| &mut s.metrics) {
            match &mut metric.data {
                Some(Data::Gauge(g)) => keep(&mut g.data_points, |p| &p.exemplars, &mut rejected),
                Some(Data::Sum(s)) => keep(&mut s.data_points, |p| &p.exemplars, &mut rejected),
                Some(Data::Histogram(h)) => keep(&mut h.data_points, |p| &p.exemplars, &mut rejected),
                Some(Data::ExponentialHistogram(h)) => {
                    keep(&mut h.data_points, |p| &p.exemplars, &mut rejected)
                }
                Some(Data::Summary(_)) | None => {}
            }
        }
        self.items -= rejected;
        let reason = (rejected > 0)
            .then(|| "an exemplar's trace_id and span_id must be empty or 16 and 8 bytes".to_string());
        (rejected, reason)
    }
}

impl LogsBatch {
    /// Drops the log records whose trace or span id is neither empty nor 16 and 8 bytes, and
    /// says how many went and why: otelcol's pdata refuses a whole request for one such id, so
    /// passed on, it would cost the batch it joins downstream.
    pub fn remove_invalid_records(&mut self) -> (usize, Option<String>) {
        let mut rejected = 0;
        for resource in &mut self.request.resource_logs {
            for scope in &mut resource.scope_logs {
                scope.log_records.retain(|r| {
                    let fits = ids_fit(&r.trace_id, &r.span_id);
                    rejected += usize::from(!fits);
                    fits
                });
            }
        }
        self.items -= rejected;
        let reason = (rejected > 0)
            .then(|| "a log record's trace_id and span_id must be empty or 16 and 8 bytes".to_string());
        (rejected, reason)
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };

    use super::*;

    #[test]
    fn log_records_with_ids_of_the_wrong_length_are_removed_and_counted() {
        let record = |trace: usize, span: usize| LogRecord {
            trace_id: vec![1; trace],
            span_id: vec![2; span],
            ..Default::default()
        };
        let mut batch = LogsBatch::from_resources(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    record(16, 8),
                    record(0, 0),
                    record(16, 7),
                    record(15, 8),
                    record(16, 0),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let (rejected, reason) = batch.remove_invalid_records();
        assert_eq!(rejected, 2);
        assert!(reason.is_some_and(|r| r.contains("trace_id")));
        assert_eq!(batch.item_count(), 3);
        assert_eq!(
            tree::count(batch.resources(), ExportLogsServiceRequest::weight),
            3
        );
    }

    #[test]
    fn data_points_with_exemplar_ids_of_the_wrong_length_are_removed_and_counted() {
        use opentelemetry_proto::tonic::metrics::v1::{Exemplar, Histogram, HistogramDataPoint};
        let exemplar = |trace: usize| Exemplar {
            trace_id: vec![1; trace],
            span_id: vec![2; 8],
            ..Default::default()
        };
        let mut good = gauge("g", 3);
        let mut hist = Metric {
            name: "h".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint::default(); 2],
                ..Default::default()
            })),
            ..Default::default()
        };
        if let Some(metric::Data::Gauge(g)) = &mut good.data {
            g.data_points[0].exemplars = vec![exemplar(16), exemplar(0)];
            g.data_points[1].exemplars = vec![exemplar(16), exemplar(17)];
        }
        if let Some(metric::Data::Histogram(h)) = &mut hist.data {
            h.data_points[1].exemplars = vec![exemplar(8)];
        }
        let mut batch = MetricsBatch::from_resources(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![good, hist],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        assert_eq!(batch.item_count(), 5);
        let (rejected, reason) = batch.remove_invalid_points();
        assert_eq!(rejected, 2);
        assert!(reason.is_some_and(|r| r.contains("exemplar")));
        assert_eq!(batch.item_count(), 3);
        assert_eq!(
            tree::count(batch.resources(), ExportMetricsServiceRequest::weight),
            3
        );
    }

    fn gauge(name: &str, points: usize) -> Metric {
        Metric {
            name: name.into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint::default(); points],
            })),
            ..Default::default()
        }
    }

    fn metrics(sizes: &[usize]) -> MetricsBatch {
        MetricsBatch::from_resources(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: sizes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| gauge(&format!("m{i}"), *n))
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    #[test]
    fn metrics_count_and_split_by_data_points() {
        let mut b = metrics(&[5, 1, 2, 4]);
        assert_eq!(b.item_count(), 12);
        // A metric heavier than the cut is cut too, as otelcol's batch processor cuts it: the
        // same metric, part of its points in each.
        let first = b.split_front(3);
        assert_eq!(first.item_count(), 3);
        assert_eq!(first.resources()[0].scope_metrics[0].metrics[0].name, "m0");
        let second = b.split_front(3);
        assert_eq!(second.item_count(), 3);
        let names: Vec<_> = second.resources()[0].scope_metrics[0]
            .metrics
            .iter()
            .map(|m| &m.name)
            .collect();
        assert_eq!(names, ["m0", "m1"]);
        assert_eq!(b.item_count(), 6);
        assert_eq!(tree::count(b.resources(), ExportMetricsServiceRequest::weight), 6);
        assert_eq!(b.split_front(0).item_count(), 0);
        let again = MetricsBatch::decode(&second.encode(Encoding::Json), Encoding::Json).expect("json");
        assert_eq!(again, second);
    }

    #[test]
    fn a_metric_cut_in_pieces_keeps_its_kind_and_temporality_in_each() {
        use opentelemetry_proto::tonic::metrics::v1::Sum;
        let sum = Metric {
            name: "requests".into(),
            unit: "1".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: (0..7)
                    .map(|i| NumberDataPoint {
                        time_unix_nano: i,
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: 2,
                is_monotonic: true,
            })),
            ..Default::default()
        };
        let mut b = MetricsBatch::from_resources(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![sum],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let mut times = Vec::new();
        while b.item_count() > 0 {
            let piece = b.split_front(3);
            assert!(piece.item_count() <= 3);
            for m in piece
                .resources()
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
            {
                assert_eq!((m.name.as_str(), m.unit.as_str()), ("requests", "1"));
                let Some(metric::Data::Sum(s)) = &m.data else {
                    panic!("not a sum: {m:?}");
                };
                assert_eq!((s.aggregation_temporality, s.is_monotonic), (2, true));
                times.extend(s.data_points.iter().map(|p| p.time_unix_nano));
            }
        }
        assert_eq!(times, (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn logs_split_and_append() {
        let records = |n: usize| ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); n],
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut a = LogsBatch::from_resources(vec![records(3)]);
        a.append(LogsBatch::from_resources(vec![records(4)]));
        assert_eq!(a.item_count(), 7);
        let front = a.split_front(5);
        assert_eq!((front.item_count(), a.item_count()), (5, 2));
        assert_eq!(front.resources().len(), 2);
        let back = LogsBatch::decode(&a.encode(Encoding::Protobuf), Encoding::Protobuf).expect("protobuf");
        assert_eq!(back, a);
    }
}
