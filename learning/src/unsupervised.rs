//! `vigil train --unsupervised`: a model of how rare an event is among the training events,
//! for streams without labels, compiled into the same tree tables as the `gbdt` kind (so the
//! stream, the model file and the HTTP API do not change).
//!
//! The method is ECOD's (Li et al., "ECOD: Unsupervised Outlier Detection Using Empirical
//! Cumulative Distribution Functions", TKDE 2022): every input's empirical tail probability,
//! `−log` of it summed over the inputs. Inductive and per input, so it compiles exactly:
//!
//! - Per input, the training values are cut at tail probabilities `2^(−k/2)` on both sides
//!   (and the median), so the far tails — where the anomalies are — keep their resolution.
//! - Each interval's term is `max(0, −log(2·t))`, with `t` the smaller of the two
//!   (add-one smoothed) tail probabilities at the interval's less extreme end: 0 at the median,
//!   growing by ~0.35 per halving of the tail share. Two-sided, where ECOD picks a side per
//!   input by skewness, because a fraud can be unusually small as well as large.
//! - One tree per input routes the value to its interval (a balanced search tree over the
//!   cuts); a missing value goes to a leaf of 0 ("nothing unusual seen").
//! - The score is `σ(S − S_q)` of the sum S, with `S_q` the `(1 − alert_rate)` quantile of
//!   the training sums: so `score > 0.5` blocks that share of training events, and the
//!   threshold is the quantile itself, mapped.
//!
//! Reasons come from the same tables: Saabas' attribution of a one-input tree is that input's
//! term minus its training mean, so the most extreme inputs are named first.

use operators::model::file::{Model, ModelError, ModelMetadata, TrainingInfo, KIND_UNSUPERVISED};
use operators::model::trees::{Node, TreeTables};
use serde::{Deserialize, Serialize};

use crate::training::{input_specs, TrainingData};

/// The method's name in the model kind (`unsupervised:ecod`).
pub const METHOD: &str = "ecod";

/// Settings of unsupervised training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnsupervisedConfig {
    /// Share of training events scoring above the threshold.
    pub alert_rate: f64,
    /// Recorded in the metadata; the method itself has no randomness.
    pub seed: u64,
    pub input_name: String,
}

impl Default for UnsupervisedConfig {
    fn default() -> Self {
        UnsupervisedConfig { alert_rate: 0.001, seed: 42, input_name: String::new() }
    }
}

/// Slope of the score's sigmoid per unit of summed `−ln` tail. 1, so that every input's term
/// in the logit is its `−ln(2·t)` as it stands, which reasons turn back into a tail share.
const SLOPE: f64 = 1.0;

/// Trains the unsupervised model on every row of `data` (labels are not read).
pub fn train_unsupervised(data: &TrainingData, cfg: &UnsupervisedConfig) -> Result<Model, ModelError> {
    let d = data.names.len();
    let n = if d == 0 { 0 } else { data.rows.len() / d };
    if d == 0 || n < 2 || data.rows.len() != n * d {
        return Err(ModelError::Training(format!("need inputs and at least two rows, got {d} inputs, {n} rows")));
    }
    if !(cfg.alert_rate > 0.0 && cfg.alert_rate < 1.0) {
        return Err(ModelError::Training(format!("alert rate {} is not in (0, 1)", cfg.alert_rate)));
    }
    let trees: Vec<Vec<Node>> = (0..d).map(|j| input_tree(j, &column(data, j))).collect();
    let mut tables = TreeTables::from_nodes(&trees, 0.0, SLOPE).map_err(ModelError::Training)?;
    let mut sums = Vec::with_capacity(n);
    tables.logits(&data.rows, d, &mut sums);
    let cut = quantile_above(&sums, cfg.alert_rate);
    tables.base = -cut;
    let threshold = 0.5;
    let blocked = sums.iter().filter(|&&s| s > cut).count();
    tracing::info!(inputs = d, rows = n, cut, blocked, "unsupervised model fitted");
    let meta = ModelMetadata {
        version: String::new(),
        kind: format!("{KIND_UNSUPERVISED}{METHOD}"),
        layers: Vec::new(),
        trees: None,
        inputs: input_specs(&data.names, &data.rows),
        threshold,
        training: TrainingInfo {
            input: cfg.input_name.clone(),
            events: n as u64,
            time_min_ms: data.times_ms.iter().copied().min().unwrap_or(0),
            time_max_ms: data.times_ms.iter().copied().max().unwrap_or(0),
            seed: cfg.seed,
            epochs_run: d,
            alert_rate: Some(cfg.alert_rate),
            ..TrainingInfo::default()
        },
    };
    Model::from_trees(meta, tables)
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
    build(j, &cuts, &intervals, 0, intervals.len(), &mut nodes, 0);
    // Missing values at the root go to a leaf of 0, appended after the tree.
    let missing = nodes.len();
    nodes.push(Node::Leaf { value: 0.0 });
    if let Node::Split { missing: m, .. } = &mut nodes[0] {
        *m = missing;
    }
    nodes
}

/// Builds the search tree over intervals `[from, to)` into slot `at` (already reserved),
/// appending children; returns the expected term under it (weighted by training share).
fn build(
    j: usize,
    cuts: &[f32],
    intervals: &[(f64, f64)],
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
    let lv = build(j, cuts, intervals, from, mid, nodes, left);
    let rv = build(j, cuts, intervals, mid, to, nodes, right);
    let share = |r: std::ops::Range<usize>| intervals[r].iter().map(|i| i.1).sum::<f64>();
    let (ls, rs) = (share(from..mid), share(mid..to));
    let value = if ls + rs > 0.0 { (lv * ls + rv * rs) / (ls + rs) } else { (lv + rv) / 2.0 };
    nodes[at] = Node::Split { feature: j, threshold: f64::from(cuts[mid - 1]), left, right, missing: left, value };
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
        let model =
            train_unsupervised(&data(&[values]), &UnsupervisedConfig { alert_rate: 0.01, ..Default::default() })?;
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
        for rate in [0.001, 0.01, 0.05] {
            let model = train_unsupervised(&d, &UnsupervisedConfig { alert_rate: rate, ..Default::default() })?;
            let mut s = Vec::new();
            model.score_batch(&d.rows, &mut s)?;
            let blocked =
                s.iter().filter(|&&x| f64::from(x) > model.metadata().threshold).count() as f64 / s.len() as f64;
            assert!(blocked <= rate && blocked >= rate * 0.8, "rate {rate}: blocked {blocked}");
        }
        Ok(())
    }
}
