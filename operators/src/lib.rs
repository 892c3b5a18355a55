//! Reusable pieces of vigil's dataflow: pure cores (parsing, window math, features, model,
//! decisions) and the thin timely operators that move batches around them.
//!
//! The folders follow the dataflow (docs/design.md, "Dataflow"):
//! `source` ─► `event` (parse) ─► exchange by user (`event::hashing`) ─► `state` (window state,
//! checkpoints) ─► `model` (enrich, infer) ─► `decide` ─► `sink`, with `observe` beside them.
//! `batch` holds the containers that cross every boundary; `time`, `features` and `json_out`
//! are shared by all stages; `generator` is the synthetic workload. Offline learning lives in
//! the `learning` crate. A test (tests/module_graph.rs) keeps the module graph free of circles.

pub mod batch;
pub mod decide;
pub mod event;
pub mod features;
pub mod generator;
pub mod json_out;
pub mod model;
pub mod named_map;
pub mod observe;
pub mod sink;
pub mod source;
pub mod state;
pub mod time;
