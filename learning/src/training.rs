//! Training of the fraud MLP on labelled feature rows (the output of the same feature
//! dataflow `run` uses, so serving and training features cannot drift apart).
//!
//! Invariants: the split is by time — the last `validation_fraction` of rows in arrival order
//! is held out — because fraud patterns drift and a random split would leak the future into
//! training and flatter the model. Fill values and standardisation constants come from the
//! training part only, for the same reason. Training is deterministic given `seed` and the
//! thread count: the initial weights and the mini-batch order come from a seeded SplitMix64,
//! and nothing global (candle's unseedable CPU RNG, rayon's pool) is touched here.

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use operators::event::hashing::mix64;
use operators::model::file::{
    sigmoid, InputSpec, Model, ModelError, ModelMetadata, Standardiser, ThresholdPolicy, TrainingInfo, KIND_MLP,
};
use operators::model::mlp::{forward, Dense};
use serde::{Deserialize, Serialize};

use crate::evaluation::{evaluate, Evaluation};
use crate::outcome::{calibrate, input_specs, split_point, TrainingData};

/// Hyper-parameters. The defaults train ~800k × 25 rows in well under two minutes on two
/// cores and were the best of the settings measured (see `docs/design.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub hidden: Vec<usize>,
    pub batch_size: usize,
    pub max_epochs: usize,
    /// Epochs without a validation PR-AUC gain of at least `min_delta` before stopping.
    pub patience: usize,
    pub min_delta: f64,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub validation_fraction: f64,
    /// Loss weight of a fraud row; `None` = negatives / positives of the training part, which
    /// balances the two classes' total weight so the rare class is not ignored.
    pub positive_weight: Option<f64>,
    pub seed: u64,
    /// Networks trained with seeds `seed..seed + seeds` and averaged (see [`train`]).
    pub seeds: usize,
    /// How the decision threshold written into the metadata is chosen on the validation split.
    pub threshold: ThresholdPolicy,
    /// Input file name recorded in the metadata.
    pub input_name: String,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            hidden: vec![32, 16],
            batch_size: 512,
            max_epochs: 30,
            patience: 4,
            min_delta: 1e-4,
            learning_rate: 1e-3,
            weight_decay: 1e-4,
            validation_fraction: 0.2,
            positive_weight: None,
            seed: 42,
            seeds: 1,
            threshold: ThresholdPolicy::Fixed(0.8),
            input_name: String::new(),
        }
    }
}

/// Trains a model; see the module docs for the split and determinism guarantees. With
/// `seeds > 1` it trains that many networks (seeds `seed`, `seed + 1`, …) on the same split and
/// merges them into one wider network whose logit is the members' mean logit (see
/// [`merge_ensemble`]): the variance of a single network's ranking on a few hundred frauds is
/// large, and averaging is the cheapest cure that still scores in one forward pass.
pub fn train(data: &TrainingData, cfg: &TrainConfig) -> Result<Model, ModelError> {
    train_reporting(data, cfg, &|| {})
}

/// [`train`], calling `on_epoch` after every epoch of every member network (at most
/// `seeds × max_epochs` times; early stopping ends a member sooner), for progress reporting.
pub fn train_reporting(data: &TrainingData, cfg: &TrainConfig, on_epoch: &dyn Fn()) -> Result<Model, ModelError> {
    let split = Split::new(data, cfg)?;
    let positive_weight = cfg.positive_weight.unwrap_or(split.negatives as f64 / split.positives as f64);
    let mut members = Vec::with_capacity(cfg.seeds.max(1));
    let (mut epochs_run, mut best_epoch) = (0, 0);
    for k in 0..cfg.seeds.max(1) as u64 {
        let member = train_one(&split, cfg, cfg.seed.wrapping_add(k), positive_weight, on_epoch)?;
        epochs_run += member.epochs_run;
        best_epoch = member.best_epoch;
        members.push(member);
    }
    let mut dense = merge_ensemble(members.iter().map(|m| m.dense.as_slice()));
    let logits = predict_logits(&dense_tensors(&dense)?, &split.valid_x, split.width)?;
    let calibrated = calibrate(&logits, &split.valid_y, cfg.threshold)?;
    calibrate_output(&mut dense, calibrated.a, calibrated.b);
    let meta = ModelMetadata {
        version: String::new(),
        features: String::new(),
        kind: KIND_MLP.to_string(),
        layers: std::iter::once(split.width).chain(dense.iter().map(|l| l.out_dim)).collect(),
        trees: None,
        inputs: split.inputs.clone(),
        threshold: calibrated.threshold(),
        training: TrainingInfo {
            epochs_run,
            best_epoch,
            positive_weight,
            seeds: members.len(),
            ..calibrated.training_info(data, &cfg.input_name, cfg.seed)
        },
    };
    Model::from_parts(meta, dense)
}

/// One trained network: the weights of its best validation epoch.
struct Member {
    dense: Vec<Dense>,
    epochs_run: usize,
    best_epoch: usize,
}

/// Trains one network with early stopping on validation PR-AUC.
fn train_one(
    split: &Split,
    cfg: &TrainConfig,
    seed: u64,
    positive_weight: f64,
    on_epoch: &dyn Fn(),
) -> Result<Member, ModelError> {
    let mut rng = SplitMix64(seed);
    let net = Net::new(split.width, &cfg.hidden, &mut rng)?;
    let params = ParamsAdamW { lr: cfg.learning_rate, weight_decay: cfg.weight_decay, ..ParamsAdamW::default() };
    let mut opt = AdamW::new(net.vars(), params)?;
    let mut order: Vec<usize> = (0..split.train_y.len()).collect();
    let mut best: Option<(Evaluation, Vec<Dense>, usize)> = None;
    let mut epochs_run = 0;
    let start = Instant::now();
    for epoch in 1..=cfg.max_epochs {
        rng.shuffle(&mut order);
        let loss = net.epoch(split, &order, cfg.batch_size, positive_weight as f32, &mut opt)?;
        let eval = evaluate(&predict(&net.detached(), &split.valid_x, split.width)?, &split.valid_y, 0.5);
        epochs_run = epoch;
        on_epoch();
        tracing::info!(
            seed,
            epoch,
            loss = format!("{loss:.5}"),
            val_pr_auc = format!("{:.4}", eval.pr_auc),
            val_roc_auc = format!("{:.4}", eval.roc_auc),
            elapsed_s = format!("{:.1}", start.elapsed().as_secs_f64()),
            "training epoch"
        );
        let best_ap = best.as_ref().map_or(f64::NEG_INFINITY, |b| b.0.pr_auc);
        if eval.pr_auc >= best_ap + cfg.min_delta || best.is_none() {
            best = Some((eval, net.snapshot()?, epoch));
        } else if best.as_ref().is_some_and(|b| epoch - b.2 >= cfg.patience) {
            break;
        }
    }
    let (_, dense, best_epoch) = best.ok_or_else(|| ModelError::Training("max_epochs is 0".to_string()))?;
    Ok(Member { dense, epochs_run, best_epoch })
}

/// Merges networks of equal depth over the same inputs into one: the first layers are stacked
/// (all read the same inputs), the hidden layers become block-diagonal (member k's units only
/// see member k's units), and the output layer sums the members' logits scaled by 1/K — so
/// the merged logit is exactly the mean logit, computed by the unchanged MLP forward pass.
pub(crate) fn merge_ensemble<'a>(members: impl Iterator<Item = &'a [Dense]>) -> Vec<Dense> {
    let members: Vec<&[Dense]> = members.collect();
    let depth = members.first().map_or(0, |m| m.len());
    let scale_out = 1.0 / members.len() as f32;
    (0..depth)
        .map(|i| {
            let last = i + 1 == depth;
            let total_in = if i == 0 { members[0][0].in_dim } else { members.iter().map(|m| m[i].in_dim).sum() };
            let total_out = if last { 1 } else { members.iter().map(|m| m[i].out_dim).sum() };
            let mut merged = Dense {
                in_dim: total_in,
                out_dim: total_out,
                w: vec![0.0; total_in * total_out],
                b: vec![0.0; total_out],
            };
            let (mut row0, mut col0) = (0, 0);
            for m in &members {
                let l = &m[i];
                let scale = if last { scale_out } else { 1.0 };
                for r in 0..l.out_dim {
                    for c in 0..l.in_dim {
                        merged.w[(row0 + r) * total_in + col0 + c] += scale * l.w[r * l.in_dim + c];
                    }
                    merged.b[row0 + r] += scale * l.b[r];
                }
                if !last {
                    row0 += l.out_dim;
                }
                if i > 0 {
                    col0 += l.in_dim;
                }
            }
            merged
        })
        .collect()
}

/// Per layer `(in × out, 1 × out)` tensors of file-layout weights.
fn dense_tensors(dense: &[Dense]) -> Result<Vec<(Tensor, Tensor)>, ModelError> {
    Ok(dense
        .iter()
        .map(|l| {
            let w = Tensor::from_slice(&l.w, (l.out_dim, l.in_dim), &Device::Cpu)?.t()?.contiguous()?;
            Ok((w, Tensor::from_slice(&l.b, (1, l.out_dim), &Device::Cpu)?))
        })
        .collect::<Result<Vec<_>, candle_core::Error>>()?)
}

/// Folds Platt's `σ(a·z + b)` into the output layer, so the network's score is the calibrated
/// probability (see [`crate::calibration`]).
fn calibrate_output(dense: &mut [Dense], a: f64, b: f64) {
    if let Some(last) = dense.last_mut() {
        last.w.iter_mut().for_each(|w| *w = (f64::from(*w) * a) as f32);
        last.b.iter_mut().for_each(|c| *c = (f64::from(*c) * a + b) as f32);
    }
}

/// Logits for standardised rows, in chunks to bound memory.
fn predict_logits(tensors: &[(Tensor, Tensor)], x: &[f32], d: usize) -> Result<Vec<f32>, ModelError> {
    let mut out = Vec::with_capacity(x.len() / d);
    for chunk in x.chunks(d * 16384) {
        let t = Tensor::from_slice(chunk, (chunk.len() / d, d), &Device::Cpu)?;
        out.extend(forward(tensors, &t)?.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}

/// Probabilities for standardised rows.
fn predict(tensors: &[(Tensor, Tensor)], x: &[f32], d: usize) -> Result<Vec<f32>, ModelError> {
    Ok(predict_logits(tensors, x, d)?.into_iter().map(sigmoid).collect())
}

/// The time-ordered split, standardised with constants from the training part.
struct Split {
    width: usize,
    inputs: Vec<InputSpec>,
    train_x: Vec<f32>,
    train_y: Vec<u8>,
    valid_x: Vec<f32>,
    valid_y: Vec<u8>,
    positives: usize,
    negatives: usize,
}

impl Split {
    fn new(data: &TrainingData, cfg: &TrainConfig) -> Result<Self, ModelError> {
        check_input(data, cfg)?;
        let d = data.names.len();
        let n_train = split_point(&data.labels, cfg.validation_fraction)?;
        let (train_rows, valid_rows) = data.rows.split_at(n_train * d);
        let (train_y, valid_y) = data.labels.split_at(n_train);
        let positives = train_y.iter().filter(|&&l| l != 0).count();
        let negatives = n_train - positives;
        let inputs = input_specs(&data.names, train_rows);
        let standardiser = Standardiser::new(&inputs);
        let (mut train_x, mut valid_x) = (Vec::new(), Vec::new());
        standardiser.apply(train_rows, &mut train_x);
        standardiser.apply(valid_rows, &mut valid_x);
        Ok(Split {
            width: d,
            inputs,
            train_x,
            train_y: train_y.to_vec(),
            valid_x,
            valid_y: valid_y.to_vec(),
            positives,
            negatives,
        })
    }
}

fn check_input(data: &TrainingData, cfg: &TrainConfig) -> Result<(), ModelError> {
    let (d, n) = (data.names.len(), data.labels.len());
    let bad = |m: String| Err(ModelError::Training(m));
    if d == 0 || n < 2 {
        return bad(format!("need at least one input and two rows, got {d} inputs and {n} rows"));
    }
    if data.rows.len() != n * d || data.times_ms.len() != n {
        return bad(format!(
            "{} values and {} times for {n} labels of {d} inputs",
            data.rows.len(),
            data.times_ms.len()
        ));
    }
    if cfg.batch_size == 0 || cfg.hidden.contains(&0) {
        return bad("batch_size and hidden layer widths must be positive".to_string());
    }
    Ok(())
}

/// The trainable network: per layer `(in × out, 1 × out)` variables.
struct Net {
    layers: Vec<(Var, Var)>,
}

impl Net {
    /// He-uniform weights (suited to ReLU), zero biases.
    fn new(d: usize, hidden: &[usize], rng: &mut SplitMix64) -> Result<Self, ModelError> {
        let widths: Vec<usize> = std::iter::once(d).chain(hidden.iter().copied()).chain([1]).collect();
        let layers = widths
            .windows(2)
            .map(|p| {
                let bound = (6.0 / p[0] as f64).sqrt();
                let w: Vec<f32> = (0..p[0] * p[1]).map(|_| ((rng.unit() * 2.0 - 1.0) * bound) as f32).collect();
                let w = Var::from_tensor(&Tensor::from_vec(w, (p[0], p[1]), &Device::Cpu)?)?;
                let b = Var::zeros((1, p[1]), candle_core::DType::F32, &Device::Cpu)?;
                Ok((w, b))
            })
            .collect::<Result<Vec<_>, candle_core::Error>>()?;
        Ok(Net { layers })
    }

    fn vars(&self) -> Vec<Var> {
        self.layers.iter().flat_map(|(w, b)| [w.clone(), b.clone()]).collect()
    }

    fn tensors(&self) -> Vec<(Tensor, Tensor)> {
        self.layers.iter().map(|(w, b)| (w.as_tensor().clone(), b.as_tensor().clone())).collect()
    }

    /// One pass over the training rows in `order`; returns the mean weighted loss.
    fn epoch(
        &self,
        split: &Split,
        order: &[usize],
        batch_size: usize,
        positive_weight: f32,
        opt: &mut AdamW,
    ) -> Result<f64, ModelError> {
        let d = split.width;
        let tensors = self.tensors();
        let (mut total, mut weight) = (0f64, 0f64);
        for batch in order.chunks(batch_size) {
            let mut x = Vec::with_capacity(batch.len() * d);
            let mut y = Vec::with_capacity(batch.len());
            let mut w = Vec::with_capacity(batch.len());
            for &i in batch {
                x.extend_from_slice(&split.train_x[i * d..(i + 1) * d]);
                let fraud = split.train_y[i] != 0;
                y.push(if fraud { 1f32 } else { 0.0 });
                w.push(if fraud { positive_weight } else { 1.0 });
            }
            let w_sum: f32 = w.iter().sum();
            let x = Tensor::from_vec(x, (batch.len(), d), &Device::Cpu)?;
            let z = forward(&tensors, &x)?.flatten_all()?;
            let y = Tensor::from_vec(y, batch.len(), &Device::Cpu)?;
            let w = Tensor::from_vec(w, batch.len(), &Device::Cpu)?;
            let loss = (weighted_bce_sum(&z, &y, &w)? / f64::from(w_sum))?;
            opt.backward_step(&loss)?;
            total += f64::from(loss.to_scalar::<f32>()?) * f64::from(w_sum);
            weight += f64::from(w_sum);
        }
        Ok(total / weight)
    }

    /// The current weights without gradient tracking, for validation scoring.
    fn detached(&self) -> Vec<(Tensor, Tensor)> {
        self.layers.iter().map(|(w, b)| (w.as_tensor().detach(), b.as_tensor().detach())).collect()
    }

    /// Host copy of the current weights in file layout (`out × in`), for keeping the best
    /// epoch's weights while training goes on.
    fn snapshot(&self) -> Result<Vec<Dense>, ModelError> {
        self.layers
            .iter()
            .map(|(w, b)| {
                let (in_dim, out_dim) = w.as_tensor().dims2()?;
                Ok(Dense {
                    in_dim,
                    out_dim,
                    w: w.as_tensor().t()?.contiguous()?.flatten_all()?.to_vec1()?,
                    b: b.as_tensor().flatten_all()?.to_vec1()?,
                })
            })
            .collect()
    }
}

/// Σ wᵢ · BCE(zᵢ, yᵢ) in the overflow-free form max(z, 0) − z·y + ln(1 + e^(−|z|)).
fn weighted_bce_sum(z: &Tensor, y: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let softplus_tail = (z.abs()?.neg()?.exp()? + 1.0)?.log()?;
    let per_row = ((z.relu()? - (z * y)?)? + softplus_tail)?;
    (per_row * w)?.sum_all()
}

/// SplitMix64: tiny, seedable and good enough for shuffling and initial weights; avoids a
/// `rand` dependency and candle's unseedable CPU RNG.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Fisher–Yates.
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic fraud-like problem: fraud is likelier when f0 is large and f1 small, with
    /// a non-linear interaction and some missing values.
    /// Also returns each row's true fraud probability, the Bayes-optimal score.
    pub(crate) fn synthetic(n: usize, d: usize, seed: u64) -> (TrainingData, Vec<f32>) {
        let mut rng = SplitMix64(seed);
        let mut rows = Vec::with_capacity(n * d);
        let mut labels = Vec::with_capacity(n);
        let mut truth = Vec::with_capacity(n);
        for _ in 0..n {
            let row: Vec<f32> = (0..d).map(|_| (rng.unit() * 4.0 - 2.0) as f32).collect();
            let logit = 2.5 * row[0] - 1.5 * row[1] + 2.0 * (row[2] * row[3]) - 6.5;
            let p = 1.0 / (1.0 + (-f64::from(logit)).exp());
            labels.push(u8::from(rng.unit() < p));
            truth.push(p as f32);
            rows.extend(row.iter().enumerate().map(|(j, &v)| {
                if j == 4 && rng.unit() < 0.3 {
                    f32::NAN
                } else {
                    v * (j as f32 + 1.0) + 100.0 * j as f32
                }
            }));
        }
        let data = TrainingData {
            names: (0..d).map(|j| format!("f{j}")).collect(),
            rows,
            labels,
            times_ms: (0..n as i64).map(|i| 1_700_000_000_000 + i * 1000).collect(),
        };
        (data, truth)
    }

    /// Validation metrics of the true probabilities: what a perfect model would reach.
    fn oracle(data: &TrainingData, truth: &[f32]) -> Evaluation {
        let n_train = data.labels.len() - (data.labels.len() as f64 * 0.2).round() as usize;
        evaluate(&truth[n_train..], &data.labels[n_train..], 0.8)
    }

    #[test]
    fn learns_a_synthetic_problem_deterministically() -> Result<(), ModelError> {
        let (data, truth) = synthetic(20_000, 8, 3);
        let best = oracle(&data, &truth);
        let cfg = TrainConfig {
            max_epochs: 12,
            // Small data: smaller batches so that 12 epochs are enough optimiser steps.
            batch_size: 128,
            hidden: vec![16, 8],
            input_name: "synthetic.jsonl".into(),
            ..TrainConfig::default()
        };
        let a = train(&data, &cfg)?;
        let b = train(&data, &cfg)?;
        let m = a.metadata();
        assert_eq!(m.version, b.metadata().version, "same seed, same weights");
        assert_eq!(m.layers, vec![8, 16, 8, 1]);
        assert!(m.training.validation_roc_auc > best.roc_auc - 0.02, "{:?} {best:?}", m.training);
        assert!(m.training.validation_pr_auc > best.pr_auc - 0.08, "{:?} {best:?}", m.training);
        assert_eq!(m.training.events, 20_000);
        assert_eq!(m.training.time_max_ms - m.training.time_min_ms, 19_999_000);
        // Fill = training mean; standardisation constants from the first 80 % only.
        let first = &m.inputs[0];
        assert_eq!(first.fill, first.mean);
        assert!(first.std > 1.0 && first.std < 1.3, "{first:?}");
        assert!((m.inputs[4].mean - 400.0).abs() < 0.2, "{:?}", m.inputs[4]);
        let other = train(&data, &TrainConfig { seed: 7, ..cfg })?;
        assert_ne!(other.metadata().version, m.version);
        Ok(())
    }

    /// The merged network's logit equals the mean of the members' logits, each computed by
    /// its own forward pass.
    #[test]
    fn merged_ensemble_scores_the_mean_logit() -> Result<(), ModelError> {
        let mut rng = SplitMix64(5);
        let members: Vec<Vec<Dense>> = (0..3)
            .map(|k| {
                let widths = [6, 4 + k, 3, 1];
                widths
                    .windows(2)
                    .map(|p| Dense {
                        in_dim: p[0],
                        out_dim: p[1],
                        w: (0..p[0] * p[1]).map(|_| (rng.unit() * 2.0 - 1.0) as f32).collect(),
                        b: (0..p[1]).map(|_| (rng.unit() - 0.5) as f32).collect(),
                    })
                    .collect()
            })
            .collect();
        let x: Vec<f32> = (0..10 * 6).map(|_| (rng.unit() * 4.0 - 2.0) as f32).collect();
        let xt = Tensor::from_slice(&x, (10, 6), &Device::Cpu)?;
        let logits = |dense: &[Dense]| -> Result<Vec<f32>, ModelError> {
            Ok(forward(&dense_tensors(dense)?, &xt)?.flatten_all()?.to_vec1::<f32>()?)
        };
        let merged = merge_ensemble(members.iter().map(Vec::as_slice));
        assert_eq!(merged.iter().map(|l| l.out_dim).collect::<Vec<_>>(), [15, 9, 1]);
        let got = logits(&merged)?;
        let each: Vec<Vec<f32>> = members.iter().map(|m| logits(m)).collect::<Result<_, _>>()?;
        for (i, g) in got.iter().enumerate() {
            let mean = each.iter().map(|e| e[i]).sum::<f32>() / 3.0;
            assert!((g - mean).abs() < 1e-5, "row {i}: {g} vs {mean}");
        }
        assert_eq!(merge_ensemble(members[..1].iter().map(Vec::as_slice)), members[0], "one member is unchanged");
        Ok(())
    }

    #[test]
    fn refuses_data_without_both_classes_in_each_part() {
        let (mut data, _) = synthetic(1000, 4, 1);
        data.labels.iter_mut().for_each(|l| *l = 0);
        let err = train(&data, &TrainConfig::default()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("both classes"), "{err}");
        data.rows.pop();
        assert!(train(&data, &TrainConfig::default()).is_err());
    }

    /// The size of a real training run; run with
    /// `RAYON_NUM_THREADS=2 cargo test --release -p operators --lib training::tests::training_time -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn training_time() -> Result<(), ModelError> {
        let n: usize = std::env::var("VIGIL_TRAIN_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(800_000);
        let (data, truth) = synthetic(n, 25, 11);
        let best = oracle(&data, &truth);
        let weight: Option<f64> = std::env::var("VIGIL_POS_WEIGHT").ok().and_then(|v| v.parse().ok());
        let cfg = TrainConfig { positive_weight: weight, ..TrainConfig::default() };
        let start = Instant::now();
        let model = train(&data, &cfg)?;
        let t = &model.metadata().training;
        println!(
            "trained {n} × 25 in {:.1} s: {} epochs (best {}), val PR-AUC {:.4}, ROC-AUC {:.4} \
             (Bayes-optimal {:.4} / {:.4}), fraud rate {:.4}, pos weight {:.1}",
            start.elapsed().as_secs_f64(),
            t.epochs_run,
            t.best_epoch,
            t.validation_pr_auc,
            t.validation_roc_auc,
            best.pr_auc,
            best.roc_auc,
            t.fraud_rate,
            t.positive_weight
        );
        Ok(())
    }
}
