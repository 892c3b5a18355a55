//! Parsing input records (SPEC §1) into a batch, turning every bad record into a dead letter.
//!
//! The parse is a typed serde walk over the bytes with strings borrowed from the input where
//! possible — no `serde_json::Value` — and it never panics: whatever the bytes, the record
//! ends up either as a [`ParsedEvent`] or as a [`DeadLetter`] naming the reason.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::batch::{DeadLetter, EventBatch, Origin, ParsedEvent, TextRef, TimestampSource};
use crate::event::fields::{label_of, store_attribute, store_feature, ExtraFeatures, Fields, Kept, Text};
use crate::event::hashing::{attribute_hash, event_id_hash, owner_worker, user_key};
use crate::event::scan;
use crate::features::OWN_FEATURE_NAMES;
use crate::time::epoch::{epoch_ms_of_number, TimestampUnit};
use crate::time::rfc3339::{parse_rfc3339_ms, utc_hour};

/// Largest accepted record (SPEC §1).
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// Largest accepted |amount|: far beyond any payment, and small enough that window sums and
/// sums of squares of millions of amounts stay finite (a larger one is a bad event).
pub const MAX_AMOUNT: f64 = 1e15;

/// Event time in either SPEC §1 form: an RFC 3339 string or a number in `unit`, from the raw
/// JSON text of the value (so a number's decimal digits are read exactly); `None` for null.
pub(crate) fn event_time(raw: &str, unit: TimestampUnit) -> Result<Option<i64>, String> {
    let reason = |e: crate::time::rfc3339::TimeError| e.to_string();
    match raw.as_bytes().first() {
        Some(b'"') => {
            let text: Text = serde_json::from_str(raw).map_err(|e| e.to_string())?;
            parse_rfc3339_ms(&text.0).map(Some).map_err(reason)
        }
        Some(b'-' | b'0'..=b'9') => epoch_ms_of_number(raw, unit).map(Some).map_err(reason),
        Some(b'n') => Ok(None),
        _ => Err("expected an RFC 3339 string or a number since the epoch".to_owned()),
    }
}

/// A finite number, or null (missing).
struct Number(Option<f64>);

/// Reads a finite number or null as a [`Number`].
struct NumberVisitor;

impl Visitor<'_> for NumberVisitor {
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

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumberVisitor)
    }
}

/// Walks the top-level object, writing extras straight into the batch's slots.
struct RecordSeed<'a> {
    extras: &'a ExtraFeatures,
    unit: TimestampUnit,
    kept: &'a mut Kept,
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
                    let raw: &RawValue = map.next_value().map_err(|e| field_error("timestamp", e))?;
                    fields.timestamp = event_time(raw.get(), self.unit).map_err(|e| field_error("timestamp", e))?;
                }
                "value" => {
                    let raw: &RawValue = map.next_value()?;
                    fields.value = serde_json::from_str::<Number>(raw.get()).ok().and_then(|n| n.0).unwrap_or(f64::NAN);
                }
                "features" => {
                    let seed = FeaturesSeed { extras: self.extras, kept: &mut *self.kept, own: &mut fields.own };
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

/// A `features` value: a number (or null), or a string attribute.
enum FeatureValue<'de> {
    Number(Number),
    Attribute(Text<'de>),
}

impl<'de> Deserialize<'de> for FeatureValue<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FeatureValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a finite number, null or a string")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<FeatureValue<'de>, E> {
                NumberVisitor.visit_f64(v).map(FeatureValue::Number)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FeatureValue<'de>, E> {
                NumberVisitor.visit_i64(v).map(FeatureValue::Number)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FeatureValue<'de>, E> {
                NumberVisitor.visit_u64(v).map(FeatureValue::Number)
            }
            fn visit_unit<E: de::Error>(self) -> Result<FeatureValue<'de>, E> {
                NumberVisitor.visit_unit().map(FeatureValue::Number)
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<FeatureValue<'de>, E> {
                Ok(FeatureValue::Attribute(Text(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FeatureValue<'de>, E> {
                Ok(FeatureValue::Attribute(Text(Cow::Owned(v.to_owned()))))
            }
        }
        d.deserialize_any(V)
    }
}

struct FeaturesSeed<'a> {
    extras: &'a ExtraFeatures,
    kept: &'a mut Kept,
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
            let value: FeatureValue = map.next_value().map_err(|e| field_error(&format!("features.{name}"), e))?;
            match value {
                FeatureValue::Number(value) => {
                    store_feature(name, value.0.unwrap_or(f64::NAN), self.extras, self.kept, self.own)
                }
                // An attribute (SPEC §1): never a numeric input, so not one of the own features.
                FeatureValue::Attribute(_) if OWN_FEATURE_NAMES.contains(&name) => {
                    return Err(field_error(&format!("features.{name}"), "expected a finite number or null"))
                }
                FeatureValue::Attribute(text) => store_attribute(name, &text.0, self.extras, self.kept),
            }
        }
        Ok(())
    }
}

/// Turns raw records into events or dead letters, routing each event to the batch of the
/// worker that owns its user.
#[derive(Clone, Debug, Default)]
pub struct EventParser {
    extras: ExtraFeatures,
    timestamp_unit: TimestampUnit,
    kept: Kept,
}

/// What a source knows of a record besides its bytes, for the fields the record may lack.
#[derive(Clone, Copy, Debug, Default)]
pub struct Envelope<'a> {
    /// The transport's time for the record (a Kafka message's timestamp, an HTTP request's
    /// receive time), taken when the record has no `timestamp`.
    pub timestamp: Option<(i64, TimestampSource)>,
    /// The id for a record without `eventId` (one generated for an HTTP request).
    pub event_id: Option<&'a str>,
}

impl EventParser {
    /// A parser keeping the given extra features, reading numeric timestamps by magnitude.
    pub fn new(extras: ExtraFeatures) -> Self {
        let kept = Kept::new(&extras);
        EventParser { extras, timestamp_unit: TimestampUnit::Auto, kept }
    }

    /// The same parser, reading numeric timestamps in `unit`.
    pub fn with_timestamp_unit(self, unit: TimestampUnit) -> Self {
        EventParser { timestamp_unit: unit, ..self }
    }

    /// The extra features kept.
    pub fn extras(&self) -> &ExtraFeatures {
        &self.extras
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
        self.parse_enveloped(raw, origin, Envelope::default(), batches, local)
    }

    /// [`parse_into`](Self::parse_into) a record whose transport supplies what the record
    /// may lack (SPEC §1: a Kafka message's time, an HTTP request's receive time and id).
    pub fn parse_enveloped(
        &mut self,
        raw: &[u8],
        origin: Origin,
        envelope: Envelope<'_>,
        batches: &mut [EventBatch],
        local: usize,
    ) -> Option<usize> {
        match self.try_parse(raw, origin, envelope, batches) {
            Ok(dest) => Some(dest),
            Err(reason) => {
                batches[local].dead.push(DeadLetter::new(raw, reason, origin));
                None
            }
        }
    }

    fn try_parse(
        &mut self,
        raw: &[u8],
        origin: Origin,
        envelope: Envelope<'_>,
        batches: &mut [EventBatch],
    ) -> Result<usize, String> {
        if raw.len() > MAX_EVENT_BYTES {
            return Err(format!("event is {} bytes, more than the 1 MiB limit", raw.len()));
        }
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Err("empty record".to_owned());
        }
        let text = std::str::from_utf8(raw).map_err(|e| format!("not valid UTF-8: {e}"))?;
        self.kept.clear();
        let fields = match scan::scan(text, &self.extras, self.timestamp_unit, &mut self.kept) {
            Some(fields) => fields,
            None => {
                self.kept.clear();
                parse_fields_serde(text, &self.extras, self.timestamp_unit, &mut self.kept)?
            }
        };
        validate(fields, text, origin, envelope, (&self.extras, &mut self.kept), batches)
    }
}

/// The generic parse: a serde walk that reads any valid record and names what is wrong
/// with an invalid one.
pub(crate) fn parse_fields_serde<'de>(
    raw: &'de str,
    extras: &ExtraFeatures,
    unit: TimestampUnit,
    kept: &mut Kept,
) -> Result<Fields<'de>, String> {
    let mut de = serde_json::Deserializer::from_str(raw);
    let fields = RecordSeed { extras, unit, kept }.deserialize(&mut de).map_err(|e| e.to_string())?;
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
    envelope: Envelope<'_>,
    (kept_names, kept): (&ExtraFeatures, &mut Kept),
    batches: &mut [EventBatch],
) -> Result<usize, String> {
    let event_id = non_empty("eventId", fields.event_id.or(envelope.event_id.map(|id| Text(Cow::Borrowed(id)))))?;
    let user_id = non_empty("userId", fields.user_id)?;
    let (timestamp_ms, timestamp_source) = match (fields.timestamp, envelope.timestamp) {
        (Some(ms), _) => (ms, TimestampSource::Event),
        (None, Some(stamped)) => stamped,
        (None, None) => return Err("missing timestamp".to_owned()),
    };
    let mut own = fields.own;
    if own[0].is_nan() {
        own[0] = fields.value;
    }
    if own[0].is_nan() {
        return Err("missing features.amount (and no numeric top-level value)".to_owned());
    }
    if own[0].abs() > MAX_AMOUNT {
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
    if let Some(slot) = kept_names.user_slot() {
        kept.attrs[slot] = attribute_hash(&user_id);
    }
    let batch = &mut batches[dest];
    batch.extras.extend_from_slice(&kept.extras);
    batch.attrs.extend_from_slice(&kept.attrs);
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
        own,
        hour,
        label: fields.label,
        timestamp_source,
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
        let line = r#"{"eventId":"e\"1","userId":"u","timestamp":1735520400000,"features":{"amount":1}}"#;
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
            (r#"{"eventId":"e","userId":"u","timestamp":true,"features":{"amount":1}}"#, "timestamp"),
            (r#"{"eventId":"e","userId":"u","timestamp":1e400,"features":{"amount":1}}"#, "timestamp"),
            (r#"{"eventId":"e","userId":"u","timestamp":1,"value":"5"}"#, "missing features.amount"),
            (r#"{"eventId":"e","userId":"u","timestamp":1,"features":{"amount":"1"}}"#, "features.amount"),
            (r#"{"eventId":"e","userId":"u","timestamp":1,"features":{"amount":1e999}}"#, "out of range"),
            (r#"{"eventId":"e","userId":"u","timestamp":1,"features":{"amount":1,"hour_of_day":24}}"#, "hour_of_day"),
            (r#"{"eventId":"e","userId":"u","timestamp":1,"features":{"amount":1},"label":2}"#, "label"),
            (r#"{"eventId":"e","userId":"u","timestamp":9999999999999999999999,"features":{"amount":1}}"#, "years"),
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

    fn parse_with(line: &str, envelope: Envelope<'_>, unit: TimestampUnit) -> EventBatch {
        let mut batches = [EventBatch::default()];
        let mut parser = EventParser::new(ExtraFeatures::default()).with_timestamp_unit(unit);
        parser.parse_enveloped(line.as_bytes(), Origin::default(), envelope, &mut batches, 0);
        std::mem::take(&mut batches[0])
    }

    #[test]
    fn the_envelope_fills_only_what_the_record_lacks() {
        let stamped = Envelope { timestamp: Some((1_000, TimestampSource::Message)), event_id: Some("gen-1") };
        let bare = parse_with(r#"{"userId":"u","value":3}"#, stamped, TimestampUnit::Auto);
        let event = &bare.events[0];
        assert_eq!((event.timestamp_ms, event.timestamp_source), (1_000, TimestampSource::Message));
        assert_eq!(event.event_id.str(&bare.text), "gen-1");
        assert_eq!(event.own[0], 3.0);
        let own = parse_with(
            r#"{"eventId":"e","userId":"u","timestamp":2,"features":{"amount":1}}"#,
            stamped,
            TimestampUnit::Seconds,
        );
        let event = &own.events[0];
        assert_eq!((event.timestamp_ms, event.timestamp_source), (2_000, TimestampSource::Event));
        assert_eq!(event.event_id.str(&own.text), "e");
        let none = parse_with(r#"{"userId":"u","value":3}"#, Envelope::default(), TimestampUnit::Auto);
        assert_eq!(none.dead[0].error, "missing eventId");
    }

    #[test]
    fn every_form_of_an_instant_parses_alike() {
        let forms = [
            "1735516800",
            "1735516800.0",
            "1735516800000",
            "1735516800000000",
            "1735516800000000000",
            "\"2024-12-30T00:00:00Z\"",
        ];
        for form in forms {
            // Through the scan, and through the serde walk (an escape in the id defers to it).
            for id in ["e", "\\u0065"] {
                let line = format!(r#"{{"eventId":"{id}","userId":"u","timestamp":{form},"features":{{"amount":1}}}}"#);
                let batch = parse(&line);
                assert_eq!(batch.events.len(), 1, "{line}: {:?}", batch.dead);
                assert_eq!(batch.events[0].timestamp_ms, 1_735_516_800_000, "{line}");
            }
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
