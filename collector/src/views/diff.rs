//! Slow versus fast for one span name: the CPU per span of its slowest tenth against its
//! middle band (40th to 60th percentile of duration), stack by stack and function by
//! function, drawn as inferno's differential flame graph.

use std::collections::HashMap;

use super::agg::{Kept, OTHER_STACKS, OVER_CAP};

/// Fewer spans than this make no comparison.
pub const MIN_SPANS: usize = 10;

/// The comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct SlowFast {
    /// Spans in each group (weighted: a kept span may stand for several).
    pub slow_spans: f64,
    pub band_spans: f64,
    /// Durations bounding the groups: slow from `slow_from_ns`, the band between the two.
    pub slow_from_ns: u64,
    pub band_ns: (u64, u64),
    /// Mean duration of each group.
    pub slow_mean_ns: f64,
    pub band_mean_ns: f64,
    /// Per-span weight (CPU ns) of each stack, in each group.
    pub slow_stacks: Vec<(String, u64)>,
    pub band_stacks: Vec<(String, u64)>,
    /// Per function (a stack's leaf), per-span self weight: (function, band, slow), the
    /// largest growth first.
    pub functions: Vec<(String, f64, f64)>,
}

impl SlowFast {
    /// The function whose per-span weight grew most, when one grew.
    pub fn grew(&self) -> Option<&(String, f64, f64)> {
        self.functions.first().filter(|(_, b, s)| s > b)
    }

    /// The function whose per-span weight shrank most, when one shrank.
    pub fn shrank(&self) -> Option<&(String, f64, f64)> {
        self.functions
            .iter()
            .filter(|(_, b, s)| s < b)
            .min_by(|x, y| (x.2 - x.1).total_cmp(&(y.2 - y.1)))
    }
}

fn leaf(stack: &str) -> &str {
    stack.rsplit(';').next().unwrap_or(stack)
}

/// Compares the slowest tenth of `kept` with its 40th to 60th percentile; None with fewer than
/// [`MIN_SPANS`] spans or an empty group.
pub fn slow_fast(kept: &[Kept]) -> Option<SlowFast> {
    if kept.len() < MIN_SPANS {
        return None;
    }
    let mut sorted: Vec<&Kept> = kept.iter().filter(|k| k.weight > 0.0).collect();
    sorted.sort_by_key(|k| k.duration_ns);
    let total: f64 = sorted.iter().map(|k| k.weight).sum();
    let (mut slow, mut band) = (Vec::new(), Vec::new());
    let mut before = 0.0;
    for k in sorted {
        // A span's place is the middle of the share of spans it stands for.
        let at = (before + k.weight / 2.0) / total;
        before += k.weight;
        if at >= 0.9 {
            slow.push(k);
        } else if (0.4..=0.6).contains(&at) {
            band.push(k);
        }
    }
    let (Some(first_slow), Some(first_band), Some(last_band)) = (slow.first(), band.first(), band.last())
    else {
        return None;
    };
    let (slow_from_ns, band_ns) = (
        first_slow.duration_ns,
        (first_band.duration_ns, last_band.duration_ns),
    );
    fn per_span<'a>(group: &[&'a Kept]) -> (f64, HashMap<&'a str, f64>, HashMap<&'a str, f64>, f64) {
        let n: f64 = group.iter().map(|k| k.weight).sum();
        let mut stacks: HashMap<&str, f64> = HashMap::new();
        let mut functions: HashMap<&str, f64> = HashMap::new();
        for k in group {
            for (s, w) in &k.stacks {
                let w = *w as f64 * k.weight / n;
                *stacks.entry(s).or_default() += w;
                if &**s != OTHER_STACKS && &**s != OVER_CAP {
                    *functions.entry(leaf(s)).or_default() += w;
                }
            }
        }
        let mean = group.iter().map(|k| k.duration_ns as f64 * k.weight).sum::<f64>() / n;
        (n, stacks, functions, mean)
    }
    let (slow_spans, slow_st, slow_fn, slow_mean_ns) = per_span(&slow);
    let (band_spans, band_st, band_fn, band_mean_ns) = per_span(&band);
    let rounded = |m: &HashMap<&str, f64>| {
        let mut v: Vec<(String, u64)> = m
            .iter()
            .map(|(s, w)| (s.to_string(), w.round() as u64))
            .filter(|(_, w)| *w > 0)
            .collect();
        v.sort();
        v
    };
    let mut functions: Vec<(String, f64, f64)> = slow_fn
        .keys()
        .chain(band_fn.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|f| {
            let b = band_fn.get(f).copied().unwrap_or(0.0);
            let s = slow_fn.get(f).copied().unwrap_or(0.0);
            (f.to_string(), b, s)
        })
        .collect();
    functions.sort_by(|x, y| (y.2 - y.1).total_cmp(&(x.2 - x.1)).then_with(|| x.0.cmp(&y.0)));
    Some(SlowFast {
        slow_spans,
        band_spans,
        slow_from_ns,
        band_ns,
        slow_mean_ns,
        band_mean_ns,
        slow_stacks: rounded(&slow_st),
        band_stacks: rounded(&band_st),
        functions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn kept(d: u64, stacks: &[(&str, u64)], weight: f64) -> Kept {
        Kept {
            duration_ns: d,
            trace_id: String::new(),
            span_id: String::new(),
            stacks: stacks.iter().map(|(s, w)| (Arc::from(*s), *w)).collect(),
            weight,
        }
    }

    #[test]
    fn the_slowest_tenth_against_the_middle_per_span() {
        // 100 spans: durations 1..=100; every span spends 10 in main;work, the slowest ten
        // also 60 in main;work;slow, and span 50 alone 5 in main;odd.
        let spans: Vec<Kept> = (1..=100u64)
            .map(|d| {
                let mut s = vec![("main;work", 10)];
                if d > 90 {
                    s.push(("main;work;slow", 60));
                }
                if d == 50 {
                    s.push(("main;odd", 5));
                }
                kept(d, &s, 1.0)
            })
            .collect();
        let sf = slow_fast(&spans).unwrap();
        assert_eq!(sf.slow_spans, 10.0);
        assert_eq!(sf.slow_from_ns, 91);
        assert_eq!(sf.band_ns, (41, 60));
        assert_eq!(sf.band_spans, 20.0);
        let grew = sf.grew().unwrap();
        assert_eq!((grew.0.as_str(), grew.1, grew.2), ("slow", 0.0, 60.0));
        // Per span: the band's one span of 5 in main;odd is 0.25 a span.
        let shrank = sf.shrank().unwrap();
        assert_eq!(shrank.0, "odd");
        assert!((shrank.1 - 0.25).abs() < 1e-9);
        assert!(sf.slow_stacks.contains(&("main;work;slow".to_string(), 60)));
        assert!(sf.slow_stacks.contains(&("main;work".to_string(), 10)));
        assert!(sf.band_stacks.contains(&("main;work".to_string(), 10)));
    }

    #[test]
    fn weights_stand_for_the_spans_a_sample_kept_for() {
        // Ten fast spans each standing for 9, ten slow ones each for 1: the slowest tenth of
        // the 100 spans they stand for is the ten slow ones.
        let mut spans: Vec<Kept> = (1..=10).map(|d| kept(d, &[("a", 1)], 9.0)).collect();
        spans.extend((100..110).map(|d| kept(d, &[("a", 1), ("b", 7)], 1.0)));
        let sf = slow_fast(&spans).unwrap();
        assert_eq!(sf.slow_spans, 10.0);
        assert_eq!(sf.grew().map(|g| g.0.as_str()), Some("b"));
        assert_eq!(slow_fast(&spans[..5]), None);
    }
}
