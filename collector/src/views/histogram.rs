//! Span durations as a log-scale histogram: exact counts, percentiles within half a percent,
//! a few hundred bytes per span name however many spans come, and merging is adding.

use std::collections::BTreeMap;

/// Each bucket is 1% wider than the one below it.
const GROWTH: f64 = 1.01;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Bucket index -> spans; bucket `i` holds durations in `[GROWTH^i, GROWTH^(i+1))` ns, and
    /// 0 ns goes to bucket -1.
    buckets: BTreeMap<i32, u64>,
    count: u64,
    min: u64,
    max: u64,
}

fn bucket(ns: u64) -> i32 {
    if ns == 0 {
        -1
    } else {
        ((ns as f64).ln() / GROWTH.ln()).floor() as i32
    }
}

/// The middle of a bucket (geometric), in ns.
fn middle(b: i32) -> f64 {
    if b < 0 {
        0.0
    } else {
        GROWTH.powf(f64::from(b) + 0.5)
    }
}

impl Histogram {
    pub fn add(&mut self, ns: u64) {
        *self.buckets.entry(bucket(ns)).or_default() += 1;
        if self.count == 0 || ns < self.min {
            self.min = ns;
        }
        self.max = self.max.max(ns);
        self.count += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        for (b, n) in &other.buckets {
            *self.buckets.entry(*b).or_default() += n;
        }
        if self.count == 0 || other.min < self.min {
            self.min = other.min;
        }
        self.max = self.max.max(other.max);
        self.count += other.count;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The nearest-rank `p` percentile (0..=1), as the middle of its bucket kept within the
    /// smallest and largest duration seen; 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((p.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (b, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return (middle(*b).round() as u64).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(sorted: &[u64], p: f64) -> u64 {
        let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    #[test]
    fn percentiles_within_half_a_percent_of_exact() {
        // Durations spread over six orders of magnitude, in a scrambled order.
        let mut values: Vec<u64> = (1..=5000u64)
            .map(|i| (i * 7919 % 5000 + 1) * (1 + i % 1000) * 997)
            .collect();
        let mut h = Histogram::default();
        for v in &values {
            h.add(*v);
        }
        values.sort_unstable();
        for p in [0.01, 0.1, 0.4, 0.5, 0.6, 0.9, 0.99, 1.0] {
            let want = exact(&values, p) as f64;
            let got = h.percentile(p) as f64;
            assert!((got - want).abs() <= want * 0.005 + 1.0, "p{p}: {got} vs {want}");
        }
        assert_eq!(h.count(), 5000);
        assert_eq!(h.percentile(1.0), *values.last().unwrap());
        assert_eq!(h.percentile(0.0), values[0]);
    }

    #[test]
    fn merging_is_adding_and_zero_is_a_duration() {
        let (mut a, mut b, mut all) = (Histogram::default(), Histogram::default(), Histogram::default());
        for v in [0, 5, 10, 1_000_000] {
            a.add(v);
            all.add(v);
        }
        for v in [30, 40_000_000] {
            b.add(v);
            all.add(v);
        }
        a.merge(&b);
        assert_eq!(a, all);
        assert_eq!(a.percentile(0.1), 0);
        assert_eq!(a.percentile(1.0), 40_000_000);
        assert_eq!(Histogram::default().percentile(0.5), 0);
    }
}
