//! Go-style durations (`"200ms"`, `"1m30s"`, `"1.5s"`), the way otelcol configs write them.
//!
//! Use on a field with `#[serde(deserialize_with = "hotspan_config::duration::deserialize")]`
//! (or `deserialize_option` for `Option<Duration>`). As in otelcol, a number without a unit is
//! rejected, except `0`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// Go's limit (the largest `time.Duration`), so anything otelcol accepts we accept too.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a Go duration string: one or more `<number><unit>` parts, units ns, us (or µs), ms,
/// s, m, h; numbers may have a fraction. `"0"` needs no unit. Negative values are refused
/// because nothing in a config means a negative time.
pub fn parse(s: &str) -> Result<Duration, String> {
    let fail = |why: String| format!("invalid duration {s:?}: {why}");
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(fail("empty".to_owned()));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = digits(rest);
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = digits(after_dot);
            frac_part = &after_dot[..frac_len];
            rest = &after_dot[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(fail("expected a number".to_owned()));
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err(fail("missing unit (write e.g. \"5s\" or \"200ms\")".to_owned()));
        }
        let unit_nanos = unit_nanos(unit).ok_or_else(|| {
            fail(format!(
                "unknown unit {unit:?}; expected one of ns, us, µs, ms, s, m, h"
            ))
        })?;
        let part = scaled(int_part, frac_part, unit_nanos).ok_or_else(|| fail("too large".to_owned()))?;
        total += part;
        if total > MAX_NANOS {
            return Err(fail("too large".to_owned()));
        }
    }
    if negative && total > 0 {
        return Err(fail("negative durations are not allowed".to_owned()));
    }
    // total <= i64::MAX, so the conversion cannot fail.
    let nanos = u64::try_from(total).map_err(|_| fail("too large".to_owned()))?;
    Ok(Duration::from_nanos(nanos))
}

/// Length of the leading run of ASCII digits.
fn digits(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_digit).count()
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        // Go accepts both the micro sign (U+00B5) and the Greek mu (U+03BC).
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// `int.frac` times `unit` in nanoseconds, truncating below a nanosecond like Go; None when it
/// exceeds the limit.
fn scaled(int_part: &str, frac_part: &str, unit: u128) -> Option<u128> {
    let mut whole: u128 = 0;
    for b in int_part.bytes() {
        whole = whole * 10 + u128::from(b - b'0');
        if whole * unit > MAX_NANOS {
            return None;
        }
    }
    let mut nanos = whole * unit;
    // Digits past the 19th cannot change a value below an hour's nanoseconds ~ 3.6e12.
    let mut scale: u128 = 1;
    let mut frac: u128 = 0;
    for b in frac_part.bytes().take(19) {
        frac = frac * 10 + u128::from(b - b'0');
        scale *= 10;
    }
    nanos += frac * unit / scale;
    Some(nanos)
}

/// Formats like Go's `Duration.String()`: `"0s"`, `"1.5µs"`, `"200ms"`, `"1m30s"`, `"1h0m0s"`,
/// so what hotspan prints can be pasted back into a config.
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", decimal(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", decimal(nanos, 1_000_000));
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = nanos / 60_000_000_000 % 60;
    let seconds = decimal(nanos % 60_000_000_000, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// `value / unit` with the remainder as a fraction, trailing zeros dropped.
fn decimal(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let rest = value % unit;
    if rest == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let frac = format!("{rest:0width$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// Reads a duration string (or the number 0) for `#[serde(deserialize_with = ...)]`.
pub fn deserialize<'de, D>(deserializer: D) -> Result<Duration, D::Error>
where
    D: Deserializer<'de>,
{
    deserializer.deserialize_any(DurationVisitor)
}

/// Like [`deserialize`] for `Option<Duration>`: null gives None. Pair with `#[serde(default)]`
/// so an absent key is None too.
pub fn deserialize_option<'de, D>(deserializer: D) -> Result<Option<Duration>, D::Error>
where
    D: Deserializer<'de>,
{
    /// Lets `Option`'s own impl handle null before our visitor sees the value.
    struct Wrapped(Duration);
    impl<'de> Deserialize<'de> for Wrapped {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            deserialize(d).map(Wrapped)
        }
    }
    Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|w| w.0))
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration with a unit, like \"5s\" or \"200ms\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }

    // `timeout: 0` is a YAML integer; otelcol accepts it, and any other bare number is refused.
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        if v == 0 {
            Ok(Duration::ZERO)
        } else {
            Err(E::custom(format!(
                "invalid duration {v}: missing unit (write e.g. \"{v}s\" or \"{v}ms\")"
            )))
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!(
                "invalid duration {v}: negative durations are not allowed"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("200ms"), Ok(ms(200)));
        assert_eq!(parse("5s"), Ok(ms(5_000)));
        assert_eq!(parse("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse("1.5s"), Ok(ms(1_500)));
        assert_eq!(parse(".5s"), Ok(ms(500)));
        assert_eq!(parse("1.s"), Ok(ms(1_000)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("-0"), Ok(Duration::ZERO));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse("300us"), Ok(Duration::from_micros(300)));
        assert_eq!(parse("2µs"), Ok(Duration::from_micros(2)));
        assert_eq!(parse("2μs"), Ok(Duration::from_micros(2)));
        assert_eq!(parse("10ns"), Ok(Duration::from_nanos(10)));
        assert_eq!(parse("+1h2m3s4ms"), Ok(Duration::from_millis(3_723_004)));
        assert_eq!(parse("1.000000001s"), Ok(Duration::from_nanos(1_000_000_001)));
        assert_eq!(parse("1.0000000019s"), Ok(Duration::from_nanos(1_000_000_001)));
        assert_eq!(parse("0.1h"), Ok(Duration::from_secs(360)));
        assert_eq!(parse("2562047h"), Ok(Duration::from_secs(2_562_047 * 3_600)));
    }

    #[test]
    fn rejects_bad_durations() {
        let err = |s: &str| parse(s).unwrap_err();
        assert_eq!(
            err("5"),
            "invalid duration \"5\": missing unit (write e.g. \"5s\" or \"200ms\")"
        );
        assert_eq!(
            err("5x"),
            "invalid duration \"5x\": unknown unit \"x\"; expected one of ns, us, µs, ms, s, m, h"
        );
        assert_eq!(err(""), "invalid duration \"\": empty");
        assert_eq!(err("s"), "invalid duration \"s\": expected a number");
        assert_eq!(err(".s"), "invalid duration \".s\": expected a number");
        assert_eq!(
            err("-5s"),
            "invalid duration \"-5s\": negative durations are not allowed"
        );
        assert_eq!(
            err("1h 2m"),
            "invalid duration \"1h 2m\": unknown unit \"h \"; expected one of ns, us, µs, ms, s, m, h"
        );
        assert_eq!(err("2562048h"), "invalid duration \"2562048h\": too large");
        assert_eq!(
            err("99999999999999999999999999999999999s"),
            "invalid duration \"99999999999999999999999999999999999s\": too large"
        );
        assert!(parse("1S").is_err(), "units are case-sensitive, as in Go");
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_nanos(10)), "10ns");
        assert_eq!(format(Duration::from_nanos(1_500)), "1.5µs");
        assert_eq!(format(ms(200)), "200ms");
        assert_eq!(format(Duration::from_micros(1_250)), "1.25ms");
        assert_eq!(format(ms(1_500)), "1.5s");
        assert_eq!(format(ms(90_000)), "1m30s");
        assert_eq!(format(Duration::from_secs(120)), "2m0s");
        assert_eq!(format(Duration::from_secs(3_600)), "1h0m0s");
        assert_eq!(
            format(Duration::from_nanos(3_723_000_000_001)),
            "1h2m3.000000001s"
        );
        for s in ["1h0m0s", "1.5µs", "200ms", "1m30s", "2562047h47m16.854775807s"] {
            assert_eq!(format(parse(s).unwrap()), s, "round trip {s}");
        }
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Cfg {
        #[serde(default, deserialize_with = "deserialize")]
        timeout: Duration,
        #[serde(default, deserialize_with = "deserialize_option")]
        interval: Option<Duration>,
    }

    fn cfg(yaml: &str) -> Result<Cfg, String> {
        yaml_serde::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn deserializes() {
        assert_eq!(
            cfg("timeout: 5s\ninterval: 1m"),
            Ok(Cfg {
                timeout: ms(5_000),
                interval: Some(ms(60_000))
            })
        );
        assert_eq!(
            cfg("timeout: 0\ninterval:"),
            Ok(Cfg {
                timeout: Duration::ZERO,
                interval: None
            })
        );
        assert_eq!(
            cfg("{}"),
            Ok(Cfg {
                timeout: Duration::ZERO,
                interval: None
            })
        );
        let err = cfg("timeout: 5").unwrap_err();
        assert!(err.contains("invalid duration 5: missing unit"), "{err}");
        let err = cfg("timeout: -1").unwrap_err();
        assert!(err.contains("negative durations are not allowed"), "{err}");
        let err = cfg("timeout: 1.5").unwrap_err();
        assert!(err.contains("expected a duration with a unit"), "{err}");
        let err = cfg("interval: 5").unwrap_err();
        assert!(err.contains("missing unit"), "{err}");
        let err = cfg("interval: 5q").unwrap_err();
        assert!(err.contains("unknown unit \"q\""), "{err}");
    }
}
