//! Parse: a source's raw record becomes a [`ParsedEvent`](crate::batch::ParsedEvent) in an
//! [`EventBatch`](crate::batch::EventBatch) or a dead letter naming the reason, and gets the
//! user key that the exchange routes it by.
//!
//! Owns: `parse` (the serde walk that names every error, and [`parse::EventParser`]), `scan`
//! (the one-pass fast path for the common record shape), `fields` (what both paths fill, so
//! neither depends on the other), `hashing` (user key, key groups, owning worker).
//! May use: `batch`, `features` (the own-feature names), `time`, `json_out`.

pub mod fields;
pub mod hashing;
pub mod parse;
mod scan;
