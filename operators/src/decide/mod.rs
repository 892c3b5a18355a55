//! Decide: threshold, confidence and reasons of every scored event, rendered as decision
//! records, alerts and dead letters into the output chunk the sinks write.
//!
//! Owns: `decision` (the operator and the record rendering), `dead_letter` (dead-letter records
//! and the reasons they are counted by).
//! May use: `batch`, `json_out`, `model`, `named_map`, `time`.

pub mod dead_letter;
pub mod decision;
