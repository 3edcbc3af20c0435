//! Trace ticks to nanoseconds, rounded exactly as Go's parser rounds them.
//!
//! Go stores the frequency as nanoseconds per tick, `1 / (ticks_per_sec / 1e9)` in `float64`,
//! and converts a tick count `t` with `int64(float64(t) * ns_per_tick)` (truncation). An
//! event's time is its batch's converted base time plus the converted sum of deltas, each
//! delta converted on its own, so rounding happens per delta, not once on the absolute tick.
//! On Linux the clock is `CLOCK_MONOTONIC / 64` at 15.625 MHz, `ns_per_tick` is exactly 64.0
//! and none of this rounds; where the runtime counts CPU ticks (Windows) it does.

/// Nanoseconds per trace tick, as Go computes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Freq {
    ns_per_tick: f64,
    ticks_per_sec: u64,
}

impl Freq {
    /// From the trace's frequency event (ticks per second); `None` for 0, which has no meaning.
    pub fn new(ticks_per_sec: u64) -> Option<Freq> {
        if ticks_per_sec == 0 {
            return None;
        }
        Some(Freq {
            ns_per_tick: 1.0 / (ticks_per_sec as f64 / 1e9),
            ticks_per_sec,
        })
    }

    pub fn ticks_per_sec(self) -> u64 {
        self.ticks_per_sec
    }

    /// `ticks` in nanoseconds, or `None` when that does not fit Go's `int64` time (only a
    /// corrupt trace gets there: 2^63 ns is 292 years).
    #[inline]
    pub fn ns(self, ticks: u64) -> Option<i64> {
        let ns = ticks as f64 * self.ns_per_tick;
        // 2^63 itself is out of range; every f64 below it truncates into i64.
        if ns < 9_223_372_036_854_775_808.0 {
            Some(ns as i64)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_clock_is_exactly_64ns_per_tick() {
        let f = Freq::new(15_625_000).unwrap();
        assert_eq!(f.ns(0), Some(0));
        assert_eq!(f.ns(1), Some(64));
        // Large tick counts stay exact: 64 is a power of two.
        let t = 28_114_950_954_550u64;
        assert_eq!(f.ns(t), Some(t as i64 * 64));
    }

    #[test]
    fn inexact_frequencies_truncate_like_go() {
        // A 2.9 GHz TSC divided by 256 (Windows/amd64): ns_per_tick is not representable.
        let f = Freq::new(2_900_000_000 / 256).unwrap();
        let per_tick = 1.0 / ((2_900_000_000u64 / 256) as f64 / 1e9);
        assert_eq!(f.ns(1), Some(per_tick as i64));
        assert_eq!(f.ns(1), Some(88));
        // Go's float64(t)*f then int64(): computed by hand, truncated toward zero.
        let t = 123_456_789_012u64;
        assert_eq!(f.ns(t), Some((t as f64 * per_tick) as i64));
        // Per-delta rounding differs from rounding the sum: why events are converted per delta.
        let (a, b) = (f.ns(3).unwrap(), f.ns(5).unwrap());
        assert_ne!(a + b, f.ns(8).unwrap());
        // 1 GHz: 1 ns per tick.
        let g = Freq::new(1_000_000_000).unwrap();
        assert_eq!(g.ns(12_345), Some(12_345));
    }

    #[test]
    fn nonsense_is_refused_not_wrapped() {
        assert_eq!(Freq::new(0), None);
        let linux = Freq::new(15_625_000).unwrap();
        assert_eq!(linux.ns(1 << 56), Some(1 << 62));
        // 2^57 ticks is 2^63 ns: one past i64.
        assert_eq!(linux.ns(1 << 57), None);
        // 2^57 - 1 is not a float64: it rounds up to 2^57 before the multiply, as in Go.
        assert_eq!(linux.ns((1 << 57) - 1), None);
        assert_eq!(Freq::new(1).unwrap().ns(u64::MAX), None);
    }
}
