//! A span's wall time split into its parts: CPU, waiting (by reason), GC pause, throttled,
//! runnable, in child spans, unexplained. The time children cover is exact (their start and
//! end); the rest are estimates from the join, fitted into the span's own time so that no bar
//! ever shows more than the span lasted.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::report::flame::{duration, escape};
use crate::report::SpanRecord;

/// Wait reasons kept per span name; more are summed as "other reasons".
const MAX_REASONS: usize = 16;
/// The label of waiting whose reason the span did not give.
pub const NO_REASON: &str = "reason not given";
const OTHER_REASONS: &str = "other reasons";

/// One span's parts, in ns; they add up to its duration exactly.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parts {
    pub cpu: u64,
    /// By reason, in the order the span gave them; [`NO_REASON`] for the rest of `wait_ns`.
    pub wait: Vec<(String, u64)>,
    pub gc: u64,
    pub throttled: u64,
    pub runnable: u64,
    pub children: u64,
    pub unexplained: u64,
    /// Set when the estimates added up to more than the span's own time (its duration less
    /// its children's): they were scaled down by this factor to fit.
    pub scaled: Option<f64>,
}

/// `ns * f`, rounded down.
fn times(ns: u64, f: f64) -> u64 {
    (ns as f64 * f).floor() as u64
}

/// Splits `wait` ns by the span's reasons; shares that do not add up to 1 leave the rest to
/// [`NO_REASON`], shares above 1 (bad input) are scaled to 1.
fn by_reason(wait: u64, reasons: &[(String, f64)]) -> Vec<(String, u64)> {
    if wait == 0 {
        return Vec::new();
    }
    let total: f64 = reasons.iter().map(|(_, s)| s).sum();
    let norm = if total > 1.0 { 1.0 / total } else { 1.0 };
    let mut out: Vec<(String, u64)> = reasons
        .iter()
        .map(|(r, s)| (r.clone(), times(wait, s * norm)))
        .filter(|(_, ns)| *ns > 0)
        .collect();
    let given: u64 = out.iter().map(|(_, ns)| ns).sum();
    let rest = wait.saturating_sub(given);
    if rest > 0 {
        if total * norm >= 0.995 && !out.is_empty() {
            // Rounding of percentages that were meant to add up to all of it.
            out[0].1 += rest;
        } else {
            out.push((NO_REASON.into(), rest));
        }
    }
    out
}

impl Parts {
    /// The parts of `span`, whose children cover `children_ns` of it.
    pub fn of(span: &SpanRecord, children_ns: u64) -> Parts {
        let d = span.duration_ns;
        let children = children_ns.min(d);
        let own = d - children;
        let est = [
            span.cpu_ns,
            span.wait_ns.unwrap_or(0),
            span.gc_pause_ns.unwrap_or(0),
            span.throttled_ns.unwrap_or(0),
            span.runnable_ns.unwrap_or(0),
        ];
        let sum = est.iter().fold(0u64, |a, e| a.saturating_add(*e));
        let (f, scaled) = if sum > own {
            let f = own as f64 / sum as f64;
            (f, Some(f))
        } else {
            (1.0, None)
        };
        let [cpu, wait, gc, throttled, runnable] = est.map(|e| times(e, f));
        let wait = by_reason(wait, &span.wait_reasons);
        let used = cpu + wait.iter().map(|(_, n)| n).sum::<u64>() + gc + throttled + runnable;
        Parts {
            cpu,
            wait,
            gc,
            throttled,
            runnable,
            children,
            unexplained: own.saturating_sub(used),
            scaled,
        }
    }

    pub fn total(&self) -> u64 {
        self.segments().iter().map(|s| s.ns).sum()
    }

    /// The bar's segments, in drawing order, empty ones left out.
    pub fn segments(&self) -> Vec<Segment> {
        let mut out = vec![Segment::new("cpu", "CPU".into(), self.cpu)];
        for (reason, ns) in &self.wait {
            out.push(Segment::wait(reason, *ns));
        }
        out.push(Segment::new("gc", "GC pause".into(), self.gc));
        out.push(Segment::new("throttled", "throttled".into(), self.throttled));
        out.push(Segment::new("runnable", "runnable".into(), self.runnable));
        out.push(Segment::new("children", "in child spans".into(), self.children));
        out.push(Segment::new(
            "unexplained",
            "unexplained".into(),
            self.unexplained,
        ));
        out.retain(|s| s.ns > 0);
        out
    }
}

/// One coloured piece of a bar.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    /// `cpu`, `wait`, `gc`, `throttled`, `runnable`, `children`, `unexplained` (the
    /// `data-part` of the element).
    pub part: &'static str,
    pub label: String,
    pub ns: u64,
    pub color: &'static str,
}

/// Blues for the wait reasons, a reason always the same one.
const WAIT_COLORS: &[&str] = &[
    "#3b6fc4", "#5d8fdc", "#84abe6", "#2b4f8f", "#a9c4ee", "#1d3a6b", "#4aa3c8", "#7c8fd6",
];

impl Segment {
    fn new(part: &'static str, label: String, ns: u64) -> Segment {
        let color = match part {
            "cpu" => "#e4572e",
            "gc" => "#8e44ad",
            "throttled" => "#d4a017",
            "runnable" => "#2a9d8f",
            "children" => "#b8b8b8",
            _ => "#e8e8e8",
        };
        Segment {
            part,
            label,
            ns,
            color,
        }
    }

    fn wait(reason: &str, ns: u64) -> Segment {
        // FNV-1a: the same reason gets the same colour on every bar and page.
        let hash = reason.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Segment {
            part: "wait",
            label: format!("waiting: {reason}"),
            ns,
            color: WAIT_COLORS[(hash % WAIT_COLORS.len() as u64) as usize],
        }
    }
}

/// A stacked bar of `segments` (a flex row, each segment's width its share of their sum),
/// with `data-*` for tests and a title per segment for people. `label` prefixes the titles.
pub fn bar_html(out: &mut String, segments: &[Segment], attrs: &str, title: &str) {
    let total: u64 = segments.iter().map(|s| s.ns).sum();
    let _ = write!(
        out,
        "<div class=\"bar\" data-total-ns=\"{total}\" {attrs} title=\"{}\">",
        escape(title)
    );
    for s in segments {
        let pct = 100.0 * s.ns as f64 / total.max(1) as f64;
        let _ = write!(
            out,
            "<span class=\"seg\" data-part=\"{}\" data-label=\"{}\" data-ns=\"{}\" style=\"width:{pct:.3}%;background:{}\" title=\"{}: {} ({pct:.1}%)\"></span>",
            s.part,
            escape(&s.label),
            s.ns,
            s.color,
            escape(&s.label),
            duration(s.ns),
        );
    }
    out.push_str("</div>");
}

/// The legend of the parts that occur in `segments`.
pub fn legend_html(out: &mut String, segments: &[Segment]) {
    out.push_str("<div class=\"legend\">");
    let mut seen = Vec::new();
    for s in segments {
        if seen.contains(&s.label) {
            continue;
        }
        seen.push(s.label.clone());
        let _ = write!(
            out,
            "<span><i style=\"background:{}\"></i>{}</span>",
            s.color,
            escape(&s.label)
        );
    }
    out.push_str("</div>");
}

/// Parts summed over the spans of a name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartSums {
    pub spans: u64,
    /// Spans whose estimates had to be scaled down to fit.
    pub scaled: u64,
    /// Spans that carried any of wait, GC, throttling or runnable.
    pub with_breakdown: u64,
    pub cpu: u64,
    pub wait: BTreeMap<String, u64>,
    pub gc: u64,
    pub throttled: u64,
    pub runnable: u64,
    pub children: u64,
    pub unexplained: u64,
}

impl PartSums {
    pub fn add(&mut self, p: &Parts, with_breakdown: bool) {
        self.spans += 1;
        self.scaled += u64::from(p.scaled.is_some());
        self.with_breakdown += u64::from(with_breakdown);
        self.cpu += p.cpu;
        for (reason, ns) in &p.wait {
            self.add_wait(reason, *ns);
        }
        self.gc += p.gc;
        self.throttled += p.throttled;
        self.runnable += p.runnable;
        self.children += p.children;
        self.unexplained += p.unexplained;
    }

    fn add_wait(&mut self, reason: &str, ns: u64) {
        let key = if self.wait.contains_key(reason) || self.wait.len() < MAX_REASONS {
            reason
        } else {
            OTHER_REASONS
        };
        *self.wait.entry(key.to_string()).or_default() += ns;
    }

    pub fn merge(&mut self, o: &PartSums) {
        self.spans += o.spans;
        self.scaled += o.scaled;
        self.with_breakdown += o.with_breakdown;
        self.cpu += o.cpu;
        for (reason, ns) in &o.wait {
            self.add_wait(reason, *ns);
        }
        self.gc += o.gc;
        self.throttled += o.throttled;
        self.runnable += o.runnable;
        self.children += o.children;
        self.unexplained += o.unexplained;
    }

    /// The mean span's parts (each sum divided by the spans), as a bar's segments.
    pub fn mean_segments(&self) -> Vec<Segment> {
        let n = self.spans.max(1);
        let mut reasons: Vec<(&String, &u64)> = self.wait.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let parts = Parts {
            cpu: self.cpu / n,
            wait: reasons.into_iter().map(|(r, ns)| (r.clone(), ns / n)).collect(),
            gc: self.gc / n,
            throttled: self.throttled / n,
            runnable: self.runnable / n,
            children: self.children / n,
            unexplained: self.unexplained / n,
            scaled: None,
        };
        parts.segments()
    }
}

/// Per span of `spans`, the time its children among `spans` cover (the union of their
/// intervals, within the span), in the same order.
pub fn child_coverage(spans: &[SpanRecord]) -> Vec<u64> {
    let mut index = std::collections::HashMap::new();
    for (i, s) in spans.iter().enumerate() {
        index.insert((s.trace_id.as_str(), s.span_id.as_str()), i);
    }
    let mut children: Vec<Vec<(u64, u64)>> = vec![Vec::new(); spans.len()];
    for s in spans {
        if s.parent_span_id.is_empty() {
            continue;
        }
        if let Some(&p) = index.get(&(s.trace_id.as_str(), s.parent_span_id.as_str())) {
            children[p].push((s.start_unix_nano, s.end_unix_nano()));
        }
    }
    spans
        .iter()
        .zip(children)
        .map(|(parent, kids)| covered(parent.start_unix_nano, parent.end_unix_nano(), kids))
        .collect()
}

/// How much of `[start, end)` the union of `intervals` covers.
pub fn covered(start: u64, end: u64, mut intervals: Vec<(u64, u64)>) -> u64 {
    intervals.sort_unstable();
    let (mut total, mut reach) = (0u64, start);
    for (s, e) in intervals {
        let (s, e) = (s.max(reach), e.min(end));
        if e > s {
            total += e - s;
            reach = e;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(d: u64, cpu: u64, wait: Option<u64>, reasons: &[(&str, f64)]) -> SpanRecord {
        SpanRecord {
            duration_ns: d,
            cpu_ns: cpu,
            wait_ns: wait,
            wait_reasons: reasons.iter().map(|(r, s)| (r.to_string(), *s)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn parts_add_up_to_the_duration() {
        let p = Parts::of(
            &span(100, 20, Some(50), &[("sleep", 0.8), ("chan receive", 0.2)]),
            10,
        );
        assert_eq!(p.cpu, 20);
        assert_eq!(
            p.wait,
            [("sleep".to_string(), 40), ("chan receive".to_string(), 10)]
        );
        assert_eq!(p.children, 10);
        assert_eq!(p.unexplained, 20);
        assert_eq!(p.total(), 100);
        assert_eq!(p.scaled, None);
    }

    #[test]
    fn estimates_never_exceed_the_spans_own_time() {
        // A 3 ms span with one 10 ms CPU sample and 5 ms of waiting, 1 ms in a child.
        let s = SpanRecord {
            gc_pause_ns: Some(1_000_000),
            ..span(3_000_000, 10_000_000, Some(5_000_000), &[("sleep", 0.5)])
        };
        let p = Parts::of(&s, 1_000_000);
        assert_eq!(p.total(), 3_000_000);
        assert_eq!(p.children, 1_000_000);
        assert!(p.scaled.is_some_and(|f| f < 0.2));
        assert!(p.cpu > p.wait.iter().map(|(_, n)| n).sum::<u64>());
        // Half the wait has no reason given.
        assert_eq!(p.wait.len(), 2);
        assert_eq!(p.wait[1].0, NO_REASON);
        // Children longer than the span (clock skew): all of it is in child spans.
        let p = Parts::of(&span(10, 5, None, &[]), 50);
        assert_eq!((p.children, p.cpu, p.total()), (10, 0, 10));
    }

    #[test]
    fn children_cover_the_union_of_their_intervals() {
        assert_eq!(covered(0, 100, vec![(10, 30), (20, 40), (90, 150), (50, 60)]), 50);
        assert_eq!(covered(100, 200, vec![(0, 50)]), 0);
        let parent = SpanRecord {
            trace_id: "t".into(),
            span_id: "p".into(),
            start_unix_nano: 0,
            duration_ns: 100,
            ..Default::default()
        };
        let kid = |id: &str, s, d| SpanRecord {
            trace_id: "t".into(),
            span_id: id.into(),
            parent_span_id: "p".into(),
            start_unix_nano: s,
            duration_ns: d,
            ..Default::default()
        };
        let spans = [parent, kid("a", 10, 20), kid("b", 20, 20), kid("c", 70, 10)];
        assert_eq!(child_coverage(&spans), [40, 0, 0, 0]);
    }

    #[test]
    fn reasons_past_the_cap_are_summed() {
        let mut sums = PartSums::default();
        for i in 0..(MAX_REASONS + 5) {
            let p = Parts {
                wait: vec![(format!("r{i}"), 10)],
                ..Default::default()
            };
            sums.add(&p, true);
        }
        assert_eq!(sums.wait.len(), MAX_REASONS + 1);
        assert_eq!(sums.wait[OTHER_REASONS], 50);
        assert_eq!(sums.wait.values().sum::<u64>(), 10 * (MAX_REASONS as u64 + 5));
    }
}
