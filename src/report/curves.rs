//! The data behind the report's charts, as plain points: PR and ROC curves from the cut-offs
//! of `learning::evaluation` (so the curves and the metrics table share one tie rule), and
//! the score histogram of each class.

use learning::evaluation::CutOff;

/// `(recall, precision)` after each cut-off that predicts something positive, from the
/// highest score down. Empty when there are no positives (the curve is undefined).
pub fn pr_points(cut_offs: &[CutOff]) -> Vec<(f64, f64)> {
    let positives = cut_offs.last().map_or(0, |c| c.tp);
    if positives == 0 {
        return Vec::new();
    }
    cut_offs
        .iter()
        .filter(|c| c.tp + c.fp > 0)
        .map(|c| (c.tp as f64 / positives as f64, c.tp as f64 / (c.tp + c.fp) as f64))
        .collect()
}

/// `(false-positive rate, true-positive rate)` at each cut-off, from (0, 0) to (1, 1). Empty
/// when either class is absent.
pub fn roc_points(cut_offs: &[CutOff]) -> Vec<(f64, f64)> {
    let (positives, negatives) = cut_offs.last().map_or((0, 0), |c| (c.tp, c.fp));
    if positives == 0 || negatives == 0 {
        return Vec::new();
    }
    cut_offs.iter().map(|c| (c.fp as f64 / negatives as f64, c.tp as f64 / positives as f64)).collect()
}

/// Share of each class's events per score bin.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassHistogram {
    /// Bin `i` covers `[i / bins, (i + 1) / bins)`, the last one includes 1.
    pub legit: Vec<f64>,
    pub fraud: Vec<f64>,
}

/// Histogram of scores in `[0, 1]` by class, each class normalised to sum to 1 so that the
/// rare fraud class stays visible next to the legitimate one. NaN scores are left out.
pub fn class_histogram(scores: &[f32], labels: &[u8], bins: usize) -> ClassHistogram {
    let (mut legit, mut fraud) = (vec![0f64; bins], vec![0f64; bins]);
    for (&s, &l) in scores.iter().zip(labels) {
        if s.is_nan() || bins == 0 {
            continue;
        }
        let bin = ((f64::from(s).clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        if l != 0 {
            fraud[bin] += 1.0;
        } else {
            legit[bin] += 1.0;
        }
    }
    for counts in [&mut legit, &mut fraud] {
        let total: f64 = counts.iter().sum();
        if total > 0.0 {
            counts.iter_mut().for_each(|c| *c /= total);
        }
    }
    ClassHistogram { legit, fraud }
}

#[cfg(test)]
mod tests {
    use super::*;
    use learning::evaluation::cut_offs;

    #[test]
    fn hand_computed_curves_and_histogram() {
        let scores = [0.9f32, 0.8, 0.4, 0.2];
        let labels = [1u8, 0, 1, 0];
        let c = cut_offs(&scores, &labels);
        assert_eq!(pr_points(&c), [(0.5, 1.0), (0.5, 0.5), (1.0, 2.0 / 3.0), (1.0, 0.5)]);
        assert_eq!(roc_points(&c), [(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]);
        let h = class_histogram(&[0.05, 0.95, 1.0, 0.5, f32::NAN], &[0, 0, 1, 1, 1], 2);
        assert_eq!(h.legit, [0.5, 0.5]);
        assert_eq!(h.fraud, [0.0, 1.0]);
        assert!(pr_points(&cut_offs(&[0.3], &[0])).is_empty());
    }
}
