//! `vigil train --unsupervised`: a model of how rare an event is among the training events,
//! for streams without labels. Two published methods, both compiled into what the stream
//! already scores (the model file, the stream and the HTTP API do not change):
//!
//! - `copula` (the default): a Gaussian copula — each input mapped through its training
//!   quantiles to a normal score, clipped at ±3 — and the Mahalanobis distance of the scores
//!   under their training covariance, shrunk by 0.1 towards its mean variance and refitted
//!   once without the 1 % most distant rows (`operators::model::copula`). It sees
//!   how inputs move together, which per-input tails cannot: on ULB day 2 it reaches PR-AUC
//!   0.5 where ECOD stays under 0.15 (docs/design.md).
//! - `ecod` (Li et al., "ECOD: Unsupervised Outlier Detection Using Empirical Cumulative
//!   Distribution Functions", TKDE 2022): every input's empirical tail probability, `−ln`
//!   summed over the inputs, as one tree per input.
//!
//! Both turn their rarity S (ECOD's sum of terms; the copula's squared distance) into a score
//! that is 0.5 at a cut `S_q` between the `(1 − alert_rate)` quantile of the training S and
//! the next one above, so the threshold 0.5 blocks that share of training events: ECOD's
//! `σ(S − S_q)` keeps each input's term in the logit as it stands (reasons read it back),
//! the copula's `σ(2·ln(S / S_q))` spans its far wider range without saturating.
//!
//! ECOD in detail:
//!
//! - Per input, the training values are cut at tail probabilities `2^(−k/2)` on both sides
//!   (and the median), so the far tails — where the anomalies are — keep their resolution.
//! - Each interval's term is `max(0, −ln(2·t))`, with `t` the smaller of the two
//!   (add-one smoothed) tail probabilities at the interval's less extreme end: 0 at the median,
//!   growing by ~0.35 per halving of the tail share. Two-sided, where ECOD picks a side per
//!   input by skewness, because a fraud can be unusually small as well as large.
//! - One tree per input routes the value to its interval (a balanced search tree over the
//!   cuts); a missing value goes the median's way, to a term of 0 ("nothing unusual").
//!
//! Reasons: each input's share of S ranks the inputs, and its own tail share is the phrase
//! ("amount 5234.1 above 99.95 % of events seen").

use operators::model::copula::{Copula, CopulaNet};
use operators::model::file::{Model, ModelError, ModelMetadata, TrainingInfo, KIND_UNSUPERVISED};
use operators::model::tree_walk::PackedTrees;
use operators::model::trees::{Node, TreeTables};
use serde::{Deserialize, Serialize};

use crate::outcome::{input_specs, TrainingData};

/// The unsupervised methods; the name is the model kind's suffix (`unsupervised:copula`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Copula,
    Ecod,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Copula => "copula",
            Method::Ecod => "ecod",
        }
    }
}

/// Settings of unsupervised training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnsupervisedConfig {
    pub method: Method,
    /// Share of training events scoring above the threshold.
    pub alert_rate: f64,
    /// Recorded in the metadata; the method itself has no randomness.
    pub seed: u64,
    pub input_name: String,
}

impl Default for UnsupervisedConfig {
    fn default() -> Self {
        UnsupervisedConfig { method: Method::Copula, alert_rate: 0.001, seed: 42, input_name: String::new() }
    }
}

/// Slope of the score's sigmoid per unit of summed `−ln` tail. 1, so that every input's term
/// in the logit is its `−ln(2·t)` as it stands, which reasons turn back into a tail share.
const SLOPE: f64 = 1.0;

/// Quantile knots per input of the copula (257 values: every 1/256 of the training events).
const COPULA_KNOTS: usize = 257;
/// Normal scores are clipped to ±this, so one wild value cannot outweigh every other input.
const COPULA_CLIP: f32 = 3.0;
/// Shrinkage of the normal scores' covariance towards its mean variance: window features are
/// nearly collinear (a 24 h and a 7 d count of a two-day stream), and an unshrunk inverse
/// turns their tiny disagreements into huge distances. Ledoit–Wolf's automatic shrinkage was
/// measured and shrank far too little here (docs/design.md).
const COPULA_SHRINK: f64 = 0.1;
/// Share of the most distant training rows left out of the second fit.
const COPULA_TRIM: f64 = 0.01;

/// Trains the unsupervised model on every row of `data` (labels are not read).
pub fn train_unsupervised(data: &TrainingData, cfg: &UnsupervisedConfig) -> Result<Model, ModelError> {
    let d = data.names.len();
    let n = data.rows.len().checked_div(d).unwrap_or(0);
    if d == 0 || n < 2 || data.rows.len() != n * d {
        return Err(ModelError::Training(format!("need inputs and at least two rows, got {d} inputs, {n} rows")));
    }
    if !(cfg.alert_rate > 0.0 && cfg.alert_rate < 1.0) {
        return Err(ModelError::Training(format!("alert rate {} is not in (0, 1)", cfg.alert_rate)));
    }
    let meta = ModelMetadata {
        version: String::new(),
        features: String::new(),
        kind: format!("{KIND_UNSUPERVISED}{}", cfg.method.name()),
        layers: Vec::new(),
        trees: None,
        inputs: input_specs(&data.names, &data.rows),
        threshold: 0.5,
        training: TrainingInfo {
            input: cfg.input_name.clone(),
            events: n as u64,
            time_min_ms: data.times_ms.iter().copied().min().unwrap_or(0),
            time_max_ms: data.times_ms.iter().copied().max().unwrap_or(0),
            seed: cfg.seed,
            alert_rate: Some(cfg.alert_rate),
            ..TrainingInfo::default()
        },
    };
    match cfg.method {
        Method::Ecod => train_ecod(data, cfg, meta),
        Method::Copula => train_copula(data, cfg, meta),
    }
}

/// ECOD's per-input tails as one tree per input.
fn train_ecod(data: &TrainingData, cfg: &UnsupervisedConfig, meta: ModelMetadata) -> Result<Model, ModelError> {
    let d = data.names.len();
    let trees: Vec<Vec<Node>> = (0..d).map(|j| input_tree(j, &column(data, j))).collect();
    let mut tables = TreeTables::from_nodes(&trees, 0.0, SLOPE).map_err(ModelError::Training)?;
    let mut sums = Vec::with_capacity(data.labels.len());
    PackedTrees::new(&tables, d).map_err(ModelError::Training)?.logits(&data.rows, &mut sums);
    let cut = quantile_above(&sums, cfg.alert_rate);
    tables.base = -cut;
    tracing::info!(inputs = d, cut, "unsupervised ecod model fitted");
    Model::from_trees(meta, tables)
}

/// The Gaussian copula and its ridge-regularised Mahalanobis distance.
fn train_copula(data: &TrainingData, cfg: &UnsupervisedConfig, meta: ModelMetadata) -> Result<Model, ModelError> {
    let d = data.names.len();
    let mut knot_values = Vec::with_capacity(d * COPULA_KNOTS);
    for j in 0..d {
        knot_values.extend(knots(&column(data, j)));
    }
    let mut table = Copula {
        inputs: d,
        knots: COPULA_KNOTS,
        knot_values,
        mean: vec![0.0; d],
        whiten: vec![0.0; d * d],
        clip: COPULA_CLIP,
        cut: 0.0,
    };
    // Normal scores of every training row; a missing input stays NaN until the means exist.
    let scores: Vec<f32> = data
        .rows
        .chunks_exact(d)
        .flat_map(|row| {
            row.iter()
                .enumerate()
                .map(|(j, &v)| if v.is_finite() { table.score(j, v) } else { f32::NAN })
                .collect::<Vec<_>>()
        })
        .collect();
    fit_gaussian(&mut table, &scores, &|_| true)?;
    // Refit once without the most distant rows: a few extreme events otherwise bend the
    // covariance towards themselves, and a fit on a quiet stretch of the stream can leave a
    // near-singular direction that makes ordinary events look wild.
    let first = distances(&table, data)?;
    let mut sorted = first.clone();
    sorted.sort_unstable_by(f32::total_cmp);
    let trim = sorted[((sorted.len() - 1) as f64 * (1.0 - COPULA_TRIM)) as usize];
    fit_gaussian(&mut table, &scores, &|i| first[i] <= trim)?;
    table.cut = quantile_above(&distances(&table, data)?, cfg.alert_rate);
    tracing::info!(inputs = d, cut = table.cut, "unsupervised copula model fitted");
    Model::from_copula(meta, table)
}

/// Sets the table's mean and whitening from the normal scores of the rows `keep` accepts:
/// their covariance shrunk towards its mean variance, `(1 − s)·S + s·(tr S / d)·I`.
fn fit_gaussian(table: &mut Copula, scores: &[f32], keep: &dyn Fn(usize) -> bool) -> Result<(), ModelError> {
    let d = table.inputs;
    let (mean, covariance) = moments(scores, d, keep);
    table.mean = mean.iter().map(|&m| m as f32).collect();
    let level = (0..d).map(|j| covariance[j * d + j]).sum::<f64>() / d as f64;
    let mut a: Vec<f64> = covariance.iter().map(|c| c * (1.0 - COPULA_SHRINK)).collect();
    for j in 0..d {
        // The floor keeps an all-constant input set positive definite.
        a[j * d + j] += COPULA_SHRINK * level.max(1e-3);
    }
    table.whiten = inverse_cholesky(&a, d)
        .ok_or_else(|| ModelError::Training("the covariance is not positive definite".into()))?;
    Ok(())
}

/// Squared distances of every training row under `table`.
fn distances(table: &Copula, data: &TrainingData) -> Result<Vec<f32>, ModelError> {
    let d = table.inputs;
    let net = CopulaNet::new(table.clone())?;
    let mut out = Vec::with_capacity(data.labels.len());
    for chunk in data.rows.chunks(d * 65_536) {
        out.extend(net.distances(chunk, chunk.len() / d)?.to_vec1::<f32>()?);
    }
    Ok(out)
}

/// `COPULA_KNOTS` evenly spaced quantiles (linear between order statistics); all 0 for an
/// input never seen.
fn knots(sorted: &[f32]) -> Vec<f32> {
    if sorted.is_empty() {
        return vec![0.0; COPULA_KNOTS];
    }
    let last = (sorted.len() - 1) as f64;
    (0..COPULA_KNOTS)
        .map(|k| {
            let at = k as f64 / (COPULA_KNOTS - 1) as f64 * last;
            let (lo, frac) = (at.floor() as usize, at - at.floor());
            let hi = (lo + 1).min(sorted.len() - 1);
            (f64::from(sorted[lo]) + frac * (f64::from(sorted[hi]) - f64::from(sorted[lo]))) as f32
        })
        .collect()
}

/// Mean of each column's finite values, and the covariance with a missing value counted as
/// its column's mean (how scoring treats it), over the rows `keep` accepts.
fn moments(scores: &[f32], d: usize, keep: &dyn Fn(usize) -> bool) -> (Vec<f64>, Vec<f64>) {
    let rows = || scores.chunks_exact(d).enumerate().filter(|(i, _)| keep(*i)).map(|(_, row)| row);
    let n = rows().count().max(1);
    let mut sum = vec![0f64; d];
    let mut count = vec![0f64; d];
    for row in rows() {
        for (j, &z) in row.iter().enumerate() {
            if z.is_finite() {
                sum[j] += f64::from(z);
                count[j] += 1.0;
            }
        }
    }
    let mean: Vec<f64> = sum.iter().zip(&count).map(|(s, c)| if *c > 0.0 { s / c } else { 0.0 }).collect();
    let mut cov = vec![0f64; d * d];
    let mut centred = vec![0f64; d];
    for row in rows() {
        for j in 0..d {
            centred[j] = if row[j].is_finite() { f64::from(row[j]) - mean[j] } else { 0.0 };
        }
        for r in 0..d {
            if centred[r] != 0.0 {
                for c in r..d {
                    cov[r * d + c] += centred[r] * centred[c];
                }
            }
        }
    }
    for r in 0..d {
        for c in r..d {
            cov[r * d + c] /= n as f64;
            cov[c * d + r] = cov[r * d + c];
        }
    }
    (mean, cov)
}

/// `L⁻¹` for the Cholesky factor `L` of the symmetric positive-definite `a` (`d × d`,
/// row-major), as `f32`; `None` if `a` is not positive definite.
fn inverse_cholesky(a: &[f64], d: usize) -> Option<Vec<f32>> {
    let mut l = vec![0f64; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum();
            if i == j {
                let v = a[i * d + i] - s;
                if v <= 0.0 {
                    return None;
                }
                l[i * d + i] = v.sqrt();
            } else {
                l[i * d + j] = (a[i * d + j] - s) / l[j * d + j];
            }
        }
    }
    // Forward substitution, column by column of the identity.
    let mut inv = vec![0f64; d * d];
    for c in 0..d {
        for i in c..d {
            let s: f64 = (c..i).map(|k| l[i * d + k] * inv[k * d + c]).sum();
            inv[i * d + c] = (if i == c { 1.0 } else { 0.0 } - s) / l[i * d + i];
        }
    }
    Some(inv.into_iter().map(|v| v as f32).collect())
}

/// The finite values of input `j`, sorted.
fn column(data: &TrainingData, j: usize) -> Vec<f32> {
    let d = data.names.len();
    let mut values: Vec<f32> = data.rows.chunks_exact(d).map(|row| row[j]).filter(|v| v.is_finite()).collect();
    values.sort_unstable_by(f32::total_cmp);
    values
}

/// A cut with at most `rate` of the sums above it: the midpoint between the smallest such sum
/// and the next distinct sum above, so that rounding (the stream adds the terms in its own
/// order) cannot move a sum tied at the quantile across the threshold.
fn quantile_above(sums: &[f32], rate: f64) -> f32 {
    let mut sorted = sums.to_vec();
    sorted.sort_unstable_by(f32::total_cmp);
    let allowed = (rate * sorted.len() as f64).floor() as usize;
    let mut at = sorted.len() - 1 - allowed.min(sorted.len() - 1);
    // Ties: move up until no more than `allowed` sums lie strictly above.
    while at + 1 < sorted.len() && sorted.len() - sorted.partition_point(|&s| s <= sorted[at]) > allowed {
        at += 1;
    }
    let above = sorted.partition_point(|&s| s <= sorted[at]);
    match sorted.get(above) {
        Some(&next) => sorted[at] + (next - sorted[at]) / 2.0,
        None => sorted[at].next_up(),
    }
}

/// Cut points of one input: the values at tail probabilities 2^(−k/2) on both sides and the
/// median, deduplicated (a discrete input has few).
fn cuts(sorted: &[f32]) -> Vec<f32> {
    let n = sorted.len();
    let mut probs = vec![0.5];
    let mut p = 0.5f64;
    while p * n as f64 >= 1.0 {
        p /= std::f64::consts::SQRT_2;
        probs.push(p);
        probs.push(1.0 - p);
    }
    let mut cuts: Vec<f32> = probs.iter().map(|&q| sorted[((q * n as f64) as usize).min(n - 1)]).collect();
    // Intervals below the smallest and above the largest training value: "beyond every event
    // seen" on either side.
    cuts.push(sorted[0]);
    cuts.push(sorted[n - 1].next_up());
    cuts.sort_unstable_by(f32::total_cmp);
    cuts.dedup();
    cuts
}

/// The tree of input `j`: intervals between the cuts, each with its term, and the training
/// share of each interval (for the internal nodes' expected values).
fn input_tree(j: usize, sorted: &[f32]) -> Vec<Node> {
    if sorted.is_empty() {
        return vec![Node::Leaf { value: 0.0 }];
    }
    let cuts = cuts(sorted);
    let n = sorted.len() as f64;
    // Interval k is [cuts[k-1], cuts[k]) with cuts[-1] = −∞ and cuts[len] = +∞.
    let intervals: Vec<(f64, f64)> = (0..=cuts.len())
        .map(|k| {
            let lo = if k == 0 { 0 } else { sorted.partition_point(|&v| v < cuts[k - 1]) };
            let hi = if k == cuts.len() { sorted.len() } else { sorted.partition_point(|&v| v < cuts[k]) };
            // Less extreme end of the interval: values at most its top for the left tail, at
            // least its bottom for the right tail (add-one smoothed).
            let left = (hi as f64 + 1.0) / (n + 1.0);
            let right = ((sorted.len() - lo) as f64 + 1.0) / (n + 1.0);
            let term = (-(2.0 * left.min(right)).ln()).max(0.0);
            (term, (hi - lo) as f64 / n)
        })
        .collect();
    let mut nodes = Vec::with_capacity(2 * intervals.len() + 1);
    nodes.push(Node::Leaf { value: 0.0 });
    let median = sorted[sorted.len() / 2];
    build(j, &cuts, &intervals, median, 0, intervals.len(), &mut nodes, 0);
    nodes
}

/// Builds the search tree over intervals `[from, to)` into slot `at` (already reserved),
/// appending children; returns the expected term under it (weighted by training share). A
/// missing value goes the median's way at every split, so it ends in the median's interval,
/// whose term is 0: nothing unusual.
#[allow(clippy::too_many_arguments)]
fn build(
    j: usize,
    cuts: &[f32],
    intervals: &[(f64, f64)],
    median: f32,
    from: usize,
    to: usize,
    nodes: &mut Vec<Node>,
    at: usize,
) -> f64 {
    if to - from == 1 {
        nodes[at] = Node::Leaf { value: intervals[from].0 };
        return intervals[from].0;
    }
    let mid = (from + to) / 2;
    let (left, right) = (nodes.len(), nodes.len() + 1);
    nodes.push(Node::Leaf { value: 0.0 });
    nodes.push(Node::Leaf { value: 0.0 });
    let lv = build(j, cuts, intervals, median, from, mid, nodes, left);
    let rv = build(j, cuts, intervals, median, mid, to, nodes, right);
    let share = |r: std::ops::Range<usize>| intervals[r].iter().map(|i| i.1).sum::<f64>();
    let (ls, rs) = (share(from..mid), share(mid..to));
    let value = if ls + rs > 0.0 { (lv * ls + rv * rs) / (ls + rs) } else { (lv + rv) / 2.0 };
    nodes[at] = Node::Split {
        feature: j,
        threshold: f64::from(cuts[mid - 1]),
        left,
        right,
        missing: if median < cuts[mid - 1] { left } else { right },
        value,
    };
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(columns: &[Vec<f32>]) -> TrainingData {
        let n = columns[0].len();
        let d = columns.len();
        let mut rows = Vec::with_capacity(n * d);
        for i in 0..n {
            rows.extend(columns.iter().map(|c| c[i]));
        }
        TrainingData {
            names: (0..d).map(|j| format!("x{j}")).collect(),
            rows,
            labels: vec![0; n],
            times_ms: (0..n as i64).collect(),
        }
    }

    /// The term of one value, by the definition: −log(2·min(left, right)) of the interval's
    /// less extreme end, computed by brute force over the sorted training values.
    #[test]
    fn a_lone_extreme_value_scores_by_its_tail_share() -> Result<(), ModelError> {
        let values: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let cfg = UnsupervisedConfig { method: Method::Ecod, alert_rate: 0.01, ..Default::default() };
        let model = train_unsupervised(&data(&[values]), &cfg)?;
        let mut s = Vec::new();
        model.score_batch(&[500.0, 900.0, 995.0, 5000.0, -5000.0, f32::NAN], &mut s)?;
        assert!(s[0] < s[1] && s[1] < s[2] && s[2] < s[3], "{s:?}");
        assert!((s[3] - s[4]).abs() < 1e-6, "both tails alike: {s:?}");
        // Missing = the median's score.
        assert!((s[5] - s[0]).abs() < 1e-6, "{s:?}");
        // Beyond every training value: −log(2/1001) ≈ 6.21.
        let z = |p: f32| (f64::from(p) / (1.0 - f64::from(p))).ln();
        let term = z(s[3]) - z(s[0]);
        assert!((term / SLOPE - (1001.0f64 / 2.0).ln()).abs() < 1e-3, "{term}");
        assert_eq!(model.metadata().kind, "unsupervised:ecod");
        assert!(model.metadata().version.starts_with("ecod-"));
        Ok(())
    }

    #[test]
    fn the_alert_rate_is_the_share_of_training_rows_blocked() -> Result<(), ModelError> {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 40) as f32 / (1u64 << 24) as f32
        };
        let columns: Vec<Vec<f32>> = (0..3).map(|_| (0..20_000).map(|_| next().powi(3) * 100.0).collect()).collect();
        let d = data(&columns);
        for method in [Method::Copula, Method::Ecod] {
            for rate in [0.001, 0.01, 0.05] {
                let cfg = UnsupervisedConfig { method, alert_rate: rate, ..Default::default() };
                let model = train_unsupervised(&d, &cfg)?;
                let mut s = Vec::new();
                model.score_batch(&d.rows, &mut s)?;
                let threshold = model.metadata().threshold;
                let blocked = s.iter().filter(|&&x| f64::from(x) > threshold).count() as f64 / s.len() as f64;
                assert!(blocked <= rate && blocked >= rate * 0.8, "{method:?} rate {rate}: blocked {blocked}");
            }
        }
        Ok(())
    }

    /// Two inputs that always move together: an event where they disagree is rarer than one
    /// where both sit at a more extreme quantile. Per-input tails (ECOD) cannot see that; the
    /// copula's distance does.
    #[test]
    fn the_copula_sees_inputs_that_stop_moving_together() -> Result<(), ModelError> {
        let x: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 5000) as f32 / 50.0).collect();
        let y: Vec<f32> = x.iter().map(|v| 2.0 * v + 1.0).collect();
        let d = data(&[x, y]);
        // On the diagonal at the 90 % and 98 % quantiles; then x at 90 %, y at 10 %.
        let rows = [90.0, 181.0, 98.0, 197.0, 90.0, 21.0];
        let score = |method| -> Result<Vec<f32>, ModelError> {
            let cfg = UnsupervisedConfig { method, alert_rate: 0.01, ..Default::default() };
            let model = train_unsupervised(&d, &cfg)?;
            let mut s = Vec::new();
            model.score_batch(&rows, &mut s)?;
            Ok(s)
        };
        let ecod = score(Method::Ecod)?;
        assert!(ecod[2] < ecod[1], "{ecod:?}");
        let copula = score(Method::Copula)?;
        assert!(copula[2] > 0.5 && copula[1] < 0.5 && copula[0] < copula[1], "{copula:?}");
        Ok(())
    }
}
