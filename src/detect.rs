//! What the detect API adds to a decision record (SPEC §6): the keys of the request's
//! `features` that name a computed feature.
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
    #[serde(borrow, default)]
    features: Option<BTreeMap<Cow<'a, str>, IgnoredAny>>,
}

/// The keys of the body's `features` that are computed by the job, in the order of SPEC §2.
pub fn ignored_features(body: &[u8]) -> Vec<&'static str> {
    let Ok(Body { features: Some(features) }) = serde_json::from_slice::<Body>(body) else { return Vec::new() };
    WINDOW_FEATURE_NAMES.into_iter().filter(|name| features.contains_key(*name)).collect()
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
        let body =
            br#"{"eventId":"t","userId":"alice-123","value":5000,"features":{"amount_ratio":33.3,"v1":2,"cnt_1h":9}}"#;
        assert_eq!(ignored_features(body), ["cnt_1h", "amount_ratio"]);
        assert!(ignored_features(br#"{"features":{"amount":1}}"#).is_empty());
        assert!(ignored_features(br#"{"value":1}"#).is_empty());
        assert!(ignored_features(b"not json").is_empty());
        assert!(ignored_features(br#"{"features":[1]}"#).is_empty());
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
