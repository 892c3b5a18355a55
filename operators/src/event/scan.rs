//! The fast path of event parsing: a direct scan of the common shape of an event record.
//!
//! Almost every record is a flat object of unescaped strings and plain numbers with one
//! `features` object of numbers. Such a record is read here in one pass over the bytes, with
//! fewer instructions than the generic serde walk (callgrind, 100k records: 550M with the serde
//! walk alone, 335M now). Anything else — escapes, nested values outside
//! `features`, a value of the wrong type, an out-of-range number or timestamp, trailing bytes —
//! makes the scan give up (`None`), and the record goes through the serde walk, which then
//! decides it and names the error. So the scan never has to produce an error message, and what
//! it accepts it must read exactly as the serde walk would (tested against it in
//! `tests::agrees_with_the_serde_walk`).

use std::borrow::Cow;

use crate::event::fields::{label_of, store_attribute, store_feature, ExtraFeatures, Fields, Kept, Text};
use crate::features::OWN_FEATURE_NAMES;
use crate::json_out::first_to_escape;
use crate::time::epoch::{epoch_ms_of_number, TimestampUnit};
use crate::time::rfc3339::parse_rfc3339_ms;

/// A top-level key the scan tells apart.
#[derive(Clone, Copy)]
enum RecordKey {
    EventId,
    UserId,
    Timestamp,
    Features,
    Label,
    /// The top-level `value`, the amount when `features.amount` is absent.
    Value,
    /// A key the job does not read.
    Other,
}

impl RecordKey {
    fn of(name: &str) -> RecordKey {
        match name {
            "eventId" => RecordKey::EventId,
            "userId" => RecordKey::UserId,
            "timestamp" => RecordKey::Timestamp,
            "features" => RecordKey::Features,
            "label" => RecordKey::Label,
            "value" => RecordKey::Value,
            _ => RecordKey::Other,
        }
    }
}

/// The top-level keys in the order producers (`vigil gen` among them) usually write them,
/// quoted and followed by the colon: when the next key is the one after the previous match,
/// one comparison reads and identifies it (what it reads is exactly what the general path
/// would: the literals need no escapes and leave no space out). Any other key or spacing takes
/// the general path.
const RECORD_KEYS: [(&[u8], RecordKey); 6] = [
    (b"\"eventId\":", RecordKey::EventId),
    (b"\"timestamp\":", RecordKey::Timestamp),
    (b"\"userId\":", RecordKey::UserId),
    (b"\"value\":", RecordKey::Value),
    (b"\"features\":", RecordKey::Features),
    (b"\"label\":", RecordKey::Label),
];

/// The features with a column of their own, in `OWN_FEATURE_NAMES` order, likewise.
const FEATURE_KEYS: [&[u8]; 4] =
    [b"\"amount\":", b"\"hour_of_day\":", b"\"location_distance\":", b"\"days_since_last_txn\":"];

/// A key of the `features` object: a predicted feature of its own column, or a name.
enum FeatureKey<'de> {
    Own(usize),
    Named(&'de str),
}

/// Reads `text` if it has the common shape; `None` defers to the serde walk.
pub(crate) fn scan<'de>(
    text: &'de str,
    extras: &ExtraFeatures,
    unit: TimestampUnit,
    kept: &mut Kept,
) -> Option<Fields<'de>> {
    let mut s = Scanner { text, at: 0 };
    let mut fields = Fields::empty();
    let mut expected = 0;
    s.skip_ws();
    s.eat(b'{')?;
    s.skip_ws();
    if s.eat(b'}').is_none() {
        loop {
            let from = expected.min(RECORD_KEYS.len() - 1);
            let key = match s.predicted(&RECORD_KEYS[from..], |(k, _)| k) {
                Some((skipped, &(_, key))) => {
                    expected = from + skipped + 1;
                    key
                }
                None => RecordKey::of(s.key()?),
            };
            s.skip_ws();
            match key {
                RecordKey::EventId => fields.event_id = Some(Text(Cow::Borrowed(s.string()?))),
                RecordKey::UserId => fields.user_id = Some(Text(Cow::Borrowed(s.string()?))),
                RecordKey::Timestamp => fields.timestamp = Some(s.timestamp(unit)?),
                RecordKey::Features => {
                    s.features(extras, kept, &mut fields.own)?;
                    fields.has_features = true;
                }
                RecordKey::Label => fields.label = label_of(s.number_or_null()?).ok()?,
                RecordKey::Value => fields.value = s.number_or_null()?.unwrap_or(f64::NAN),
                RecordKey::Other => s.skip_scalar()?,
            }
            s.skip_ws();
            if s.eat(b'}').is_some() {
                break;
            }
            s.eat(b',')?;
            s.skip_ws();
        }
    }
    s.skip_ws();
    (s.at == text.len()).then_some(fields)
}

/// Powers of ten that are exact in an f64.
const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Decimal digits a u64 holds whatever they are (10^19 − 1 < 2^64).
const U64_DIGITS: usize = 19;

/// Counts the decimal digits from `at`, folding them into `value` (wrapping: the caller
/// trusts `value` only for at most [`U64_DIGITS`] digits in all).
fn fold_digits(bytes: &[u8], mut at: usize, value: &mut u64) -> usize {
    let start = at;
    while let Some(digit) = bytes.get(at).map(|b| b.wrapping_sub(b'0')).filter(|&d| d <= 9) {
        *value = value.wrapping_mul(10).wrapping_add(u64::from(digit));
        at += 1;
    }
    at - start
}

struct Scanner<'de> {
    text: &'de str,
    at: usize,
}

impl<'de> Scanner<'de> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// The first of `candidates` (the expected one) whose quoted key and colon come next, if
    /// it is the expected one or the one after it (an optional key left out); consumed, with
    /// how many candidates were passed over.
    fn predicted<'c, C>(&mut self, candidates: &'c [C], literal: impl Fn(&C) -> &[u8]) -> Option<(usize, &'c C)> {
        let rest = &self.text.as_bytes()[self.at..];
        let (skipped, found) = candidates.iter().take(2).enumerate().find(|(_, c)| rest.starts_with(literal(c)))?;
        self.at += literal(found).len();
        Some((skipped, found))
    }

    /// A key and its colon, by the general path.
    fn key(&mut self) -> Option<&'de str> {
        let key = self.string()?;
        self.skip_ws();
        self.eat(b':')?;
        Some(key)
    }

    /// A string without escapes or control characters (the serde walk handles those).
    fn string(&mut self) -> Option<&'de str> {
        self.eat(b'"')?;
        let bytes = self.text.as_bytes();
        let start = self.at;
        let len = first_to_escape(&bytes[start..])?;
        if bytes[start + len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        // The quote is ASCII, so both ends are character boundaries.
        self.text.get(start..start + len)
    }

    /// A JSON number token, strictly by the grammar: its text, and its value when one IEEE
    /// operation gives it exactly rounded (a plain decimal whose mantissa is below 2^53, scaled by
    /// an exact power of ten: Clinger's fast path, the same result as `str::parse`).
    fn number_token(&mut self) -> Option<(&'de str, Option<f64>)> {
        let bytes = self.text.as_bytes();
        let start = self.at;
        let negative = bytes.get(start) == Some(&b'-');
        let mut at = start + usize::from(negative);
        let mut mantissa = 0;
        let int = fold_digits(bytes, at, &mut mantissa);
        if int == 0 || (int > 1 && bytes[at] == b'0') {
            return None;
        }
        at += int;
        let mut fraction = 0;
        if bytes.get(at) == Some(&b'.') {
            fraction = fold_digits(bytes, at + 1, &mut mantissa);
            if fraction == 0 {
                return None;
            }
            at += 1 + fraction;
        }
        let mut plain = int + fraction <= U64_DIGITS && mantissa < 1 << 53;
        if matches!(bytes.get(at), Some(b'e' | b'E')) {
            plain = false;
            at += 1;
            if matches!(bytes.get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            let exp = bytes[at..].iter().take_while(|b| b.is_ascii_digit()).count();
            if exp == 0 {
                return None;
            }
            at += exp;
        }
        self.at = at;
        let exact = EXACT_POWERS_OF_TEN.get(fraction).filter(|_| plain).map(|&scale| mantissa as f64 / scale);
        Some((self.text.get(start..at)?, exact.map(|v| if negative { -v } else { v })))
    }

    /// A finite number (`Some(Some(v))`) or null (`Some(None)`).
    fn number_or_null(&mut self) -> Option<Option<f64>> {
        if self.text.as_bytes()[self.at..].starts_with(b"null") {
            self.at += 4;
            return Some(None);
        }
        let value = match self.number_token()? {
            (_, Some(exact)) => exact,
            (token, None) => token.parse().ok()?,
        };
        value.is_finite().then_some(Some(value))
    }

    /// An RFC 3339 string or a number since the epoch in `unit`, within range.
    fn timestamp(&mut self, unit: TimestampUnit) -> Option<i64> {
        if self.peek()? == b'"' {
            return parse_rfc3339_ms(self.string()?).ok();
        }
        let (token, _) = self.number_token()?;
        epoch_ms_of_number(token, unit).ok()
    }

    /// The `features` object: numbers or nulls only.
    fn features(&mut self, extras: &ExtraFeatures, kept: &mut Kept, own: &mut [f64; 4]) -> Option<()> {
        self.eat(b'{')?;
        self.skip_ws();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        let mut expected = 0;
        loop {
            let from = expected.min(FEATURE_KEYS.len() - 1);
            let key = match self.predicted(&FEATURE_KEYS[from..], |k| k) {
                Some((skipped, _)) => {
                    expected = from + skipped + 1;
                    FeatureKey::Own(from + skipped)
                }
                None => FeatureKey::Named(self.key()?),
            };
            self.skip_ws();
            match key {
                // An attribute (SPEC §1); a string for an own feature is the serde walk's error.
                FeatureKey::Named(name) if self.peek()? == b'"' && !OWN_FEATURE_NAMES.contains(&name) => {
                    store_attribute(name, self.string()?, extras, kept)
                }
                FeatureKey::Own(column) => own[column] = self.number_or_null()?.unwrap_or(f64::NAN),
                FeatureKey::Named(name) => {
                    store_feature(name, self.number_or_null()?.unwrap_or(f64::NAN), extras, kept, own)
                }
            }
            self.skip_ws();
            if self.eat(b'}').is_some() {
                return Some(());
            }
            self.eat(b',')?;
            self.skip_ws();
        }
    }

    /// The value of a key the job does not read: a string, number, boolean or null.
    fn skip_scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b't' | b'f' | b'n' => {
                let rest = &self.text.as_bytes()[self.at..];
                let word: &[u8] = [b"true".as_slice(), b"false", b"null"].into_iter().find(|w| rest.starts_with(w))?;
                self.at += word.len();
                Some(())
            }
            _ => self.number_token().map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::event::parse::parse_fields_serde;

    /// The scan's exact value of a whole number token, if it has one.
    fn exact_decimal(token: &str) -> Option<f64> {
        let mut scanner = Scanner { text: token, at: 0 };
        let (read, exact) = scanner.number_token()?;
        exact.filter(|_| read.len() == token.len())
    }

    fn extras() -> ExtraFeatures {
        ExtraFeatures::new(vec!["v1".into(), "v2".into()]).with_attributes(vec!["card".into(), "v2".into()])
    }

    fn same_number(a: f64, b: f64) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    /// Whatever the scan accepts, the serde walk accepts with the very same fields.
    fn check(line: &str) -> Result<bool, TestCaseError> {
        let (mut fast_kept, mut slow_kept) = (Kept::new(&extras()), Kept::new(&extras()));
        let unit = TimestampUnit::Auto;
        let Some(fast) = scan(line, &extras(), unit, &mut fast_kept) else { return Ok(false) };
        let slow = parse_fields_serde(line, &extras(), unit, &mut slow_kept);
        let slow = slow.map_err(|e| TestCaseError::fail(format!("scan accepted what serde refuses ({e}): {line}")))?;
        let text = |t: &Option<Text>| t.as_ref().map(|t| t.0.to_string());
        prop_assert_eq!(text(&fast.event_id), text(&slow.event_id), "{}", line);
        prop_assert_eq!(text(&fast.user_id), text(&slow.user_id), "{}", line);
        prop_assert_eq!(fast.timestamp, slow.timestamp, "{}", line);
        prop_assert_eq!(fast.has_features, slow.has_features, "{}", line);
        prop_assert_eq!(fast.label, slow.label, "{}", line);
        prop_assert!(same_number(fast.value, slow.value), "value {} vs {}: {}", fast.value, slow.value, line);
        for (a, b) in fast.own.iter().chain(&fast_kept.extras).zip(slow.own.iter().chain(&slow_kept.extras)) {
            prop_assert!(same_number(*a, *b), "{a} vs {b}: {line}");
        }
        prop_assert_eq!(&fast_kept.attrs, &slow_kept.attrs, "{}", line);
        Ok(true)
    }

    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            (-1_000_000i64..1_000_000).prop_map(|v| v.to_string()),
            (-1e6f64..1e6).prop_map(|v| format!("{v}")),
            (0u32..100_000, 0u32..100).prop_map(|(a, b)| format!("{a}.{b:02}")),
            (1u32..10, -400i32..400, prop::bool::ANY)
                .prop_map(|(m, e, upper)| format!("{m}.5{}{e}", if upper { "E" } else { "e" })),
            Just("null".to_owned()),
            "-?0[0-9]{1,3}(\\.[0-9]*)?",
            "[0-9]{18,24}",
            "-?[0-9]{1,4}\\.?[eE]?[+-]?",
            Just("1e999".to_owned()),
            Just("\"7\"".to_owned()),
            Just("true".to_owned()),
        ]
    }

    fn string() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9_-]{0,12}",
            "[a-zé😀 ]{0,6}",
            "[a-z]{0,3}\\\\[n\"\\\\u][a-z0-9]{0,5}",
            "[a-z]{0,3}[\u{1}\u{1f}][a-z]{0,3}",
        ]
        .prop_map(|s| format!("\"{s}\""))
    }

    fn timestamp() -> impl Strategy<Value = String> {
        prop_oneof![
            (0i64..4_000_000_000_000).prop_map(|v| v.to_string()),
            Just("-62167219200001".to_owned()),
            Just("253402300800000".to_owned()),
            Just("1.5".to_owned()),
            Just("1e3".to_owned()),
            (0u64..4_000_000_000, 0u32..1000).prop_map(|(s, f)| format!("{s}.{f}")),
            (0u64..u64::MAX).prop_map(|v| v.to_string()),
            (1u32..9, -20i32..20).prop_map(|(m, e)| format!("{m}.7355168e{e}")),
            (-4_000_000_000i64..0).prop_map(|v| v.to_string()),
            (2000u32..2100, 1u32..13, 1u32..29, 0u32..25, 0u32..61)
                .prop_map(|(y, m, d, h, s)| format!("\"{y}-{m:02}-{d:02}T{h:02}:00:{s:02}.123Z\"")),
            Just("\"2026-01-15T10:30:00+02:00\"".to_owned()),
            Just("\"yesterday\"".to_owned()),
            Just("null".to_owned()),
        ]
    }

    fn ws() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), Just(String::new()), " {0,2}", "[ \t\r\n]{0,3}"]
    }

    fn features() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("amount".to_owned()),
            Just("hour_of_day".to_owned()),
            Just("location_distance".to_owned()),
            Just("days_since_last_txn".to_owned()),
            Just("v1".to_owned()),
            Just("v2".to_owned()),
            Just("v3".to_owned()),
            Just("card".to_owned()),
            Just("am\\u006fount".to_owned()),
        ];
        (prop::collection::vec((name, ws(), prop_oneof![number(), number(), string()]), 0..6), ws()).prop_map(
            |(entries, w)| {
                let body: Vec<String> = entries.into_iter().map(|(k, w, v)| format!("\"{k}\"{w}:{w}{v}")).collect();
                format!("{{{w}{}{w}}}", body.join(","))
            },
        )
    }

    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            string().prop_map(|v| format!("\"eventId\":{v}")),
            string().prop_map(|v| format!("\"userId\":{v}")),
            number().prop_map(|v| format!("\"eventId\":{v}")),
            timestamp().prop_map(|v| format!("\"timestamp\":{v}")),
            features().prop_map(|v| format!("\"features\":{v}")),
            number().prop_map(|v| format!("\"features\":{v}")),
            number().prop_map(|v| format!("\"label\":{v}")),
            prop_oneof![Just("0"), Just("1"), Just("0.0"), Just("-0"), Just("1e0"), Just("2")]
                .prop_map(|v| format!("\"label\":{v}")),
            (string(), number()).prop_map(|(k, v)| format!("{k}:{v}")),
            (string(), string()).prop_map(|(k, v)| format!("{k}:{v}")),
            string().prop_map(|k| format!("{k}:[1,2]")),
            string().prop_map(|k| format!("{k}:{{\"a\":1}}")),
            Just("\"value\":false".to_owned()),
            number().prop_map(|v| format!("\"value\":{v}")),
        ]
    }

    fn record() -> impl Strategy<Value = String> {
        (
            prop::collection::vec((field(), ws()), 0..9),
            ws(),
            prop_oneof![Just(""), Just(""), Just(""), Just(" x"), Just(",")],
        )
            .prop_map(|(fields, w, tail)| {
                let body: Vec<String> = fields.into_iter().map(|(f, w)| format!("{w}{f}{w}")).collect();
                format!("{w}{{{}}}{w}{tail}", body.join(","))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        #[test]
        fn agrees_with_the_serde_walk(line in record()) {
            check(&line)?;
        }
    }

    proptest! {
        #[test]
        fn exact_decimals_equal_the_standard_parse(int in 0u64..10_000_000_000, frac in "[0-9]{0,8}", negative: bool) {
            let token = format!("{}{int}{}{frac}", if negative { "-" } else { "" }, if frac.is_empty() { "" } else { "." });
            let expected: f64 = token.parse().unwrap();
            let got = exact_decimal(&token);
            prop_assert!(got.is_none_or(|v| v.to_bits() == expected.to_bits()), "{token}: {got:?} vs {expected}");
        }
    }

    #[test]
    fn predicted_feature_keys_are_the_own_feature_names() {
        let quoted: Vec<String> = crate::features::OWN_FEATURE_NAMES.iter().map(|n| format!("\"{n}\":")).collect();
        let keys: Vec<String> = FEATURE_KEYS.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
        assert_eq!(keys, quoted);
    }

    #[test]
    fn exact_decimal_hand_cases() {
        assert_eq!(exact_decimal("32.83"), Some(32.83));
        assert_eq!(exact_decimal("-0.001"), Some(-0.001));
        assert_eq!(exact_decimal("16"), Some(16.0));
        assert_eq!(exact_decimal("9007199254740993"), None);
        assert_eq!(exact_decimal("1e5"), None);
        assert_eq!(exact_decimal("0.00000000000000000000001"), None);
        // 2^64 + 1 and 2^53 + 1 spelt with 19 digits: the folded value wraps or is inexact.
        assert_eq!(exact_decimal("18446744073709551617"), None);
        assert_eq!(exact_decimal("9.007199254740993000"), None);
    }

    #[test]
    fn reads_the_common_shape_and_defers_the_rest() {
        let common = r#"{"eventId":"evt-0","timestamp":"2026-01-01T00:00:01.840Z","userId":"user_5736","value":32.83,"features":{"amount":32.83,"hour_of_day":16,"location_distance":10.74,"v2":-1e-3},"label":0}"#;
        assert!(check(common).expect("agrees"));
        let (e, mut kept) = (extras(), Kept::new(&extras()));
        let fields = scan(common, &e, TimestampUnit::Auto, &mut kept).expect("the common shape is scanned");
        let out = &kept.extras;
        assert_eq!(fields.timestamp, Some(1_767_225_601_840));
        assert_eq!(fields.own[..3], [32.83, 16.0, 10.74]);
        assert_eq!(fields.value, 32.83);
        assert!(out[0].is_nan());
        assert_eq!(out[1], -0.001);
        // Keys in the expected order, with optional ones left out, out of order, or spaced: read
        // by prediction or by the general path, the same fields either way.
        for scanned in [
            r#"{"eventId":"e","timestamp":5,"userId":"u","features":{"amount":1,"hour_of_day":2,"location_distance":3,"days_since_last_txn":4},"label":1}"#,
            r#"{"eventId":"e","timestamp":5,"features":{"hour_of_day":2,"days_since_last_txn":4},"userId":"u"}"#,
            r#"{"userId":"u","eventId":"e","timestamp":5,"features":{"days_since_last_txn":4,"amount":1,"v1":7}}"#,
            r#"{ "eventId" : "e", "timestamp":5, "userId" :"u", "features": {"amount" :1, "hour_of_day": 2} }"#,
            r#"{"features":{"hour_of_day":0,"days_since_last_txn":1,"days_since_last_txn":2},"label":0,"label":1}"#,
            r#"{"eventId":"e","userId":"u","timestamp":1735516800.25,"value":5000}"#,
            r#"{"eventId":"e","userId":"u","timestamp":1.7355168e18,"features":{"amount":1}}"#,
            r#"{"eventId":"e","userId":"u","timestamp":1,"features":{"amount":1,"card":"c-1"}}"#,
        ] {
            assert!(check(scanned).expect("agrees"), "{scanned}");
        }
        for deferred in [
            r#"{"eventId":"e\"1","userId":"u","timestamp":1,"features":{"amount":1}}"#,
            r#"{"eventId":"e","userId":"u","timestamp":1,"features":{"amount":1},"tags":["a"]}"#,
            r#"{"eventId":"e","userId":"u","timestamp":1,"features":{"amount":1e999}}"#,
            r#"{"eventId":"e","userId":"u","timestamp":1,"features":{"amount":01}}"#,
            r#"{"eventId":"e","userId":"u","timestamp":1,"features":{"amount":1},"label":2}"#,
            r#"{"eventId":"e","userId":"u","timestamp":1,"features":{"amount":1}} x"#,
        ] {
            assert!(!check(deferred).expect("agrees"), "{deferred}");
        }
    }
}
