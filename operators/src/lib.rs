//! Reusable pieces of vigil's dataflow: pure cores (parsing, window math, features, model,
//! decisions) and the thin timely operators that move batches around them.

pub mod exact_sum;
pub mod features;
pub mod hashing;
pub mod time;
pub mod user_state;
pub mod batch;
pub mod event;

pub mod metrics;
pub mod model;
pub mod training;
pub mod generator;

pub mod window_state;
pub mod json_out;
pub mod reasons;
pub mod enrich;
pub mod clock;
pub mod dead_letter;
pub mod decide;
pub mod file_source;
pub mod generator_source;
pub mod source;
pub mod file_sink;
pub mod infer;
