//! `vigil eval`: scores a labelled file with the model through the same features, enrich and
//! infer code as `run`, and prints detection quality.

use dataflows::scoring::load_model;
use operators::evaluation::{evaluate, Evaluation};
use operators::infer::score;

use crate::cli::EvalArgs;
use crate::commands::default_model_path;
use crate::commands::features::{extract_with_progress, input_file};
use crate::error::UsageError;

/// Scores every labelled event of `--input` and evaluates.
pub fn execute(args: EvalArgs) -> anyhow::Result<()> {
    let input = input_file(&args.data.input)?;
    let model_path = args.model.clone().unwrap_or_else(default_model_path);
    let (model, layout) = load_model(&model_path).map_err(|e| UsageError(e.to_string()))?;
    let threshold = args.threshold.unwrap_or(model.metadata().threshold);
    let mut extracted = extract_with_progress(input, layout.extras().clone(), Default::default(), args.data.workers)?;
    for batch in &mut extracted.batches {
        layout.fill(batch);
        score(&model, batch)?;
    }
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    for (batch, r) in extracted.rows() {
        if batch.rows[r].label >= 0 {
            scores.push(batch.scores[r]);
            labels.push(batch.rows[r].label as u8);
        }
    }
    if labels.is_empty() {
        return Err(UsageError("--input: no labelled events to evaluate".into()).into());
    }
    let evaluation = evaluate(&scores, &labels, threshold);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&evaluation)?);
    } else {
        print_text(&evaluation, &model.metadata().version);
    }
    Ok(())
}

fn print_text(e: &Evaluation, version: &str) {
    println!("model              {version}");
    println!("events             {} ({} fraud)", e.positives + e.negatives, e.positives);
    println!("PR-AUC             {:.4}", e.pr_auc);
    println!("ROC-AUC            {:.4}", e.roc_auc);
    println!("threshold          {}", e.threshold);
    println!("precision          {:.4}", e.precision);
    println!("recall             {:.4}", e.recall);
    println!("F1                 {:.4}", e.f1);
    println!("recall @ 1% FPR    {:.4}", e.recall_at_1pct_fpr);
}
