//! Reusable pieces of vigil's dataflow: pure cores (parsing, window math, features, model,
//! decisions) and the thin timely operators that move batches around them.

pub mod exact_sum;
pub mod features;
pub mod hashing;
pub mod time;
pub mod user_state;
pub mod batch;
pub mod event;
