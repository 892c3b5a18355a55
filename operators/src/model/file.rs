//! A model file and the loaded model: `NAME.safetensors` (the weights, or the trees as
//! tensors) and `NAME.json` with [`ModelMetadata`] beside it (SPEC §7) — the kind, the input
//! names in order, how each input is filled and standardised, the threshold and what it was
//! trained on. [`Model`] dispatches to the kind's network (`model/mlp.rs`, `model/trees.rs`).
//!
//! Invariants: the metadata's `version` is a hash of the tensors, so a JSON file paired with
//! the wrong tensors is refused at load; and a row's score depends only on that row — never
//! on the batch it arrives in — because scoring results must not depend on batching (SPEC §5).
//! Training lives in the `learning` crate.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::model::copula::{Copula, CopulaNet};
use crate::model::mlp::{dense_from_tensors, Dense, Mlp};
use crate::model::tree_walk::PackedTrees;
use crate::model::trees::TreeTables;

/// The multi-layer perceptron (`model/mlp.rs`).
pub const KIND_MLP: &str = "mlp";
/// Gradient-boosted trees, scored as `σ(base + Σ leaves)` (`model/trees.rs`).
pub const KIND_GBDT: &str = "gbdt";
/// Prefix of the unsupervised kinds (`unsupervised:<method>`): rarity scores trained without
/// labels; every method but `copula` is scored by tree tables.
pub const KIND_UNSUPERVISED: &str = "unsupervised:";
/// The Gaussian-copula Mahalanobis distance (`model/copula.rs`).
pub const KIND_COPULA: &str = "unsupervised:copula";

/// Errors name the file and what is wrong with it, because the usual cause is a stale or
/// hand-edited model file and the operator has to find it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("batch of {len} values is not a whole number of rows of {inputs} inputs")]
    BatchShape { len: usize, inputs: usize },
    #[error("cannot train: {0}")]
    Training(String),
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// The JSON half of a model file (SPEC §7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// `mlp-` + 8 hex digits of a hash of the weights: changes whenever the weights do, so
    /// decisions can be traced to the exact model that made them.
    pub version: String,
    pub kind: String,
    /// MLP: all layer widths, input first and output (1) last, e.g. `[24, 32, 16, 1]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<usize>,
    /// Tree kinds: the ensemble's shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trees: Option<TreeShape>,
    /// The model's inputs in column order.
    pub inputs: Vec<InputSpec>,
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    pub training: TrainingInfo,
    /// The feature specification the inputs were computed with (SPEC §2b TOML; empty: the
    /// default, SPEC §2 alone). Serving computes exactly this.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub features: String,
}

/// The shape of a tree ensemble (SPEC §7: trees and depth).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TreeShape {
    pub trees: usize,
    /// Longest root-to-leaf path, in splits.
    pub depth: usize,
    /// Node slots per tree in the tensors.
    pub nodes: usize,
}

/// One kind tried by `vigil train --kind auto`, with its validation scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub kind: String,
    pub validation_pr_auc: f64,
    pub validation_roc_auc: f64,
}

/// One input column: how a missing value is filled and how the value is standardised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    pub name: String,
    /// Used when the value is missing (NaN or infinite); the training mean, so a missing
    /// value standardises to 0 and contributes "nothing unusual".
    pub fill: f64,
    pub mean: f64,
    /// Population std of the training values; 0 (a constant column) is treated as 1.
    pub std: f64,
}

/// What the model was trained on and how well it did on held-out, later data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    /// Input file name.
    pub input: String,
    pub events: u64,
    pub fraud_rate: f64,
    pub time_min_ms: i64,
    pub time_max_ms: i64,
    pub validation_pr_auc: f64,
    pub validation_roc_auc: f64,
    pub epochs_run: usize,
    /// The epoch whose weights were kept (1-based).
    #[serde(default)]
    pub best_epoch: usize,
    /// Weight of a fraud example in the loss relative to a legitimate one.
    #[serde(default)]
    pub positive_weight: f64,
    #[serde(default)]
    pub seed: u64,
    /// Networks averaged into this model (1 = a single network).
    #[serde(default = "one")]
    pub seeds: usize,
    /// Platt's `(a, b)` folded into the output layer: the score is `σ(a·z + b)` of the
    /// trained logit z, a probability calibrated on the validation split.
    #[serde(default)]
    pub calibration: Option<[f64; 2]>,
    /// Expected calibration error of the score on the validation split (10 bins).
    #[serde(default)]
    pub validation_ece: f64,
    /// How `threshold` was chosen.
    #[serde(default)]
    pub threshold_policy: Option<ThresholdPolicy>,
    /// Precision and recall of `score > threshold` on the validation split.
    #[serde(default)]
    pub expected_precision: f64,
    #[serde(default)]
    pub expected_recall: f64,
    /// Every kind `--kind auto` trained on the same split; the model is the best of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
    /// Unsupervised kinds: the share of training events scoring above the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_rate: Option<f64>,
}

fn one() -> usize {
    1
}

fn default_threshold() -> f64 {
    0.8
}

/// Missing-value fill and standardisation, shared by training and scoring so the two can
/// never disagree.
#[derive(Debug, Clone)]
pub struct Standardiser {
    fill: Vec<f32>,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
}

impl Standardiser {
    pub fn new(inputs: &[InputSpec]) -> Self {
        let inv = |s: f64| {
            if s > 0.0 && s.is_finite() {
                1.0 / s
            } else {
                1.0
            }
        };
        Standardiser {
            fill: inputs.iter().map(|i| i.fill as f32).collect(),
            mean: inputs.iter().map(|i| i.mean as f32).collect(),
            inv_std: inputs.iter().map(|i| inv(i.std) as f32).collect(),
        }
    }

    /// Appends the standardised form of `rows` (row-major, `self.width()` columns) to `out`.
    pub fn apply(&self, rows: &[f32], out: &mut Vec<f32>) {
        let d = self.fill.len();
        out.reserve(rows.len());
        for row in rows.chunks_exact(d) {
            for (j, &v) in row.iter().enumerate() {
                let x = if v.is_finite() { v } else { self.fill[j] };
                out.push((x - self.mean[j]) * self.inv_std[j]);
            }
        }
    }
}

/// A loaded model, ready to score.
#[derive(Debug)]
pub struct Model {
    meta: ModelMetadata,
    net: Network,
}

/// The kind's scorer.
#[derive(Debug)]
enum Network {
    /// Scores standardised inputs (missing → the fill value).
    Mlp(Mlp, Standardiser),
    /// Scores raw inputs; a missing input follows the branch learned for it.
    Trees(TreeTables, PackedTrees),
    /// Scores raw inputs; a missing input counts as ordinary.
    Copula(CopulaNet),
}

impl Model {
    /// Builds an MLP model from weights and metadata, setting `version` from the weights.
    pub fn from_parts(meta: ModelMetadata, dense: Vec<Dense>) -> Result<Self, ModelError> {
        let standardiser = Standardiser::new(&meta.inputs);
        Self::versioned(meta, Network::Mlp(Mlp::new(dense)?, standardiser))
    }

    /// Builds a tree model (`gbdt` or unsupervised) from its tables, setting `version` and
    /// the metadata's tree shape from the tables.
    pub fn from_trees(mut meta: ModelMetadata, tables: TreeTables) -> Result<Self, ModelError> {
        meta.layers.clear();
        meta.trees = Some(TreeShape { trees: tables.trees, depth: tables.depth, nodes: tables.nodes });
        let packed = PackedTrees::new(&tables, meta.inputs.len()).map_err(ModelError::Training)?;
        Self::versioned(meta, Network::Trees(tables, packed))
    }

    /// Builds an `unsupervised:copula` model from its table, setting `version`.
    pub fn from_copula(mut meta: ModelMetadata, table: Copula) -> Result<Self, ModelError> {
        meta.layers.clear();
        meta.trees = None;
        Self::versioned(meta, Network::Copula(CopulaNet::new(table)?))
    }

    fn versioned(mut meta: ModelMetadata, net: Network) -> Result<Self, ModelError> {
        meta.version = version_of(&meta.kind, &net);
        Self::checked(meta, net, Path::new("<model>"))
    }

    fn checked(meta: ModelMetadata, net: Network, path: &Path) -> Result<Self, ModelError> {
        check_metadata(&meta, &net).map_err(|reason| ModelError::Invalid { path: path.to_path_buf(), reason })?;
        Ok(Model { meta, net })
    }

    /// Loads `NAME.safetensors` and the `NAME.json` beside it.
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        let json_path = metadata_path(path);
        let text = std::fs::read_to_string(&json_path).map_err(|source| ModelError::Io {
            action: "read model metadata",
            path: json_path.clone(),
            source,
        })?;
        let meta: ModelMetadata = serde_json::from_str(&text).map_err(|e| ModelError::Invalid {
            path: json_path.clone(),
            reason: format!("not valid model metadata: {e}"),
        })?;
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            action: "read model weights",
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |reason: String| ModelError::Invalid { path: path.to_path_buf(), reason };
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| invalid(format!("not a safetensors file: {e}")))?;
        let net = network_from_tensors(&meta, tensors).map_err(invalid)?;
        let actual = version_of(&meta.kind, &net);
        if actual != meta.version {
            return Err(ModelError::Invalid {
                path: json_path,
                reason: format!(
                    "version {} does not match the weights in {} ({actual}); \
                     the two files come from different trainings",
                    meta.version,
                    path.display()
                ),
            });
        }
        Self::checked(meta, net, &json_path)
    }

    /// Writes `NAME.safetensors` and `NAME.json`. Each file is written to a temporary name
    /// and renamed, so a job loading the model never sees a half-written file.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let named = match &self.net {
            Network::Mlp(mlp, _) => mlp.named_tensors()?,
            Network::Trees(tables, _) => tables.named_tensors()?,
            Network::Copula(copula) => copula.named_tensors()?,
        };
        let tmp = with_suffix(path, ".tmp");
        candle_core::safetensors::save(&named, &tmp)
            .map_err(|e| ModelError::Invalid { path: tmp.clone(), reason: format!("cannot write weights: {e}") })?;
        rename(&tmp, path)?;
        let json_path = metadata_path(path);
        let mut text = serde_json::to_string_pretty(&self.meta).map_err(|e| ModelError::Invalid {
            path: json_path.clone(),
            reason: format!("cannot encode metadata: {e}"),
        })?;
        text.push('\n');
        let tmp = with_suffix(&json_path, ".tmp");
        std::fs::write(&tmp, text).map_err(|source| ModelError::Io { action: "write", path: tmp.clone(), source })?;
        rename(&tmp, &json_path)
    }

    pub fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }

    /// The training record, for trainers that add to it (e.g. `--kind auto`'s candidates);
    /// the version hashes only the tensors, so it stays valid.
    pub fn training_mut(&mut self) -> &mut TrainingInfo {
        &mut self.meta.training
    }

    /// Records the feature specification the model was trained with (not part of the
    /// version, which hashes the tensors: other inputs give other tensors).
    pub fn set_features(&mut self, spec_text: &str) {
        self.meta.features = spec_text.to_owned();
    }

    /// The MLP's layers, if this is an MLP (for training code that extends a network).
    pub fn dense(&self) -> Option<&[Dense]> {
        match &self.net {
            Network::Mlp(mlp, _) => Some(mlp.dense()),
            Network::Trees(..) | Network::Copula(_) => None,
        }
    }

    /// Number of inputs per row.
    pub fn width(&self) -> usize {
        self.meta.inputs.len()
    }

    /// Scores `rows` (row-major `n × width()`, raw feature values, NaN = missing) and appends
    /// `n` scores in [0, 1] to `out`. One candle pass for the whole batch: the per-call
    /// overhead is paid once per batch, not once per event.
    pub fn score_batch(&self, rows: &[f32], out: &mut Vec<f32>) -> Result<(), ModelError> {
        let n = self.rows_in(rows)?;
        if n == 0 {
            return Ok(());
        }
        let logits = match &self.net {
            Network::Mlp(mlp, standardiser) => {
                let mut x = Vec::with_capacity(rows.len());
                standardiser.apply(rows, &mut x);
                mlp.logits(x, n)?
            }
            Network::Trees(_, packed) => {
                let x = Tensor::from_slice(rows, (n, self.width()), &Device::Cpu)?;
                packed.logits_tensor(&x)?.to_vec1::<f32>()?
            }
            Network::Copula(copula) => copula.logits(rows, n)?,
        };
        out.extend(logits.into_iter().map(sigmoid));
        Ok(())
    }

    /// The number of rows in `rows`.
    fn rows_in(&self, rows: &[f32]) -> Result<usize, ModelError> {
        let d = self.width();
        if d == 0 || !rows.len().is_multiple_of(d) {
            return Err(ModelError::BatchShape { len: rows.len(), inputs: d });
        }
        Ok(rows.len() / d)
    }

    /// Per-input logit contributions for `rows` (row-major `n × width()`, raw values, NaN =
    /// missing): appends `n × width()` values, each answering "how much less suspicious would
    /// this event be without this input's value". Logits rather than probabilities, so that a
    /// saturated score (0.9999) still ranks its inputs. Like [`Model::score_batch`], a row's
    /// result does not depend on the others.
    ///
    /// - MLP: occlusion against the mean, `z(x) − z(x with input j at its training mean)`; an
    ///   input at its mean (or missing, hence filled with the mean) contributes exactly nothing.
    /// - `gbdt`: Saabas' path attribution (`model/tree_walk.rs`, on the walk's layout); a missing input still
    ///   contributes through the branch it takes.
    /// - Unsupervised, tree-shaped: each input's own term of the logit (its rarity, 0 at the
    ///   median); `copula`: the input's exact share of the squared distance.
    pub fn contributions(&self, rows: &[f32], out: &mut Vec<f32>) -> Result<(), ModelError> {
        let d = self.width();
        let n = self.rows_in(rows)?;
        match &self.net {
            Network::Mlp(mlp, standardiser) => {
                let mut x = Vec::with_capacity(rows.len());
                standardiser.apply(rows, &mut x);
                if n > 0 {
                    mlp.occlusion(&x, out)?;
                }
            }
            Network::Trees(tables, packed) => {
                let per_input = self.is_unsupervised();
                for row in rows.chunks_exact(d) {
                    let start = out.len();
                    out.resize(start + d, 0.0);
                    if per_input {
                        tables.leaf_contributions(row, &mut out[start..]);
                    } else {
                        packed.path_contributions(row, &mut out[start..]);
                    }
                }
            }
            Network::Copula(copula) => {
                for row in rows.chunks_exact(d) {
                    let start = out.len();
                    out.resize(start + d, 0.0);
                    copula.terms(row, &mut out[start..]);
                }
            }
        }
        Ok(())
    }

    /// Unsupervised kinds: per input of each row, `−ln(2·t)` with `t` the share of training
    /// events at least as extreme on the value's side (0 at the median or when missing),
    /// appended to `out`; the phrase of a reason is built from it. Other kinds append nothing.
    pub fn rarity(&self, rows: &[f32], out: &mut Vec<f32>) -> Result<(), ModelError> {
        let d = self.width();
        self.rows_in(rows)?;
        for row in rows.chunks_exact(d) {
            let start = out.len();
            match &self.net {
                Network::Trees(tables, _) if self.is_unsupervised() => {
                    out.resize(start + d, 0.0);
                    tables.leaf_contributions(row, &mut out[start..]);
                }
                Network::Copula(copula) => {
                    out.resize(start + d, 0.0);
                    copula.rarity(row, &mut out[start..]);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// An `unsupervised:<method>` model: its score says how rare an event is, not a fraud
    /// probability, and its contributions are per-input rarity terms.
    pub fn is_unsupervised(&self) -> bool {
        self.meta.kind.starts_with(KIND_UNSUPERVISED)
    }
}

/// Logistic function, written so that neither branch overflows.
pub fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `NAME.safetensors` → `NAME.json`.
pub fn metadata_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn rename(from: &Path, to: &Path) -> Result<(), ModelError> {
    std::fs::rename(from, to).map_err(|source| ModelError::Io { action: "replace", path: to.to_path_buf(), source })
}

/// `<method>-` + 8 hex digits of FNV-1a over the network's shapes and the little-endian bytes
/// of every tensor value: stable across platforms and runs, no extra dependency; collisions
/// only matter for traceability. The method is the kind without its `unsupervised:` prefix.
fn version_of(kind: &str, net: &Network) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    match net {
        Network::Mlp(mlp, _) => mlp.hash_into(&mut eat),
        Network::Trees(tables, _) => tables.hash_into(&mut eat),
        Network::Copula(copula) => copula.hash_into(&mut eat),
    }
    let method = kind.strip_prefix(KIND_UNSUPERVISED).unwrap_or(kind);
    format!("{method}-{:08x}", (h >> 32) ^ (h & 0xffff_ffff))
}

/// Reads the kind's tensors; any tensor the kind does not name is an error, as it means the
/// two files do not match.
fn network_from_tensors(meta: &ModelMetadata, tensors: HashMap<String, Tensor>) -> Result<Network, String> {
    if meta.kind == KIND_MLP {
        let dense = dense_from_tensors(tensors, &meta.layers)?;
        return Ok(Network::Mlp(Mlp::new(dense).map_err(|e| e.to_string())?, Standardiser::new(&meta.inputs)));
    }
    if meta.kind == KIND_COPULA {
        return Ok(Network::Copula(CopulaNet::from_named_tensors(tensors)?));
    }
    if is_tree_kind(&meta.kind) {
        let shape = meta.trees.ok_or_else(|| format!("a {} model needs `trees` in its metadata", meta.kind))?;
        let tables = TreeTables::from_named_tensors(tensors, shape.depth)?;
        if (tables.trees, tables.nodes) != (shape.trees, shape.nodes) {
            return Err(format!(
                "the tensors hold {} trees of {} nodes, the metadata says {} of {}",
                tables.trees, tables.nodes, shape.trees, shape.nodes
            ));
        }
        let packed = PackedTrees::new(&tables, meta.inputs.len())?;
        return Ok(Network::Trees(tables, packed));
    }
    Err(unsupported_kind(&meta.kind))
}

/// The kinds scored by tree tables.
pub fn is_tree_kind(kind: &str) -> bool {
    kind == KIND_GBDT || (kind != KIND_COPULA && kind.strip_prefix(KIND_UNSUPERVISED).is_some_and(|m| !m.is_empty()))
}

fn unsupported_kind(kind: &str) -> String {
    format!("model kind {kind:?} is not supported (expected {KIND_MLP:?}, {KIND_GBDT:?} or \"{KIND_UNSUPERVISED}<method>\")")
}

fn check_metadata(meta: &ModelMetadata, net: &Network) -> Result<(), String> {
    match net {
        Network::Mlp(mlp, _) if meta.kind == KIND_MLP => mlp.check(&meta.layers, meta.inputs.len())?,
        Network::Trees(tables, _) if is_tree_kind(&meta.kind) => tables.check(meta.inputs.len())?,
        Network::Copula(copula) if meta.kind == KIND_COPULA => copula.check(meta.inputs.len())?,
        _ => return Err(unsupported_kind(&meta.kind)),
    }
    if meta.inputs.is_empty() {
        return Err("the model has no inputs".to_string());
    }
    if let Some(i) =
        meta.inputs.iter().find(|i| !(i.fill.is_finite() && i.mean.is_finite() && i.std.is_finite() && i.std >= 0.0))
    {
        return Err(format!("input {:?} has a non-finite fill/mean or a bad std", i.name));
    }
    if !(0.0..=1.0).contains(&meta.threshold) {
        return Err(format!("threshold {} is outside [0, 1]", meta.threshold));
    }
    Ok(())
}

/// How `vigil train` picks the block threshold on the validation split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdPolicy {
    /// A given threshold.
    Fixed(f64),
    /// The lowest threshold whose precision is at least this (most recall at that precision).
    TargetPrecision(f64),
    /// The lowest threshold whose false-positive rate is at most this.
    MaxFpr(f64),
    /// Missing a fraud costs this many false alarms: minimise ratio·FN + FP.
    CostRatio(f64),
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Deterministic pseudo-random numbers for tests (no `rand` dependency).
    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub(crate) fn random_model(d: usize, hidden: &[usize], seed: u64) -> Model {
        let mut s = seed;
        let widths: Vec<usize> = std::iter::once(d).chain(hidden.iter().copied()).chain([1]).collect();
        let dense = widths
            .windows(2)
            .map(|p| Dense {
                in_dim: p[0],
                out_dim: p[1],
                w: (0..p[0] * p[1]).map(|_| lcg(&mut s)).collect(),
                b: (0..p[1]).map(|_| 0.1 * lcg(&mut s)).collect(),
            })
            .collect();
        let inputs = (0..d)
            .map(|j| InputSpec {
                name: format!("f{j}"),
                fill: j as f64 * 0.5,
                mean: j as f64 * 0.5,
                std: if j == 1 { 0.0 } else { 1.0 + j as f64 },
            })
            .collect();
        model_from(inputs, dense)
    }

    /// A model of the given inputs and layers (widths are taken from `dense`).
    pub(crate) fn model_from(inputs: Vec<InputSpec>, dense: Vec<Dense>) -> Model {
        let widths: Vec<usize> =
            dense.first().map(|l| l.in_dim).into_iter().chain(dense.iter().map(|l| l.out_dim)).collect();
        let meta = ModelMetadata {
            version: String::new(),
            kind: KIND_MLP.into(),
            layers: widths,
            inputs,
            trees: None,
            threshold: 0.8,
            features: String::new(),
            training: TrainingInfo {
                input: "test.jsonl".into(),
                events: 0,
                fraud_rate: 0.0,
                time_min_ms: 0,
                time_max_ms: 0,
                validation_pr_auc: 0.0,
                validation_roc_auc: 0.0,
                epochs_run: 0,
                best_epoch: 0,
                seeds: 1,
                calibration: None,
                validation_ece: 0.0,
                threshold_policy: None,
                expected_precision: 0.0,
                expected_recall: 0.0,
                positive_weight: 1.0,
                seed: 0,
                ..TrainingInfo::default()
            },
        };
        match Model::from_parts(meta, dense) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    pub(crate) fn random_rows(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n * d)
            .map(|_| {
                let v = lcg(&mut s) * 10.0;
                if v > 8.5 {
                    f32::NAN
                } else {
                    v
                }
            })
            .collect()
    }

    fn temp_path(tag: &str) -> PathBuf {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        std::env::temp_dir().join(format!("vigil-model-{tag}-{}-{nanos}.safetensors", std::process::id()))
    }

    #[test]
    fn batched_equals_one_by_one() -> Result<(), ModelError> {
        let (d, n) = (25, 1000);
        let model = random_model(d, &[64, 32], 7);
        let rows = random_rows(n, d, 11);
        let mut batched = Vec::new();
        model.score_batch(&rows, &mut batched)?;
        assert_eq!(batched.len(), n);
        let mut single = Vec::new();
        for row in rows.chunks(d) {
            model.score_batch(row, &mut single)?;
        }
        // Odd batch sizes too, as the job sees them.
        let mut mixed = Vec::new();
        for chunk in rows.chunks(d * 37) {
            model.score_batch(chunk, &mut mixed)?;
        }
        for i in 0..n {
            assert!((0.0..=1.0).contains(&batched[i]));
            assert!((batched[i] - single[i]).abs() <= 1e-6, "row {i}: {} vs {}", batched[i], single[i]);
            assert!((batched[i] - mixed[i]).abs() <= 1e-6, "row {i}");
        }
        Ok(())
    }

    #[test]
    fn contributions_equal_score_differences_against_the_mean() -> Result<(), ModelError> {
        let (d, n) = (6, 40);
        let model = random_model(d, &[16, 8], 21);
        // Small values keep the scores away from 0 and 1, where the logit of a rounded
        // probability (the oracle below) loses its precision.
        let rows: Vec<f32> = random_rows(n, d, 5).into_iter().map(|v| v * 0.1).collect();
        let mut contributions = Vec::new();
        model.contributions(&rows, &mut contributions)?;
        assert_eq!(contributions.len(), n * d);
        let logit = |p: f32| {
            assert!(p > 1e-3 && p < 1.0 - 1e-3, "score {p} too close to 0 or 1 for the oracle");
            (f64::from(p) / (1.0 - f64::from(p))).ln()
        };
        for (i, row) in rows.chunks(d).enumerate() {
            let mut base = Vec::new();
            model.score_batch(row, &mut base)?;
            for j in 0..d {
                let mut at_mean = row.to_vec();
                at_mean[j] = model.metadata().inputs[j].mean as f32;
                let mut occluded = Vec::new();
                model.score_batch(&at_mean, &mut occluded)?;
                let want = logit(base[0]) - logit(occluded[0]);
                let got = f64::from(contributions[i * d + j]);
                assert!((got - want).abs() < 1e-3, "row {i} input {j}: {got} vs {want}");
                if !row[j].is_finite() {
                    assert!(got.abs() < 1e-6, "a missing value is filled with the mean: {got}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn missing_values_are_filled_with_the_fill_value() -> Result<(), ModelError> {
        let model = random_model(3, &[4], 3);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        model.score_batch(&[f32::NAN, 2.0, f32::INFINITY], &mut a)?;
        model.score_batch(&[0.0, 2.0, 1.0], &mut b)?; // fills are 0, 0.5, 1
        assert_eq!(a, b);
        Ok(())
    }

    #[test]
    fn ragged_batch_is_an_error() {
        let model = random_model(3, &[4], 3);
        let mut out = Vec::new();
        assert!(matches!(model.score_batch(&[1.0; 4], &mut out), Err(ModelError::BatchShape { len: 4, inputs: 3 })));
        assert!(out.is_empty());
    }

    #[test]
    fn save_load_round_trip_gives_same_scores() -> Result<(), ModelError> {
        let model = random_model(25, &[64, 32], 5);
        let path = temp_path("roundtrip");
        model.save(&path)?;
        let loaded = Model::load(&path)?;
        assert_eq!(loaded.metadata(), model.metadata());
        assert!(loaded.metadata().version.starts_with("mlp-") && loaded.metadata().version.len() == 12);
        let rows = random_rows(300, 25, 9);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        model.score_batch(&rows, &mut a)?;
        loaded.score_batch(&rows, &mut b)?;
        assert_eq!(a, b);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(metadata_path(&path));
        Ok(())
    }

    #[test]
    fn mismatched_or_missing_files_are_refused_with_the_file_named() -> Result<(), ModelError> {
        let a = random_model(4, &[8], 1);
        let b = random_model(4, &[8], 2);
        let (pa, pb) = (temp_path("a"), temp_path("b"));
        a.save(&pa)?;
        b.save(&pb)?;
        // b's metadata with a's weights.
        std::fs::copy(metadata_path(&pb), metadata_path(&pa)).map_err(|source| ModelError::Io {
            action: "copy",
            path: pa.clone(),
            source,
        })?;
        let err = Model::load(&pa).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("does not match the weights"), "{err}");
        assert!(err.contains(&metadata_path(&pa).display().to_string()), "{err}");

        let missing = temp_path("missing");
        let err = Model::load(&missing).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("cannot read model metadata") && err.contains(".json"), "{err}");

        // Metadata declaring other layer sizes.
        let text = std::fs::read_to_string(metadata_path(&pb)).unwrap_or_default();
        std::fs::write(
            metadata_path(&pb),
            text.replace("\"layers\": [\n    4,\n    8,", "\"layers\": [\n    4,\n    9,"),
        )
        .map_err(|source| ModelError::Io { action: "write", path: pb.clone(), source })?;
        let err = Model::load(&pb).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("layers.0.weight"), "{err}");
        for p in [&pa, &pb] {
            let _ = std::fs::remove_file(p);
            let _ = std::fs::remove_file(metadata_path(p));
        }
        Ok(())
    }

    /// Throughput of the hot path; run with
    /// `RAYON_NUM_THREADS=1 cargo test --release -p operators --lib model::tests::score_throughput -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn score_throughput() -> Result<(), ModelError> {
        let (d, n) = (25, 4096);
        let model = random_model(d, &[64, 32], 7);
        let rows = random_rows(n, d, 1);
        let mut out = Vec::with_capacity(n);
        for _ in 0..20 {
            out.clear();
            model.score_batch(&rows, &mut out)?;
        }
        let reps = 500;
        let start = std::time::Instant::now();
        for _ in 0..reps {
            out.clear();
            model.score_batch(&rows, &mut out)?;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "score_batch: {n}-row batches, {d} inputs, [64, 32]: {:.0} rows/s ({:.1} µs/batch)",
            (reps * n) as f64 / secs,
            secs / reps as f64 * 1e6
        );
        Ok(())
    }
}
