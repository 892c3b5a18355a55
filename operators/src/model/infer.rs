//! Inference: one batched candle forward pass per scored batch (one per worker per epoch),
//! then the model's reasons for the rows above the job's block threshold (`model/explain.rs`).
//!
//! The model is loaded once per worker; candle runs on the worker's own thread (the binary
//! pins candle to one thread per worker, since extra threads fight the workers for cores).

use crate::named_map::NamedMapExt;
use timely::dataflow::Stream;

use crate::batch::ScoredBatch;
use crate::model::explain::explain;
use crate::model::file::Model;
use crate::time::clock::now_ns;

/// Scores one batch whose inputs are filled and explains the scores above `explain_above`
/// (the job's block threshold; infinity explains nothing), timing both.
pub fn score(model: &Model, batch: &mut ScoredBatch, explain_above: f64) -> Result<(), crate::model::file::ModelError> {
    let start = now_ns();
    batch.scores.clear();
    if !batch.rows.is_empty() {
        model.score_batch(&batch.inputs, &mut batch.scores)?;
    }
    explain(model, batch, explain_above)?;
    batch.infer_ns = now_ns() - start;
    Ok(())
}

/// Extension trait: `enriched.infer(model)`.
pub trait InferExt<'s> {
    /// Fills every batch's scores with one forward pass, and the reasons of scores above
    /// `explain_above`.
    fn infer(self, model: Model, explain_above: f64) -> Stream<'s, u64, Vec<ScoredBatch>>;
}

impl<'s> InferExt<'s> for Stream<'s, u64, Vec<ScoredBatch>> {
    fn infer(self, model: Model, explain_above: f64) -> Stream<'s, u64, Vec<ScoredBatch>> {
        self.map_in_place_named("Infer", move |batch| {
            if let Err(e) = score(&model, batch, explain_above) {
                // Shapes are checked when the model is loaded, so this is a bug, not bad
                // input: fail loudly rather than emit made-up scores.
                panic!("inference failed on a batch of {} events: {e}", batch.rows.len());
            }
        })
    }
}
