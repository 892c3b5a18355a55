//! Parsing input records (SPEC §1) into a batch, turning every bad record into a dead letter.
//!
//! The parse is a typed serde walk over the bytes with strings borrowed from the input where
//! possible — no `serde_json::Value` — and it never panics: whatever the bytes, the record
//! ends up either as a [`ParsedEvent`] or as a [`DeadLetter`] naming the reason.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::batch::{DeadLetter, EventBatch, Origin, ParsedEvent, TextRef};
use crate::event_scan;
use crate::hashing::{event_id_hash, owner_worker, user_key};
use crate::time::{check_range_ms, parse_rfc3339_ms, utc_hour};

/// Largest accepted record (SPEC §1).
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// Which extra numeric `features` keys to keep (the model's extra inputs), in order.
#[derive(Clone, Debug, Default)]
pub struct ExtraFeatures {
    names: Vec<String>,
}

impl ExtraFeatures {
    /// Keeps the given extra feature names, in this order.
    pub fn new(names: Vec<String>) -> Self {
        ExtraFeatures { names }
    }

    /// Number of extra values stored per event.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no extra feature is kept.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The kept names.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// A string that borrows from the input unless it had escapes.
pub(crate) struct Text<'de>(pub(crate) Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Largest accepted |amount|: far beyond any payment, and small enough that window sums and
/// sums of squares of millions of amounts stay finite (a larger one is a bad event).
pub const MAX_AMOUNT: f64 = 1e15;

/// Event time in either SPEC form: RFC 3339 string or integer epoch milliseconds.
struct EventTime(i64);

impl<'de> Deserialize<'de> for EventTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = EventTime;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 string or integer epoch milliseconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<EventTime, E> {
                check_range_ms(v).map(EventTime).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<EventTime, E> {
                let v = i64::try_from(v).map_err(|_| E::custom("timestamp is outside years 0000-9999"))?;
                self.visit_i64(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EventTime, E> {
                parse_rfc3339_ms(v).map(EventTime).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A finite number, or null (missing).
struct Number(Option<f64>);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a finite number or null")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
                if v.is_finite() {
                    Ok(Number(Some(v)))
                } else {
                    Err(E::custom("number is not finite"))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number(Some(v as f64)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
                Ok(Number(Some(v as f64)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Number, E> {
                Ok(Number(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// The fields of one record, before validation of presence.
pub(crate) struct Fields<'de> {
    pub(crate) event_id: Option<Text<'de>>,
    pub(crate) user_id: Option<Text<'de>>,
    pub(crate) timestamp: Option<i64>,
    pub(crate) own: [f64; 4],
    pub(crate) has_features: bool,
    pub(crate) label: i8,
}

impl Fields<'_> {
    /// No field seen yet.
    pub(crate) fn empty() -> Self {
        Fields { event_id: None, user_id: None, timestamp: None, own: [f64::NAN; 4], has_features: false, label: -1 }
    }
}

/// The stored label of a `label` value: −1 for null, else 0 or 1.
pub(crate) fn label_of(value: Option<f64>) -> Result<i8, &'static str> {
    match value {
        None => Ok(-1),
        Some(0.0) => Ok(0),
        Some(1.0) => Ok(1),
        Some(_) => Err("label: must be 0 or 1"),
    }
}

/// Stores one `features` entry: a named own feature, a kept extra, or nothing.
pub(crate) fn store_feature(name: &str, value: f64, extras: &ExtraFeatures, extra_out: &mut [f64], own: &mut [f64; 4]) {
    if let Some(slot) = crate::features::OWN_FEATURE_NAMES.iter().position(|n| *n == name) {
        own[slot] = value;
    } else if let Some(slot) = extras.names.iter().position(|n| n == name) {
        extra_out[slot] = value;
    }
}

/// Walks the top-level object, writing extras straight into the batch's slots.
struct RecordSeed<'a> {
    extras: &'a ExtraFeatures,
    extra_out: &'a mut [f64],
}

fn field_error<E: de::Error>(field: &str, e: impl fmt::Display) -> E {
    E::custom(format_args!("{field}: {e}"))
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = Fields<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = Fields<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields = Fields::empty();
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match key.0.as_ref() {
                "eventId" => fields.event_id = Some(map.next_value().map_err(|e| field_error("eventId", e))?),
                "userId" => fields.user_id = Some(map.next_value().map_err(|e| field_error("userId", e))?),
                "timestamp" => {
                    let t: EventTime = map.next_value().map_err(|e| field_error("timestamp", e))?;
                    fields.timestamp = Some(t.0);
                }
                "features" => {
                    let seed =
                        FeaturesSeed { extras: self.extras, extra_out: &mut *self.extra_out, own: &mut fields.own };
                    map.next_value_seed(seed)?;
                    fields.has_features = true;
                }
                "label" => {
                    let label: Number = map.next_value().map_err(|e| field_error("label", e))?;
                    fields.label = label_of(label.0).map_err(de::Error::custom)?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }
}

struct FeaturesSeed<'a> {
    extras: &'a ExtraFeatures,
    extra_out: &'a mut [f64],
    own: &'a mut [f64; 4],
}

impl<'de> DeserializeSeed<'de> for FeaturesSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FeaturesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("features: an object of numbers")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Text<'de>>()? {
            let name = key.0.as_ref();
            let value: Number = map.next_value().map_err(|e| field_error(&format!("features.{name}"), e))?;
            store_feature(name, value.0.unwrap_or(f64::NAN), self.extras, self.extra_out, self.own);
        }
        Ok(())
    }
}

/// Turns raw records into events or dead letters, routing each event to the batch of the
/// worker that owns its user.
#[derive(Clone, Debug, Default)]
pub struct EventParser {
    extras: ExtraFeatures,
    scratch: Vec<f64>,
}

impl EventParser {
    /// A parser keeping the given extra features.
    pub fn new(extras: ExtraFeatures) -> Self {
        let scratch = vec![f64::NAN; extras.len()];
        EventParser { extras, scratch }
    }

    /// Parses one record: an event goes to `batches[owner of its user]`, a bad record to
    /// `batches[local]` as a dead letter with the reason. Returns the index of the batch that
    /// received the event (None for a dead letter), for sources that stamp events one by one.
    pub fn parse_into(
        &mut self,
        raw: &[u8],
        origin: Origin,
        batches: &mut [EventBatch],
        local: usize,
    ) -> Option<usize> {
        match self.try_parse(raw, origin, batches) {
            Ok(dest) => Some(dest),
            Err(reason) => {
                batches[local].dead.push(DeadLetter::new(raw, reason, origin));
                None
            }
        }
    }

    fn try_parse(&mut self, raw: &[u8], origin: Origin, batches: &mut [EventBatch]) -> Result<usize, String> {
        if raw.len() > MAX_EVENT_BYTES {
            return Err(format!("event is {} bytes, more than the 1 MiB limit", raw.len()));
        }
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Err("empty record".to_owned());
        }
        let text = std::str::from_utf8(raw).map_err(|e| format!("not valid UTF-8: {e}"))?;
        self.scratch.fill(f64::NAN);
        let fields = match event_scan::scan(text, &self.extras, &mut self.scratch) {
            Some(fields) => fields,
            None => {
                self.scratch.fill(f64::NAN);
                parse_fields_serde(text, &self.extras, &mut self.scratch)?
            }
        };
        validate(fields, text, origin, &self.scratch, batches)
    }
}

/// The generic parse: a serde walk that reads any valid record and names what is wrong
/// with an invalid one.
pub(crate) fn parse_fields_serde<'de>(
    raw: &'de str,
    extras: &ExtraFeatures,
    extra_out: &mut [f64],
) -> Result<Fields<'de>, String> {
    let mut de = serde_json::Deserializer::from_str(raw);
    let fields = RecordSeed { extras, extra_out }.deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(fields)
}

fn non_empty<'de>(field: &str, text: Option<Text<'de>>) -> Result<Cow<'de, str>, String> {
    match text {
        None => Err(format!("missing {field}")),
        Some(t) if t.0.is_empty() => Err(format!("{field} is empty")),
        Some(t) => Ok(t.0),
    }
}

fn validate(
    fields: Fields<'_>,
    raw: &str,
    origin: Origin,
    extras: &[f64],
    batches: &mut [EventBatch],
) -> Result<usize, String> {
    let event_id = non_empty("eventId", fields.event_id)?;
    let user_id = non_empty("userId", fields.user_id)?;
    let timestamp_ms = fields.timestamp.ok_or("missing timestamp")?;
    if !fields.has_features || fields.own[0].is_nan() {
        return Err("missing features.amount".to_owned());
    }
    if fields.own[0].abs() > MAX_AMOUNT {
        return Err("features.amount: magnitude above 1e15".to_owned());
    }
    let hour_of_day = fields.own[1];
    let hour = if hour_of_day.is_nan() {
        utc_hour(timestamp_ms)
    } else if (0.0..24.0).contains(&hour_of_day) {
        hour_of_day as u8
    } else {
        return Err("features.hour_of_day: must be in [0, 24)".to_owned());
    };
    let key = user_key(&user_id);
    let dest = owner_worker(key, batches.len());
    let batch = &mut batches[dest];
    batch.extras.extend_from_slice(extras);
    let text = &mut batch.text;
    let raw_ref = TextRef::push(text, raw);
    let mut field = |value: &str| raw_ref.within(raw, value).unwrap_or_else(|| TextRef::push(text, value));
    batch.events.push(ParsedEvent {
        origin,
        user_key: key,
        id_hash: event_id_hash(&event_id),
        event_id: field(&event_id),
        user_id: field(&user_id),
        raw: raw_ref,
        timestamp_ms,
        own: fields.own,
        hour,
        label: fields.label,
    });
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> EventBatch {
        let mut batches = [EventBatch::default()];
        let mut parser = EventParser::new(ExtraFeatures::new(vec!["v1".into()]));
        parser.parse_into(line.as_bytes(), Origin { partition: 0, position: 7 }, &mut batches, 0);
        std::mem::take(&mut batches[0])
    }

    fn error_of(line: &str) -> String {
        let batch = parse(line);
        assert!(batch.events.is_empty(), "{line} parsed");
        assert_eq!(batch.extras.len(), 0);
        batch.dead[0].error.clone()
    }

    #[test]
    fn parses_spec_example() {
        let batch = parse(
            r#"{"eventId": "evt-000001", "timestamp": "2026-01-15T10:30:00.123Z", "userId": "user_12345",
 "value": 150.0, "features": {"amount": 150.0, "hour_of_day": 14, "location_distance": 5.2,
 "days_since_last_txn": 2, "v1": -1.35}, "label": 0}"#,
        );
        let e = batch.events[0];
        assert_eq!(e.event_id.str(&batch.text), "evt-000001");
        assert_eq!(e.user_id.str(&batch.text), "user_12345");
        assert_eq!(e.timestamp_ms, 1_768_473_000_123);
        assert_eq!(e.own, [150.0, 14.0, 5.2, 2.0]);
        assert_eq!(e.hour, 14);
        assert_eq!(e.label, 0);
        assert_eq!(batch.extras, vec![-1.35]);
    }

    #[test]
    fn each_event_of_a_batch_keeps_its_own_texts() {
        let mut batches = [EventBatch::default()];
        let mut parser = EventParser::new(ExtraFeatures::new(Vec::new()));
        let lines = [
            r#"{"eventId":"a1","userId":"ua","timestamp":1,"features":{"amount":1}}"#,
            r#"{"eventId":"b\u0032","userId":"ub","timestamp":2,"features":{"amount":2}}"#,
            r#"{"eventId":"c3","userId":"uc","timestamp":3,"features":{"amount":3}}"#,
        ];
        for (i, line) in lines.iter().enumerate() {
            parser.parse_into(line.as_bytes(), Origin { partition: 0, position: i as u64 }, &mut batches, 0);
        }
        let batch = &batches[0];
        let texts: Vec<_> = batch
            .events
            .iter()
            .map(|e| (e.event_id.str(&batch.text), e.user_id.str(&batch.text), e.raw.str(&batch.text)))
            .collect();
        assert_eq!(texts, [("a1", "ua", lines[0]), ("b2", "ub", lines[1]), ("c3", "uc", lines[2])]);
    }

    #[test]
    fn epoch_ms_escapes_and_missing_optionals() {
        let line = r#"{"eventId":"e\"1","userId":"u","timestamp":3600000,"features":{"amount":1}}"#;
        let batch = parse(line);
        let e = batch.events[0];
        assert_eq!(e.event_id.str(&batch.text), "e\"1");
        assert_eq!(e.user_id.str(&batch.text), "u");
        assert_eq!(e.raw.str(&batch.text), line);
        assert_eq!(e.hour, 1);
        assert!(e.own[1].is_nan() && e.own[2].is_nan() && e.own[3].is_nan());
        assert_eq!(e.label, -1);
        assert!(batch.extras[0].is_nan());
    }

    #[test]
    fn every_bad_case_is_a_dead_letter_with_reason() {
        let cases = [
            ("not json", "expected"),
            ("", "empty"),
            ("[1,2]", "invalid type"),
            (r#"{"userId":"u","timestamp":1,"features":{"amount":1}}"#, "missing eventId"),
            (r#"{"eventId":"e","timestamp":1,"features":{"amount":1}}"#, "missing userId"),
            (r#"{"eventId":"e","userId":"u","features":{"amount":1}}"#, "missing timestamp"),
            (r#"{"eventId":"e","userId":"u","timestamp":1}"#, "missing features.amount"),
            (r#"{"eventId":"e","userId":"u","timestamp":1,"features":{"amount":null}}"#, "missing features.amount"),
            (r#"{"eventId":5,"userId":"u","timestamp":1,"features":{"amount":1}}"#, "eventId"),
            (r#"{"eventId":"","userId":"u","timestamp":1,"features":{"amount":1}}"#, "eventId is empty"),
            (r#"{"eventId":"e","userId":"u","timestamp":"yesterday","features":{"amount":1}}"#, "timestamp"),
            (r#"{"eventId":"e","userId":"u","timestamp":1.5,"features":{"amount":1}}"#, "timestamp"),
            (r#"{"eventId":"e","userId":"u","timestamp":1,"features":{"amount":"1"}}"#, "features.amount"),
            (r#"{"eventId":"e","userId":"u","timestamp":1,"features":{"amount":1e999}}"#, "out of range"),
            (r#"{"eventId":"e","userId":"u","timestamp":1,"features":{"amount":1,"hour_of_day":24}}"#, "hour_of_day"),
            (r#"{"eventId":"e","userId":"u","timestamp":1,"features":{"amount":1},"label":2}"#, "label"),
            (r#"{"eventId":"e","userId":"u","timestamp":99999999999999999,"features":{"amount":1}}"#, "years"),
            (r#"{"eventId":"e","userId":"u","timestamp":1,"features":{"amount":1}} x"#, "trailing"),
        ];
        for (line, reason) in cases {
            let error = error_of(line);
            assert!(error.contains(reason), "{line}: {error}");
        }
    }

    #[test]
    fn routes_events_to_their_owner() {
        let mut batches = [EventBatch::default(), EventBatch::default()];
        let mut parser = EventParser::default();
        for i in 0..50 {
            let line = format!(r#"{{"eventId":"e{i}","userId":"user_{i}","timestamp":1,"features":{{"amount":1}}}}"#);
            parser.parse_into(line.as_bytes(), Origin::default(), &mut batches, 1);
        }
        for (w, batch) in batches.iter().enumerate() {
            assert!(!batch.events.is_empty());
            assert!(batch.events.iter().all(|e| owner_worker(e.user_key, 2) == w));
        }
    }

    #[test]
    fn oversized_and_invalid_utf8_are_dead_letters() {
        let mut batches = [EventBatch::default()];
        let big = vec![b' '; MAX_EVENT_BYTES + 1];
        let mut parser = EventParser::default();
        parser.parse_into(&big, Origin::default(), &mut batches, 0);
        parser.parse_into(b"{\"eventId\":\"\xff\"}", Origin::default(), &mut batches, 0);
        let batch = &batches[0];
        assert_eq!(batch.dead.len(), 2);
        assert_eq!(batch.dead[0].raw.len(), 65_536);
        assert!(batch.dead[1].raw.contains('\u{fffd}'));
    }
}
