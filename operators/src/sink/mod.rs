//! Sink: rendered output chunks to files, to Kafka topics (acknowledged per epoch, in
//! transactions in exactly-once mode) and back to waiting HTTP requests.
//!
//! Owns: `file`, `kafka`, `http_reply`.
//! May use: `batch`, `source` (the shared Kafka client, the HTTP request channel),
//! `state::checkpoint` (offsets, the transaction gate), `time`.

pub mod file;
pub mod http_reply;
pub mod kafka;
