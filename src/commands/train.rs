//! `vigil train`: features from the same dataflow as `run`, then the candle MLP.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;
use dataflows::feature_extraction::extract;
use operators::enrich::InputLayout;
use operators::features::{OWN_FEATURE_NAMES, WINDOW_FEATURE_NAMES};
use operators::training::{train, TrainConfig, TrainingData};

use crate::cli::TrainArgs;
use crate::commands::features::input_file;
use crate::commands::worker_count;
use crate::error::UsageError;

/// Lines sampled to discover extra feature keys.
const KEY_SAMPLE_LINES: usize = 1000;

/// Extra numeric `features` keys in the first lines of the file, sorted (e.g. v1..v28).
fn extra_feature_names(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut names = BTreeSet::new();
    for line in text.split(|&b| b == b'\n').take(KEY_SAMPLE_LINES) {
        let Ok(serde_json::Value::Object(event)) = serde_json::from_slice(line) else { continue };
        let Some(serde_json::Value::Object(features)) = event.get("features") else { continue };
        for (key, value) in features {
            if value.is_number() && !OWN_FEATURE_NAMES.contains(&key.as_str()) {
                names.insert(key.clone());
            }
        }
    }
    Ok(names.into_iter().collect())
}

/// Parses `--hidden 64,32`.
fn parse_widths(text: &str) -> Result<Vec<usize>, UsageError> {
    text.split(',')
        .map(|w| match w.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(UsageError(format!("--hidden: `{text}` is not a list of positive widths like 64,32"))),
        })
        .collect()
}

/// Trains and writes the model.
pub fn execute(args: TrainArgs) -> anyhow::Result<()> {
    let input = input_file(&args.data.input)?;
    let input_path = args.data.input.clone().unwrap_or_default();
    let out = args.out.clone().ok_or_else(|| UsageError("--out: required".into()))?;
    let mut names: Vec<String> = WINDOW_FEATURE_NAMES.iter().chain(&OWN_FEATURE_NAMES).map(|s| s.to_string()).collect();
    names.extend(extra_feature_names(&input_path)?);
    let layout = InputLayout::resolve(&names)
        .map_err(|bad| UsageError(format!("--input: feature names vigil cannot use: {}", bad.join(", "))))?;
    let started = std::time::Instant::now();
    let mut extracted = extract(input, layout.extras().clone(), Default::default(), worker_count(args.data.workers)?)
        .map_err(anyhow::Error::msg)?;
    for batch in &mut extracted.batches {
        layout.fill(batch);
    }
    let width = layout.width();
    let mut data = TrainingData { names, ..TrainingData::default() };
    let mut unlabelled = 0u64;
    for (batch, r) in extracted.rows() {
        let row = &batch.rows[r];
        if row.label < 0 {
            unlabelled += 1;
            continue;
        }
        data.rows.extend_from_slice(&batch.inputs[r * width..(r + 1) * width]);
        data.labels.push(row.label as u8);
        data.times_ms.push(row.timestamp_ms);
    }
    tracing::info!(
        rows = data.labels.len(),
        unlabelled,
        dead_letters = extracted.dead_letters,
        secs = started.elapsed().as_secs_f64(),
        "features extracted"
    );
    let defaults = TrainConfig::default();
    let hidden = match &args.hidden {
        Some(text) => parse_widths(text)?,
        None => defaults.hidden.clone(),
    };
    let cfg = TrainConfig {
        hidden,
        max_epochs: args.epochs.unwrap_or(defaults.max_epochs),
        seed: args.seed.unwrap_or(defaults.seed),
        threshold: args.threshold.unwrap_or(defaults.threshold),
        input_name: input_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        ..defaults
    };
    let model = train(&data, &cfg).map_err(|e| UsageError(format!("training on {}: {e}", input_path.display())))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    model.save(&out).with_context(|| format!("writing {}", out.display()))?;
    let meta = model.metadata();
    println!(
        "model {} written to {} (validation PR-AUC {:.4}, ROC-AUC {:.4}, {} epochs, {:.1} s)",
        meta.version,
        out.display(),
        meta.training.validation_pr_auc,
        meta.training.validation_roc_auc,
        meta.training.epochs_run,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
