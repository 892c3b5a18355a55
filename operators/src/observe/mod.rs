//! Observe: the job's metrics, defined in one place, the operator that counts output chunks
//! into them, and per-operator timings from timely's log.
//!
//! Owns: `metrics`, `chunks`, `operator_timing`.
//! May use: `batch`, `decide` (dead-letter reasons), `time`.

pub mod chunks;
pub mod metrics;
pub mod operator_timing;
