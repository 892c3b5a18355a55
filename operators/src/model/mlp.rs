//! The fraud model: a small candle MLP (inputs → ReLU hidden layers → one logit → sigmoid),
//! its on-disk format and batched scoring.
//!
//! A model is two files side by side (SPEC §7): `NAME.safetensors` with the weights and
//! `NAME.json` with [`ModelMetadata`] — the input names in order, how each input is filled
//! and standardised, the threshold and what it was trained on. Invariants: the metadata's
//! `version` is a hash of the weights, so a JSON file paired with the wrong weights is refused
//! at load; and a row's score depends only on that row — never on the batch it arrives in —
//! because scoring results must not depend on batching (SPEC §5). Training lives in the `learning` crate.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

/// The only model kind so far; stored so that a future kind is refused rather than misread.
pub const KIND_MLP: &str = "mlp";

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
    /// All layer widths, input first and output (1) last, e.g. `[24, 32, 16, 1]`.
    pub layers: Vec<usize>,
    /// The model's inputs in column order.
    pub inputs: Vec<InputSpec>,
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    pub training: TrainingInfo,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

fn one() -> usize {
    1
}

fn default_threshold() -> f64 {
    0.8
}

/// One fully connected layer in file layout: `w` is `out × in`, row-major (PyTorch's
/// `Linear.weight` convention, so the file can be read by other tools).
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    pub in_dim: usize,
    pub out_dim: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
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

/// A loaded model, ready to score. Holds the weights twice: in file layout (for saving and
/// hashing) and pre-transposed as tensors (so scoring is one matmul per layer, no copies).
#[derive(Debug)]
pub struct Model {
    meta: ModelMetadata,
    dense: Vec<Dense>,
    /// Per layer `(in × out, 1 × out)`.
    tensors: Vec<(Tensor, Tensor)>,
    standardiser: Standardiser,
}

impl Model {
    /// Builds a model from weights and metadata, setting `version` from the weights.
    pub fn from_parts(mut meta: ModelMetadata, dense: Vec<Dense>) -> Result<Self, ModelError> {
        meta.version = version_of(&dense);
        Self::checked(meta, dense, Path::new("<model>"))
    }

    fn checked(meta: ModelMetadata, dense: Vec<Dense>, path: &Path) -> Result<Self, ModelError> {
        check_metadata(&meta, &dense).map_err(|reason| ModelError::Invalid { path: path.to_path_buf(), reason })?;
        let tensors = dense
            .iter()
            .map(|l| {
                let w = Tensor::from_slice(&l.w, (l.out_dim, l.in_dim), &Device::Cpu)?;
                let b = Tensor::from_slice(&l.b, (1, l.out_dim), &Device::Cpu)?;
                Ok((w.t()?.contiguous()?, b))
            })
            .collect::<Result<Vec<_>, candle_core::Error>>()?;
        let standardiser = Standardiser::new(&meta.inputs);
        Ok(Model { meta, dense, tensors, standardiser })
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
        let dense = dense_from_tensors(tensors, &meta.layers).map_err(invalid)?;
        let actual = version_of(&dense);
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
        Self::checked(meta, dense, &json_path)
    }

    /// Writes `NAME.safetensors` and `NAME.json`. Each file is written to a temporary name
    /// and renamed, so a job loading the model never sees a half-written file.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let mut named = std::collections::HashMap::new();
        for (i, l) in self.dense.iter().enumerate() {
            let w = Tensor::from_slice(&l.w, (l.out_dim, l.in_dim), &Device::Cpu)?;
            named.insert(format!("layers.{i}.weight"), w);
            named.insert(format!("layers.{i}.bias"), Tensor::from_slice(&l.b, l.out_dim, &Device::Cpu)?);
        }
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

    /// Number of inputs per row.
    pub fn width(&self) -> usize {
        self.meta.inputs.len()
    }

    /// Scores `rows` (row-major `n × width()`, raw feature values, NaN = missing) and appends
    /// `n` fraud probabilities to `out`. One forward pass for the whole batch: the per-call
    /// overhead of candle is paid once per batch, not once per event.
    pub fn score_batch(&self, rows: &[f32], out: &mut Vec<f32>) -> Result<(), ModelError> {
        let (n, x) = self.standardised(rows)?;
        if n == 0 {
            return Ok(());
        }
        let x = Tensor::from_vec(x, (n, self.width()), &Device::Cpu)?;
        let logits = forward(&self.tensors, &x)?.flatten_all()?.to_vec1::<f32>()?;
        out.extend(logits.into_iter().map(sigmoid));
        Ok(())
    }

    /// The number of rows in `rows` and their standardised values.
    fn standardised(&self, rows: &[f32]) -> Result<(usize, Vec<f32>), ModelError> {
        let d = self.width();
        if !rows.len().is_multiple_of(d) {
            return Err(ModelError::BatchShape { len: rows.len(), inputs: d });
        }
        let mut x = Vec::with_capacity(rows.len());
        self.standardiser.apply(rows, &mut x);
        Ok((rows.len() / d, x))
    }

    /// Per-input logit contributions for `rows` (row-major `n × width()`, raw values, NaN =
    /// missing): appends `z(x) − z(x with input j at its training mean)` for every row and
    /// input, `n × width()` values. This is occlusion against the mean: an input at its mean
    /// (or missing, hence filled with the mean) contributes exactly nothing, and the number
    /// answers "how much less suspicious would this event be if this value were ordinary".
    /// Logits rather than probabilities, so that a saturated score (0.9999) still ranks its
    /// inputs. One forward pass over the `n · (width() + 1)` probe rows; like
    /// [`Model::score_batch`], a row's result does not depend on the others.
    pub fn contributions(&self, rows: &[f32], out: &mut Vec<f32>) -> Result<(), ModelError> {
        let d = self.width();
        let (n, x) = self.standardised(rows)?;
        if n == 0 {
            return Ok(());
        }
        let mut probes = Vec::with_capacity(n * (d + 1) * d);
        for row in x.chunks_exact(d) {
            probes.extend_from_slice(row);
            for j in 0..d {
                let start = probes.len();
                probes.extend_from_slice(row);
                // A standardised input is 0 at the training mean.
                probes[start + j] = 0.0;
            }
        }
        let probes = Tensor::from_vec(probes, (n * (d + 1), d), &Device::Cpu)?;
        let z = forward(&self.tensors, &probes)?.flatten_all()?.to_vec1::<f32>()?;
        out.reserve(n * d);
        for block in z.chunks_exact(d + 1) {
            out.extend(block[1..].iter().map(|&zj| block[0] - zj));
        }
        Ok(())
    }
}

/// The MLP: `relu(x·W + b)` per hidden layer, a plain affine output. `layers` are
/// `(in × out, 1 × out)`; returns `n × 1` logits.
pub fn forward(layers: &[(Tensor, Tensor)], x: &Tensor) -> candle_core::Result<Tensor> {
    let mut h = x.clone();
    for (i, (w, b)) in layers.iter().enumerate() {
        h = h.matmul(w)?.broadcast_add(b)?;
        if i + 1 < layers.len() {
            h = h.relu()?;
        }
    }
    Ok(h)
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

/// FNV-1a over the layer shapes and the little-endian bytes of every weight: stable across
/// platforms and runs, no extra dependency; collisions only matter for traceability.
fn version_of(dense: &[Dense]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for l in dense {
        eat(&(l.in_dim as u64).to_le_bytes());
        eat(&(l.out_dim as u64).to_le_bytes());
        l.w.iter().chain(&l.b).for_each(|v| eat(&v.to_le_bytes()));
    }
    format!("{KIND_MLP}-{:08x}", (h >> 32) ^ (h & 0xffff_ffff))
}

/// Reads `layers.{i}.weight` (`out × in`) and `layers.{i}.bias` (`out`) for the widths the
/// metadata declares; any other tensor is an error, as it means the files do not match.
fn dense_from_tensors(
    mut tensors: std::collections::HashMap<String, Tensor>,
    widths: &[usize],
) -> Result<Vec<Dense>, String> {
    let mut dense = Vec::new();
    for (i, pair) in widths.windows(2).enumerate() {
        let (in_dim, out_dim) = (pair[0], pair[1]);
        let mut take = |name: String, shape: &[usize]| -> Result<Vec<f32>, String> {
            let t = tensors.remove(&name).ok_or_else(|| format!("tensor {name} is missing"))?;
            if t.dims() != shape || t.dtype() != DType::F32 {
                return Err(format!(
                    "tensor {name} is {:?} {:?}, expected F32 {shape:?} (layers {widths:?} in the metadata)",
                    t.dtype(),
                    t.dims()
                ));
            }
            t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|e| format!("tensor {name}: {e}"))
        };
        let w = take(format!("layers.{i}.weight"), &[out_dim, in_dim])?;
        let b = take(format!("layers.{i}.bias"), &[out_dim])?;
        dense.push(Dense { in_dim, out_dim, w, b });
    }
    let mut extra: Vec<&String> = tensors.keys().collect();
    extra.sort();
    match extra.first() {
        Some(name) => Err(format!("unexpected tensor {name} (layers {widths:?} in the metadata)")),
        None => Ok(dense),
    }
}

fn check_metadata(meta: &ModelMetadata, dense: &[Dense]) -> Result<(), String> {
    if meta.kind != KIND_MLP {
        return Err(format!("model kind {:?} is not supported (expected {KIND_MLP:?})", meta.kind));
    }
    let widths: Vec<usize> =
        dense.first().map(|l| l.in_dim).into_iter().chain(dense.iter().map(|l| l.out_dim)).collect();
    if widths != meta.layers || widths.len() < 2 || widths.last() != Some(&1) {
        return Err(format!(
            "layers {:?} must run from the input count to 1 and match the weights {widths:?}",
            meta.layers
        ));
    }
    if meta.inputs.len() != widths[0] {
        return Err(format!("{} inputs named but the first layer takes {}", meta.inputs.len(), widths[0]));
    }
    if let Some(i) =
        meta.inputs.iter().find(|i| !(i.fill.is_finite() && i.mean.is_finite() && i.std.is_finite() && i.std >= 0.0))
    {
        return Err(format!("input {:?} has a non-finite fill/mean or a bad std", i.name));
    }
    if !(0.0..=1.0).contains(&meta.threshold) {
        return Err(format!("threshold {} is outside [0, 1]", meta.threshold));
    }
    if dense.iter().any(|l| l.w.iter().chain(&l.b).any(|v| !v.is_finite())) {
        return Err("weights contain NaN or infinity".to_string());
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
            threshold: 0.8,
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
