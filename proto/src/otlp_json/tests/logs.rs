use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use serde_json::{json, Value as Json};

use super::{assert_otlp_keys, every_value, kv, resource, same_protobuf, scope, span_id, trace_id};
use crate::{Encoding, LogsBatch};

fn encode(request: &ExportLogsServiceRequest) -> Vec<u8> {
    crate::otlp_json::encode(request)
}

fn decode(bytes: &[u8]) -> Result<ExportLogsServiceRequest, serde_json::Error> {
    crate::otlp_json::decode(bytes)
}

/// Every field of every message set, each to a distinct non-default value.
fn full_request() -> ExportLogsServiceRequest {
    let record = LogRecord {
        time_unix_nano: 1_700_000_000_123_456_789,
        observed_time_unix_nano: u64::MAX,
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: Some(AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: every_value(),
            })),
        }),
        attributes: every_value(),
        dropped_attributes_count: u32::MAX,
        flags: 1,
        trace_id: trace_id(1),
        span_id: span_id(2),
        event_name: "device.app.lifecycle".into(),
    };
    let future = LogRecord {
        severity_number: 42,
        body: Some(AnyValue {
            value: Some(Value::DoubleValue(f64::NAN)),
        }),
        ..Default::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![
            ResourceLogs {
                resource: Some(resource()),
                scope_logs: vec![
                    ScopeLogs {
                        scope: Some(scope()),
                        log_records: vec![record, future, LogRecord::default()],
                        schema_url: "https://scope-schema".into(),
                    },
                    ScopeLogs::default(),
                ],
                schema_url: "https://resource-schema".into(),
            },
            ResourceLogs::default(),
        ],
    }
}

#[test]
fn round_trips_every_field() {
    let req = full_request();
    super::round_trips(&req);

    let batch = LogsBatch::from_resources(req.resource_logs.clone());
    let again = LogsBatch::decode(&batch.encode(Encoding::Json), Encoding::Json).expect("decodes");
    assert_eq!(again.item_count(), 3);
    let again = ExportLogsServiceRequest {
        resource_logs: again.into_resources(),
    };
    assert!(same_protobuf(&again, &req));
}

#[test]
fn encode_writes_otlp_json_forms() {
    let out: Json = serde_json::from_slice(&encode(&full_request())).expect("valid JSON");
    assert_otlp_keys(&out);
    let records = &out["resourceLogs"][0]["scopeLogs"][0]["logRecords"];
    let r = &records[0];
    assert_eq!(r["timeUnixNano"], "1700000000123456789");
    assert_eq!(r["observedTimeUnixNano"], "18446744073709551615");
    assert_eq!(r["severityNumber"], 17);
    assert_eq!(r["severityText"], "ERROR");
    assert_eq!(r["flags"], 1);
    assert_eq!(r["traceId"], hex::encode(trace_id(1)));
    assert_eq!(r["spanId"], hex::encode(span_id(2)));
    assert_eq!(r["eventName"], "device.app.lifecycle");
    assert_eq!(r["droppedAttributesCount"], u32::MAX);
    assert_eq!(
        r["body"]["kvlistValue"]["values"][7]["value"],
        json!({"doubleValue": "NaN"})
    );
    assert_eq!(
        records[1],
        json!({"severityNumber": 42, "body": {"doubleValue": "NaN"}})
    );
    assert_eq!(records[2], json!({}));
}

#[test]
fn decodes_snake_case_everywhere() {
    super::decodes_in_snake_case(&full_request(), &["log_records", "observed_time_unix_nano"]);
}

// ---- The review's cases, through `LogsBatch::decode` as the receivers call it. Each one
// failed with the serde derives of opentelemetry-proto. ----

fn one_record(json: &str) -> LogRecord {
    let batch = LogsBatch::decode(json.as_bytes(), Encoding::Json).expect("decodes");
    assert_eq!(batch.item_count(), 1, "{json}");
    batch.resources()[0].scope_logs[0].log_records[0].clone()
}

/// Case 1: snake_case keys were ignored and the request decoded empty.
#[test]
fn review_snake_case_keys() {
    let r = one_record(
        r#"{"resource_logs": [{"scope_logs": [{"log_records": [{"time_unix_nano": "1544712660000000000",
        "observed_time_unix_nano": 1544712661000000000, "severity_number": 9, "severity_text": "INFO",
        "body": {"string_value": "hello"}, "trace_id": "5b8efff798038103d269b633813fc60c",
        "span_id": "eee19b7ec3c1b174", "event_name": "e", "dropped_attributes_count": 1}]}]}]}"#,
    );
    assert_eq!(r.time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(r.observed_time_unix_nano, 1_544_712_661_000_000_000);
    assert_eq!((r.severity_number, r.severity_text.as_str()), (9, "INFO"));
    assert_eq!(
        r.body.and_then(|b| b.value),
        Some(Value::StringValue("hello".into()))
    );
    assert_eq!(hex::encode(&r.trace_id), "5b8efff798038103d269b633813fc60c");
    assert_eq!(hex::encode(&r.span_id), "eee19b7ec3c1b174");
    assert_eq!((r.event_name.as_str(), r.dropped_attributes_count), ("e", 1));
}

/// Case 3: otelcol writes `{"kvlistValue":{}}` for an empty map body, and keys may be absent.
#[test]
fn review_empty_values_and_missing_fields() {
    let r = one_record(
        r#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"kvlistValue": {}},
        "attributes": [{"key": "a", "value": {"arrayValue": {}}}, {"value": {"boolValue": true}}]}]}]}]}"#,
    );
    assert_eq!(
        r.body.and_then(|b| b.value),
        Some(Value::KvlistValue(KeyValueList::default()))
    );
    assert_eq!(r.attributes[1], kv("", Value::BoolValue(true)));
}

/// Case 4: severity by name was refused.
#[test]
fn review_enum_names() {
    let r = one_record(
        r#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"severityNumber": "SEVERITY_NUMBER_INFO"}]}]}]}"#,
    );
    assert_eq!(r.severity_number, 9);
    let r = one_record(
        r#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"severityNumber": "SEVERITY_NUMBER_FATAL4"}]}]}]}"#,
    );
    assert_eq!(r.severity_number, 24);
}

/// Case 5: `null` fields and 32-bit integers as strings were refused.
#[test]
fn review_nulls_and_quoted_32_bit_integers() {
    let r = one_record(
        r#"{"resourceLogs": [{"resource": null, "scopeLogs": [{"scope": null, "schemaUrl": null, "logRecords": [{
        "body": null, "attributes": null, "traceId": null, "severityText": null, "severityNumber": null,
        "droppedAttributesCount": "2", "flags": "1"}]}]}]}"#,
    );
    assert_eq!((r.dropped_attributes_count, r.flags), (2, 1));
    assert_eq!((r.body, r.trace_id.len()), (None, 0));
}

/// Encoding: NaN came out as `null`.
#[test]
fn review_encodes_nan_as_a_string() {
    let batch = LogsBatch::from_resources(full_request().resource_logs);
    let bytes = batch.encode(Encoding::Json);
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains(r#""body":{"doubleValue":"NaN"}"#), "{text}");
    let back = LogsBatch::decode(&bytes, Encoding::Json).expect("decodes");
    let body = &back.resources()[0].scope_logs[0].log_records[1].body;
    assert!(matches!(body, Some(AnyValue { value: Some(Value::DoubleValue(v)) }) if v.is_nan()));
}

#[test]
fn malformed_input_is_an_error() {
    let record =
        |body: &str| format!(r#"{{"resourceLogs": [{{"scopeLogs": [{{"logRecords": [{{{body}}}]}}]}}]}}"#);
    let cases = [
        String::new(),
        "null".into(),
        r#"{"resourceLogs": 1}"#.into(),
        r#"{"resourceLogs": [{"scopeLogs": [[]]}]}"#.into(),
        record(r#""severityNumber": "SEVERITY_NUMBER_LOUD""#),
        record(r#""severityNumber": "INFO""#),
        record(r#""severityNumber": "9""#),
        record(r#""severityNumber": -2147483649"#),
        record(r#""timeUnixNano": "-5""#),
        record(r#""observedTimeUnixNano": 1e20"#),
        record(r#""droppedAttributesCount": 4294967296"#),
        record(r#""flags": "0x1""#),
        record(r#""traceId": "5b8efff798038103d269b633813fc60""#),
        record(r#""spanId": "not hex!""#),
        record(r#""body": "text""#),
        record(r#""body": {"stringValue": "a", "intValue": 1}"#),
        record(r#""body": {"bytesValue": "%%"}"#),
        record(r#""eventName": ["x"]"#),
        record(r#""attributes": [{"key": null, "value": {"kvlistValue": {"values": [1]}}}]"#),
    ];
    for case in &cases {
        assert!(decode(case.as_bytes()).is_err(), "accepted: {case}");
        assert!(
            LogsBatch::decode(case.as_bytes(), Encoding::Json).is_err(),
            "accepted: {case}"
        );
    }
}

#[test]
fn damage_is_an_error_never_a_panic() {
    super::damage_is_an_error_never_a_panic(&full_request());
}
