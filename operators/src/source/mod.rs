//! Source: readers of records (file, synthetic generator, Kafka, HTTP) behind one block
//! source that cuts input into epochs, parses each block and sends every event to the worker
//! owning its user.
//!
//! Owns: `block` (the parallel, backpressured timely source over any [`block::BlockReader`]),
//! `file`, `generator` (the generator as a reader), `kafka` and `kafka_client` (the librdkafka
//! settings shared with the Kafka sink), `http` (the detect API's request channel).
//! May use: `batch`, `event`, `generator`, `state::checkpoint` (barriers and offsets), `time`.

pub mod block;
pub mod file;
pub mod generator;
pub mod http;
pub mod kafka;
pub mod kafka_client;
