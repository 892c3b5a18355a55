//! Reusable pieces of vigil's dataflow: pure cores (parsing, window math, features, model,
//! decisions) and the thin timely operators that move batches around them.

pub mod batch;
pub mod calibration;
pub mod clock;
pub mod dead_letter;
pub mod decide;
pub mod enrich;
pub mod evaluation;
pub mod event;
pub mod exact_sum;
pub mod features;
pub mod file_sink;
pub mod file_source;
pub mod generator;
pub mod generator_source;
pub mod hashing;
pub mod http_reply;
pub mod http_source;
pub mod infer;
pub mod json_out;
pub mod kafka_client;
pub mod kafka_sink;
pub mod kafka_source;
pub mod metrics;
pub mod model;
pub mod named_map;
pub mod observe;
pub mod offsets;
pub mod operator_timing;
pub mod prefetch;
pub mod reasons;
pub mod source;
pub mod time;
pub mod training;
pub mod user_state;
pub mod window_state;
