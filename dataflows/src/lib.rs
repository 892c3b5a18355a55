//! vigil's job graphs, assembled from the operators crate. The scoring job and the
//! feature-extraction job share the same source → window-state prefix, so training and
//! serving compute features with the very same code.

pub mod feature_extraction;
pub mod input;
pub mod scoring;
