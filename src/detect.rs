//! What the detect API reads of a request before the dataflow parses it (SPEC §6): whether it
//! has an `eventId` (one is generated if not), and the keys of its `features` that name a
//! computed feature, which the answer lists.
//!
//! A client of the system vigil replaces sends its own `amount_ratio` and the like. The window
//! state's value is always the one scored (a client cannot talk its way past its own
//! history), and the answer says which keys were set aside so the caller is not misled.

use std::borrow::Cow;
use std::collections::BTreeMap;

use operators::features::WINDOW_FEATURE_NAMES;
use serde::de::IgnoredAny;
use serde::Deserialize;

/// The part of a request body read here; a body that does not parse this far is left to the
/// event parser, which names the error.
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(rename = "eventId", default)]
    event_id: Option<IgnoredAny>,
    #[serde(borrow, default)]
    features: Option<BTreeMap<Cow<'a, str>, IgnoredAny>>,
}

/// What a request body says of itself.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Peek {
    /// The body has an `eventId` (or does not parse, which the event parser will report).
    pub has_event_id: bool,
    /// The keys of the body's `features` that are computed by the job, in the order of SPEC §2.
    pub ignored_features: Vec<&'static str>,
}

/// Reads what the detect API needs of `body`.
pub fn peek(body: &[u8]) -> Peek {
    let Ok(Body { event_id, features }) = serde_json::from_slice::<Body>(body) else {
        return Peek { has_event_id: true, ignored_features: Vec::new() };
    };
    let computed = |name: &&str| features.as_ref().is_some_and(|f| f.contains_key(*name));
    Peek {
        has_event_id: event_id.is_some(),
        ignored_features: WINDOW_FEATURE_NAMES.into_iter().filter(computed).collect(),
    }
}

/// The decision record `decision` (one JSON object) with `"ignored_features": [...]` added.
pub fn with_ignored_features(mut decision: Vec<u8>, ignored: &[&str]) -> Vec<u8> {
    if decision.last() != Some(&b'}') {
        return decision;
    }
    decision.pop();
    decision.extend_from_slice(b",\"ignored_features\":");
    // Infallible: a list of plain strings.
    decision.extend_from_slice(&serde_json::to_vec(ignored).unwrap_or_else(|_| b"[]".to_vec()));
    decision.push(b'}');
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_computed_keys_only() {
        let ignored = |body: &[u8]| peek(body).ignored_features;
        let body =
            br#"{"eventId":"t","userId":"alice-123","value":5000,"features":{"amount_ratio":33.3,"v1":2,"cnt_1h":9}}"#;
        assert_eq!(ignored(body), ["cnt_1h", "amount_ratio"]);
        assert!(ignored(br#"{"features":{"amount":1}}"#).is_empty());
        assert!(ignored(br#"{"value":1}"#).is_empty());
        assert!(ignored(b"not json").is_empty());
        assert!(ignored(br#"{"features":[1]}"#).is_empty());
    }

    #[test]
    fn tells_whether_an_event_id_is_there() {
        assert!(peek(br#"{"eventId":"t","value":1}"#).has_event_id);
        assert!(!peek(br#"{"userId":"u","value":1}"#).has_event_id);
        // A body that does not parse gets no generated id: the parser names its error.
        assert!(peek(b"not json").has_event_id);
    }

    #[test]
    fn adds_the_list_to_the_record() {
        let record = with_ignored_features(br#"{"eventId":"e"}"#.to_vec(), &["amount_ratio"]);
        let value: serde_json::Value = serde_json::from_slice(&record).unwrap();
        assert_eq!(value["ignored_features"], serde_json::json!(["amount_ratio"]));
        assert_eq!(value["eventId"], "e");
        let empty = with_ignored_features(br#"{"eventId":"e"}"#.to_vec(), &[]);
        assert_eq!(empty, br#"{"eventId":"e","ignored_features":[]}"#);
    }
}
