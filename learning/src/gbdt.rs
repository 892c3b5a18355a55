//! Training of gradient-boosted trees with forust-ml (`docs/design.md` says why this crate),
//! compiled into the tree tables the stream scores (`operators::model::trees`).
//!
//! Invariants: the split is the same time split as the MLP's (`outcome::split_point`), so
//! `--kind auto` compares the kinds on the same later rows. Missing values are never filled:
//! forust learns a direction for them at every split, and the tables keep it. With few frauds
//! in the validation split the model is `bags` boosters, each on a random half of the rows and
//! of the inputs per tree (seeded), averaged: on ULB this lifted day-2 PR-AUC from 0.767 (one
//! booster, early-stopped) to 0.80 and narrowed the spread across seeds. With many (≥ 500), the
//! validation log-loss is a reliable stopping signal and the bag underfits, so it is one deeper
//! booster stopped on it ([`LargeSetConfig`]; docs/design.md has both studies). Training is
//! reproducible given `seed` and multi-threaded within each fit.

use std::time::Instant;

use forust_ml::metric::Metric;
use forust_ml::objective::ObjectiveType;
use forust_ml::sampler::SampleMethod;
use forust_ml::{GradientBooster, Matrix};
use operators::model::file::{Model, ModelError, ModelMetadata, ThresholdPolicy, TrainingInfo, KIND_GBDT};
use operators::model::tree_walk::PackedTrees;
use operators::model::trees::{Node, TreeTables};
use serde::{Deserialize, Serialize};

use crate::outcome::{calibrate, input_specs, split_point, TrainingData};

/// Hyper-parameters; the defaults are the settings measured in docs/design.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GbdtConfig {
    /// Trees in all (split evenly over the `bags` boosters).
    pub max_trees: usize,
    /// Boosters trained on row and column subsamples with seeds `seed + 1000·k` and averaged.
    pub bags: usize,
    /// Share of rows, and of inputs, each tree of a booster sees.
    pub subsample: f32,
    pub colsample: f64,
    pub learning_rate: f32,
    pub max_depth: usize,
    /// Histogram bins per input.
    pub bins: u16,
    pub l2: f32,
    /// Smallest hessian sum of a leaf.
    pub min_leaf_weight: f32,
    /// Trees without a validation log-loss gain before a booster stops; `None` (the default)
    /// grows every tree: with a few dozen frauds in the validation split every stopping signal
    /// was noisier than the fixed count (docs/design.md).
    pub early_stopping_rounds: Option<usize>,
    pub validation_fraction: f64,
    /// Weight of a fraud row; `None` = √(legitimate / fraud) of the training part: enough to
    /// make the rare class count without the full ratio's overconfident leaves.
    pub positive_weight: Option<f64>,
    pub seed: u64,
    pub threads: usize,
    pub threshold: ThresholdPolicy,
    pub input_name: String,
    /// Frauds in the validation split from which `large` replaces the bag above: there the
    /// validation log-loss is a reliable stopping signal and 300 shallow trees underfit
    /// (sparse set: 2.7k validation frauds, PR-AUC 0.574 → 0.683; ULB, 39: the bag stays).
    pub large_from_frauds: usize,
    pub large: LargeSetConfig,
}

/// One early-stopped booster for sets with many frauds (docs/design.md, sparse set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LargeSetConfig {
    /// Cap on the trees (time bound: ~0.9 s a tree on one core at 500k events × 450 inputs).
    pub max_trees: usize,
    pub learning_rate: f32,
    pub max_depth: usize,
    pub subsample: f32,
    pub colsample: f64,
    pub min_leaf_weight: f32,
    /// Trees without a validation log-loss gain before the booster stops.
    pub early_stopping_rounds: usize,
    /// Weight of a fraud row; `None` = √(legitimate / fraud). 1 (unweighted) measured better.
    pub positive_weight: Option<f64>,
}

impl Default for LargeSetConfig {
    fn default() -> Self {
        LargeSetConfig {
            max_trees: 600,
            learning_rate: 0.1,
            max_depth: 8,
            subsample: 0.8,
            colsample: 0.7,
            min_leaf_weight: 5.0,
            early_stopping_rounds: 50,
            positive_weight: Some(1.0),
        }
    }
}

impl GbdtConfig {
    /// The settings used for a validation split holding `frauds` frauds.
    pub fn for_validation_frauds(&self, frauds: usize) -> GbdtConfig {
        if frauds < self.large_from_frauds {
            return self.clone();
        }
        let l = &self.large;
        GbdtConfig {
            max_trees: l.max_trees,
            bags: 1,
            subsample: l.subsample,
            colsample: l.colsample,
            learning_rate: l.learning_rate,
            max_depth: l.max_depth,
            min_leaf_weight: l.min_leaf_weight,
            early_stopping_rounds: Some(l.early_stopping_rounds),
            positive_weight: l.positive_weight,
            ..self.clone()
        }
    }
}

impl Default for GbdtConfig {
    fn default() -> Self {
        GbdtConfig {
            max_trees: 300,
            bags: 5,
            subsample: 0.5,
            colsample: 0.5,
            learning_rate: 0.1,
            max_depth: 6,
            bins: 256,
            l2: 1.0,
            min_leaf_weight: 1.0,
            early_stopping_rounds: None,
            validation_fraction: 0.2,
            positive_weight: None,
            seed: 42,
            threads: 2,
            threshold: ThresholdPolicy::Fixed(0.8),
            input_name: String::new(),
            large_from_frauds: 500,
            large: LargeSetConfig::default(),
        }
    }
}

/// Trains a `gbdt` model: `bags` boosters on row and column subsamples, averaged into one
/// table of trees; Platt calibration folded into the tables; the threshold chosen on the
/// validation split.
pub fn train_gbdt(data: &TrainingData, cfg: &GbdtConfig) -> Result<Model, ModelError> {
    train_gbdt_keeping_boosters(data, cfg).map(|(model, _)| model)
}

/// [`train_gbdt`], also returning forust's boosters (for tests against the crate's own
/// predictions, [`forust_log_odds`]).
pub fn train_gbdt_keeping_boosters(
    data: &TrainingData,
    cfg: &GbdtConfig,
) -> Result<(Model, Vec<GradientBooster>), ModelError> {
    let started = Instant::now();
    let d = data.names.len();
    if d == 0 || data.rows.len() != data.labels.len() * d {
        return Err(ModelError::Training(format!(
            "{} values for {} rows of {d} inputs",
            data.rows.len(),
            data.labels.len()
        )));
    }
    if cfg.bags == 0 || cfg.max_trees < cfg.bags {
        return Err(ModelError::Training(format!(
            "{} trees cannot be split over {} boosters",
            cfg.max_trees, cfg.bags
        )));
    }
    let n_train = split_point(&data.labels, cfg.validation_fraction)?;
    let valid_frauds = data.labels[n_train..].iter().filter(|&&l| l != 0).count();
    let cfg = &cfg.for_validation_frauds(valid_frauds);
    tracing::info!(valid_frauds, bags = cfg.bags, early_stopping = ?cfg.early_stopping_rounds, "gbdt settings");
    let positives = data.labels[..n_train].iter().filter(|&&l| l != 0).count() as f64;
    let positive_weight = cfg.positive_weight.unwrap_or(((n_train as f64 - positives) / positives).sqrt());
    let train = columns(data, 0..n_train, positive_weight);
    let valid = columns(data, n_train..data.labels.len(), positive_weight);
    let boosters = (0..cfg.bags as u64)
        .map(|k| fit(&train, &valid, d, cfg, cfg.seed.wrapping_add(1000 * k)))
        .collect::<Result<Vec<_>, _>>()?;
    let trees: Vec<Vec<Node>> = boosters.iter().flat_map(booster_nodes).collect();
    let base: f64 = boosters.iter().map(|b| b.base_score).sum();
    let scale = 1.0 / cfg.bags as f64;
    let averaged = TreeTables::from_nodes(&trees, base, scale).map_err(ModelError::Training)?;
    let valid_rows = &data.rows[n_train * d..];
    let mut logits = Vec::with_capacity(valid_rows.len() / d);
    PackedTrees::new(&averaged, d).map_err(ModelError::Training)?.logits(valid_rows, &mut logits);
    let calibrated = calibrate(&logits, &data.labels[n_train..], cfg.threshold)?;
    let mut tables = TreeTables::from_nodes(&trees, base, scale * calibrated.a).map_err(ModelError::Training)?;
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
        features: String::new(),
        kind: KIND_GBDT.to_string(),
        layers: Vec::new(),
        trees: None,
        inputs: input_specs(&data.names, &data.rows[..n_train * d]),
        threshold: calibrated.threshold(),
        training: TrainingInfo {
            epochs_run: tables.trees,
            best_epoch: tables.trees,
            positive_weight,
            seeds: cfg.bags,
            ..calibrated.training_info(data, &cfg.input_name, cfg.seed)
        },
    };
    Ok((Model::from_trees(meta, tables)?, boosters))
}

/// Rows as forust reads them: column-major `f64` values, labels and weights.
struct Columns {
    x: Vec<f64>,
    y: Vec<f64>,
    w: Vec<f64>,
}

/// Fits one booster of `max_trees / bags` trees on the training rows (the validation rows
/// only drive early stopping, when asked for).
fn fit(train: &Columns, valid: &Columns, d: usize, cfg: &GbdtConfig, seed: u64) -> Result<GradientBooster, ModelError> {
    let mut booster = GradientBooster::default()
        .set_objective_type(ObjectiveType::LogLoss)
        .set_iterations(cfg.max_trees / cfg.bags)
        .set_learning_rate(cfg.learning_rate)
        .set_max_depth(cfg.max_depth)
        .set_nbins(cfg.bins)
        .set_l2(cfg.l2)
        .set_min_leaf_weight(cfg.min_leaf_weight)
        .set_sample_method(SampleMethod::Random)
        .set_subsample(cfg.subsample)
        .set_colsample_bytree(cfg.colsample)
        .set_seed(seed)
        .set_parallel(cfg.threads > 1)
        .set_num_threads(Some(cfg.threads.max(1)))
        .set_initialize_base_score(true)
        .set_allow_missing_splits(true)
        .set_create_missing_branch(false)
        .set_evaluation_metric(cfg.early_stopping_rounds.map(|_| Metric::LogLoss))
        .set_early_stopping_rounds(cfg.early_stopping_rounds);
    let train_matrix = Matrix::new(&train.x, train.y.len(), d);
    let eval =
        cfg.early_stopping_rounds.map(|_| vec![(Matrix::new(&valid.x, valid.y.len(), d), &valid.y[..], &valid.w[..])]);
    booster
        .fit(&train_matrix, &train.y, &train.w, eval)
        .map_err(|e| ModelError::Training(format!("gradient boosting: {e}")))?;
    Ok(booster)
}

/// Rows `range` of `data` as forust's column-major `f64` matrix, with labels and weights.
fn columns(data: &TrainingData, range: std::ops::Range<usize>, positive_weight: f64) -> Columns {
    let x = column_major(&data.rows, data.names.len(), range.clone());
    let y: Vec<f64> = data.labels[range.clone()].iter().map(|&l| f64::from(u8::from(l != 0))).collect();
    let w = y.iter().map(|&l| if l > 0.0 { positive_weight } else { 1.0 }).collect();
    Columns { x, y, w }
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

/// The crate's own log-odds for `rows` (row-major `f32`, NaN = missing), averaged over the
/// boosters: the independent reference the stream's scores are tested against.
pub fn forust_log_odds(boosters: &[GradientBooster], rows: &[f32], d: usize) -> Vec<f64> {
    let n = rows.len() / d;
    let x = column_major(rows, d, 0..n);
    let mut mean = vec![0f64; n];
    for booster in boosters {
        let p = booster.predict(&Matrix::new(&x, n, d), false);
        mean.iter_mut().zip(p).for_each(|(m, v)| *m += v / boosters.len() as f64);
    }
    mean
}

/// Rows `range` of row-major `rows` (`d` columns) as forust's column-major `f64` values.
fn column_major(rows: &[f32], d: usize, range: std::ops::Range<usize>) -> Vec<f64> {
    let mut x = Vec::with_capacity(range.len() * d);
    for j in 0..d {
        x.extend(range.clone().map(|i| f64::from(rows[i * d + j])));
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_validation_frauds_switch_to_one_early_stopped_booster() {
        let cfg = GbdtConfig { seed: 7, max_trees: 120, ..GbdtConfig::default() };
        assert_eq!(cfg.for_validation_frauds(499), cfg, "few frauds: the bag, as configured");
        let large = cfg.for_validation_frauds(500);
        assert_eq!((large.bags, large.max_trees, large.max_depth), (1, 600, 8));
        assert_eq!((large.early_stopping_rounds, large.positive_weight), (Some(50), Some(1.0)));
        assert_eq!(
            (large.seed, large.threshold, large.bins),
            (7, cfg.threshold, cfg.bins),
            "shared settings carry over"
        );
    }
}
