//! Numeric event times (SPEC §1): a JSON number of seconds, milliseconds, microseconds or
//! nanoseconds since the Unix epoch, its unit told by its magnitude unless the job forces one.
//!
//! Producers write all four units (Kafka and JavaScript clients milliseconds, Unix tools and
//! Python seconds, often with a fraction, tracing systems micro- or nanoseconds), and a unit
//! read wrongly moves every event decades away without any error. The magnitude rule tells
//! them apart for any instant between 1973 and 5138, the range real events fall in.
//!
//! The number is read from its decimal text, not from an `f64`, so `1735516800.123` is exactly
//! 123 ms past the second (as a float, ×1000 lands a hair below and would floor to 122).

use crate::time::rfc3339::{check_range_ms, TimeError};

/// The unit of a numeric timestamp.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimestampUnit {
    /// Told by magnitude: |x| < 1e11 seconds, < 1e14 milliseconds, < 1e17 microseconds, else
    /// nanoseconds.
    #[default]
    Auto,
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl TimestampUnit {
    /// The unit's name as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            TimestampUnit::Auto => "auto",
            TimestampUnit::Seconds => "s",
            TimestampUnit::Millis => "ms",
            TimestampUnit::Micros => "us",
            TimestampUnit::Nanos => "ns",
        }
    }

    /// The unit named `auto`, `s`, `ms`, `us` or `ns`.
    pub fn from_name(name: &str) -> Option<TimestampUnit> {
        [Self::Auto, Self::Seconds, Self::Millis, Self::Micros, Self::Nanos].into_iter().find(|u| u.name() == name)
    }

    /// Decimal exponent taking a count of this unit to milliseconds (ms = x · 10^shift).
    fn shift_to_ms(self) -> i32 {
        match self {
            TimestampUnit::Seconds => 3,
            TimestampUnit::Auto | TimestampUnit::Millis => 0,
            TimestampUnit::Micros => -3,
            TimestampUnit::Nanos => -6,
        }
    }

    /// The unit of a number whose whole part has `whole_digits` decimal digits (SPEC §1).
    fn by_magnitude(whole_digits: u32) -> TimestampUnit {
        match whole_digits {
            0..=11 => TimestampUnit::Seconds,
            12..=14 => TimestampUnit::Millis,
            15..=17 => TimestampUnit::Micros,
            _ => TimestampUnit::Nanos,
        }
    }
}

/// Most significant digits read exactly; a longer number (no real clock has that precision)
/// is refused rather than rounded.
const MAX_DIGITS: u32 = 36;

/// Epoch milliseconds of the JSON number `text` (integer, fraction or exponent) in `unit`,
/// floored to the millisecond.
pub fn epoch_ms_of_number(text: &str, unit: TimestampUnit) -> Result<i64, TimeError> {
    let decimal = Decimal::parse(text).ok_or(TimeError::Number)?;
    let unit = match unit {
        TimestampUnit::Auto => TimestampUnit::by_magnitude(decimal.whole_digits()),
        forced => forced,
    };
    check_range_ms(decimal.floor_scaled(unit.shift_to_ms()).ok_or(TimeError::Range)?)
}

/// A decimal number as `sign · digits · 10^exponent`, exactly.
struct Decimal {
    negative: bool,
    digits: i128,
    /// Number of significant digits in `digits` (leading zeros dropped).
    len: u32,
    exponent: i32,
}

impl Decimal {
    /// Reads a JSON number token: `-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?`, leniently (the JSON
    /// parser has checked the grammar).
    fn parse(text: &str) -> Option<Decimal> {
        let bytes = text.as_bytes();
        let (negative, mut at) = if bytes.first() == Some(&b'-') { (true, 1) } else { (false, 0) };
        let mut decimal = Decimal { negative, digits: 0, len: 0, exponent: 0 };
        let mut seen_digit = false;
        let mut in_fraction = false;
        while let Some(&b) = bytes.get(at) {
            match b {
                b'0'..=b'9' => {
                    seen_digit = true;
                    if decimal.len > 0 || b != b'0' {
                        decimal.len += 1;
                        if decimal.len > MAX_DIGITS {
                            return None;
                        }
                    }
                    decimal.digits = decimal.digits * 10 + i128::from(b - b'0');
                    if in_fraction {
                        decimal.exponent -= 1;
                    }
                }
                b'.' if !in_fraction => in_fraction = true,
                b'e' | b'E' => break,
                _ => return None,
            }
            at += 1;
        }
        if !seen_digit {
            return None;
        }
        if at < bytes.len() {
            let exponent: i32 = text[at + 1..].trim_start_matches('+').parse().ok()?;
            decimal.exponent = decimal.exponent.checked_add(exponent)?;
        }
        Some(decimal)
    }

    /// Digits of the whole part of |x| (0 for |x| < 1).
    fn whole_digits(&self) -> u32 {
        let whole = i64::from(self.len) + i64::from(self.exponent);
        whole.clamp(0, i64::from(u32::MAX)) as u32
    }

    /// ⌊x · 10^shift⌋, if it fits an i64.
    fn floor_scaled(&self, shift: i32) -> Option<i64> {
        let power = self.exponent.checked_add(shift)?;
        let signed = if self.negative { -self.digits } else { self.digits };
        let scaled = if power >= 0 {
            signed.checked_mul(10i128.checked_pow(power.unsigned_abs())?)?
        } else {
            match 10i128.checked_pow(power.unsigned_abs()) {
                Some(divisor) => signed.div_euclid(divisor),
                // Divided by more than 10^38 > |digits|: 0 for x ≥ 0, −1 for x < 0.
                None => -i128::from(signed < 0),
            }
        };
        i64::try_from(scaled).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSTANT_MS: i64 = 1_735_516_800_000; // 2024-12-30T00:00:00Z

    #[test]
    fn every_unit_of_one_instant_reads_the_same() {
        for text in [
            "1735516800",
            "1735516800000",
            "1735516800000000",
            "1735516800000000000",
            "1735516800.0",
            "1735516800.0004",
            "1.7355168e9",
            "1.7355168E+12",
            "17355168000000e-4",
            "1735516800000.999",
            "1735516800000999",
            "1735516800000999999",
        ] {
            assert_eq!(epoch_ms_of_number(text, TimestampUnit::Auto), Ok(INSTANT_MS), "{text}");
        }
    }

    #[test]
    fn fractions_are_floored_to_the_millisecond_from_the_decimal_text() {
        let auto = |t| epoch_ms_of_number(t, TimestampUnit::Auto);
        assert_eq!(auto("1735516800.25"), Ok(INSTANT_MS + 250));
        // As an f64, 1735516800.123 · 1000 is 1735516800122.99997…
        assert_eq!(auto("1735516800.123"), Ok(INSTANT_MS + 123));
        assert_eq!(auto("1735516800.1239"), Ok(INSTANT_MS + 123));
        assert_eq!(auto("1735516800123.9"), Ok(INSTANT_MS + 123));
        // Floored, not truncated: before the epoch the floor is one millisecond earlier.
        assert_eq!(auto("-1.0005"), Ok(-1001));
        assert_eq!(auto("-1500"), Ok(-1_500_000));
        assert_eq!(auto("0"), Ok(0));
        assert_eq!(auto("-0.0"), Ok(0));
    }

    #[test]
    fn the_magnitude_bounds_are_as_specified() {
        let auto = |t| epoch_ms_of_number(t, TimestampUnit::Auto);
        // |x| < 1e11 seconds; 1e11 itself milliseconds, and so on.
        assert_eq!(auto("99999999999"), Ok(99_999_999_999_000));
        assert_eq!(auto("99999999999.9"), Ok(99_999_999_999_900));
        assert_eq!(auto("100000000000"), Ok(100_000_000_000));
        assert_eq!(auto("99999999999999"), Ok(99_999_999_999_999));
        assert_eq!(auto("100000000000000"), Ok(100_000_000_000));
        assert_eq!(auto("99999999999999999"), Ok(99_999_999_999_999));
        assert_eq!(auto("100000000000000000"), Ok(100_000_000_000));
        assert_eq!(auto("-9999999999"), Ok(-9_999_999_999_000));
        assert_eq!(auto("1e11"), Ok(100_000_000_000));
    }

    #[test]
    fn a_forced_unit_overrides_the_magnitude() {
        assert_eq!(epoch_ms_of_number("1735516800", TimestampUnit::Millis), Ok(1_735_516_800));
        assert_eq!(epoch_ms_of_number("1735516800000", TimestampUnit::Seconds), Err(TimeError::Range));
        assert_eq!(epoch_ms_of_number("1735516800", TimestampUnit::Micros), Ok(1_735_516));
        assert_eq!(epoch_ms_of_number("1735516800", TimestampUnit::Nanos), Ok(1_735));
        assert_eq!(epoch_ms_of_number("1.5", TimestampUnit::Seconds), Ok(1_500));
    }

    #[test]
    fn out_of_range_and_unreadable_numbers_are_refused() {
        let auto = |t| epoch_ms_of_number(t, TimestampUnit::Auto);
        assert_eq!(auto("99999999999999999999999"), Err(TimeError::Range));
        assert_eq!(auto("1e400"), Err(TimeError::Range));
        assert_eq!(auto("1e-400"), Ok(0));
        assert_eq!(auto("-1e-400"), Ok(-1));
        assert_eq!(auto("1e99999999999"), Err(TimeError::Number));
        let too_long = "1".repeat(37);
        assert_eq!(auto(&too_long), Err(TimeError::Number));
        assert_eq!(auto(""), Err(TimeError::Number));
        assert_eq!(auto("-"), Err(TimeError::Number));
    }

    #[test]
    fn names_round_trip() {
        for unit in ["auto", "s", "ms", "us", "ns"] {
            assert_eq!(TimestampUnit::from_name(unit).map(TimestampUnit::name), Some(unit));
        }
        assert_eq!(TimestampUnit::from_name("sec"), None);
    }
}
