//! Time, both kinds: event time (RFC 3339 instants and numbers since the epoch, parsed and
//! rendered on the hot path) and the wall clock (ingest instants, latencies, checkpoint stamps).
//!
//! Owns: `rfc3339` (calendar arithmetic, RFC 3339 parse/render, the `HOUR_MS`/`DAY_MS`
//! constants), `epoch` (numeric timestamps and their units), `clock` (the process clock),
//! `duration` (durations as users write them).
//! May use: nothing else of this crate — every stage uses it.

pub mod clock;
pub mod duration;
pub mod epoch;
pub mod rfc3339;
