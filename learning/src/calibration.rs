//! Turning a ranking score into a decision that means something: Platt calibration of the
//! model's logit on the validation split, the block threshold chosen there for a stated policy,
//! and the expected calibration error (ECE) that checks the result.
//!
//! Why Platt and not isotonic: it is monotone and two numbers, so it is folded into the MLP's
//! output layer (`σ(a·z + b)` is the same network with the last layer scaled) — the served
//! score *is* the calibrated probability, the ranking (and so PR-AUC) is unchanged, and the
//! model file keeps its format. Class weighting during training inflates the raw scores;
//! calibration undoes exactly that.

use operators::model::file::ThresholdPolicy;
use serde::{Deserialize, Serialize};

/// A threshold and what it achieved on the validation split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThresholdChoice {
    pub threshold: f64,
    pub precision: f64,
    pub recall: f64,
    pub fpr: f64,
}

/// Platt's method: fits `P(fraud | z) = σ(a·z + b)` by Newton's method on the log-loss, with
/// Platt's smoothed targets `(P+1)/(P+2)` and `1/(N+2)` so a separable validation set does not
/// drive `a` to infinity, and a backtracking line search so a step never increases the loss
/// (a full Newton step from `(1, 0)` overshoots when the logits are large, and then diverges).
/// Returns `(a, b)`; `(1, 0)` (no change) without both classes.
pub fn fit_platt(logits: &[f32], labels: &[u8]) -> (f64, f64) {
    let positives = labels.iter().filter(|&&l| l != 0).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return (1.0, 0.0);
    }
    let hi = (positives + 1.0) / (positives + 2.0);
    let lo = 1.0 / (negatives + 2.0);
    let target = |l: u8| if l != 0 { hi } else { lo };
    // Mean log-loss against the smoothed targets: softplus(x) − t·x for x = a·z + b.
    let loss = |a: f64, b: f64| {
        let total: f64 = logits
            .iter()
            .zip(labels)
            .map(|(&z, &l)| {
                let x = a * f64::from(z) + b;
                x.max(0.0) + (-x.abs()).exp().ln_1p() - target(l) * x
            })
            .sum();
        total / logits.len() as f64
    };
    let (mut a, mut b) = (1.0f64, 0.0f64);
    let mut current = loss(a, b);
    for _ in 0..100 {
        // Gradient and Hessian of the log-loss in (a, b).
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (&z, &l) in logits.iter().zip(labels) {
            let z = f64::from(z);
            let p = sigmoid(a * z + b);
            let w = (p * (1.0 - p)).max(1e-12);
            ga += (p - target(l)) * z;
            gb += p - target(l);
            haa += w * z * z;
            hab += w * z;
            hbb += w;
        }
        let reg = 1e-9 * logits.len() as f64;
        let (haa, hbb) = (haa + reg, hbb + reg);
        let det = haa * hbb - hab * hab;
        if det <= 0.0 || !det.is_finite() {
            break;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        let mut step = 1.0;
        let next = loop {
            let candidate = loss(a - step * da, b - step * db);
            if candidate <= current || step < 1e-10 {
                break candidate;
            }
            step /= 2.0;
        };
        if next > current {
            break;
        }
        a -= step * da;
        b -= step * db;
        let improvement = current - next;
        current = next;
        if improvement < 1e-15 {
            break;
        }
    }
    if a.is_finite() && b.is_finite() && a > 0.0 {
        (a, b)
    } else {
        (1.0, 0.0)
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Expected calibration error over `bins` equal-width probability bins: Σ |bin| / n ·
/// |mean predicted − observed fraud rate|.
pub fn expected_calibration_error(probs: &[f32], labels: &[u8], bins: usize) -> f64 {
    let mut count = vec![0u64; bins];
    let mut predicted = vec![0f64; bins];
    let mut observed = vec![0f64; bins];
    for (&p, &l) in probs.iter().zip(labels) {
        let bin = ((f64::from(p) * bins as f64) as usize).min(bins - 1);
        count[bin] += 1;
        predicted[bin] += f64::from(p);
        observed[bin] += f64::from(u8::from(l != 0));
    }
    let n = probs.len().min(labels.len()) as f64;
    (0..bins).filter(|&i| count[i] > 0).map(|i| (predicted[i] - observed[i]).abs() / n).sum()
}

/// Chooses the threshold for `policy` on validation `scores`. Cut-offs lie between distinct
/// scores: blocking the k highest score groups is "score > the midpoint of the k-th and
/// (k+1)-th distinct scores" — the midpoint, so that the last-bit differences between scoring
/// in training and in serving (batch shapes change float summation order) cannot move an
/// event across the threshold. `Err` says why no threshold meets the policy.
pub fn choose_threshold(policy: ThresholdPolicy, scores: &[f32], labels: &[u8]) -> Result<ThresholdChoice, String> {
    let mut order: Vec<(f32, bool)> = scores.iter().zip(labels).map(|(&s, &l)| (s, l != 0)).collect();
    order.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    let positives = order.iter().filter(|o| o.1).count() as f64;
    let negatives = order.len() as f64 - positives;
    // Cut-offs: (threshold, tp, fp) of "score > threshold", from blocking nothing to everything.
    let mut cuts = vec![(1.0f64, 0.0f64, 0.0f64)];
    let (mut tp, mut fp) = (0.0, 0.0);
    for (i, &(s, fraud)) in order.iter().enumerate() {
        if fraud {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        match order.get(i + 1) {
            Some(next) if next.0 == s => {}
            Some(next) => cuts.push(((f64::from(s) + f64::from(next.0)) / 2.0, tp, fp)),
            None => cuts.push((f64::from(s) / 2.0 - f64::EPSILON, tp, fp)),
        }
    }
    let choice = |&(threshold, tp, fp): &(f64, f64, f64)| ThresholdChoice {
        threshold,
        precision: if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 },
        recall: if positives > 0.0 { tp / positives } else { 0.0 },
        fpr: if negatives > 0.0 { fp / negatives } else { 0.0 },
    };
    let all: Vec<ThresholdChoice> = cuts.iter().map(choice).collect();
    let picked = match policy {
        ThresholdPolicy::Fixed(t) => {
            let (tp, fp) = order.iter().filter(|o| f64::from(o.0) > t).fold((0.0, 0.0), |(tp, fp), o| {
                if o.1 {
                    (tp + 1.0, fp)
                } else {
                    (tp, fp + 1.0)
                }
            });
            Some(choice(&(t, tp, fp)))
        }
        ThresholdPolicy::TargetPrecision(p) => all.iter().rev().find(|c| c.recall > 0.0 && c.precision >= p).copied(),
        ThresholdPolicy::MaxFpr(f) => all.iter().rev().find(|c| c.fpr <= f).copied(),
        ThresholdPolicy::CostRatio(r) => all
            .iter()
            .min_by(|a, b| {
                let cost = |c: &ThresholdChoice| r * (1.0 - c.recall) * positives + c.fpr * negatives;
                cost(a).total_cmp(&cost(b))
            })
            .copied(),
    };
    picked.ok_or_else(|| match policy {
        ThresholdPolicy::TargetPrecision(p) => {
            let best = all.iter().filter(|c| c.recall > 0.0).map(|c| c.precision).fold(0.0, f64::max);
            format!("no threshold reaches precision {p} on the validation split (best {best:.4})")
        }
        other => format!("no threshold satisfies {other:?} on the validation split"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Large, almost separable logits (as a class-weighted MLP gives): the fit must converge
    /// to the smoothed targets instead of diverging, so calibrated scores neither saturate to
    /// ties at 1.0 nor lose the ranking.
    #[test]
    fn platt_converges_on_large_nearly_separable_logits() {
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        for i in 0..2_000 {
            let jitter = (i % 17) as f32 * 0.3;
            logits.push(-25.0 + jitter);
            labels.push(0);
            if i % 20 == 0 {
                logits.push(18.0 + jitter);
                labels.push(1);
            }
        }
        logits.push(19.0);
        labels.push(0);
        let (a, b) = fit_platt(&logits, &labels);
        assert!(a > 0.0 && a < 5.0 && b.abs() < 50.0, "a = {a}, b = {b}");
        let top = sigmoid(a * 23.0 + b);
        assert!(top > 0.9 && (top as f32) < 1.0, "the highest positive maps to {top}");
        let bottom = sigmoid(a * -25.0 + b);
        assert!(bottom < 0.01, "{bottom}");
    }

    #[test]
    fn thresholds_by_hand() {
        // Scores high to low: 0.9 F, 0.8 F, 0.7 L, 0.6 F, 0.5 L, 0.4 L, 0.3 L, 0.2 L (F fraud).
        let scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2];
        let labels = [1, 1, 0, 1, 0, 0, 0, 0];
        let c = choose_threshold(ThresholdPolicy::TargetPrecision(0.75), &scores, &labels).unwrap();
        // Blocking {0.9, 0.8, 0.7, 0.6}: precision 3/4, recall 1 — more recall than {0.9, 0.8}.
        assert_eq!((c.threshold as f32, c.precision, c.recall), (0.55, 0.75, 1.0));
        let c = choose_threshold(ThresholdPolicy::TargetPrecision(0.9), &scores, &labels).unwrap();
        assert_eq!((c.threshold as f32, c.precision, c.recall), (0.75, 1.0, 2.0 / 3.0));
        let c = choose_threshold(ThresholdPolicy::MaxFpr(0.2), &scores, &labels).unwrap();
        assert_eq!((c.threshold as f32, c.fpr), (0.55, 0.2));
        // A miss costs 10 false alarms: blocking all 3 frauds costs 1 FP; fewer cost ≥ 10.
        let c = choose_threshold(ThresholdPolicy::CostRatio(10.0), &scores, &labels).unwrap();
        assert_eq!(c.threshold as f32, 0.55);
        // A miss costs half a false alarm: stop before the first legitimate score (cost 0.5).
        let c = choose_threshold(ThresholdPolicy::CostRatio(0.5), &scores, &labels).unwrap();
        assert_eq!((c.threshold as f32, c.recall), (0.75, 2.0 / 3.0));
        // The top score is legitimate: blocking nothing (cost 0.5) beats blocking both (1).
        let c = choose_threshold(ThresholdPolicy::CostRatio(0.5), &[0.9, 0.8], &[0, 1]).unwrap();
        assert_eq!((c.threshold, c.recall), (1.0, 0.0));
        let err = choose_threshold(ThresholdPolicy::TargetPrecision(0.9), &[0.5, 0.4], &[0, 1]).unwrap_err();
        assert!(err.contains("precision 0.9") && err.contains("best 0.5"), "{err}");
    }

    #[test]
    fn platt_recovers_a_known_calibration() {
        // Labels drawn from P = σ(2z − 1): the fit must find a ≈ 2, b ≈ −1.
        let mut state = 7u64;
        let mut unit = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut z, mut y) = (Vec::new(), Vec::new());
        for _ in 0..50_000 {
            let v = unit() * 6.0 - 3.0;
            z.push(v as f32);
            y.push(u8::from(unit() < sigmoid(2.0 * v - 1.0)));
        }
        let (a, b) = fit_platt(&z, &y);
        assert!((a - 2.0).abs() < 0.1 && (b + 1.0).abs() < 0.1, "a {a} b {b}");
        let probs: Vec<f32> = z.iter().map(|&v| sigmoid(a * f64::from(v) + b) as f32).collect();
        assert!(expected_calibration_error(&probs, &y, 10) < 0.01);
        let raw: Vec<f32> = z.iter().map(|&v| sigmoid(f64::from(v)) as f32).collect();
        assert!(expected_calibration_error(&raw, &y, 10) > 0.05, "the uncalibrated score is off");
    }

    #[test]
    fn ece_by_hand() {
        // Bin [0.2, 0.3): mean 0.25, observed 0.5 → 0.25 · 2/4; bin [0.9, 1): 0.9 vs 1 → 0.1 · 2/4.
        let e = expected_calibration_error(&[0.2, 0.3 - 1e-6, 0.9, 0.9], &[0, 1, 1, 1], 10);
        assert!((e - (0.25 * 0.5 + 0.1 * 0.5)).abs() < 1e-6, "{e}");
    }
}
