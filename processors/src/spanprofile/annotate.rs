//! Writing what a span accumulated onto the span itself: attributes and hot-path events,
//! encoded straight into the bytes appended to the span: no `Span` is built and encoded, and
//! no text is built apart from the bytes it ends up in.

use std::io::Write;

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

use hotspan_proto::raw::SpanIndex;

use super::config::SpanProfileConfig;
use super::model::{Accumulator, Frames, Weights};
use super::timeline::Overlap;

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

/// Writes a length-delimited field whose content `body` writes, so nothing is sized or built
/// beforehand. The length takes one byte unless the content reaches 128 bytes; then the
/// content moves over to make room. proto3 leaves an empty string out: `omit_empty` says
/// whether this field is one.
fn delimited(out: &mut Vec<u8>, field: u32, omit_empty: bool, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    encode_key(field, WireType::LengthDelimited, out);
    let at = out.len();
    out.push(0);
    body(out);
    let n = out.len() - at - 1;
    if n == 0 && omit_empty {
        out.truncate(start);
    } else if n < 0x80 {
        out[at] = n as u8;
    } else {
        let k = encoded_len_varint(n as u64);
        out.resize(out.len() + k - 1, 0);
        out.copy_within(at + 1..at + 1 + n, at + k);
        encode_varint(n as u64, &mut &mut out[at..at + k]);
    }
}

/// An attribute value, as the `AnyValue` it encodes to.
enum Value<'a> {
    Int(u64),
    Double(f64),
    Str(&'a str),
    /// A string written by the function, in place.
    Text(Writes<'a>),
    /// An array of strings, each written in place.
    Strs(EachString<'a>),
}

/// Writes something in place.
type Writes<'a> = &'a dyn Fn(&mut Vec<u8>);

/// Calls its argument once for each string of an array, with a function that writes it.
type EachString<'a> = &'a dyn Fn(&mut dyn FnMut(Writes));

impl Value<'_> {
    /// `int_value` is an int64: counts past its range are capped, never negative.
    fn int(v: u64) -> u64 {
        v.min(i64::MAX as u64)
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
            // A oneof: written even when empty.
            Value::Str(s) => delimited(out, ANY_STRING, false, |o| o.extend_from_slice(s.as_bytes())),
            Value::Text(text) => delimited(out, ANY_STRING, false, |o| text(o)),
            Value::Strs(items) => delimited(out, ANY_ARRAY, false, |o| {
                items(&mut |item| {
                    delimited(o, ARRAY_VALUES, false, |o| {
                        delimited(o, ANY_STRING, false, |o| item(o))
                    })
                })
            }),
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
    /// Writes the attribute as field `field` of the enclosing message.
    fn write(&self, field: u32, out: &mut Vec<u8>) {
        delimited(out, field, false, |o| {
            delimited(o, KV_KEY, true, |o| {
                self.key.iter().for_each(|k| o.extend_from_slice(k.as_bytes()))
            });
            delimited(o, KV_VALUE, false, |o| self.value.write(o));
        });
    }
}

/// Writes a `Span.Event` named by `name`'s parts joined.
fn write_event(out: &mut Vec<u8>, time: u64, name: [&str; 2], attrs: &[Attr]) {
    delimited(out, SPAN_EVENTS, false, |o| {
        // proto3 leaves zero and empty fields out.
        if time != 0 {
            encode_key(EVENT_TIME, WireType::SixtyFourBit, o);
            o.extend_from_slice(&time.to_le_bytes());
        }
        delimited(o, EVENT_NAME, true, |o| {
            name.iter().for_each(|n| o.extend_from_slice(n.as_bytes()))
        });
        for a in attrs {
            a.write(EVENT_ATTRIBUTES, o);
        }
    });
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

/// Writes `frames` root first, `;`-joined, keeping the leaf-most `max`.
fn write_collapsed(frames: &Frames, max: usize, out: &mut Vec<u8>) {
    let kept = &frames[..frames.len().min(max)];
    for (i, f) in kept.iter().rev().enumerate() {
        if i > 0 {
            out.push(b';');
        }
        out.extend_from_slice(f.as_bytes());
    }
}

/// Root first, `;`-joined, keeping the leaf-most `max` frames.
pub fn collapsed(frames: &Frames, max: usize) -> String {
    let mut out = Vec::new();
    write_collapsed(frames, max, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// `x` (finite, not negative) in tenths, rounded as `format!("{x:.1}")` rounds: the exact
/// binary value, ties to even. Integer work: float formatting at a set precision is the
/// slowest part of an annotation otherwise.
fn tenths(x: f64) -> u64 {
    let bits = x.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    // x = mantissa * 2^power exactly.
    let (mantissa, power) = match exponent {
        0 => (fraction, -1074),
        _ => (fraction | (1 << 52), exponent - 1075),
    };
    let scaled = u128::from(mantissa) * 10;
    if power >= 0 {
        return u64::try_from(scaled << power.min(64)).unwrap_or(u64::MAX);
    }
    let shift = power.unsigned_abs();
    if shift >= 127 {
        return 0;
    }
    let whole = scaled >> shift;
    let rest = scaled & ((1 << shift) - 1);
    let half = 1 << (shift - 1);
    let up = rest > half || (rest == half && whole & 1 == 1);
    u64::try_from(whole + u128::from(up)).unwrap_or(u64::MAX)
}

/// Writes `x` with one decimal, as `{:.1}` would.
fn write_one_decimal(x: f64, out: &mut Vec<u8>) {
    let t = tenths(x);
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{}.{}", t / 10, t % 10);
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Appends to `out` the attribute of a span whose only CPU is its descendants': `cpu_ns_total`.
/// The attribute Grafana's "traces to profiles" reads (not prefixed).
pub const PYROSCOPE_PROFILE_ID: &str = "pyroscope.profile.id";

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
/// no samples of their own only get `cpu_ns_total` when descendants had some; blocked time
/// (goroutine snapshots, off-CPU profiles) is written apart from CPU.
pub fn annotate(
    index: &SpanIndex,
    acc: &Accumulator,
    children_cpu_ns: u64,
    config: &SpanProfileConfig,
    profile_id: bool,
    out: &mut Vec<u8>,
) {
    if acc.is_empty() {
        annotate_rollup(children_cpu_ns, config, out);
    } else {
        annotate_cpu(index, acc, children_cpu_ns, config, profile_id, out);
    }
    annotate_waits(index, acc, config, out);
}

/// The CPU part: samples, CPU time, hot path, top functions, the rule, labels, ids, events.
fn annotate_cpu(
    index: &SpanIndex,
    acc: &Accumulator,
    children_cpu_ns: u64,
    config: &SpanProfileConfig,
    profile_id: bool,
    out: &mut Vec<u8>,
) {
    let p = config.attribute_prefix.as_str();
    let put =
        |out: &mut Vec<u8>, key: [&str; 3], value: Value| Attr { key, value }.write(SPAN_ATTRIBUTES, out);
    let attr = |out: &mut Vec<u8>, name: &str, value: Value| put(out, [p, name, ""], value);
    let total = acc.own.cpu_ns.saturating_add(children_cpu_ns);
    let by_cpu = acc.own.cpu_ns > 0;
    let whole = rank(&acc.own, by_cpu);
    // Heaviest first; ties broken by the stack text so output is deterministic.
    let heavier = |a: &(&Frames, &Weights), b: &(&Frames, &Weights)| {
        rank(b.1, by_cpu)
            .cmp(&rank(a.1, by_cpu))
            .then_with(|| a.0.cmp(b.0))
    };
    let mut stacks: Vec<(&Frames, &Weights)> = acc.stacks.iter().collect();
    stacks.sort_unstable_by(heavier);

    // Self time by leaf function: spans see few distinct leaves, so a list beats a map.
    let mut functions: Vec<(&str, Weights)> = Vec::new();
    for (frames, w) in &stacks {
        if let Some(leaf) = frames.first() {
            match functions.iter_mut().find(|(name, _)| *name == &**leaf) {
                Some((_, total)) => total.add(w.samples, w.cpu_ns),
                None => functions.push((leaf, **w)),
            }
        }
    }
    functions.sort_unstable_by(|a, b| {
        rank(&b.1, by_cpu)
            .cmp(&rank(&a.1, by_cpu))
            .then_with(|| a.0.cmp(b.0))
    });

    attr(out, "samples", Value::Int(acc.own.samples));
    attr(out, "cpu_ns", Value::Int(acc.own.cpu_ns));
    attr(out, "cpu_ns_total", Value::Int(total));
    let duration = index.end.saturating_sub(index.start);
    if duration > 0 {
        attr(
            out,
            "cpu_utilization",
            Value::Double(share(acc.own.cpu_ns, duration)),
        );
    }
    let frames = config.hot_path_frames;
    if let Some((top, w)) = stacks.first() {
        attr(out, "hot_path", Value::Text(&|o| write_collapsed(top, frames, o)));
        attr(
            out,
            "hot_path.share",
            Value::Double(share(rank(w, by_cpu), whole)),
        );
    }
    let top = &functions[..functions.len().min(config.top_functions)];
    attr(
        out,
        "top_functions",
        Value::Strs(&|each| {
            for (name, w) in top {
                each(&|o| {
                    o.extend_from_slice(name.as_bytes());
                    o.push(b' ');
                    write_one_decimal(100.0 * share(rank(w, by_cpu), whole), o);
                    o.push(b'%');
                });
            }
        }),
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
    attr(out, "join", Value::Str(rule.as_str()));
    for (key, values) in &acc.labels {
        let joined = |o: &mut Vec<u8>| {
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    o.push(b',');
                }
                o.extend_from_slice(v.as_bytes());
            }
        };
        put(out, [p, "labels.", key], Value::Text(&joined));
    }
    if !acc.profile_ids.is_empty() {
        let ids: EachString = &|each| {
            for id in &acc.profile_ids {
                each(&|o| o.extend_from_slice(id.as_bytes()));
            }
        };
        put(out, [p, "profile_ids", ""], Value::Strs(ids));
    }
    // Grafana's "traces to profiles" opens the span's own flame graph by this id.
    if profile_id {
        let own_id = |o: &mut Vec<u8>| {
            let mut digits = [0u8; 16];
            // 16 digits for 8 bytes: the only way `encode_to_slice` fails cannot happen.
            if hex::encode_to_slice(index.span_id.to_be_bytes(), &mut digits).is_ok() {
                o.extend_from_slice(&digits);
            }
        };
        put(out, [PYROSCOPE_PROFILE_ID, "", ""], Value::Text(&own_id));
    }

    if config.emit_events {
        for (frames_of, w) in stacks.iter().take(config.hot_paths) {
            let stack = |o: &mut Vec<u8>| write_collapsed(frames_of, frames, o);
            let attrs = [
                ("stack", Value::Text(&stack)),
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

/// The waiting part: blocked time (estimated from goroutine snapshots, or measured off CPU)
/// with its heaviest blocking stack and its reasons, descendants' blocked time rolled up, and
/// time snapshots caught it runnable but not on a CPU. Every figure is at most the span's
/// duration.
fn annotate_waits(index: &SpanIndex, acc: &Accumulator, config: &SpanProfileConfig, out: &mut Vec<u8>) {
    let p = config.attribute_prefix.as_str();
    let attr = |out: &mut Vec<u8>, name: &str, value: Value| {
        Attr {
            key: [p, name, ""],
            value,
        }
        .write(SPAN_ATTRIBUTES, out)
    };
    let duration = index.end.saturating_sub(index.start);
    let own = acc.wait_ns().min(duration);
    if let Some(w) = acc.wait.as_ref().filter(|w| w.total_ns > 0) {
        attr(out, "wait_ns", Value::Int(own));
        let mut stacks: Vec<(&Frames, &u64)> = w.stacks.iter().collect();
        stacks.sort_unstable_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        if let Some((top, ns)) = stacks.first() {
            let frames = config.hot_path_frames;
            attr(
                out,
                "wait_path",
                Value::Text(&|o| write_collapsed(top, frames, o)),
            );
            attr(out, "wait_path.share", Value::Double(share(**ns, w.total_ns)));
        }
        let mut reasons: Vec<(&&str, &u64)> = w.reasons.iter().collect();
        reasons.sort_unstable_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        attr(
            out,
            "wait_reasons",
            Value::Strs(&|each| {
                for (reason, ns) in &reasons {
                    each(&|o| {
                        o.extend_from_slice(reason.as_bytes());
                        o.push(b' ');
                        write_one_decimal(100.0 * share(**ns, w.total_ns), o);
                        o.push(b'%');
                    });
                }
            }),
        );
        let sources = |o: &mut Vec<u8>| {
            for (i, s) in w.sources.iter().enumerate() {
                if i > 0 {
                    o.push(b',');
                }
                o.extend_from_slice(s.as_str().as_bytes());
            }
        };
        attr(out, "wait_source", Value::Text(&sources));
    }
    let total = own.saturating_add(acc.children_wait_ns).min(duration);
    if total > 0 {
        attr(out, "wait_ns_total", Value::Int(total));
    }
    if acc.active_ns > 0 {
        let runnable = acc.active_ns.saturating_sub(acc.own.cpu_ns).min(duration);
        attr(out, "runnable_ns", Value::Int(runnable));
    }
}

/// Appends what the process went through while the span ran: stop-the-world pauses (with an
/// event for each, up to a few) and CPU throttling, prorated. Only what is there is written:
/// a span no pause or throttling touched gets nothing.
pub fn annotate_overlap(o: &Overlap, config: &SpanProfileConfig, out: &mut Vec<u8>) {
    let p = config.attribute_prefix.as_str();
    let attr = |out: &mut Vec<u8>, name: &str, value: Value| {
        Attr {
            key: [p, name, ""],
            value,
        }
        .write(SPAN_ATTRIBUTES, out)
    };
    if o.pause_count > 0 {
        attr(out, "gc.pause_ns", Value::Int(o.pause_ns));
        attr(out, "gc.pauses", Value::Int(o.pause_count));
        attr(out, "gc.clock_error_ns", Value::Int(o.clock_error));
    }
    if o.throttled_ns > 0 || o.throttled_periods > 0 {
        attr(out, "cpu.throttled_ns", Value::Int(o.throttled_ns));
        attr(out, "cpu.throttled_periods", Value::Int(o.throttled_periods));
        if let Some(q) = o.quota {
            attr(out, "cpu.quota", Value::Double(q));
        }
    }
    if config.emit_events {
        for pause in &o.pauses {
            let attrs = [
                ("duration_ns", Value::Int(pause.end.saturating_sub(pause.start))),
                ("reason", Value::Str(&pause.reason)),
                ("gc", Value::Str(if pause.gc { "true" } else { "false" })),
            ]
            .map(|(key, value)| Attr {
                key: [key, "", ""],
                value,
            });
            write_event(out, pause.start, ["gc.pause", ""], &attrs);
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

    /// A value as the test describes it: kind, int, double, strings.
    type Spec = (u8, u64, f64, Vec<String>);

    fn prost_value((kind, i, d, s): &Spec) -> AnyValue {
        let string = |s: &str| AnyValue {
            value: Some(any_value::Value::StringValue(s.to_string())),
        };
        let first = s.first().map_or("", String::as_str);
        let v = match kind {
            0 => any_value::Value::IntValue(Value::int(*i) as i64),
            1 => any_value::Value::DoubleValue(*d),
            2 | 3 => any_value::Value::StringValue(first.to_string()),
            _ => any_value::Value::ArrayValue(ArrayValue {
                values: s.iter().map(|s| string(s)).collect(),
            }),
        };
        AnyValue { value: Some(v) }
    }

    fn value() -> impl Strategy<Value = Spec> {
        (
            0u8..5,
            any::<u64>(),
            any::<f64>(),
            prop::collection::vec(".{0,200}", 0..4),
        )
    }

    #[test]
    fn one_decimal_ties_round_as_float_formatting_does() {
        for x in [0.0, 5e-324, 0.05, 0.15, 0.25, 0.35, 0.45, 12.25, 99.95, 100.0] {
            let mut ours = Vec::new();
            write_one_decimal(x, &mut ours);
            assert_eq!(String::from_utf8(ours).expect("ascii"), format!("{x:.1}"));
        }
    }

    proptest! {
        /// Shares are written exactly as float formatting writes them, ties included.
        #[test]
        fn one_decimal_as_float_formatting_writes_it(whole in 1u64.., part in any::<u64>(), small in 1u64..1000) {
            for (part, whole) in [(part % whole, whole), (part % small, small), (part % (small + 1), small)] {
                let x = 100.0 * share(part.min(whole), whole);
                let mut ours = Vec::new();
                write_one_decimal(x, &mut ours);
                prop_assert_eq!(String::from_utf8(ours).expect("ascii"), format!("{x:.1}"));
            }
        }

        /// What the writer puts out is byte for byte what prost encodes for the same span.
        #[test]
        fn attributes_and_events_encode_as_prost_does(
            keys in prop::collection::vec(("[a-z.]{0,20}", ".{0,150}"), 1..4),
            values in prop::collection::vec(value(), 4),
            time in prop_oneof![Just(0u64), any::<u64>()],
        ) {
            // Each spec as a `Value`, in each of the forms a string can take.
            let first = |v: &Spec| v.3.first().map_or("", String::as_str).to_string();
            let firsts: Vec<String> = values.iter().map(first).collect();
            let texts: Vec<_> = firsts
                .iter()
                .map(|f| move |o: &mut Vec<u8>| o.extend_from_slice(f.as_bytes()))
                .collect();
            let arrays: Vec<_> = values
                .iter()
                .map(|v| {
                    move |each: &mut dyn FnMut(Writes)| {
                        for x in &v.3 {
                            each(&|o| o.extend_from_slice(x.as_bytes()));
                        }
                    }
                })
                .collect();
            let attrs: Vec<Attr> = keys
                .iter()
                .zip(&values)
                .enumerate()
                .map(|(i, ((a, b), (kind, int, double, _)))| Attr {
                    key: [a, b, ""],
                    value: match kind {
                        0 => Value::Int(*int),
                        1 => Value::Double(*double),
                        2 => Value::Str(&firsts[i]),
                        3 => Value::Text(&texts[i]),
                        _ => Value::Strs(&arrays[i]),
                    },
                })
                .collect();
            let key_values: Vec<KeyValue> = keys
                .iter()
                .zip(&values)
                .map(|((a, b), v)| KeyValue {
                    key: format!("{a}{b}"),
                    value: Some(prost_value(v)),
                    ..Default::default()
                })
                .collect();
            let mut ours = Vec::new();
            for a in &attrs {
                a.write(SPAN_ATTRIBUTES, &mut ours);
            }
            let mut expected = Span {
                attributes: key_values.clone(),
                ..Default::default()
            };
            prop_assert_eq!(&ours, &expected.encode_to_vec());

            // An event as annotate writes one, with the same attributes.
            let name = keys[0].1.as_str();
            write_event(&mut ours, time, [name, ""], &attrs);
            expected.events.push(span::Event {
                time_unix_nano: time,
                name: name.to_string(),
                attributes: key_values,
                dropped_attributes_count: 0,
            });
            prop_assert_eq!(&ours, &expected.encode_to_vec());
        }
    }
}
