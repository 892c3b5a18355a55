//! The fields of one record as both parse paths fill them — the serde walk of `parse.rs`, which
//! names every error, and the one-pass fast path of `scan.rs` — and how a `features` entry is
//! stored. Shared here so that neither path depends on the other.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, Visitor};
use serde::{de, Deserialize};

use crate::event::hashing::{attribute_hash, number_attribute_hash};
use crate::features::spec::{FeatureSpec, USER_FIELD};
use crate::features::OWN_FEATURE_NAMES;

/// Which `features` keys to keep besides the own ones: extra numbers (the model's extra inputs,
/// the inputs entity windows aggregate), and attributes (SPEC §1: entity keys and the values
/// of `distinct`/`new`, kept as hashes of their text), each in order.
#[derive(Clone, Debug, Default)]
pub struct ExtraFeatures {
    names: Vec<String>,
    attributes: Vec<String>,
    /// The attribute slot of `userId`, found once rather than per event.
    user_slot: Option<usize>,
}

impl ExtraFeatures {
    /// Keeps the given extra feature names, in this order.
    pub fn new(names: Vec<String>) -> Self {
        ExtraFeatures { names, attributes: Vec::new(), user_slot: None }
    }

    /// The same, also keeping these attributes (`userId` is the event's user id).
    pub fn with_attributes(self, attributes: Vec<String>) -> Self {
        let user_slot = attributes.iter().position(|a| a == USER_FIELD);
        ExtraFeatures { attributes, user_slot, ..self }
    }

    /// The same, also keeping what the entity windows of `spec` read: their key fields and
    /// attributes, and the numeric inputs they aggregate.
    pub fn with_spec(mut self, spec: &FeatureSpec) -> Self {
        for input in spec.window_inputs() {
            if !OWN_FEATURE_NAMES.contains(&input.as_str()) && !self.names.contains(&input) {
                self.names.push(input);
            }
        }
        let mut attributes = std::mem::take(&mut self.attributes);
        for field in spec.attribute_fields() {
            if !attributes.contains(&field) {
                attributes.push(field);
            }
        }
        self.with_attributes(attributes)
    }

    /// The attribute slot that holds the event's `userId`, if it is kept.
    pub fn user_slot(&self) -> Option<usize> {
        self.user_slot
    }

    /// The kept attributes.
    pub fn attributes(&self) -> &[String] {
        &self.attributes
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

/// What one record leaves in the kept slots: extra numbers (NaN = absent) and attribute
/// hashes (0 = absent), reused from record to record.
#[derive(Clone, Debug, Default)]
pub(crate) struct Kept {
    pub(crate) extras: Vec<f64>,
    pub(crate) attrs: Vec<u64>,
}

impl Kept {
    /// Empty slots for what `kept` names.
    pub(crate) fn new(kept: &ExtraFeatures) -> Self {
        Kept { extras: vec![f64::NAN; kept.len()], attrs: vec![0; kept.attributes.len()] }
    }

    /// Every slot absent again.
    pub(crate) fn clear(&mut self) {
        self.extras.fill(f64::NAN);
        self.attrs.fill(0);
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

/// The fields of one record, before validation of presence.
pub(crate) struct Fields<'de> {
    pub(crate) event_id: Option<Text<'de>>,
    pub(crate) user_id: Option<Text<'de>>,
    pub(crate) timestamp: Option<i64>,
    pub(crate) own: [f64; 4],
    /// The top-level `value` (NaN when absent or not a number): the amount when
    /// `features.amount` is absent (SPEC §1).
    pub(crate) value: f64,
    pub(crate) has_features: bool,
    pub(crate) label: i8,
}

impl Fields<'_> {
    /// No field seen yet.
    pub(crate) fn empty() -> Self {
        Fields {
            event_id: None,
            user_id: None,
            timestamp: None,
            own: [f64::NAN; 4],
            value: f64::NAN,
            has_features: false,
            label: -1,
        }
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

/// Stores one numeric `features` entry: a named own feature, a kept extra, a kept attribute
/// (by its shortest decimal text, SPEC §1), or nothing.
pub(crate) fn store_feature(name: &str, value: f64, kept_names: &ExtraFeatures, kept: &mut Kept, own: &mut [f64; 4]) {
    if let Some(slot) = OWN_FEATURE_NAMES.iter().position(|n| *n == name) {
        own[slot] = value;
    } else if let Some(slot) = kept_names.names.iter().position(|n| n == name) {
        kept.extras[slot] = value;
    }
    if let Some(slot) = kept_names.attributes.iter().position(|n| n == name) {
        kept.attrs[slot] = if value.is_nan() { 0 } else { number_attribute_hash(value) };
    }
}

/// Stores one string `features` entry if it is a kept attribute.
pub(crate) fn store_attribute(name: &str, text: &str, kept_names: &ExtraFeatures, kept: &mut Kept) {
    if let Some(slot) = kept_names.attributes.iter().position(|n| n == name) {
        kept.attrs[slot] = attribute_hash(text);
    }
}
