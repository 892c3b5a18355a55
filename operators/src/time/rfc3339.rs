//! Event time: parsing RFC 3339 instants into epoch milliseconds and rendering them back.
//!
//! Hand-written rather than pulled from a date crate because it sits on the per-event hot
//! path: SPEC §1 accepts RFC 3339 strings (any offset, any fraction length) and SPEC §2 floors
//! sub-millisecond digits. Only years 0000–9999 are representable in RFC 3339, so epoch
//! milliseconds outside that range are rejected too, which keeps every accepted instant
//! printable in a decision record.

use std::cell::Cell;

/// Milliseconds in one hour.
pub const HOUR_MS: i64 = 3_600_000;
/// Milliseconds in one day.
pub const DAY_MS: i64 = 24 * HOUR_MS;
/// Smallest accepted instant: 0000-01-01T00:00:00.000Z.
pub const MIN_MS: i64 = -62_167_219_200_000;
/// Largest accepted instant: 9999-12-31T23:59:59.999Z.
pub const MAX_MS: i64 = 253_402_300_799_999;

/// Why a timestamp string was refused; the text ends up in dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("timestamp is not RFC 3339 (expected YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM))")]
    Syntax,
    #[error("timestamp has an out-of-range date or time field")]
    Field,
    #[error("timestamp is outside years 0000-9999")]
    Range,
    #[error("timestamp is not a number of at most 36 digits with an exponent that fits")]
    Number,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn digits(bytes: &[u8], at: usize, len: usize) -> Result<u32, TimeError> {
    let field = bytes.get(at..at + len).ok_or(TimeError::Syntax)?;
    field.iter().try_fold(0u32, |acc, &b| {
        if b.is_ascii_digit() {
            Ok(acc * 10 + u32::from(b - b'0'))
        } else {
            Err(TimeError::Syntax)
        }
    })
}

fn expect(bytes: &[u8], at: usize, allowed: &[u8]) -> Result<(), TimeError> {
    match bytes.get(at) {
        Some(b) if allowed.contains(b) => Ok(()),
        _ => Err(TimeError::Syntax),
    }
}

/// Parses an RFC 3339 date-time into epoch milliseconds, flooring sub-millisecond digits.
pub fn parse_rfc3339_ms(text: &str) -> Result<i64, TimeError> {
    match parse_common_utc(text.as_bytes()) {
        Some(ms) => Ok(ms),
        None => parse_any(text.as_bytes()),
    }
}

/// The first ten bytes of the last date [`parse_common_utc`] read on this thread, and the
/// epoch milliseconds of its midnight: the events of a stream mostly fall on the same day.
#[derive(Clone, Copy)]
struct ParsedDate {
    text: [u8; 10],
    midnight_ms: i64,
}

thread_local! {
    // Starts with a text no date has (its byte 4 is not `-`), so the first lookup misses.
    static LAST_PARSED_DATE: Cell<ParsedDate> = const { Cell::new(ParsedDate { text: [0; 10], midnight_ms: 0 }) };
}

/// The common shape `YYYY-MM-DDTHH:MM:SS.mmmZ` (as vigil and most producers write instants),
/// with the date looked up in the per-thread cache; `None` for anything else, valid or not,
/// which [`parse_any`] then decides (a leap second included).
fn parse_common_utc(b: &[u8]) -> Option<i64> {
    let b: &[u8; 24] = b.try_into().ok()?;
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (23, b'Z')];
    if separators.iter().any(|&(at, sep)| b[at] != sep) {
        return None;
    }
    let digit = |at: usize| Some(u32::from(b[at].wrapping_sub(b'0'))).filter(|&d| d <= 9);
    let two = |at: usize| Some(digit(at)? * 10 + digit(at + 1)?);
    let (hour, minute, second) = (two(11)?, two(14)?, two(17)?);
    let millis = digit(20)? * 100 + two(21)?;
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let date: [u8; 10] = b[..10].try_into().expect("ten bytes");
    let cached = LAST_PARSED_DATE.get();
    let midnight_ms = if cached.text == date {
        cached.midnight_ms
    } else {
        let year = two(0)? * 100 + two(2)?;
        let midnight_ms = midnight_ms(year, two(5)?, two(8)?).ok()?;
        LAST_PARSED_DATE.set(ParsedDate { text: date, midnight_ms });
        midnight_ms
    };
    Some(midnight_ms + i64::from(hour * 3_600_000 + minute * 60_000 + second * 1000 + millis))
}

/// Parses any RFC 3339 date-time (any offset, any fraction length, a leap second).
fn parse_any(b: &[u8]) -> Result<i64, TimeError> {
    let year = digits(b, 0, 4)?;
    expect(b, 4, b"-")?;
    let month = digits(b, 5, 2)?;
    expect(b, 7, b"-")?;
    let day = digits(b, 8, 2)?;
    expect(b, 10, b"Tt ")?;
    let hour = digits(b, 11, 2)?;
    expect(b, 13, b":")?;
    let minute = digits(b, 14, 2)?;
    expect(b, 16, b":")?;
    let second = digits(b, 17, 2)?;
    let mut at = 19;
    let mut millis = 0u32;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 3 {
                millis = millis * 10 + u32::from(b[at] - b'0');
            }
            at += 1;
        }
        let taken = at - start;
        if taken == 0 {
            return Err(TimeError::Syntax);
        }
        for _ in taken..3 {
            millis *= 10;
        }
    }
    let offset_minutes: i64 = match b.get(at) {
        Some(b'Z' | b'z') if at + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if at + 6 == b.len() => {
            let oh = digits(b, at + 1, 2)?;
            expect(b, at + 3, b":")?;
            let om = digits(b, at + 4, 2)?;
            if oh > 23 || om > 59 {
                return Err(TimeError::Field);
            }
            let minutes = i64::from(oh * 60 + om);
            if sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        _ => return Err(TimeError::Syntax),
    };
    let midnight = midnight_ms(year, month, day)?;
    if hour > 23 || minute > 59 || second > 60 {
        return Err(TimeError::Field);
    }
    // A leap second (:60) is folded into the last millisecond of its minute.
    let (second, millis) = if second == 60 { (59, 999) } else { (second, millis) };
    let secs = i64::from(hour * 3600 + minute * 60 + second) - offset_minutes * 60;
    check_range_ms(midnight + secs * 1000 + i64::from(millis))
}

/// Epoch milliseconds of the start of a calendar date, if the date exists.
fn midnight_ms(year: u32, month: u32, day: u32) -> Result<i64, TimeError> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(i64::from(year), month) {
        return Err(TimeError::Field);
    }
    Ok(days_from_civil(i64::from(year), month, day) * DAY_MS)
}

/// Accepts an epoch-millisecond instant only if RFC 3339 can print it.
pub fn check_range_ms(ms: i64) -> Result<i64, TimeError> {
    if (MIN_MS..=MAX_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(TimeError::Range)
    }
}

/// UTC hour of day (0–23) of an instant.
pub fn utc_hour(ms: i64) -> u8 {
    (ms.rem_euclid(DAY_MS) / HOUR_MS) as u8
}

thread_local! {
    // The day number and text of the last date written on this thread (decision records of a
    // stream mostly fall on the same day); `i64::MIN` is no day, so the first lookup misses.
    static LAST_WRITTEN_DATE: Cell<(i64, [u8; 10])> = const { Cell::new((i64::MIN, [0; 10])) };
}

/// Writes `value` as `width` decimal digits into `slots` (the caller keeps it below 10^width).
fn put_digits(slots: &mut [u8], mut value: u32) {
    for slot in slots.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// `YYYY-MM-DD` of a day count since 1970-01-01 (years clamped to 0000–9999).
fn date_text(days: i64) -> [u8; 10] {
    let (year, month, day) = civil_from_days(days);
    let mut text = *b"0000-00-00";
    put_digits(&mut text[0..4], year.clamp(0, 9999) as u32);
    put_digits(&mut text[5..7], month);
    put_digits(&mut text[8..10], day);
    text
}

/// Appends `ms` as `YYYY-MM-DDTHH:MM:SS.mmmZ`; `ms` must be within [`MIN_MS`, `MAX_MS`].
pub fn write_rfc3339_ms(ms: i64, out: &mut Vec<u8>) {
    let days = ms.div_euclid(DAY_MS);
    let in_day = ms.rem_euclid(DAY_MS) as u32;
    let (cached_days, cached_text) = LAST_WRITTEN_DATE.get();
    let date = if cached_days == days {
        cached_text
    } else {
        let text = date_text(days);
        LAST_WRITTEN_DATE.set((days, text));
        text
    };
    // Formatted on the stack and appended once: this runs for every decision record.
    let mut text = *b"0000-00-00T00:00:00.000Z";
    text[..10].copy_from_slice(&date);
    put_digits(&mut text[11..13], in_day / 3_600_000);
    put_digits(&mut text[14..16], in_day / 60_000 % 60);
    put_digits(&mut text[17..19], in_day / 1000 % 60);
    put_digits(&mut text[20..23], in_day % 1000);
    out.extend_from_slice(&text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(ms: i64) -> String {
        let mut out = Vec::new();
        write_rfc3339_ms(ms, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn hand_computed_instants() {
        assert_eq!(civil_from_days(-719_468), (0, 3, 1));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339_ms("2024-02-29T23:59:59.999Z"), Ok(1_709_251_199_999));
        assert_eq!(parse_rfc3339_ms("2026-01-15T10:30:00.123Z"), Ok(1_768_473_000_123));
        assert_eq!(parse_rfc3339_ms("2026-01-15T12:30:00.123+02:00"), Ok(1_768_473_000_123));
        assert_eq!(parse_rfc3339_ms("2026-01-15t10:30:00.1239z"), Ok(1_768_473_000_123));
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59.9999Z"), Ok(-1));
        assert_eq!(parse_rfc3339_ms("0000-01-01T00:00:00Z"), Ok(MIN_MS));
        assert_eq!(parse_rfc3339_ms("9999-12-31T23:59:59.999Z"), Ok(MAX_MS));
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "2026-01-15",
            "2026-01-15T10:30:00",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-01-15T24:00:00Z",
            "2026-01-15T10:30:00.Z",
            "2026-01-15T10:30:00Z ",
            "2026-01-15T10:30:00+2:00",
            "２026-01-15T10:30:00Z",
            "\0\0\0\0-\0\0-\0\0T00:00:00.000Z",
            "2026-01-15T10:30:60.000Z ",
            "2026-01-15T10:3a:00.000Z",
        ] {
            assert!(parse_rfc3339_ms(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn renders_and_round_trips() {
        assert_eq!(render(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(render(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(render(-1), "1969-12-31T23:59:59.999Z");
        for ms in [MIN_MS, MAX_MS, 1_768_473_000_123, -86_400_001, 951_782_400_000] {
            assert_eq!(parse_rfc3339_ms(&render(ms)), Ok(ms));
        }
    }

    #[test]
    fn utc_hour_of_negative_instants() {
        assert_eq!(utc_hour(-1), 23);
        assert_eq!(utc_hour(HOUR_MS * 25), 1);
    }

    /// The plain rendering, without the per-thread date cache.
    fn render_plainly(ms: i64) -> String {
        let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
        let t = ms.rem_euclid(DAY_MS);
        let (hh, mm, ss, fff) = (t / HOUR_MS, t / 60_000 % 60, t / 1000 % 60, t % 1000);
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{fff:03}Z")
    }

    proptest::proptest! {
        /// Instants in the common shape, on a few dates (so the date cache both hits and
        /// misses), impossible dates and times included: the fast path agrees with the general one.
        #[test]
        fn the_common_shape_parses_as_the_general_path_does(
            instants in proptest::collection::vec(
                (0usize..6, 0u32..26, 0u32..62, 0u32..62, 0u32..1000), 1..40),
        ) {
            let dates = ["2026-01-15", "2026-01-16", "2024-02-29", "2026-02-29", "2026-13-01", "0000-01-01"];
            for (date, h, m, s, f) in instants {
                let text = format!("{}T{h:02}:{m:02}:{s:02}.{f:03}Z", dates[date]);
                proptest::prop_assert_eq!(parse_rfc3339_ms(&text), parse_any(text.as_bytes()), "{}", text);
            }
        }

        /// Runs of instants around a few days: rendering with the date cache equals rendering
        /// without it.
        #[test]
        fn rendering_equals_the_plain_rendering(
            instants in proptest::collection::vec((0usize..4, -DAY_MS..DAY_MS), 1..40),
        ) {
            let days = [0, 20_468, 2_932_896, -719_528];
            for (day, offset) in instants {
                let ms = (days[day] * DAY_MS + offset).clamp(MIN_MS, MAX_MS);
                proptest::prop_assert_eq!(render(ms), render_plainly(ms));
            }
        }

        #[test]
        fn civil_round_trip(days in -800_000i64..3_000_000) {
            let (y, m, d) = civil_from_days(days);
            proptest::prop_assert!((1..=12).contains(&m) && (1..=31).contains(&d));
            proptest::prop_assert_eq!(days_from_civil(y, m, d), days);
            let (y2, m2, d2) = civil_from_days(days + 1);
            // Consecutive days: same month and day + 1, or the 1st of the next month.
            proptest::prop_assert!((y2, m2, d2) == (y, m, d + 1) || (d2 == 1 && (m2 == m % 12 + 1)));
        }
    }
}
