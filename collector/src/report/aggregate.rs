//! Spans summed up per span name and per label set: the numbers the report prints.

use std::collections::BTreeMap;

use super::span::SpanRecord;

/// Everything one report covers, fed span by span.
#[derive(Default)]
pub struct Summary {
    names: BTreeMap<String, NameAcc>,
    labels: BTreeMap<String, LabelAcc>,
    /// Spans seen, with or without samples.
    pub spans: usize,
    /// Sum of every span's own weight (CPU ns, or samples when no CPU time was known).
    pub total_weight: u64,
}

#[derive(Default)]
struct NameAcc {
    durations: Vec<u64>,
    with_samples: usize,
    utilization_sum: f64,
    weight: u64,
    cpu_ns: u64,
    stacks: BTreeMap<String, u64>,
    functions: BTreeMap<String, f64>,
}

#[derive(Default)]
struct LabelAcc {
    spans: usize,
    weight: u64,
    functions: BTreeMap<String, f64>,
}

/// One span name's line in the report.
#[derive(Clone, Debug, PartialEq)]
pub struct NameSummary {
    pub name: String,
    pub count: usize,
    /// Spans the join gave samples to.
    pub with_samples: usize,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    /// Mean over all spans of the name of `cpu_ns / duration`; a span without samples counts
    /// as 0 (nothing ran on CPU that the profiler saw).
    pub mean_utilization: f64,
    /// Sum of the spans' own weights (see [`SpanRecord::weight`]).
    pub weight: u64,
    pub cpu_ns: u64,
    /// Collapsed stacks, heaviest first, with their summed weight.
    pub stacks: Vec<(String, u64)>,
    /// Functions by self weight, heaviest first, with their share of `weight` (0..=1).
    pub functions: Vec<(String, f64)>,
}

impl NameSummary {
    /// The heaviest stack and its share of the name's weight.
    pub fn hot_path(&self) -> Option<(&str, f64)> {
        self.stacks
            .first()
            .map(|(s, w)| (s.as_str(), share(*w as f64, self.weight)))
    }
}

/// One set of semantic labels and the CPU spent under it.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelGroup {
    /// `k=v, k=v`, or `(no labels)`.
    pub labels: String,
    pub spans: usize,
    pub weight: u64,
    /// Of the whole report's weight, 0..=1.
    pub share: f64,
    /// The heaviest function under these labels.
    pub top_function: Option<String>,
}

fn share(part: f64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part / whole as f64
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn heaviest<K: Clone + Ord, V: PartialOrd + Copy>(map: &BTreeMap<K, V>) -> Vec<(K, V)> {
    let mut v: Vec<(K, V)> = map.iter().map(|(k, w)| (k.clone(), *w)).collect();
    // Heaviest first; ties by key so output is stable.
    v.sort_by(|a, b| {
        b.1.partial_cmp(&a.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.0.cmp(&b.0))
    });
    v
}

impl Summary {
    pub fn add(&mut self, span: &SpanRecord) {
        self.spans += 1;
        let weight = span.weight();
        self.total_weight = self.total_weight.saturating_add(weight);
        let acc = self.names.entry(span.name.clone()).or_default();
        acc.durations.push(span.duration_ns);
        if !span.has_samples() {
            return;
        }
        acc.with_samples += 1;
        acc.utilization_sum += span.cpu_utilization.unwrap_or(0.0);
        acc.weight = acc.weight.saturating_add(weight);
        acc.cpu_ns = acc.cpu_ns.saturating_add(span.cpu_ns);
        for (stack, w) in span.stack_weights() {
            let e = acc.stacks.entry(stack.to_string()).or_default();
            *e = e.saturating_add(w);
        }
        let group = self.labels.entry(span.label_key()).or_default();
        group.spans += 1;
        group.weight = group.weight.saturating_add(weight);
        for (f, w) in span.function_weights() {
            *acc.functions.entry(f.to_string()).or_default() += w;
            *group.functions.entry(f.to_string()).or_default() += w;
        }
    }

    /// Per span name, the most CPU first.
    pub fn names(&self) -> Vec<NameSummary> {
        let mut out: Vec<NameSummary> = self
            .names
            .iter()
            .map(|(name, acc)| {
                let mut d = acc.durations.clone();
                d.sort_unstable();
                NameSummary {
                    name: name.clone(),
                    count: d.len(),
                    with_samples: acc.with_samples,
                    p50_ns: percentile(&d, 0.50),
                    p90_ns: percentile(&d, 0.90),
                    p99_ns: percentile(&d, 0.99),
                    mean_utilization: if d.is_empty() {
                        0.0
                    } else {
                        acc.utilization_sum / d.len() as f64
                    },
                    weight: acc.weight,
                    cpu_ns: acc.cpu_ns,
                    stacks: heaviest(&acc.stacks),
                    functions: heaviest(&acc.functions)
                        .into_iter()
                        .map(|(f, w)| (f, share(w, acc.weight)))
                        .collect(),
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.weight
                .cmp(&a.weight)
                .then(b.count.cmp(&a.count))
                .then_with(|| a.name.cmp(&b.name))
        });
        out
    }

    /// Per label set, the most CPU first.
    pub fn label_groups(&self) -> Vec<LabelGroup> {
        let mut out: Vec<LabelGroup> = self
            .labels
            .iter()
            .map(|(labels, acc)| LabelGroup {
                labels: labels.clone(),
                spans: acc.spans,
                weight: acc.weight,
                share: share(acc.weight as f64, self.total_weight),
                top_function: heaviest(&acc.functions).into_iter().next().map(|(f, _)| f),
            })
            .collect();
        out.sort_by(|a, b| b.weight.cmp(&a.weight).then_with(|| a.labels.cmp(&b.labels)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::span::HotPath;

    fn span(name: &str, cpu: u64, dur: u64, funcs: &[(&str, f64)], stage: &str) -> SpanRecord {
        SpanRecord {
            name: name.into(),
            duration_ns: dur,
            samples: if cpu > 0 { 1 } else { 0 },
            cpu_ns: cpu,
            cpu_utilization: Some(cpu as f64 / dur as f64),
            top_functions: funcs.iter().map(|(f, s)| (f.to_string(), *s)).collect(),
            labels: [("stage".to_string(), stage.to_string())].into(),
            hot_paths: vec![HotPath {
                stack: format!("main;{}", funcs[0].0),
                samples: 1,
                cpu_ns: cpu,
                share: 1.0,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn weights_by_cpu_and_groups_by_labels() {
        let mut s = Summary::default();
        s.add(&span("a", 300, 1000, &[("f", 1.0)], "x"));
        s.add(&span("a", 100, 3000, &[("g", 1.0)], "y"));
        s.add(&span("b", 0, 10, &[("h", 1.0)], "y"));
        let names = s.names();
        assert_eq!(names[0].name, "a");
        assert_eq!(names[0].count, 2);
        assert_eq!(names[0].functions[0], ("f".to_string(), 0.75));
        assert_eq!(names[0].hot_path(), Some(("main;f", 0.75)));
        assert_eq!(names[0].p50_ns, 1000);
        assert_eq!(names[0].p99_ns, 3000);
        assert_eq!(names[1].with_samples, 0);
        let groups = s.label_groups();
        assert_eq!(groups[0].labels, "stage=x");
        assert_eq!(groups[0].share, 0.75);
        assert_eq!(groups[0].top_function.as_deref(), Some("f"));
    }
}
