//! What every OTLP signal's request shares: resources holding scopes holding items. One
//! split-and-count implementation serves traces, logs and metrics.

use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{metric, Metric, ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

/// A level of the tree: its children, and a copy of itself without them.
pub trait Level: Sized {
    type Child;
    fn children(&mut self) -> &mut Vec<Self::Child>;
    fn children_ref(&self) -> &Vec<Self::Child>;
    fn shell(&self) -> Self;
}

macro_rules! level {
    ($parent:ty, $child:ty, $field:ident, { $($keep:ident),* }) => {
        impl Level for $parent {
            type Child = $child;
            fn children(&mut self) -> &mut Vec<$child> {
                &mut self.$field
            }
            fn children_ref(&self) -> &Vec<$child> {
                &self.$field
            }
            fn shell(&self) -> Self {
                Self { $($keep: self.$keep.clone(),)* $field: Vec::new() }
            }
        }
    };
}

level!(ResourceSpans, ScopeSpans, scope_spans, { resource, schema_url });
level!(ScopeSpans, opentelemetry_proto::tonic::trace::v1::Span, spans, { scope, schema_url });
level!(ResourceLogs, ScopeLogs, scope_logs, { resource, schema_url });
level!(ScopeLogs, opentelemetry_proto::tonic::logs::v1::LogRecord, log_records, { scope, schema_url });
level!(ResourceMetrics, ScopeMetrics, scope_metrics, { resource, schema_url });
level!(ScopeMetrics, Metric, metrics, { scope, schema_url });

/// Items under a list of resources, each weighing `weight`.
pub(crate) fn count<R, W>(resources: &[R], weight: W) -> usize
where
    R: Level,
    R::Child: Level,
    W: Fn(&<R::Child as Level>::Child) -> usize,
{
    resources
        .iter()
        .flat_map(|r| r.children_ref())
        .flat_map(|s| s.children_ref())
        .map(&weight)
        .sum()
}

/// Moves the first items weighing up to `max` (at least one item) out of `resources`; a
/// resource or scope cut in two is copied into both halves. Returns the front and its weight.
pub(crate) fn split_front<R, W>(resources: &mut Vec<R>, max: usize, weight: W) -> (Vec<R>, usize)
where
    R: Level,
    R::Child: Level,
    W: Fn(&<R::Child as Level>::Child) -> usize,
{
    let mut front: Vec<R> = Vec::new();
    let mut taken = 0;
    let mut rest = std::mem::take(resources).into_iter();
    'resources: for mut r in rest.by_ref() {
        let mut front_r = r.shell();
        let mut scopes = std::mem::take(r.children()).into_iter();
        for mut s in scopes.by_ref() {
            let mut front_s = s.shell();
            let mut items = std::mem::take(s.children()).into_iter();
            for item in items.by_ref() {
                let w = weight(&item);
                // Always take one item, so a single heavy item still goes out.
                if taken > 0 && taken + w > max {
                    // Put back what did not fit: this item, the rest of its scope and resource.
                    let mut back_items = vec![item];
                    back_items.extend(items);
                    *s.children() = back_items;
                    if !front_s.children_ref().is_empty() {
                        front_r.children().push(front_s);
                    }
                    let mut back_scopes = vec![s];
                    back_scopes.extend(scopes);
                    *r.children() = back_scopes;
                    if !front_r.children_ref().is_empty() {
                        front.push(front_r);
                    }
                    resources.push(r);
                    break 'resources;
                }
                taken += w;
                front_s.children().push(item);
            }
            if !front_s.children_ref().is_empty() {
                front_r.children().push(front_s);
            }
        }
        if !front_r.children_ref().is_empty() {
            front.push(front_r);
        }
    }
    resources.extend(rest);
    (front, taken)
}

/// Cuts each metric with more than `max` data points into metrics of at most `max`: the same
/// metric (name, unit, kind, temporality), part of its points in each, as otelcol's batch
/// processor cuts one, so `send_batch_max_size` holds for metrics too.
pub(crate) fn split_heavy_metrics(resources: &mut [ResourceMetrics], max: usize) {
    let max = max.max(1);
    for scope in resources.iter_mut().flat_map(|r| &mut r.scope_metrics) {
        if scope.metrics.iter().all(|m| data_points(m) <= max) {
            continue;
        }
        for m in std::mem::take(&mut scope.metrics) {
            if data_points(&m) <= max {
                scope.metrics.push(m);
            } else {
                scope.metrics.extend(split_metric(m, max));
            }
        }
    }
}

fn split_metric(mut m: Metric, max: usize) -> Vec<Metric> {
    use metric::Data;
    use opentelemetry_proto::tonic::metrics::v1::{ExponentialHistogram, Gauge, Histogram, Sum, Summary};
    /// `points` in runs of `max`, each made a metric's data by `wrap`.
    fn runs<P>(points: Vec<P>, max: usize, wrap: impl Fn(Vec<P>) -> Data) -> Vec<Data> {
        let mut out = Vec::new();
        let mut points = points.into_iter().peekable();
        while points.peek().is_some() {
            out.push(wrap(points.by_ref().take(max).collect()));
        }
        out
    }
    let parts = match m.data.take() {
        Some(Data::Gauge(g)) => runs(g.data_points, max, |data_points| {
            Data::Gauge(Gauge { data_points })
        }),
        Some(Data::Sum(Sum {
            data_points,
            aggregation_temporality,
            is_monotonic,
        })) => runs(data_points, max, |data_points| {
            Data::Sum(Sum {
                data_points,
                aggregation_temporality,
                is_monotonic,
            })
        }),
        Some(Data::Histogram(Histogram {
            data_points,
            aggregation_temporality,
        })) => runs(data_points, max, |data_points| {
            Data::Histogram(Histogram {
                data_points,
                aggregation_temporality,
            })
        }),
        Some(Data::ExponentialHistogram(ExponentialHistogram {
            data_points,
            aggregation_temporality,
        })) => runs(data_points, max, |data_points| {
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points,
                aggregation_temporality,
            })
        }),
        Some(Data::Summary(s)) => runs(s.data_points, max, |data_points| {
            Data::Summary(Summary { data_points })
        }),
        None => return vec![m],
    };
    parts
        .into_iter()
        .map(|data| Metric {
            data: Some(data),
            ..m.clone()
        })
        .collect()
}

/// Data points of a metric: the unit otelcol counts metrics in.
pub(crate) fn data_points(m: &Metric) -> usize {
    match &m.data {
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}
