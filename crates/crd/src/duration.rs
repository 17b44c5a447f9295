//! Kubernetes `metav1.Duration` values ("90s", "1m30s", "1.5h", "300ms").
//!
//! The text format is Go's `time.ParseDuration`: an optional sign, then one or
//! more `<number><unit>` pairs where the number may have a fraction and the unit
//! is one of `ns`, `us` (`µs`, `μs`), `ms`, `s`, `m`, `h`; the bare string `0` is
//! also accepted. Go limits durations to 2^63-1 nanoseconds (about 292 years);
//! this parser does the same with checked arithmetic, so no input can panic.
//! Negative durations parse but are rejected when deserializing, since no
//! petrel field accepts one.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Largest duration Go can represent, in nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

/// A non-negative duration written in Go's `time.Duration` text format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct KubeDuration(pub Duration);

impl KubeDuration {
    pub fn as_duration(self) -> Duration {
        self.0
    }

    /// Whole seconds, rounded half away from zero, as Calico does when it
    /// renders a duration into BIRD's configuration (`math.Round(d.Seconds())`).
    pub fn rounded_secs(self) -> u64 {
        let secs = self.0.as_secs();
        if self.0.subsec_nanos() >= 500_000_000 {
            secs.saturating_add(1)
        } else {
            secs
        }
    }
}

impl From<Duration> for KubeDuration {
    fn from(d: Duration) -> Self {
        KubeDuration(d)
    }
}

/// Why a duration string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?}: empty")]
    Empty(String),
    #[error("invalid duration {0:?}: expected a number at offset {1}")]
    ExpectedNumber(String, usize),
    #[error(
        "invalid duration {0:?}: missing unit after the number at offset {1} (expected one of ns, us, ms, s, m, h)"
    )]
    MissingUnit(String, usize),
    #[error("invalid duration {0:?}: unknown unit {1:?} (expected one of ns, us, ms, s, m, h)")]
    UnknownUnit(String, String),
    #[error("invalid duration {0:?}: out of range (maximum is about 292 years)")]
    Overflow(String),
    #[error("invalid duration {0:?}: negative durations are not allowed")]
    Negative(String),
}

/// Parses a Go duration string. Returns the magnitude and whether it was negative.
pub fn parse_go_duration(input: &str) -> Result<(Duration, bool), DurationError> {
    let err_input = || input.to_string();
    let mut s = input;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok((Duration::ZERO, false));
    }
    if s.is_empty() {
        return Err(DurationError::Empty(err_input()));
    }
    let bytes = s.as_bytes();
    let base_offset = input.len() - s.len();
    let mut i = 0;
    let mut total: u128 = 0;
    while i < bytes.len() {
        // Integer part.
        let int_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let int_part = &s[int_start..i];
        // Fraction.
        let mut frac_part = "";
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            let frac_start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            frac_part = &s[frac_start..i];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(DurationError::ExpectedNumber(
                err_input(),
                base_offset + int_start,
            ));
        }
        // Unit: everything up to the next digit or '.'.
        let unit_start = i;
        while i < bytes.len() && !bytes[i].is_ascii_digit() && bytes[i] != b'.' {
            i += 1;
        }
        let unit = &s[unit_start..i];
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(
                err_input(),
                base_offset + unit_start,
            ));
        }
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{00b5}s" | "\u{03bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => return Err(DurationError::UnknownUnit(err_input(), other.to_string())),
        };
        let overflow = || DurationError::Overflow(err_input());
        let mut value: u128 = 0;
        for d in int_part.bytes() {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u128::from(d - b'0')))
                .filter(|v| *v <= MAX_NANOS)
                .ok_or_else(overflow)?;
        }
        let mut nanos = value
            .checked_mul(unit_nanos)
            .filter(|v| *v <= MAX_NANOS)
            .ok_or_else(overflow)?;
        // Fraction: accumulate digit by digit with the scale shrinking, like Go
        // (digits beyond the unit's resolution are dropped).
        let mut scale = unit_nanos;
        for d in frac_part.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            nanos += u128::from(d - b'0') * scale;
        }
        total = total
            .checked_add(nanos)
            .filter(|v| *v <= MAX_NANOS)
            .ok_or_else(overflow)?;
    }
    let secs = (total / 1_000_000_000) as u64;
    let sub = (total % 1_000_000_000) as u32;
    Ok((Duration::new(secs, sub), negative && total != 0))
}

impl FromStr for KubeDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match parse_go_duration(s)? {
            (_, true) => Err(DurationError::Negative(s.to_string())),
            (d, false) => Ok(KubeDuration(d)),
        }
    }
}

/// Formats like Go's `time.Duration.String()`: "1h2m3.5s", "1m30s", "300ms", "0s".
impl fmt::Display for KubeDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        if d < Duration::from_secs(1) {
            let n = d.subsec_nanos();
            return if n < 1_000 {
                write!(f, "{n}ns")
            } else if n < 1_000_000 {
                write!(f, "{}us", trim_frac(n, 1_000, 3))
            } else {
                write!(f, "{}ms", trim_frac(n, 1_000_000, 6))
            };
        }
        let total = d.as_secs();
        let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
        if h > 0 {
            write!(f, "{h}h{m}m")?;
        } else if m > 0 {
            write!(f, "{m}m")?;
        }
        let nanos = d.subsec_nanos();
        if nanos == 0 {
            write!(f, "{s}s")
        } else {
            let frac = format!("{nanos:09}");
            write!(f, "{s}.{}s", frac.trim_end_matches('0'))
        }
    }
}

fn trim_frac(n: u32, unit: u32, width: usize) -> String {
    let whole = n / unit;
    let rem = n % unit;
    if rem == 0 {
        return whole.to_string();
    }
    let frac = format!("{rem:0width$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

impl Serialize for KubeDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KubeDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = KubeDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"90s\" or \"1m30s\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<KubeDuration, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl schemars::JsonSchema for KubeDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration in Go time.Duration format, e.g. \"90s\" or \"1m30s\"."
        })
    }
    fn inline_schema() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<KubeDuration, DurationError> {
        s.parse()
    }

    #[test]
    fn parses_go_formats() {
        assert_eq!(p("90s").unwrap().0, Duration::from_secs(90));
        assert_eq!(p("1m30s").unwrap().0, Duration::from_secs(90));
        assert_eq!(p("1.5h").unwrap().0, Duration::from_secs(5400));
        assert_eq!(p("300ms").unwrap().0, Duration::from_millis(300));
        assert_eq!(p("2h45m").unwrap().0, Duration::from_secs(9900));
        assert_eq!(p("1us").unwrap().0, Duration::from_micros(1));
        assert_eq!(p("1\u{00b5}s").unwrap().0, Duration::from_micros(1));
        assert_eq!(p("1\u{03bc}s").unwrap().0, Duration::from_micros(1));
        assert_eq!(p("7ns").unwrap().0, Duration::from_nanos(7));
        assert_eq!(p("0").unwrap().0, Duration::ZERO);
        assert_eq!(p("+5s").unwrap().0, Duration::from_secs(5));
        assert_eq!(p(".5s").unwrap().0, Duration::from_millis(500));
        assert_eq!(p("1.s").unwrap().0, Duration::from_secs(1));
        assert_eq!(p("-0s").unwrap().0, Duration::ZERO);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(p(""), Err(DurationError::Empty(_))));
        assert!(matches!(p("-"), Err(DurationError::Empty(_))));
        assert!(matches!(p("90"), Err(DurationError::MissingUnit(_, 2))));
        assert!(matches!(p("s"), Err(DurationError::ExpectedNumber(_, 0))));
        assert!(matches!(p("5x"), Err(DurationError::UnknownUnit(_, u)) if u == "x"));
        assert!(matches!(p("5 s"), Err(DurationError::UnknownUnit(_, _))));
        assert!(matches!(p("-5s"), Err(DurationError::Negative(_))));
        assert!(matches!(
            p("99999999999999999999h"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(p("2562048h"), Err(DurationError::Overflow(_))));
        assert!(matches!(p("."), Err(DurationError::ExpectedNumber(_, 0))));
        assert!(matches!(
            p("NaNs"),
            Err(DurationError::ExpectedNumber(_, 0))
        ));
        // Many digits of fraction do not panic.
        assert_eq!(
            p("1.99999999999999999999999999s").unwrap().0,
            Duration::new(1, 999_999_999)
        );
    }

    #[test]
    fn formats_like_go() {
        let f = |d: Duration| KubeDuration(d).to_string();
        assert_eq!(f(Duration::from_secs(90)), "1m30s");
        assert_eq!(f(Duration::from_secs(120)), "2m0s");
        assert_eq!(f(Duration::from_secs(5)), "5s");
        assert_eq!(f(Duration::from_secs(3661)), "1h1m1s");
        assert_eq!(f(Duration::from_millis(1500)), "1.5s");
        assert_eq!(f(Duration::from_millis(300)), "300ms");
        assert_eq!(f(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(f(Duration::ZERO), "0s");
        for s in ["1h1m1s", "1.5s", "300ms", "1.5ms", "7ns", "2m0s"] {
            assert_eq!(p(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn rounds_like_calico() {
        assert_eq!(p("1.4s").unwrap().rounded_secs(), 1);
        assert_eq!(p("1.5s").unwrap().rounded_secs(), 2);
        assert_eq!(p("500ms").unwrap().rounded_secs(), 1);
        assert_eq!(p("499ms").unwrap().rounded_secs(), 0);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = parse_go_duration(&s);
        }

        #[test]
        fn display_round_trips(n in 0u64..=(i64::MAX as u64)) {
            let d = KubeDuration(Duration::from_nanos(n));
            proptest::prop_assert_eq!(d.to_string().parse::<KubeDuration>().unwrap(), d);
        }
    }
}
