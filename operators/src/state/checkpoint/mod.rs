//! Checkpoints of the window state and the source positions that go with it: the on-disk
//! store, the running job's barrier protocol (sources send barriers, window states write their
//! parts, the end of the dataflow completes a checkpoint, the Kafka sink's transactions wait for
//! it), and per-partition offsets.
//!
//! Owns: `store`, `protocol`, `offsets`.
//! May use: `batch`, `event` (key groups), `state::user`, `time`.

pub mod offsets;
pub mod protocol;
pub mod store;
