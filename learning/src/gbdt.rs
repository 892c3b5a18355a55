//! Training of gradient-boosted trees with forust-ml (`docs/design.md` says why this crate),
//! compiled into the tree tables the stream scores (`operators::model::trees`).
//!
//! Invariants: the split is the same time split as the MLP's (`outcome::split_point`), so
//! `--kind auto` compares the kinds on the same later rows. Missing values are never filled:
//! forust learns a direction for them at every split, and the tables keep it. Boosting stops
//! when the validation log-loss has not improved for `early_stopping_rounds` trees, and the
//! model keeps the trees up to the best round. Training is reproducible given `seed` (forust's
//! only randomness is its row/column sampling, seeded) and is multi-threaded within one fit.

use std::time::Instant;

use forust_ml::metric::Metric;
use forust_ml::objective::ObjectiveType;
use forust_ml::{GradientBooster, Matrix};
use operators::model::file::{Model, ModelError, ModelMetadata, ThresholdPolicy, TrainingInfo, KIND_GBDT};
use operators::model::trees::{Node, TreeTables};
use serde::{Deserialize, Serialize};

use crate::evaluation::evaluate;
use crate::outcome::{calibrate, split_point};
use crate::training::{input_specs, TrainingData};

/// Hyper-parameters; the defaults are the settings measured in docs/design.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GbdtConfig {
    /// Most trees (early stopping usually ends sooner).
    pub max_trees: usize,
    pub learning_rate: f32,
    pub max_depth: usize,
    /// Histogram bins per input.
    pub bins: u16,
    pub l2: f32,
    /// Smallest hessian sum of a leaf.
    pub min_leaf_weight: f32,
    /// Trees without a validation log-loss gain before boosting stops (the kept prefix is then
    /// chosen by validation PR-AUC, see [`best_prefix`]).
    pub early_stopping_rounds: usize,
    pub validation_fraction: f64,
    /// Weight of a fraud row; `None` = √(legitimate / fraud) of the training part: enough to
    /// make the rare class count without the full ratio's overconfident leaves.
    pub positive_weight: Option<f64>,
    pub seed: u64,
    pub threads: usize,
    pub threshold: ThresholdPolicy,
    pub input_name: String,
}

impl Default for GbdtConfig {
    fn default() -> Self {
        GbdtConfig {
            max_trees: 300,
            learning_rate: 0.1,
            max_depth: 6,
            bins: 256,
            l2: 1.0,
            min_leaf_weight: 1.0,
            early_stopping_rounds: 100,
            validation_fraction: 0.2,
            positive_weight: None,
            seed: 42,
            threads: 2,
            threshold: ThresholdPolicy::Fixed(0.8),
            input_name: String::new(),
        }
    }
}

/// A trained booster and the rows it was trained and validated on (column-major `f64`, as
/// forust reads them).
struct Fitted {
    booster: GradientBooster,
    n_train: usize,
    positive_weight: f64,
}

/// Trains a `gbdt` model: boosting with early stopping, Platt calibration folded into the
/// tables, the threshold chosen on the validation split.
pub fn train_gbdt(data: &TrainingData, cfg: &GbdtConfig) -> Result<Model, ModelError> {
    train_gbdt_keeping_booster(data, cfg).map(|(model, _)| model)
}

/// [`train_gbdt`], also returning forust's booster (for tests against the crate's own
/// predictions, [`forust_log_odds`]).
pub fn train_gbdt_keeping_booster(
    data: &TrainingData,
    cfg: &GbdtConfig,
) -> Result<(Model, GradientBooster), ModelError> {
    let started = Instant::now();
    let d = data.names.len();
    let mut fitted = fit(data, cfg)?;
    let valid_rows = &data.rows[fitted.n_train * d..];
    let valid_y = &data.labels[fitted.n_train..];
    let grown = booster_nodes(&fitted.booster);
    let (kept, logits) = best_prefix(&grown, fitted.booster.base_score, valid_rows, valid_y, d)?;
    fitted.booster.prediction_iteration = Some(kept);
    let trees = &grown[..kept];
    let calibrated = calibrate(&logits, valid_y, cfg.threshold)?;
    let mut tables =
        TreeTables::from_nodes(trees, fitted.booster.base_score, calibrated.a).map_err(ModelError::Training)?;
    tables.base += calibrated.b as f32;
    tracing::info!(
        trees = tables.trees,
        depth = tables.depth,
        validation_pr_auc = format!("{:.4}", calibrated.evaluation.pr_auc),
        secs = format!("{:.1}", started.elapsed().as_secs_f64()),
        "gbdt trained"
    );
    let meta = ModelMetadata {
        version: String::new(),
        kind: KIND_GBDT.to_string(),
        layers: Vec::new(),
        trees: None,
        inputs: input_specs(&data.names, &data.rows[..fitted.n_train * d]),
        threshold: calibrated.threshold(),
        training: TrainingInfo {
            epochs_run: grown.len(),
            best_epoch: tables.trees,
            positive_weight: fitted.positive_weight,
            ..calibrated.training_info(data, &cfg.input_name, cfg.seed)
        },
    };
    Ok((Model::from_trees(meta, tables)?, fitted.booster))
}

/// Validation PR-AUC is checked after every this many trees.
const PRUNE_STEP: usize = 5;

/// The number of leading trees with the best validation PR-AUC (checked every
/// [`PRUNE_STEP`] trees; ties keep fewer trees), and the validation logits of that prefix.
/// Early stopping on the metric the kinds are compared by: forust stops on log-loss, which on
/// rare-class data keeps improving (or stops improving) well away from the best ranking.
fn best_prefix(
    trees: &[Vec<Node>],
    base: f64,
    rows: &[f32],
    labels: &[u8],
    d: usize,
) -> Result<(usize, Vec<f32>), ModelError> {
    let n = labels.len();
    let mut sums = vec![base as f32; n];
    let mut best = (f64::NEG_INFINITY, 0, sums.clone());
    let mut one = Vec::with_capacity(n);
    for (k, tree) in trees.iter().enumerate() {
        let table = TreeTables::from_nodes(std::slice::from_ref(tree), 0.0, 1.0).map_err(ModelError::Training)?;
        one.clear();
        table.logits(rows, d, &mut one);
        sums.iter_mut().zip(&one).for_each(|(s, v)| *s += v);
        if (k + 1) % PRUNE_STEP == 0 || k + 1 == trees.len() {
            let ap = evaluate(&sums, labels, 0.5).pr_auc;
            if ap > best.0 {
                best = (ap, k + 1, sums.clone());
            }
        }
    }
    Ok((best.1, best.2))
}

/// Fits forust on the training part with the validation part for early stopping.
fn fit(data: &TrainingData, cfg: &GbdtConfig) -> Result<Fitted, ModelError> {
    let d = data.names.len();
    if d == 0 || data.rows.len() != data.labels.len() * d {
        return Err(ModelError::Training(format!(
            "{} values for {} rows of {d} inputs",
            data.rows.len(),
            data.labels.len()
        )));
    }
    let n_train = split_point(&data.labels, cfg.validation_fraction)?;
    let n_valid = data.labels.len() - n_train;
    let positives = data.labels[..n_train].iter().filter(|&&l| l != 0).count() as f64;
    let positive_weight = cfg.positive_weight.unwrap_or(((n_train as f64 - positives) / positives).sqrt());
    let (train_x, train_y, train_w) = columns(data, 0..n_train, positive_weight);
    let (valid_x, valid_y, valid_w) = columns(data, n_train..data.labels.len(), positive_weight);
    let mut booster = GradientBooster::default()
        .set_objective_type(ObjectiveType::LogLoss)
        .set_iterations(cfg.max_trees)
        .set_learning_rate(cfg.learning_rate)
        .set_max_depth(cfg.max_depth)
        .set_nbins(cfg.bins)
        .set_l2(cfg.l2)
        .set_min_leaf_weight(cfg.min_leaf_weight)
        .set_seed(cfg.seed)
        .set_parallel(cfg.threads > 1)
        .set_num_threads(Some(cfg.threads.max(1)))
        .set_initialize_base_score(true)
        .set_allow_missing_splits(true)
        .set_create_missing_branch(false)
        .set_evaluation_metric(Some(Metric::LogLoss))
        .set_early_stopping_rounds(Some(cfg.early_stopping_rounds));
    let train = Matrix::new(&train_x, n_train, d);
    let valid = Matrix::new(&valid_x, n_valid, d);
    booster
        .fit(&train, &train_y, &train_w, Some(vec![(valid, &valid_y[..], &valid_w[..])]))
        .map_err(|e| ModelError::Training(format!("gradient boosting: {e}")))?;
    Ok(Fitted { booster, n_train, positive_weight })
}

/// Rows `range` of `data` as forust's column-major `f64` matrix, with labels and weights.
fn columns(data: &TrainingData, range: std::ops::Range<usize>, positive_weight: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let d = data.names.len();
    let mut x = Vec::with_capacity(range.len() * d);
    for j in 0..d {
        x.extend(range.clone().map(|i| f64::from(data.rows[i * d + j])));
    }
    let y: Vec<f64> = data.labels[range.clone()].iter().map(|&l| f64::from(u8::from(l != 0))).collect();
    let w = y.iter().map(|&l| if l > 0.0 { positive_weight } else { 1.0 }).collect();
    (x, y, w)
}

/// The trees forust predicts with (up to the best early-stopping round), as table nodes.
/// forust stores a tree's nodes at their index (`num`), children after parents, and routes
/// `x < split_value` left and a missing value to `missing_node` — the tables' semantics.
fn booster_nodes(booster: &GradientBooster) -> Vec<Vec<Node>> {
    let used = booster.prediction_iteration.unwrap_or(booster.trees.len()).min(booster.trees.len());
    booster.trees[..used]
        .iter()
        .map(|tree| {
            tree.nodes
                .iter()
                .map(|n| {
                    if n.is_leaf {
                        Node::Leaf { value: f64::from(n.weight_value) }
                    } else {
                        Node::Split {
                            feature: n.split_feature,
                            threshold: n.split_value,
                            left: n.left_child,
                            right: n.right_child,
                            missing: n.missing_node,
                            value: f64::from(n.weight_value),
                        }
                    }
                })
                .collect()
        })
        .collect()
}

/// The crate's own log-odds for `rows` (row-major `f32`, NaN = missing): the independent
/// reference the stream's scores are tested against.
pub fn forust_log_odds(booster: &GradientBooster, rows: &[f32], d: usize) -> Vec<f64> {
    let n = rows.len() / d;
    let mut x = Vec::with_capacity(rows.len());
    for j in 0..d {
        x.extend((0..n).map(|i| f64::from(rows[i * d + j])));
    }
    booster.predict(&Matrix::new(&x, n, d), false)
}
