//! Writing what a span accumulated onto the span itself: attributes and hot-path events,
//! encoded straight into the bytes appended to the span: no `Span` is built and encoded, which
//! saves a dozen allocations per annotated span.

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

use hotspan_proto::raw::SpanIndex;

use super::config::SpanProfileConfig;
use super::model::{Accumulator, Frames, Weights};

/// Field numbers of `Span`, `Span.Event`, `KeyValue`, `AnyValue` and `ArrayValue` written here.
const SPAN_ATTRIBUTES: u32 = 9;
const SPAN_EVENTS: u32 = 11;
const EVENT_TIME: u32 = 1;
const EVENT_NAME: u32 = 2;
const EVENT_ATTRIBUTES: u32 = 3;
const KV_KEY: u32 = 1;
const KV_VALUE: u32 = 2;
const ANY_STRING: u32 = 1;
const ANY_INT: u32 = 3;
const ANY_DOUBLE: u32 = 4;
const ANY_ARRAY: u32 = 5;
const ARRAY_VALUES: u32 = 1;

/// An attribute value, as the `AnyValue` it encodes to.
enum Value<'a> {
    Int(u64),
    Double(f64),
    Str(&'a str),
    Strs(Vec<&'a str>),
}

/// Bytes of a length-delimited field whose content is `n` bytes (field numbers here are < 16).
fn delimited_len(n: usize) -> usize {
    1 + encoded_len_varint(n as u64) + n
}

fn put_delimited(out: &mut Vec<u8>, field: u32, n: usize) {
    encode_key(field, WireType::LengthDelimited, out);
    encode_varint(n as u64, out);
}

fn put_str(out: &mut Vec<u8>, field: u32, s: &str) {
    put_delimited(out, field, s.len());
    out.extend_from_slice(s.as_bytes());
}

impl Value<'_> {
    /// `int_value` is an int64: counts past its range are capped, never negative.
    fn int(v: u64) -> u64 {
        v.min(i64::MAX as u64)
    }

    /// Bytes of an `ArrayValue` of strings.
    fn array_len(items: &[&str]) -> usize {
        items.iter().map(|s| delimited_len(delimited_len(s.len()))).sum()
    }

    /// Bytes of the `AnyValue` message's content.
    fn len(&self) -> usize {
        match self {
            Value::Int(v) => 1 + encoded_len_varint(Value::int(*v)),
            Value::Double(_) => 9,
            Value::Str(s) => delimited_len(s.len()),
            Value::Strs(items) => delimited_len(Value::array_len(items)),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(v) => {
                encode_key(ANY_INT, WireType::Varint, out);
                encode_varint(Value::int(*v), out);
            }
            Value::Double(d) => {
                encode_key(ANY_DOUBLE, WireType::SixtyFourBit, out);
                out.extend_from_slice(&d.to_le_bytes());
            }
            Value::Str(s) => put_str(out, ANY_STRING, s),
            Value::Strs(items) => {
                put_delimited(out, ANY_ARRAY, Value::array_len(items));
                for s in items {
                    put_delimited(out, ARRAY_VALUES, delimited_len(s.len()));
                    put_str(out, ANY_STRING, s);
                }
            }
        }
    }
}
/// A `KeyValue` whose key is its parts joined (prefix, name, label): keys are written in
/// pieces rather than formatted.
struct Attr<'a> {
    key: [&'a str; 3],
    value: Value<'a>,
}

impl Attr<'_> {
    fn key_len(&self) -> usize {
        self.key.iter().map(|k| k.len()).sum()
    }

    fn len(&self) -> usize {
        let key = self.key_len();
        // proto3 leaves an empty string out.
        let key = if key == 0 { 0 } else { delimited_len(key) };
        key + delimited_len(self.value.len())
    }

    /// Writes the attribute as field `field` of the enclosing message.
    fn write(&self, field: u32, out: &mut Vec<u8>) {
        put_delimited(out, field, self.len());
        if self.key_len() > 0 {
            put_delimited(out, KV_KEY, self.key_len());
            for k in self.key {
                out.extend_from_slice(k.as_bytes());
            }
        }
        put_delimited(out, KV_VALUE, self.value.len());
        self.value.write(out);
    }
}

/// Writes a `Span.Event` named by `name`'s parts joined.
fn write_event(out: &mut Vec<u8>, time: u64, name: [&str; 2], attrs: &[Attr]) {
    let name_len: usize = name.iter().map(|n| n.len()).sum();
    // proto3 leaves zero and empty fields out.
    let time_len = if time != 0 { 9 } else { 0 };
    let name_field = if name_len != 0 { delimited_len(name_len) } else { 0 };
    let attrs_len: usize = attrs.iter().map(|a| delimited_len(a.len())).sum();
    put_delimited(out, SPAN_EVENTS, time_len + name_field + attrs_len);
    if time != 0 {
        encode_key(EVENT_TIME, WireType::SixtyFourBit, out);
        out.extend_from_slice(&time.to_le_bytes());
    }
    if name_len != 0 {
        put_delimited(out, EVENT_NAME, name_len);
        for n in name {
            out.extend_from_slice(n.as_bytes());
        }
    }
    for a in attrs {
        a.write(EVENT_ATTRIBUTES, out);
    }
}

/// Weight used to rank stacks and functions: CPU time, or sample counts when a profile
/// carries no CPU time.
fn rank(w: &Weights, by_cpu: bool) -> u64 {
    if by_cpu {
        w.cpu_ns
    } else {
        w.samples
    }
}

/// Root first, `;`-joined, keeping the leaf-most `max` frames.
pub fn collapsed(frames: &Frames, max: usize) -> String {
    let kept = &frames[..frames.len().min(max)];
    kept.iter().rev().map(|f| &**f).collect::<Vec<&str>>().join(";")
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Appends to `out` the attribute of a span whose only CPU is its descendants': `cpu_ns_total`.
pub fn annotate_rollup(children_cpu_ns: u64, config: &SpanProfileConfig, out: &mut Vec<u8>) {
    if children_cpu_ns > 0 {
        let p = config.attribute_prefix.as_str();
        Attr {
            key: [p, "cpu_ns_total", ""],
            value: Value::Int(children_cpu_ns),
        }
        .write(SPAN_ATTRIBUTES, out);
    }
}

/// Appends to `out` the join's attributes and events for the span `index` describes, encoded
/// as fields of a `Span`: appended to the span's bytes, they add to the span. Spans that got
/// no samples of their own only get `cpu_ns_total` when descendants had some.
pub fn annotate(index: &SpanIndex, acc: &Accumulator, config: &SpanProfileConfig, out: &mut Vec<u8>) {
    let p = config.attribute_prefix.as_str();
    let mut put = |key: [&str; 3], value: Value| Attr { key, value }.write(SPAN_ATTRIBUTES, out);
    let mut attr = |name: &str, value: Value| put([p, name, ""], value);
    if acc.is_empty() {
        return annotate_rollup(acc.children_cpu_ns, config, out);
    }
    let total = acc.own.cpu_ns.saturating_add(acc.children_cpu_ns);
    let by_cpu = acc.own.cpu_ns > 0;
    let whole = rank(&acc.own, by_cpu);
    let mut stacks: Vec<(&Frames, &Weights)> = acc.stacks.iter().collect();
    // Heaviest first; ties broken by the stack text so output is deterministic.
    stacks.sort_by(|a, b| {
        rank(b.1, by_cpu)
            .cmp(&rank(a.1, by_cpu))
            .then_with(|| a.0.cmp(b.0))
    });

    let mut functions: std::collections::BTreeMap<&str, Weights> = Default::default();
    for (frames, w) in &stacks {
        if let Some(leaf) = frames.first() {
            functions.entry(&**leaf).or_default().add(w.samples, w.cpu_ns);
        }
    }
    let mut functions: Vec<(&str, Weights)> = functions.into_iter().collect();
    functions.sort_by(|a, b| {
        rank(&b.1, by_cpu)
            .cmp(&rank(&a.1, by_cpu))
            .then_with(|| a.0.cmp(b.0))
    });

    attr("samples", Value::Int(acc.own.samples));
    attr("cpu_ns", Value::Int(acc.own.cpu_ns));
    attr("cpu_ns_total", Value::Int(total));
    let duration = index.end.saturating_sub(index.start);
    if duration > 0 {
        attr("cpu_utilization", Value::Double(share(acc.own.cpu_ns, duration)));
    }
    // The heaviest stacks as text, once: the hot path attribute and the events share them.
    let shown = if config.emit_events {
        config.hot_paths.max(1)
    } else {
        1
    };
    let paths: Vec<String> = stacks
        .iter()
        .take(shown)
        .map(|(frames, _)| collapsed(frames, config.hot_path_frames))
        .collect();
    if let (Some(path), Some((_, w))) = (paths.first(), stacks.first()) {
        attr("hot_path", Value::Str(path));
        attr("hot_path.share", Value::Double(share(rank(w, by_cpu), whole)));
    }
    let top: Vec<String> = functions
        .iter()
        .take(config.top_functions)
        .map(|(name, w)| format!("{name} {:.1}%", 100.0 * share(rank(w, by_cpu), whole)))
        .collect();
    attr(
        "top_functions",
        Value::Strs(top.iter().map(String::as_str).collect()),
    );
    let rule = [
        super::model::Rule::Span,
        super::model::Rule::Trace,
        super::model::Rule::Thread,
    ]
    .into_iter()
    .max_by_key(|r| {
        (
            rank(&acc.rules[*r as usize], by_cpu),
            std::cmp::Reverse(*r as usize),
        )
    })
    .unwrap_or(super::model::Rule::Span);
    attr("join", Value::Str(rule.as_str()));
    for (key, values) in &acc.labels {
        let joined = values.iter().map(|v| &**v).collect::<Vec<&str>>().join(",");
        put([p, "labels.", key], Value::Str(&joined));
    }
    if !acc.profile_ids.is_empty() {
        let ids = acc.profile_ids.iter().map(|id| &**id).collect();
        put([p, "profile_ids", ""], Value::Strs(ids));
    }
    // Grafana's "traces to profiles" opens the span's own flame graph by this id.
    let own_id = format!("{:016x}", index.span_id);
    put(["pyroscope.profile.id", "", ""], Value::Str(&own_id));

    if config.emit_events {
        for (stack, (_, w)) in paths.iter().zip(&stacks).take(config.hot_paths) {
            let attrs = [
                ("stack", Value::Str(stack)),
                ("samples", Value::Int(w.samples)),
                ("cpu_ns", Value::Int(w.cpu_ns)),
                ("share", Value::Double(share(rank(w, by_cpu), whole))),
            ]
            .map(|(key, value)| Attr {
                key: [key, "", ""],
                value,
            });
            write_event(out, index.start, [p, "hot_path"], &attrs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotspan_proto::otlp::common::v1::{any_value, AnyValue, ArrayValue, KeyValue};
    use hotspan_proto::otlp::trace::v1::{span, Span};
    use proptest::prelude::*;
    use prost::Message;

    fn prost_value(value: &Value) -> AnyValue {
        let v = match value {
            Value::Int(i) => any_value::Value::IntValue(Value::int(*i) as i64),
            Value::Double(d) => any_value::Value::DoubleValue(*d),
            Value::Str(s) => any_value::Value::StringValue(s.to_string()),
            Value::Strs(items) => any_value::Value::ArrayValue(ArrayValue {
                values: items.iter().map(|s| prost_value(&Value::Str(s))).collect(),
            }),
        };
        AnyValue { value: Some(v) }
    }

    fn key_value(a: &Attr) -> KeyValue {
        KeyValue {
            key: a.key.concat(),
            value: Some(prost_value(&a.value)),
            ..Default::default()
        }
    }

    fn value() -> impl Strategy<Value = (u8, u64, f64, Vec<String>)> {
        (
            0u8..4,
            any::<u64>(),
            any::<f64>(),
            prop::collection::vec(".{0,200}", 0..4),
        )
    }

    fn pick<'a>((kind, i, d, s): &'a (u8, u64, f64, Vec<String>)) -> Value<'a> {
        match kind {
            0 => Value::Int(*i),
            1 => Value::Double(*d),
            2 => Value::Str(s.first().map_or("", String::as_str)),
            _ => Value::Strs(s.iter().map(String::as_str).collect()),
        }
    }

    proptest! {
        /// What the writer puts out is byte for byte what prost encodes for the same span.
        #[test]
        fn attributes_and_events_encode_as_prost_does(
            keys in prop::collection::vec(("[a-z.]{0,20}", ".{0,150}"), 1..4),
            values in prop::collection::vec(value(), 4),
            time in prop_oneof![Just(0u64), any::<u64>()],
        ) {
            let attrs: Vec<Attr> = keys
                .iter()
                .zip(&values)
                .map(|((a, b), v)| Attr { key: [a, b, ""], value: pick(v) })
                .collect();
            let mut ours = Vec::new();
            for a in &attrs {
                a.write(SPAN_ATTRIBUTES, &mut ours);
            }
            let mut expected = Span {
                attributes: attrs.iter().map(key_value).collect(),
                ..Default::default()
            };
            prop_assert_eq!(&ours, &expected.encode_to_vec());

            // An event as annotate writes one, with the same attributes.
            let name = keys[0].1.as_str();
            write_event(&mut ours, time, [name, ""], &attrs);
            expected.events.push(span::Event {
                time_unix_nano: time,
                name: name.to_string(),
                attributes: attrs.iter().map(key_value).collect(),
                dropped_attributes_count: 0,
            });
            prop_assert_eq!(&ours, &expected.encode_to_vec());
        }
    }
}
