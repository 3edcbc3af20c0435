//! Writing what a span accumulated onto the span itself: attributes and hot-path events.

use hotspan_proto::otlp::common::v1::{any_value, AnyValue, ArrayValue, KeyValue};
use hotspan_proto::otlp::trace::v1::{span, Span};
use hotspan_proto::raw::SpanIndex;

use super::config::SpanProfileConfig;
use super::model::{Accumulator, Frames, Weights};

fn kv(key: String, value: any_value::Value) -> KeyValue {
    KeyValue {
        key,
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn int(v: u64) -> any_value::Value {
    any_value::Value::IntValue(v.min(i64::MAX as u64) as i64)
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

/// The join's attributes and events for the span `index` describes, as a `Span` holding only
/// them: its encoding appended to the span's bytes adds them to the span. Spans that got no
/// samples of their own only get `cpu_ns_total` when descendants had some.
pub fn annotate(index: &SpanIndex, acc: &Accumulator, config: &SpanProfileConfig) -> Span {
    let mut span = Span::default();
    let p = &config.attribute_prefix;
    let total = acc.own.cpu_ns.saturating_add(acc.children_cpu_ns);
    if acc.is_empty() {
        if total > 0 {
            span.attributes.push(kv(format!("{p}cpu_ns_total"), int(total)));
        }
        return span;
    }
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

    let attrs = &mut span.attributes;
    attrs.push(kv(format!("{p}samples"), int(acc.own.samples)));
    attrs.push(kv(format!("{p}cpu_ns"), int(acc.own.cpu_ns)));
    attrs.push(kv(format!("{p}cpu_ns_total"), int(total)));
    let duration = index.end.saturating_sub(index.start);
    if duration > 0 {
        attrs.push(kv(
            format!("{p}cpu_utilization"),
            any_value::Value::DoubleValue(share(acc.own.cpu_ns, duration)),
        ));
    }
    if let Some((frames, w)) = stacks.first() {
        attrs.push(kv(
            format!("{p}hot_path"),
            any_value::Value::StringValue(collapsed(frames, config.hot_path_frames)),
        ));
        attrs.push(kv(
            format!("{p}hot_path.share"),
            any_value::Value::DoubleValue(share(rank(w, by_cpu), whole)),
        ));
    }
    let top: Vec<AnyValue> = functions
        .iter()
        .take(config.top_functions)
        .map(|(name, w)| AnyValue {
            value: Some(any_value::Value::StringValue(format!(
                "{name} {:.1}%",
                100.0 * share(rank(w, by_cpu), whole)
            ))),
        })
        .collect();
    attrs.push(kv(
        format!("{p}top_functions"),
        any_value::Value::ArrayValue(ArrayValue { values: top }),
    ));
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
    attrs.push(kv(
        format!("{p}join"),
        any_value::Value::StringValue(rule.as_str().into()),
    ));
    for (key, values) in &acc.labels {
        let joined = values.iter().map(|v| &**v).collect::<Vec<&str>>().join(",");
        attrs.push(kv(
            format!("{p}labels.{key}"),
            any_value::Value::StringValue(joined),
        ));
    }
    if !acc.profile_ids.is_empty() {
        let ids = acc.profile_ids.iter().map(|id| AnyValue {
            value: Some(any_value::Value::StringValue(id.to_string())),
        });
        attrs.push(kv(
            format!("{p}profile_ids"),
            any_value::Value::ArrayValue(ArrayValue {
                values: ids.collect(),
            }),
        ));
    }
    // Grafana's "traces to profiles" opens the span's own flame graph by this id.
    let own_id = format!("{:016x}", index.span_id);
    attrs.push(kv(
        "pyroscope.profile.id".into(),
        any_value::Value::StringValue(own_id),
    ));

    if config.emit_events {
        for (frames, w) in stacks.iter().take(config.hot_paths) {
            span.events.push(span::Event {
                time_unix_nano: index.start,
                name: format!("{p}hot_path"),
                attributes: vec![
                    kv(
                        "stack".into(),
                        any_value::Value::StringValue(collapsed(frames, config.hot_path_frames)),
                    ),
                    kv("samples".into(), int(w.samples)),
                    kv("cpu_ns".into(), int(w.cpu_ns)),
                    kv(
                        "share".into(),
                        any_value::Value::DoubleValue(share(rank(w, by_cpu), whole)),
                    ),
                ],
                dropped_attributes_count: 0,
            });
        }
    }
    span
}
