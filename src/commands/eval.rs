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
use crate::commands::model_spec;
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

/// One model's result on the file.
struct Scored {
    model: Model,
    labelled: Labelled,
    evaluation: Evaluation,
}

/// Scores every labelled event of `--input` with each `--model` and evaluates; several models
/// are shown side by side.
pub fn execute(args: EvalArgs) -> anyhow::Result<()> {
    let paths = if args.model.is_empty() { vec![default_model_path()] } else { args.model.clone() };
    let results = paths.iter().map(|path| score_file(path, &args)).collect::<anyhow::Result<Vec<_>>>()?;
    let input_name = args.data.input.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
    if let Some(dir) = &args.report {
        if let [one] = results.as_slice() {
            write_report(dir, one, &input_name)?;
        } else {
            for r in &results {
                write_report(&dir.join(&r.model.metadata().version), r, &input_name)?;
            }
            let rows: Vec<report::compare::Row> = results
                .iter()
                .map(|r| report::compare::Row { meta: r.model.metadata(), evaluation: &r.evaluation })
                .collect();
            report::compare::write(dir, &input_name, &rows)?;
        }
    }
    match (args.json, results.as_slice()) {
        (true, [one]) => println!("{}", serde_json::to_string_pretty(&one.evaluation)?),
        (true, _) => {
            let all: Vec<serde_json::Value> = results
                .iter()
                .map(|r| {
                    let meta = r.model.metadata();
                    serde_json::json!({"model_version": meta.version, "kind": meta.kind, "evaluation": r.evaluation})
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
        (false, [one]) => print_text(&one.evaluation, &one.model.metadata().version),
        (false, _) => print_side_by_side(&results),
    }
    Ok(())
}

/// Scores the labelled events of `--input` with the model at `path`.
fn score_file(path: &Path, args: &EvalArgs) -> anyhow::Result<Scored> {
    let input = input_file(&args.data.input)?;
    let (model, layout) = load_model(path).map_err(|e| UsageError(e.to_string()))?;
    let threshold = args.threshold.unwrap_or(model.metadata().threshold);
    model_spec(layout.spec(), args.data.features.as_deref())?;
    let mut extracted = extract_with_progress(input, layout.extras().clone(), layout.spec(), &args.data)?;
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
    Ok(Scored { model, labelled, evaluation })
}

/// Computes the permutation importance through the model (with progress: one forward pass
/// over the whole file per input) and writes the report.
fn write_report(dir: &Path, scored: &Scored, input: &str) -> anyhow::Result<()> {
    let (model, data, evaluation) = (&scored.model, &scored.labelled, &scored.evaluation);
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
    println!("ECE                {:.4}", e.ece);
}

/// One column per model.
fn print_side_by_side(results: &[Scored]) {
    let column = |label: &str, cell: &dyn Fn(&Scored) -> String| {
        let cells: Vec<String> = results.iter().map(|r| format!("{:>22}", cell(r))).collect();
        println!("{label:<18} {}", cells.join(" "));
    };
    column("model", &|r| r.model.metadata().version.clone());
    column("kind", &|r| r.model.metadata().kind.clone());
    column("events", &|r| {
        format!("{} ({} fraud)", r.evaluation.positives + r.evaluation.negatives, r.evaluation.positives)
    });
    column("PR-AUC", &|r| format!("{:.4}", r.evaluation.pr_auc));
    column("ROC-AUC", &|r| format!("{:.4}", r.evaluation.roc_auc));
    column("threshold", &|r| format!("{}", r.evaluation.threshold));
    column("precision", &|r| format!("{:.4}", r.evaluation.precision));
    column("recall", &|r| format!("{:.4}", r.evaluation.recall));
    column("F1", &|r| format!("{:.4}", r.evaluation.f1));
    column("recall @ 1% FPR", &|r| format!("{:.4}", r.evaluation.recall_at_1pct_fpr));
    column("ECE", &|r| format!("{:.4}", r.evaluation.ece));
}
