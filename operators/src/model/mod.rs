//! Enrich and infer: the model's input row is assembled from the window features and the
//! event's own features, scored by the model (an MLP, gradient-boosted trees or an
//! unsupervised rarity model) in one batched candle pass, and the high scores are explained by
//! the model's own per-input contributions.
//!
//! Owns: `enrich`, `infer`, `file` (the model file and the dispatch to its kind), the kinds'
//! scorers `mlp`, `trees` (tables and attribution) with `tree_walk` (the stream's fast walk),
//! `copula`, then `explain` and `reasons` (the analyst's wording, shared by explanations and
//! decide's rule reasons).
//! Training, calibration and evaluation never run in the dataflow: they are the `learning`
//! crate, which uses this module (never the other way round).
//! May use: `batch`, `event`, `features`, `json_out`, `named_map`, `time`.

pub mod copula;
pub mod enrich;
pub mod explain;
pub mod file;
pub mod infer;
pub mod mlp;
pub mod reasons;
pub mod tree_walk;
pub mod trees;
