//! Offline learning: training the fraud model, calibrating its score and choosing its
//! threshold, and evaluating it. None of this runs inside the dataflow; the `vigil train`,
//! `eval` and `report` commands use it, and it writes model files that
//! `operators::model::file` loads.
//!
//! May use: `operators` (the model type and its file format, hashing). The operators crate never
//! depends on this one, so the hot path carries no training code or dependencies (candle-nn).

pub mod calibration;
pub mod evaluation;
pub mod gbdt;
pub mod outcome;
pub mod select;
pub mod training;
pub mod unsupervised;
