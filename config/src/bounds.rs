//! Ranges for a component's numbers, checked in its `validate`: a number out of range is an
//! error naming the key and the range, never an overflow or a panic once the component runs.

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::{duration, FieldError};

/// Whether `value` is in `range`; if not, an error at `path`: "must be from MIN to MAX".
pub fn check<T: PartialOrd + Display>(
    value: T,
    range: RangeInclusive<T>,
    path: impl Into<String>,
    errs: &mut Vec<FieldError>,
) -> bool {
    if range.contains(&value) {
        return true;
    }
    let (min, max) = range.into_inner();
    errs.push(FieldError::new(path, format!("must be from {min} to {max}")));
    false
}

/// [`check`] for a duration, the range written as a config writes it ("10ms", "1h0m0s").
pub fn check_duration(
    value: Duration,
    range: RangeInclusive<Duration>,
    path: impl Into<String>,
    errs: &mut Vec<FieldError>,
) -> bool {
    if range.contains(&value) {
        return true;
    }
    let (min, max) = range.into_inner();
    let message = if min == Duration::from_nanos(1) {
        format!("must be greater than 0s and at most {}", duration::format(max))
    } else {
        format!(
            "must be from {} to {}",
            duration::format(min),
            duration::format(max)
        )
    };
    errs.push(FieldError::new(path, message));
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(f: impl FnOnce(&mut Vec<FieldError>) -> bool) -> (bool, Vec<String>) {
        let mut errs = Vec::new();
        let ok = f(&mut errs);
        (ok, errs.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn out_of_range_names_the_key_and_the_range() {
        assert_eq!(messages(|e| check(1000usize, 1..=1000, "n", e)), (true, vec![]));
        assert_eq!(
            messages(|e| check(0usize, 1..=1000, "a.n", e)),
            (false, vec!["a.n: must be from 1 to 1000".to_string()])
        );
        assert_eq!(
            messages(|e| check(f64::NAN, 1.0..=100.0, "m", e)),
            (false, vec!["m: must be from 1 to 100".to_string()])
        );
        let hour = Duration::from_secs(3600);
        assert!(messages(|e| check_duration(hour, Duration::ZERO..=hour, "d", e)).0);
        assert_eq!(
            messages(|e| check_duration(Duration::ZERO, Duration::from_millis(10)..=hour, "d", e)).1,
            ["d: must be from 10ms to 1h0m0s"]
        );
        assert_eq!(
            messages(|e| check_duration(hour * 2, Duration::from_nanos(1)..=hour, "d", e)).1,
            ["d: must be greater than 0s and at most 1h0m0s"]
        );
    }
}
