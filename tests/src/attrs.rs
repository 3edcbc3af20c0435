//! Reading the attributes the join writes on a span, by key.

use hotspan_proto::otlp::common::v1::any_value::Value;
use hotspan_proto::otlp::trace::v1::Span;

/// The value of `key` on the span, if it has one.
pub fn value<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
}

/// An int attribute; `None` when absent or of another type.
pub fn int(span: &Span, key: &str) -> Option<i64> {
    match value(span, key) {
        Some(Value::IntValue(i)) => Some(*i),
        _ => None,
    }
}

/// A double attribute; `None` when absent or of another type.
pub fn double(span: &Span, key: &str) -> Option<f64> {
    match value(span, key) {
        Some(Value::DoubleValue(d)) => Some(*d),
        _ => None,
    }
}

/// A string attribute; `None` when absent or of another type.
pub fn text<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match value(span, key) {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// The strings of an array attribute (other elements skipped); empty when absent.
pub fn strings<'a>(span: &'a Span, key: &str) -> Vec<&'a str> {
    match value(span, key) {
        Some(Value::ArrayValue(a)) => a
            .values
            .iter()
            .filter_map(|v| match v.value.as_ref()? {
                Value::StringValue(s) => Some(s.as_str()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}
