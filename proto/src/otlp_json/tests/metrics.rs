use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric, number_data_point, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint,
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    Summary, SummaryDataPoint,
};
use serde_json::{json, Value as Json};

use super::{assert_otlp_keys, every_value, resource, same_protobuf, scope, span_id, trace_id};
use crate::{Encoding, MetricsBatch};

fn encode(request: &ExportMetricsServiceRequest) -> Vec<u8> {
    crate::otlp_json::encode(request)
}

fn decode(bytes: &[u8]) -> Result<ExportMetricsServiceRequest, serde_json::Error> {
    crate::otlp_json::decode(bytes)
}

fn exemplars() -> Vec<Exemplar> {
    vec![
        Exemplar {
            filtered_attributes: every_value()[..5].to_vec(),
            time_unix_nano: 1_700_000_000_000_000_001,
            span_id: span_id(1),
            trace_id: trace_id(2),
            value: Some(exemplar::Value::AsDouble(f64::NAN)),
        },
        Exemplar {
            value: Some(exemplar::Value::AsInt(i64::MIN)),
            ..Default::default()
        },
        Exemplar {
            value: Some(exemplar::Value::AsDouble(0.0)),
            ..Default::default()
        },
        Exemplar::default(),
    ]
}

fn number_points() -> Vec<NumberDataPoint> {
    let point = |value| NumberDataPoint {
        value: Some(value),
        ..Default::default()
    };
    vec![
        NumberDataPoint {
            attributes: every_value(),
            start_time_unix_nano: 1_700_000_000_000_000_000,
            time_unix_nano: u64::MAX,
            exemplars: exemplars(),
            flags: 1,
            value: Some(number_data_point::Value::AsDouble(2.5)),
        },
        point(number_data_point::Value::AsDouble(f64::NAN)),
        point(number_data_point::Value::AsDouble(f64::INFINITY)),
        point(number_data_point::Value::AsDouble(f64::NEG_INFINITY)),
        point(number_data_point::Value::AsDouble(0.0)),
        point(number_data_point::Value::AsInt(i64::MAX)),
        point(number_data_point::Value::AsInt(0)),
        NumberDataPoint::default(),
    ]
}

fn metric(name: &str, data: metric::Data) -> Metric {
    Metric {
        name: name.into(),
        data: Some(data),
        ..Default::default()
    }
}

/// Every field of every message set, each to a distinct non-default value, and every kind of
/// metric.
fn full_request() -> ExportMetricsServiceRequest {
    let histogram_point = HistogramDataPoint {
        attributes: every_value()[..2].to_vec(),
        start_time_unix_nano: 1,
        time_unix_nano: 2,
        count: u64::MAX,
        sum: Some(f64::NAN),
        bucket_counts: vec![0, 3, u64::MAX],
        explicit_bounds: vec![f64::NEG_INFINITY, 0.5, f64::INFINITY],
        exemplars: exemplars(),
        flags: 1,
        min: Some(0.0),
        max: Some(-1e300),
    };
    let exponential_point = ExponentialHistogramDataPoint {
        attributes: every_value()[2..4].to_vec(),
        start_time_unix_nano: 3,
        time_unix_nano: 4,
        count: 5,
        sum: Some(0.0),
        scale: -3,
        zero_count: 6,
        positive: Some(Buckets {
            offset: -7,
            bucket_counts: vec![8, u64::MAX],
        }),
        negative: Some(Buckets::default()),
        flags: 1,
        exemplars: exemplars()[1..].to_vec(),
        min: Some(f64::NEG_INFINITY),
        max: Some(f64::NAN),
        zero_threshold: 1e-9,
    };
    let summary_point = SummaryDataPoint {
        attributes: every_value()[4..6].to_vec(),
        start_time_unix_nano: 9,
        time_unix_nano: 10,
        count: 11,
        sum: f64::NAN,
        quantile_values: vec![
            ValueAtQuantile {
                quantile: 0.99,
                value: f64::INFINITY,
            },
            ValueAtQuantile::default(),
        ],
        flags: 1,
    };
    let metrics = vec![
        Metric {
            name: "queue.depth".into(),
            description: "items waiting".into(),
            unit: "{item}".into(),
            metadata: every_value()[5..9].to_vec(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: number_points(),
            })),
        },
        metric(
            "requests",
            metric::Data::Sum(Sum {
                data_points: number_points()[..2].to_vec(),
                aggregation_temporality: 2,
                is_monotonic: true,
            }),
        ),
        metric(
            "latency",
            metric::Data::Histogram(Histogram {
                data_points: vec![histogram_point, HistogramDataPoint::default()],
                aggregation_temporality: 1,
            }),
        ),
        metric(
            "latency.exp",
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![exponential_point, ExponentialHistogramDataPoint::default()],
                aggregation_temporality: 7,
            }),
        ),
        metric(
            "rpc.summary",
            metric::Data::Summary(Summary {
                data_points: vec![summary_point, SummaryDataPoint::default()],
            }),
        ),
        // Empty members of the oneof are still that kind of metric.
        metric("empty.gauge", metric::Data::Gauge(Gauge::default())),
        metric("empty.summary", metric::Data::Summary(Summary::default())),
        Metric::default(),
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![
            ResourceMetrics {
                resource: Some(resource()),
                scope_metrics: vec![
                    ScopeMetrics {
                        scope: Some(scope()),
                        metrics,
                        schema_url: "https://scope-schema".into(),
                    },
                    ScopeMetrics::default(),
                ],
                schema_url: "https://resource-schema".into(),
            },
            ResourceMetrics::default(),
        ],
    }
}

#[test]
fn round_trips_every_field() {
    let req = full_request();
    super::round_trips(&req);

    let batch = MetricsBatch::from_resources(req.resource_metrics.clone());
    let again = MetricsBatch::decode(&batch.encode(Encoding::Json), Encoding::Json).expect("decodes");
    assert_eq!(again.item_count(), batch.item_count());
    let again = ExportMetricsServiceRequest {
        resource_metrics: again.into_resources(),
    };
    assert!(same_protobuf(&again, &req));
}

#[test]
fn encode_writes_otlp_json_forms() {
    let out: Json = serde_json::from_slice(&encode(&full_request())).expect("valid JSON");
    assert_otlp_keys(&out);
    let metrics = &out["resourceMetrics"][0]["scopeMetrics"][0]["metrics"];
    let gauge = &metrics[0];
    assert_eq!(gauge["unit"], "{item}");
    assert_eq!(gauge["metadata"].as_array().map(Vec::len), Some(4));
    let points = &gauge["gauge"]["dataPoints"];
    assert_eq!(points[0]["asDouble"], 2.5);
    assert_eq!(points[0]["timeUnixNano"], "18446744073709551615");
    assert_eq!(points[0]["flags"], 1);
    assert_eq!(points[1], json!({"asDouble": "NaN"}));
    assert_eq!(points[2], json!({"asDouble": "Infinity"}));
    assert_eq!(points[3], json!({"asDouble": "-Infinity"}));
    assert_eq!(points[4], json!({"asDouble": 0.0}));
    assert_eq!(points[5], json!({"asInt": "9223372036854775807"}));
    assert_eq!(points[6], json!({"asInt": "0"}));
    assert_eq!(points[7], json!({}));
    let ex = &points[0]["exemplars"];
    assert_eq!(ex[0]["asDouble"], "NaN");
    assert_eq!(ex[0]["spanId"], hex::encode(span_id(1)));
    assert_eq!(ex[0]["traceId"], hex::encode(trace_id(2)));
    assert_eq!(ex[0]["timeUnixNano"], "1700000000000000001");
    assert_eq!(ex[1], json!({"asInt": "-9223372036854775808"}));
    assert_eq!(ex[2], json!({"asDouble": 0.0}));

    assert_eq!(metrics[1]["sum"]["aggregationTemporality"], 2);
    assert_eq!(metrics[1]["sum"]["isMonotonic"], true);

    let h = &metrics[2]["histogram"];
    assert_eq!(h["aggregationTemporality"], 1);
    let p = &h["dataPoints"][0];
    assert_eq!(p["count"], "18446744073709551615");
    assert_eq!(p["sum"], "NaN");
    assert_eq!(p["bucketCounts"], json!(["0", "3", "18446744073709551615"]));
    assert_eq!(p["explicitBounds"], json!(["-Infinity", 0.5, "Infinity"]));
    // Optional doubles are written when present, 0 included.
    assert_eq!(p["min"], 0.0);
    assert_eq!(p["max"], -1e300);
    assert_eq!(h["dataPoints"][1], json!({}));

    let e = &metrics[3]["exponentialHistogram"];
    assert_eq!(e["aggregationTemporality"], 7);
    let p = &e["dataPoints"][0];
    assert_eq!(p["scale"], -3);
    assert_eq!(p["zeroCount"], "6");
    assert_eq!(p["sum"], 0.0);
    assert_eq!(
        p["positive"],
        json!({"offset": -7, "bucketCounts": ["8", "18446744073709551615"]})
    );
    assert_eq!(p["negative"], json!({}));
    assert_eq!(p["min"], "-Infinity");
    assert_eq!(p["max"], "NaN");
    assert_eq!(p["zeroThreshold"], 1e-9);

    let s = &metrics[4]["summary"]["dataPoints"];
    assert_eq!(s[0]["sum"], "NaN");
    assert_eq!(
        s[0]["quantileValues"],
        json!([{"quantile": 0.99, "value": "Infinity"}, {}])
    );
    assert_eq!(s[1], json!({}));

    assert_eq!(metrics[5], json!({"name": "empty.gauge", "gauge": {}}));
    assert_eq!(metrics[6], json!({"name": "empty.summary", "summary": {}}));
    assert_eq!(metrics[7], json!({}));
}

#[test]
fn decodes_snake_case_everywhere() {
    let keys = [
        "exponential_histogram",
        "as_double",
        "aggregation_temporality",
        "zero_threshold",
    ];
    super::decodes_in_snake_case(&full_request(), &keys);
}

// ---- The review's cases, through `MetricsBatch::decode` as the receivers call it. Each one
// failed with the serde derives of opentelemetry-proto. ----

fn one_metric(json: &str) -> Metric {
    let batch = MetricsBatch::decode(json.as_bytes(), Encoding::Json).expect("decodes");
    let metrics = &batch.resources()[0].scope_metrics[0].metrics;
    assert_eq!(metrics.len(), 1, "{json}");
    metrics[0].clone()
}

fn in_request(metric: &str) -> String {
    format!(r#"{{"resourceMetrics": [{{"scopeMetrics": [{{"metrics": [{metric}]}}]}}]}}"#)
}

fn sum_points(m: &Metric) -> (&Sum, &[NumberDataPoint]) {
    match &m.data {
        Some(metric::Data::Sum(s)) => (s, &s.data_points),
        other => panic!("not a sum: {other:?}"),
    }
}

/// Case 1: snake_case keys were ignored and the request decoded empty.
#[test]
fn review_snake_case_keys() {
    let doc = r#"{"resource_metrics": [{"scope_metrics": [{"metrics": [{"name": "requests",
        "sum": {"data_points": [{"as_int": "5", "time_unix_nano": "1544712660000000000",
        "start_time_unix_nano": 1544712600000000000}], "aggregation_temporality": 2, "is_monotonic": true}},
        {"name": "latency", "exponential_histogram": {"data_points": [{"count": "3", "zero_count": 1,
        "positive": {"offset": 1, "bucket_counts": ["2"]}}]}}]}]}]}"#;
    let batch = MetricsBatch::decode(doc.as_bytes(), Encoding::Json).expect("decodes");
    assert_eq!(batch.item_count(), 2);
    let metrics = &batch.resources()[0].scope_metrics[0].metrics;
    let (sum, points) = sum_points(&metrics[0]);
    assert_eq!((sum.aggregation_temporality, sum.is_monotonic), (2, true));
    assert_eq!(points[0].value, Some(number_data_point::Value::AsInt(5)));
    assert_eq!(points[0].time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(points[0].start_time_unix_nano, 1_544_712_600_000_000_000);
    let Some(metric::Data::ExponentialHistogram(e)) = &metrics[1].data else {
        panic!("not an exponential histogram: {:?}", metrics[1]);
    };
    let p = &e.data_points[0];
    assert_eq!((p.count, p.zero_count), (3, 1));
    assert_eq!(
        p.positive.as_ref().map(|b| (b.offset, b.bucket_counts.clone())),
        Some((1, vec![2]))
    );
}

/// Case 2: an error inside a metric's data oneof made the data silently disappear.
#[test]
fn review_temporality_by_name_keeps_the_data() {
    let m = one_metric(&in_request(
        r#"{"name": "requests", "sum": {"dataPoints": [{"asInt": "5"}],
        "aggregationTemporality": "AGGREGATION_TEMPORALITY_CUMULATIVE", "isMonotonic": true}}"#,
    ));
    let (sum, points) = sum_points(&m);
    assert_eq!(sum.aggregation_temporality, 2);
    assert_eq!(points[0].value, Some(number_data_point::Value::AsInt(5)));
    let m = one_metric(&in_request(
        r#"{"name": "latency", "histogram": {"dataPoints": [{"count": "1"}],
        "aggregationTemporality": "AGGREGATION_TEMPORALITY_DELTA"}}"#,
    ));
    assert!(
        matches!(&m.data, Some(metric::Data::Histogram(h)) if h.aggregation_temporality == 1 && h.data_points.len() == 1)
    );
}

/// Case 2: flags as a string.
#[test]
fn review_quoted_flags_keep_the_data() {
    let m = one_metric(&in_request(
        r#"{"name": "requests", "sum": {"dataPoints": [{"asDouble": 1.5, "flags": "1"}], "aggregationTemporality": 1}}"#,
    ));
    let (_, points) = sum_points(&m);
    assert_eq!(points[0].flags, 1);
    assert_eq!(points[0].value, Some(number_data_point::Value::AsDouble(1.5)));
}

/// Case 2: a bad attribute inside the data is an error, not a metric without data.
#[test]
fn review_bad_attribute_in_the_data_is_an_error() {
    let doc = in_request(
        r#"{"name": "requests", "gauge": {"dataPoints": [{"asInt": "1",
        "attributes": [{"key": "k", "value": {"intValue": "one"}}]}]}}"#,
    );
    assert!(MetricsBatch::decode(doc.as_bytes(), Encoding::Json).is_err());
}

/// Case 2: NaN and the infinities as pdata writes them gave points without a value.
#[test]
fn review_nan_and_infinities_are_values() {
    let m = one_metric(&in_request(
        r#"{"name": "g", "gauge": {"dataPoints": [{"asDouble": "NaN"}, {"asDouble": "Infinity"},
        {"asDouble": "-Infinity"}, {"asDouble": "2.5"}]}}"#,
    ));
    let Some(metric::Data::Gauge(g)) = &m.data else {
        panic!("not a gauge: {m:?}");
    };
    let values: Vec<Option<f64>> = g
        .data_points
        .iter()
        .map(|p| match p.value {
            Some(number_data_point::Value::AsDouble(v)) => Some(v),
            _ => None,
        })
        .collect();
    assert!(values[0].is_some_and(f64::is_nan), "{values:?}");
    assert_eq!(
        values[1..],
        [Some(f64::INFINITY), Some(f64::NEG_INFINITY), Some(2.5)]
    );
}

/// Case 3: empty arrays and maps as otelcol writes them, a KeyValue without its key and an
/// EntityRef without a schemaUrl were refused.
#[test]
fn review_empty_values_and_missing_fields() {
    let doc = r#"{"resourceMetrics": [{"resource": {"entityRefs": [{"type": "service"}]},
        "scopeMetrics": [{"metrics": [{"name": "g", "gauge": {"dataPoints": [{"asInt": "1",
        "attributes": [{"key": "a", "value": {"arrayValue": {}}}, {"value": {"kvlistValue": {}}}]}]}}]}]}]}"#;
    let batch = MetricsBatch::decode(doc.as_bytes(), Encoding::Json).expect("decodes");
    assert_eq!(batch.item_count(), 1);
    let rm = &batch.resources()[0];
    assert_eq!(
        rm.resource.as_ref().map(|r| r.entity_refs[0].r#type.as_str()),
        Some("service")
    );
    let Some(metric::Data::Gauge(g)) = &rm.scope_metrics[0].metrics[0].data else {
        panic!("no gauge");
    };
    assert_eq!(g.data_points[0].attributes.len(), 2);
}

/// Case 5: `null` fields and 32-bit integers as strings were refused.
#[test]
fn review_nulls_and_quoted_32_bit_integers() {
    let m = one_metric(&in_request(
        r#"{"name": "h", "description": null, "metadata": null, "exponentialHistogram": {"dataPoints": [{
        "scale": "-2", "sum": null, "min": null, "positive": {"offset": "3", "bucketCounts": null},
        "negative": null, "exemplars": null, "flags": "1", "count": "2", "attributes": null}],
        "aggregationTemporality": null}}"#,
    ));
    let Some(metric::Data::ExponentialHistogram(e)) = &m.data else {
        panic!("no exponential histogram: {m:?}");
    };
    let p = &e.data_points[0];
    assert_eq!((p.scale, p.flags, p.count, p.sum, p.min), (-2, 1, 2, None, None));
    assert_eq!(
        p.positive,
        Some(Buckets {
            offset: 3,
            bucket_counts: vec![]
        })
    );
    assert_eq!(p.negative, None);
}

/// Encoding: NaN and the infinities came out as `null`.
#[test]
fn review_encodes_nan_and_infinities_as_strings() {
    let batch = MetricsBatch::from_resources(full_request().resource_metrics);
    let bytes = batch.encode(Encoding::Json);
    let text = String::from_utf8_lossy(&bytes);
    for want in [
        r#"{"asDouble":"NaN"}"#,
        r#"{"asDouble":"Infinity"}"#,
        r#""sum":"NaN""#,
        r#""max":"NaN""#,
    ] {
        assert!(text.contains(want), "no {want} in {text}");
    }
    assert!(!text.contains("null"), "{text}");
}

#[test]
fn malformed_input_is_an_error() {
    let gauge_point = |body: &str| in_request(&format!(r#"{{"gauge": {{"dataPoints": [{{{body}}}]}}}}"#));
    let cases = [
        String::new(),
        r#"{"resourceMetrics": [{"scopeMetrics": [{"metrics": {}}]}]}"#.into(),
        in_request("5"),
        in_request(r#"{"name": 5}"#),
        // A oneof set twice.
        in_request(r#"{"gauge": {}, "sum": {}}"#),
        in_request(r#"{"summary": {}, "summary": {}}"#),
        in_request(r#"{"histogram": {}, "exponentialHistogram": {"dataPoints": []}}"#),
        gauge_point(r#""asDouble": 1, "asInt": "1""#),
        gauge_point(r#""exemplars": [{"asInt": "1", "asDouble": 2}]"#),
        // Unknown enum names, enums out of range.
        in_request(r#"{"sum": {"aggregationTemporality": "AGGREGATION_TEMPORALITY_SOMETIMES"}}"#),
        in_request(r#"{"sum": {"aggregationTemporality": "CUMULATIVE"}}"#),
        in_request(r#"{"histogram": {"aggregationTemporality": 2147483648}}"#),
        // Wrong types and overflowing integers.
        in_request(r#"{"sum": {"isMonotonic": "true"}}"#),
        in_request(r#"{"gauge": []}"#),
        gauge_point(r#""asInt": "9223372036854775808""#),
        gauge_point(r#""asInt": 1.5"#),
        gauge_point(r#""asDouble": "lots""#),
        gauge_point(r#""asDouble": true"#),
        gauge_point(r#""flags": 4294967296"#),
        gauge_point(r#""flags": -1"#),
        gauge_point(r#""timeUnixNano": "-1""#),
        gauge_point(r#""exemplars": [{"traceId": "xyz"}]"#),
        gauge_point(r#""exemplars": [{"spanId": 1}]"#),
        in_request(r#"{"histogram": {"dataPoints": [{"bucketCounts": [1, -1]}]}}"#),
        in_request(r#"{"histogram": {"dataPoints": [{"explicitBounds": [1, "x"]}]}}"#),
        in_request(r#"{"histogram": {"dataPoints": [{"sum": {}}]}}"#),
        in_request(r#"{"exponentialHistogram": {"dataPoints": [{"scale": 2147483648}]}}"#),
        in_request(r#"{"exponentialHistogram": {"dataPoints": [{"positive": {"bucketCounts": ["1e30"]}}]}}"#),
        in_request(r#"{"exponentialHistogram": {"dataPoints": [{"zeroThreshold": null, "negative": 3}]}}"#),
        in_request(r#"{"summary": {"dataPoints": [{"quantileValues": [{"quantile": "high"}]}]}}"#),
    ];
    for case in &cases {
        assert!(decode(case.as_bytes()).is_err(), "accepted: {case}");
        assert!(
            MetricsBatch::decode(case.as_bytes(), Encoding::Json).is_err(),
            "accepted: {case}"
        );
    }
}

#[test]
fn damage_is_an_error_never_a_panic() {
    super::damage_is_an_error_never_a_panic(&full_request());
}
