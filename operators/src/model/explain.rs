//! Reasons from the model: for each decision with a high score, the inputs that pushed the
//! score up most, ranked by the model's own per-input contributions
//! ([`Model::contributions`]: the logit drop when one input is set to its training mean)
//! and rendered in the analyst's wording of `model/reasons.rs`.
//!
//! Only rows scoring above a floor (the model's block threshold) are explained: they are the
//! decisions an analyst reviews, and they are rare, so the `width + 1`-fold forward pass of
//! the occlusion stays a small share of inference (measured in docs/design.md). Invariant: a
//! row's reasons depend only on that row, never on the batch it arrives in, and ties between
//! equal contributions are broken by input order, so reasons are deterministic.

use crate::batch::{ExplainedRow, ScoredBatch};
use crate::model::file::{Model, ModelError};
use crate::model::reasons::{fact_of, write_input_reason, write_rarity_reason, Fact};

/// Most reasons named per decision.
pub const MAX_REASONS: usize = 3;
/// Smallest logit contribution worth naming: below it an input changes the odds by less than
/// 5 %, which no analyst would call a reason.
const MIN_CONTRIBUTION: f32 = 0.05;
/// Smallest rarity term an unsupervised model's reason names: `−ln(2·0.05)`, an input beyond
/// 95 % of the training events on its side.
const MIN_RARITY: f32 = std::f32::consts::LN_10;

/// Explains every row of `batch` (inputs and scores filled) whose score is above `floor`,
/// replacing `batch.explanations`.
pub fn explain(model: &Model, batch: &mut ScoredBatch, floor: f64) -> Result<(), ModelError> {
    batch.explanations.clear();
    let d = model.width();
    let picked: Vec<usize> = (0..batch.scores.len()).filter(|&i| f64::from(batch.scores[i]) > floor).collect();
    if picked.is_empty() || d == 0 {
        return Ok(());
    }
    let mut rows = Vec::with_capacity(picked.len() * d);
    for &i in &picked {
        rows.extend_from_slice(&batch.inputs[i * d..(i + 1) * d]);
    }
    let mut contributions = Vec::with_capacity(rows.len());
    model.contributions(&rows, &mut contributions)?;
    let inputs = &model.metadata().inputs;
    let facts: Vec<Fact> = inputs.iter().enumerate().map(|(j, input)| fact_of(j, &input.name)).collect();
    let out = &mut batch.explanations;
    let mut top = Vec::with_capacity(d);
    // Unsupervised models phrase an input by its rarity and name only rare ones.
    let mut rarity = Vec::new();
    model.rarity(&rows, &mut rarity)?;
    if !rarity.is_empty() {
        for (c, r) in contributions.iter_mut().zip(&rarity) {
            if *r < MIN_RARITY {
                *c = 0.0;
            }
        }
    }
    for (k, ((&i, row), contributions)) in
        picked.iter().zip(rows.chunks_exact(d)).zip(contributions.chunks_exact(d)).enumerate()
    {
        top_inputs(contributions, row, &facts, MIN_CONTRIBUTION, &mut top);
        for (n, &j) in top.iter().enumerate() {
            if n > 0 {
                out.text.push(b',');
            }
            let (name, value, mean) = (&inputs[j].name, f64::from(row[j]), inputs[j].mean);
            match rarity.get(k * d + j) {
                Some(&term) => write_rarity_reason(&mut out.text, name, value, mean, f64::from(term)),
                None => write_input_reason(&mut out.text, name, value, mean),
            }
        }
        out.rows.push(ExplainedRow { row: i as u32, end: out.text.len() as u32, count: top.len() as u32 });
    }
    Ok(())
}

/// The inputs with the largest contributions of at least `floor`, largest first
/// (ties by input order), at most [`MAX_REASONS`], one per fact (`facts[j]` is input j's): an
/// input whose fact a stronger one already names is passed over. Missing values (`row[j]` not
/// finite) are never named: the model saw the training mean, not a value an analyst could
/// check. Replaces the contents of `top` (a buffer reused across rows).
pub fn top_inputs(contributions: &[f32], row: &[f32], facts: &[Fact], floor: f32, top: &mut Vec<usize>) {
    top.clear();
    top.extend((0..contributions.len()).filter(|&j| contributions[j] >= floor && row[j].is_finite()));
    // An equal contribution stays behind the earlier input.
    top.sort_unstable_by(|&a, &b| contributions[b].total_cmp(&contributions[a]).then(a.cmp(&b)));
    let mut kept = 0;
    for at in 0..top.len() {
        let j = top[at];
        if kept < MAX_REASONS && !top[..kept].iter().any(|&k| facts[k] == facts[j]) {
            top[kept] = j;
            kept += 1;
        }
    }
    top.truncate(kept);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Explanations;
    use crate::batch::ScoredRow;
    use crate::model::file::tests::{model_from, random_model, random_rows};
    use crate::model::file::InputSpec;

    fn reasons_of(ex: &Explanations, row: usize) -> Option<Vec<String>> {
        let (text, count) = ex.of(row)?;
        let list: Vec<String> = serde_json::from_slice(&[b"[", text, b"]"].concat()).unwrap();
        assert_eq!(list.len(), count);
        Some(list)
    }

    fn batch_of(rows: &[f32], d: usize, score: f32) -> ScoredBatch {
        let mut batch = ScoredBatch::default();
        let n = rows.len() / d;
        batch.rows.resize(n, ScoredRow::default());
        batch.inputs = rows.to_vec();
        batch.scores = vec![score; n];
        batch
    }

    #[test]
    fn linear_model_names_the_inputs_by_their_hand_computed_contributions() -> Result<(), ModelError> {
        let spec = |name: &str, mean: f64, std: f64| InputSpec { name: name.into(), fill: mean, mean, std };
        let inputs =
            vec![spec("amount_ratio", 1.0, 2.0), spec("v14", 0.0, 1.0), spec("cnt_1h", 2.0, 1.0), spec("v3", 0.0, 1.0)];
        // z = 2·(ratio−1)/2 − (v14 − 0) + 0.5·(cnt − 2) + 3·v3 + 0.1
        let dense =
            vec![crate::model::mlp::Dense { in_dim: 4, out_dim: 1, w: vec![2.0, -1.0, 0.5, 3.0], b: vec![0.1] }];
        let model = model_from(inputs, dense);
        // Contributions: ratio 6, v14 4, cnt 0.5, v3 −3 (pushes the score down: not a reason).
        let mut batch = batch_of(&[7.0, -4.0, 3.0, -1.0], 4, 0.99);
        explain(&model, &mut batch, 0.5)?;
        assert_eq!(
            reasons_of(&batch.explanations, 0).unwrap(),
            [
                "amount 7.0x the user's 7d mean",
                "v14 unusually low (-4.0 vs mean 0.0)",
                "3 transactions in the last hour"
            ]
        );
        // cnt_1h at 2.02: contribution 0.01 is below the floor of a reason; a missing v14 is never named.
        let mut batch = batch_of(&[7.0, f32::NAN, 2.02, 0.0], 4, 0.99);
        explain(&model, &mut batch, 0.5)?;
        assert_eq!(reasons_of(&batch.explanations, 0).unwrap(), ["amount 7.0x the user's 7d mean"]);
        // Below the floor: not explained at all.
        let mut batch = batch_of(&[7.0, -4.0, 3.0, -1.0], 4, 0.3);
        explain(&model, &mut batch, 0.5)?;
        assert!(batch.explanations.of(0).is_none());
        Ok(())
    }

    #[test]
    fn top_inputs_ranks_by_contribution_with_ties_in_input_order() {
        let row = [1.0; 6];
        let facts: Vec<Fact> = (0..6).map(Fact::Input).collect();
        let mut top = vec![7];
        top_inputs(&[0.2, 0.9, 0.2, -5.0, 0.9, 0.01], &row, &facts, MIN_CONTRIBUTION, &mut top);
        assert_eq!(top, [1, 4, 0]);
        top_inputs(&[0.0, 0.04, -1.0], &row[..3], &facts[..3], MIN_CONTRIBUTION, &mut top);
        assert!(top.is_empty());
    }

    #[test]
    fn each_fact_is_named_once_by_its_strongest_input() {
        // Inputs 0–2 all measure the amount; the weaker two give way to other facts.
        let row = [1.0; 6];
        let names = ["mean_1h", "amount_ratio", "max_7d", "cnt_1h", "v14", "location_new"];
        let facts: Vec<Fact> = names.iter().enumerate().map(|(j, n)| fact_of(j, n)).collect();
        let mut top = Vec::new();
        top_inputs(&[0.8, 0.9, 0.7, 0.3, 0.2, 0.1], &row, &facts, MIN_CONTRIBUTION, &mut top);
        assert_eq!(top, [1, 3, 4]);
        top_inputs(&[0.8, 0.9, 0.7, 0.0, 0.0, 0.0], &row, &facts, MIN_CONTRIBUTION, &mut top);
        assert_eq!(top, [1]);
    }

    #[test]
    fn shipped_model_names_a_huge_amount_ratio_first() -> Result<(), ModelError> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/default.safetensors");
        let model = Model::load(&path)?;
        let inputs = &model.metadata().inputs;
        let mut row: Vec<f32> = inputs.iter().map(|i| i.mean as f32).collect();
        let ratio = inputs.iter().position(|i| i.name == "amount_ratio").expect("the shipped model uses amount_ratio");
        row[ratio] = 25.0;
        let mut batch = batch_of(&row, row.len(), 1.0);
        explain(&model, &mut batch, 0.0)?;
        let reasons = reasons_of(&batch.explanations, 0).unwrap();
        assert_eq!(reasons.first().map(String::as_str), Some("amount 25.0x the user's 7d mean"), "{reasons:?}");
        Ok(())
    }

    #[test]
    fn reasons_do_not_depend_on_batching() -> Result<(), ModelError> {
        let (d, n) = (12, 300);
        let model = random_model(d, &[32, 16], 4);
        let rows = random_rows(n, d, 8);
        let mut whole = batch_of(&rows, d, 0.9);
        // Every other row below the floor, so explained rows are not contiguous.
        for i in (1..n).step_by(2) {
            whole.scores[i] = 0.1;
        }
        explain(&model, &mut whole, 0.5)?;
        assert_eq!((0..n).filter(|&i| whole.explanations.of(i).is_some()).count(), n / 2);
        let mut at = 0;
        for size in [1usize, 37, 64].into_iter().cycle() {
            if at >= n {
                break;
            }
            let end = (at + size).min(n);
            let mut part = batch_of(&rows[at * d..end * d], d, 0.9);
            part.scores.copy_from_slice(&whole.scores[at..end]);
            explain(&model, &mut part, 0.5)?;
            for i in at..end {
                assert_eq!(reasons_of(&part.explanations, i - at), reasons_of(&whole.explanations, i), "row {i}");
            }
            at = end;
        }
        let mut again = batch_of(&rows, d, 0.9);
        again.scores.copy_from_slice(&whole.scores);
        explain(&model, &mut again, 0.5)?;
        assert_eq!(again.explanations.text, whole.explanations.text);
        Ok(())
    }
}
