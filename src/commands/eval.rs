//! `vigil eval`: scores a labelled file with the model through the same features, enrich and
//! infer code as `run`, prints detection quality and, with `--report DIR`, writes the model
//! report (`crate::report`).

use std::path::Path;
use std::time::Instant;

use dataflows::scoring::load_model;
use learning::evaluation::{evaluate, Evaluation};
use operators::model::file::Model;
use operators::model::infer::score;

use crate::cli::EvalArgs;
use crate::commands::default_model_path;
use crate::commands::features::{extract_with_progress, input_file};
use crate::error::UsageError;
use crate::progress::Progress;
use crate::report::importance::{permutation_importance, Table};
use crate::report::{self, ReportData};

/// Seed of the permutation-importance shuffles: fixed, so a report is reproducible.
const IMPORTANCE_SEED: u64 = 42;

/// The labelled events as the model saw them.
struct Labelled {
    /// Model inputs, row-major.
    rows: Vec<f32>,
    scores: Vec<f32>,
    labels: Vec<u8>,
}

/// Scores every labelled event of `--input` and evaluates.
pub fn execute(args: EvalArgs) -> anyhow::Result<()> {
    let input = input_file(&args.data.input)?;
    let model_path = args.model.clone().unwrap_or_else(default_model_path);
    let (model, layout) = load_model(&model_path).map_err(|e| UsageError(e.to_string()))?;
    let threshold = args.threshold.unwrap_or(model.metadata().threshold);
    let mut extracted = extract_with_progress(input, layout.extras().clone(), Default::default(), &args.data)?;
    let mut labelled = Labelled { rows: Vec::new(), scores: Vec::new(), labels: Vec::new() };
    let d = model.width();
    for batch in &mut extracted.batches {
        layout.fill(batch);
        score(&model, batch, f64::INFINITY)?;
    }
    for (batch, r) in extracted.rows() {
        if batch.rows[r].label >= 0 {
            labelled.scores.push(batch.scores[r]);
            labelled.labels.push(batch.rows[r].label as u8);
            if args.report.is_some() {
                labelled.rows.extend_from_slice(&batch.inputs[r * d..(r + 1) * d]);
            }
        }
    }
    if labelled.labels.is_empty() {
        return Err(UsageError("--input: no labelled events to evaluate".into()).into());
    }
    let evaluation = evaluate(&labelled.scores, &labelled.labels, threshold);
    if let Some(dir) = &args.report {
        let input_name = args.data.input.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
        write_report(dir, &model, &labelled, &evaluation, &input_name)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&evaluation)?);
    } else {
        print_text(&evaluation, &model.metadata().version);
    }
    Ok(())
}

/// Computes the permutation importance through the model (with progress: one forward pass
/// over the whole file per input) and writes the report.
fn write_report(
    dir: &Path,
    model: &Model,
    data: &Labelled,
    evaluation: &Evaluation,
    input: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let names: Vec<String> = model.metadata().inputs.iter().map(|i| i.name.clone()).collect();
    let progress = Progress::new("permutation importance", Some(names.len() as u64), true);
    let table = Table { rows: &data.rows, labels: &data.labels, names: &names };
    let importance = permutation_importance(
        &table,
        IMPORTANCE_SEED,
        |rows, out| model.score_batch(rows, out),
        |j| progress.set(j as u64 + 1),
    )?;
    progress.finish(names.len() as u64);
    let report = ReportData {
        model_version: &model.metadata().version,
        input,
        scores: &data.scores,
        labels: &data.labels,
        evaluation,
        importance: &importance,
    };
    report::write(dir, &report)?;
    tracing::info!(dir = %dir.display(), seconds = started.elapsed().as_secs_f64(), "report written");
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
