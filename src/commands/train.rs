//! `vigil train`: features from the same dataflow as `run`, then the candle MLP.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use learning::training::{train_reporting, TrainConfig, TrainingData};
use operators::features::{OWN_FEATURE_NAMES, WINDOW_FEATURE_NAMES};
use operators::model::enrich::InputLayout;
use operators::model::file::ThresholdPolicy;

use crate::cli::TrainArgs;
use crate::commands::features::{extract_with_progress, input_file};
use crate::error::UsageError;
use crate::progress::Progress;

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

/// The threshold policy from `--threshold`, `--target-precision`, `--max-fpr`, `--cost-ratio`
/// (at most one).
fn threshold_policy(args: &TrainArgs) -> Result<Option<ThresholdPolicy>, UsageError> {
    let given = [
        ("--threshold", args.threshold.map(ThresholdPolicy::Fixed), 0.0..=1.0),
        ("--target-precision", args.target_precision.map(ThresholdPolicy::TargetPrecision), 0.0..=1.0),
        ("--max-fpr", args.max_fpr.map(ThresholdPolicy::MaxFpr), 0.0..=1.0),
        ("--cost-ratio", args.cost_ratio.map(ThresholdPolicy::CostRatio), 0.0..=f64::MAX),
    ];
    let mut chosen = None;
    for (flag, policy, range) in given {
        let Some(policy) = policy else { continue };
        if chosen.is_some() {
            return Err(UsageError(format!(
                "{flag}: give only one of --threshold, --target-precision, --max-fpr, --cost-ratio"
            )));
        }
        let value = match policy {
            ThresholdPolicy::Fixed(v)
            | ThresholdPolicy::TargetPrecision(v)
            | ThresholdPolicy::MaxFpr(v)
            | ThresholdPolicy::CostRatio(v) => v,
        };
        if !range.contains(&value) {
            return Err(UsageError(format!("{flag}: {value} is outside {}..={}", range.start(), range.end())));
        }
        chosen = Some(policy);
    }
    Ok(chosen)
}

/// Trains and writes the model.
pub fn execute(args: TrainArgs) -> anyhow::Result<()> {
    let input = input_file(&args.data.input)?;
    let input_path = args.data.input.clone().unwrap_or_default();
    let out = args.out.clone().ok_or_else(|| UsageError("--out: required".into()))?;
    let windows: &[&str] = if args.without_windows { &[] } else { &WINDOW_FEATURE_NAMES };
    let mut names: Vec<String> = windows.iter().chain(&OWN_FEATURE_NAMES).map(|s| s.to_string()).collect();
    names.extend(extra_feature_names(&input_path)?);
    let layout = InputLayout::resolve(&names)
        .map_err(|bad| UsageError(format!("--input: feature names vigil cannot use: {}", bad.join(", "))))?;
    let started = std::time::Instant::now();
    let mut extracted = extract_with_progress(input, layout.extras().clone(), Default::default(), &args.data)?;
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
    if args.seeds == Some(0) {
        return Err(UsageError("--seeds: must be at least 1".into()).into());
    }
    if let Some(w) = args.positive_weight.filter(|w| !(w.is_finite() && *w > 0.0)) {
        return Err(UsageError(format!("--positive-weight: {w} is not a positive number")).into());
    }
    let hidden = match &args.hidden {
        Some(text) => parse_widths(text)?,
        None => defaults.hidden.clone(),
    };
    let cfg = TrainConfig {
        hidden,
        max_epochs: args.epochs.unwrap_or(defaults.max_epochs),
        seed: args.seed.unwrap_or(defaults.seed),
        seeds: args.seeds.unwrap_or(defaults.seeds),
        positive_weight: args.positive_weight.or(defaults.positive_weight),
        threshold: threshold_policy(&args)?.unwrap_or(defaults.threshold),
        input_name: input_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        ..defaults
    };
    let progress = Progress::new("training epochs", Some((cfg.seeds.max(1) * cfg.max_epochs) as u64), true);
    let epochs = AtomicU64::new(0);
    let model = train_reporting(&data, &cfg, &|| progress.set(epochs.fetch_add(1, Ordering::Relaxed) + 1))
        .map_err(|e| UsageError(format!("training on {}: {e}", input_path.display())))?;
    progress.finish(epochs.load(Ordering::Relaxed));
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    model.save(&out).with_context(|| format!("writing {}", out.display()))?;
    let meta = model.metadata();
    let t = &meta.training;
    println!(
        "model {} written to {} (validation PR-AUC {:.4}, ROC-AUC {:.4}, ECE {:.4}; {} epochs, {:.1} s)",
        meta.version,
        out.display(),
        t.validation_pr_auc,
        t.validation_roc_auc,
        t.validation_ece,
        t.epochs_run,
        started.elapsed().as_secs_f64()
    );
    println!(
        "threshold {:.6}: expected precision {:.4}, recall {:.4} (on the validation split)",
        meta.threshold, t.expected_precision, t.expected_recall
    );
    Ok(())
}
