//! `vigil train`: features from the same dataflow as `run`, then the model of the asked kind
//! (`--kind mlp|gbdt|auto`, or `--unsupervised`).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use learning::gbdt::{GbdtConfig, LargeSetConfig};
use learning::outcome::TrainingData;
use learning::select::{train_kind, Kind};
use learning::training::TrainConfig;
use learning::unsupervised::{train_unsupervised, Method, UnsupervisedConfig};
use operators::features::OWN_FEATURE_NAMES;
use operators::model::enrich::InputLayout;
use operators::model::file::Model;
use operators::model::file::ThresholdPolicy;
use operators::model::tree_walk::MAX_DEPTH;

use crate::cli::TrainArgs;
use crate::commands::feature_spec;
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
    let spec = feature_spec(args.data.features.as_deref())?;
    let windows: Vec<String> = if args.without_windows { Vec::new() } else { spec.feature_names() };
    let mut names: Vec<String> = windows.into_iter().chain(OWN_FEATURE_NAMES.map(String::from)).collect();
    names.extend(extra_feature_names(&input_path)?);
    let layout = InputLayout::resolve(&names, &spec)
        .map_err(|bad| UsageError(format!("--input: feature names vigil cannot use: {}", bad.join(", "))))?;
    let started = std::time::Instant::now();
    let mut extracted = extract_with_progress(input, layout.extras().clone(), &spec, &args.data)?;
    for batch in &mut extracted.batches {
        layout.fill(batch);
    }
    let width = layout.width();
    let mut data = TrainingData { names, ..TrainingData::default() };
    let mut unlabelled = 0u64;
    for (batch, r) in extracted.rows() {
        let row = &batch.rows[r];
        if row.label < 0 && !args.unsupervised {
            unlabelled += 1;
            continue;
        }
        data.rows.extend_from_slice(&batch.inputs[r * width..(r + 1) * width]);
        data.labels.push(row.label.max(0) as u8);
        data.times_ms.push(row.timestamp_ms);
    }
    tracing::info!(
        rows = data.labels.len(),
        unlabelled,
        dead_letters = extracted.dead_letters,
        secs = started.elapsed().as_secs_f64(),
        "features extracted"
    );
    let input_name = input_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let model = if args.unsupervised {
        train_without_labels(&args, &data, input_name)?
    } else {
        train_with_labels(&args, &data, input_name)?
    };
    let mut model = model;
    model.set_features(&spec.text);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    model.save(&out).with_context(|| format!("writing {}", out.display()))?;
    let meta = model.metadata();
    let t = &meta.training;
    let secs = started.elapsed().as_secs_f64();
    if let Some(rate) = t.alert_rate {
        println!("model {} ({}) written to {} ({secs:.1} s)", meta.version, meta.kind, out.display());
        println!("threshold {:.6}: blocks {rate} of the training events", meta.threshold);
        return Ok(());
    }
    let size = match meta.trees {
        Some(shape) => format!("{} trees of depth {}", shape.trees, shape.depth),
        None => format!("{} epochs", t.epochs_run),
    };
    println!(
        "model {} written to {} (validation PR-AUC {:.4}, ROC-AUC {:.4}, ECE {:.4}; {size}, {secs:.1} s)",
        meta.version,
        out.display(),
        t.validation_pr_auc,
        t.validation_roc_auc,
        t.validation_ece,
    );
    for c in &t.candidates {
        println!(
            "  candidate {:<5} validation PR-AUC {:.4}, ROC-AUC {:.4}",
            c.kind, c.validation_pr_auc, c.validation_roc_auc
        );
    }
    println!(
        "threshold {:.6}: expected precision {:.4}, recall {:.4} (on the validation split)",
        meta.threshold, t.expected_precision, t.expected_recall
    );
    Ok(())
}

/// `--kind mlp|gbdt|auto` on labelled rows.
fn train_with_labels(args: &TrainArgs, data: &TrainingData, input_name: String) -> anyhow::Result<Model> {
    if args.alert_rate.is_some() || args.method.is_some() {
        return Err(UsageError("--alert-rate, --method: only with --unsupervised".into()).into());
    }
    let kind = match args.kind.as_deref().unwrap_or("auto") {
        "mlp" => Kind::Mlp,
        "gbdt" => Kind::Gbdt,
        "auto" => Kind::Auto,
        other => return Err(UsageError(format!("--kind: `{other}` is not mlp, gbdt or auto")).into()),
    };
    let defaults = TrainConfig::default();
    if args.seeds == Some(0) {
        return Err(UsageError("--seeds: must be at least 1".into()).into());
    }
    if let Some(w) = args.positive_weight.filter(|w| !(w.is_finite() && *w > 0.0)) {
        return Err(UsageError(format!("--positive-weight: {w} is not a positive number")).into());
    }
    if args.max_trees == Some(0) || args.max_depth == Some(0) {
        return Err(UsageError("--max-trees and --max-depth: must be at least 1".into()).into());
    }
    if let Some(depth) = args.max_depth.filter(|&d| d > MAX_DEPTH) {
        return Err(
            UsageError(format!("--max-depth: {depth} is deeper than the {MAX_DEPTH} levels the stream walks")).into()
        );
    }
    let hidden = match &args.hidden {
        Some(text) => parse_widths(text)?,
        None => defaults.hidden.clone(),
    };
    let threshold = threshold_policy(args)?.unwrap_or(defaults.threshold);
    let seed = args.seed.unwrap_or(defaults.seed);
    let mlp = TrainConfig {
        hidden,
        max_epochs: args.epochs.unwrap_or(defaults.max_epochs),
        seed,
        seeds: args.seeds.unwrap_or(defaults.seeds),
        positive_weight: args.positive_weight.or(defaults.positive_weight),
        threshold,
        input_name: input_name.clone(),
        ..defaults
    };
    let gbdt_defaults = GbdtConfig::default();
    let gbdt = GbdtConfig {
        max_trees: args.max_trees.unwrap_or(gbdt_defaults.max_trees),
        max_depth: args.max_depth.unwrap_or(gbdt_defaults.max_depth),
        positive_weight: args.positive_weight,
        // Explicit flags bind in both regimes.
        large: LargeSetConfig {
            max_trees: args.max_trees.unwrap_or(gbdt_defaults.large.max_trees),
            max_depth: args.max_depth.unwrap_or(gbdt_defaults.large.max_depth),
            positive_weight: args.positive_weight.or(gbdt_defaults.large.positive_weight),
            ..gbdt_defaults.large.clone()
        },
        seed,
        threshold,
        input_name,
        ..gbdt_defaults
    };
    let epochs_total = if kind == Kind::Gbdt { 0 } else { (mlp.seeds.max(1) * mlp.max_epochs) as u64 };
    let progress = Progress::new("training epochs", Some(epochs_total), kind != Kind::Gbdt);
    let epochs = AtomicU64::new(0);
    let model = train_kind(data, kind, &mlp, &gbdt, &|| progress.set(epochs.fetch_add(1, Ordering::Relaxed) + 1))
        .map_err(|e| UsageError(format!("training on {}: {e}", mlp.input_name)))?;
    progress.finish(epochs.load(Ordering::Relaxed));
    Ok(model)
}

/// `--unsupervised`: labels are not needed, and ignored when present.
fn train_without_labels(args: &TrainArgs, data: &TrainingData, input_name: String) -> anyhow::Result<Model> {
    let supervised_only = [
        ("--kind", args.kind.is_some()),
        ("--threshold", args.threshold.is_some()),
        ("--target-precision", args.target_precision.is_some()),
        ("--max-fpr", args.max_fpr.is_some()),
        ("--cost-ratio", args.cost_ratio.is_some()),
        ("--positive-weight", args.positive_weight.is_some()),
    ];
    if let Some((flag, _)) = supervised_only.iter().find(|(_, given)| *given) {
        return Err(UsageError(format!("{flag}: needs labels; with --unsupervised use --alert-rate")).into());
    }
    let defaults = UnsupervisedConfig::default();
    let alert_rate = args.alert_rate.unwrap_or(defaults.alert_rate);
    if !(alert_rate > 0.0 && alert_rate < 1.0) {
        return Err(UsageError(format!("--alert-rate: {alert_rate} is not in (0, 1)")).into());
    }
    let method = match args.method.as_deref() {
        None | Some("copula") => Method::Copula,
        Some("ecod") => Method::Ecod,
        Some(other) => return Err(UsageError(format!("--method: `{other}` is not copula or ecod")).into()),
    };
    let cfg = UnsupervisedConfig { method, alert_rate, seed: args.seed.unwrap_or(defaults.seed), input_name };
    train_unsupervised(data, &cfg)
        .map_err(|e| UsageError(format!("unsupervised training on {}: {e}", cfg.input_name)).into())
}
