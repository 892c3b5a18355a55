//! What every trainer shares: the rows ([`TrainingData`]) and their input statistics, the
//! time-ordered split, and turning validation logits
//! into a calibrated score, a threshold and the [`TrainingInfo`] recorded in the model file.
//!
//! Invariant: the split is by time — the last `validation_fraction` of rows in arrival order is
//! held out — because fraud patterns drift and a random split would leak the future into
//! training and flatter the model.

use operators::model::file::{sigmoid, InputSpec, ModelError, ThresholdPolicy, TrainingInfo};

use crate::calibration::{choose_threshold, expected_calibration_error, fit_platt, ThresholdChoice};
use crate::evaluation::{evaluate, Evaluation, ECE_BINS};

/// Labelled feature rows in event/arrival order.
#[derive(Debug, Clone, Default)]
pub struct TrainingData {
    /// Input names, one per column.
    pub names: Vec<String>,
    /// Row-major `n × names.len()`, NaN = missing.
    pub rows: Vec<f32>,
    /// 1 = fraud.
    pub labels: Vec<u8>,
    pub times_ms: Vec<i64>,
}

/// Mean and population std of each column's finite training values; a column with none gets
/// mean 0, std 1, so it contributes a constant 0.
pub fn input_specs(names: &[String], rows: &[f32]) -> Vec<InputSpec> {
    let d = names.len();
    let mut sum = vec![0f64; d];
    let mut sq = vec![0f64; d];
    let mut count = vec![0u64; d];
    for row in rows.chunks_exact(d) {
        for (j, &v) in row.iter().enumerate() {
            if v.is_finite() {
                let v = f64::from(v);
                sum[j] += v;
                sq[j] += v * v;
                count[j] += 1;
            }
        }
    }
    names
        .iter()
        .enumerate()
        .map(|(j, name)| {
            let (mean, std) = if count[j] == 0 {
                (0.0, 1.0)
            } else {
                let mean = sum[j] / count[j] as f64;
                (mean, (sq[j] / count[j] as f64 - mean * mean).max(0.0).sqrt())
            };
            InputSpec { name: name.clone(), fill: mean, mean, std }
        })
        .collect()
}

/// The number of training rows (the rest, later in time, validate), checking that both parts
/// hold both classes.
pub fn split_point(labels: &[u8], validation_fraction: f64) -> Result<usize, ModelError> {
    let n = labels.len();
    if n < 2 || !(validation_fraction > 0.0 && validation_fraction < 1.0) {
        return Err(ModelError::Training(format!(
            "need two rows and a validation fraction in (0, 1), got {n} rows and {validation_fraction}"
        )));
    }
    let n_valid = ((n as f64) * validation_fraction).round() as usize;
    let n_train = n - n_valid.clamp(1, n - 1);
    let (train_y, valid_y) = labels.split_at(n_train);
    let positives = train_y.iter().filter(|&&l| l != 0).count();
    let valid_pos = valid_y.iter().filter(|&&l| l != 0).count();
    if positives == 0 || positives == n_train || valid_pos == 0 || valid_pos == valid_y.len() {
        return Err(ModelError::Training(format!(
            "both classes are needed in the training part ({positives} fraud of {n_train}) \
             and in the validation part (the last {} rows: {valid_pos} fraud)",
            valid_y.len()
        )));
    }
    Ok(n_train)
}

/// Platt's calibration of validation logits and the threshold chosen on the calibrated scores.
#[derive(Debug, Clone)]
pub struct Calibrated {
    /// `σ(a·z + b)` is the calibrated score of logit z.
    pub a: f64,
    pub b: f64,
    pub choice: ThresholdChoice,
    pub evaluation: Evaluation,
    pub ece: f64,
    pub policy: ThresholdPolicy,
}

/// Calibrates `logits` of the validation rows against `labels` and chooses the threshold.
pub fn calibrate(logits: &[f32], labels: &[u8], policy: ThresholdPolicy) -> Result<Calibrated, ModelError> {
    let (a, b) = fit_platt(logits, labels);
    let probs: Vec<f32> = logits.iter().map(|&z| sigmoid((f64::from(z) * a + b) as f32)).collect();
    let choice = choose_threshold(policy, &probs, labels).map_err(ModelError::Training)?;
    let evaluation = evaluate(&probs, labels, choice.threshold);
    let ece = expected_calibration_error(&probs, labels, ECE_BINS);
    Ok(Calibrated { a, b, choice, evaluation, ece, policy })
}

impl Calibrated {
    /// The metadata's `training` record for a model trained on `data` and calibrated here.
    pub fn training_info(&self, data: &TrainingData, input_name: &str, seed: u64) -> TrainingInfo {
        TrainingInfo {
            input: input_name.to_string(),
            events: data.labels.len() as u64,
            fraud_rate: data.labels.iter().filter(|&&l| l != 0).count() as f64 / data.labels.len().max(1) as f64,
            time_min_ms: data.times_ms.iter().copied().min().unwrap_or(0),
            time_max_ms: data.times_ms.iter().copied().max().unwrap_or(0),
            validation_pr_auc: self.evaluation.pr_auc,
            validation_roc_auc: self.evaluation.roc_auc,
            seed,
            calibration: Some([self.a, self.b]),
            validation_ece: self.ece,
            threshold_policy: Some(self.policy),
            expected_precision: self.choice.precision,
            expected_recall: self.choice.recall,
            ..TrainingInfo::default()
        }
    }

    /// The threshold written into the model.
    pub fn threshold(&self) -> f64 {
        self.choice.threshold.clamp(0.0, 1.0)
    }
}
