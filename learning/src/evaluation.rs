//! Offline evaluation metrics for a fraud score: PR-AUC (average precision), ROC-AUC,
//! precision/recall/F1 at the decision threshold and recall at 1 % false-positive rate.
//!
//! These are pure functions of `(scores, labels)` so that `vigil eval`, early stopping in
//! training and the tests all share one definition. Invariants: equal scores are always
//! treated as one group (a ranking cannot be rewarded for the arbitrary order of ties), a
//! label is positive iff it is non-zero, and a NaN score ranks below every other score (a
//! model that cannot score an event must not be credited for it). Metrics that are undefined
//! for the given labels (no positives, or no negatives for ROC-AUC) are `NaN`, which
//! `serde_json` writes as `null`.

use serde::Serialize;

/// Bins of [`Evaluation::ece`].
pub const ECE_BINS: usize = 10;

/// The summary `vigil eval` prints and training stores per epoch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// Average precision, sklearn's `average_precision_score`: Σ (R_k − R_{k−1}) · P_k over
    /// the distinct score values, highest first. Chosen over the trapezoid PR curve because the
    /// trapezoid interpolation is optimistic for imbalanced data.
    pub pr_auc: f64,
    /// Probability that a random positive outranks a random negative, ties counted as ½
    /// (Mann–Whitney U / (P·N)).
    pub roc_auc: f64,
    /// Precision of "score > threshold"; 0 when nothing is predicted positive.
    pub precision: f64,
    /// Recall of "score > threshold".
    pub recall: f64,
    /// Harmonic mean of `precision` and `recall`; 0 when both are 0.
    pub f1: f64,
    /// Best recall among cut-offs whose false-positive rate is ≤ 1 %: the operating point
    /// that matters when analysts can only review a small share of legitimate traffic.
    pub recall_at_1pct_fpr: f64,
    /// Expected calibration error over 10 equal-width score bins: how far the score is from
    /// being the probability of fraud (0 = calibrated).
    pub ece: f64,
    pub positives: u64,
    pub negatives: u64,
    pub threshold: f64,
}

/// Evaluates `scores` against `labels` (non-zero = fraud). The slices are paired
/// index by index; if their lengths differ only the common prefix is evaluated (callers always
/// pass equal lengths, this merely keeps a bug elsewhere from panicking here).
pub fn evaluate(scores: &[f32], labels: &[u8], threshold: f64) -> Evaluation {
    let n = scores.len().min(labels.len());
    let (scores, labels) = (&scores[..n], &labels[..n]);
    let groups = tie_groups(scores, labels);
    let positives: u64 = groups.iter().map(|g| g.tp).sum();
    let negatives: u64 = groups.iter().map(|g| g.fp).sum();
    let (precision, recall, f1) = threshold_metrics(scores, labels, threshold, positives);
    Evaluation {
        pr_auc: average_precision(&groups, positives),
        roc_auc: roc_auc(&groups, positives, negatives),
        precision,
        recall,
        f1,
        recall_at_1pct_fpr: recall_at_fpr(&groups, positives, negatives, 0.01),
        ece: crate::calibration::expected_calibration_error(scores, labels, ECE_BINS),
        positives,
        negatives,
        threshold,
    }
}

/// Positives (`tp`) and negatives (`fp`) scoring at or above one cut-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutOff {
    pub tp: u64,
    pub fp: u64,
}

/// The counts at every cut-off between tie groups, highest score first, starting with
/// "nothing predicted positive" `(0, 0)` and ending with everything: the points of the PR and
/// ROC curves, under the same tie and NaN rules as [`evaluate`].
pub fn cut_offs(scores: &[f32], labels: &[u8]) -> Vec<CutOff> {
    let n = scores.len().min(labels.len());
    let mut points = vec![CutOff { tp: 0, fp: 0 }];
    let mut at = CutOff { tp: 0, fp: 0 };
    for g in tie_groups(&scores[..n], &labels[..n]) {
        at.tp += g.tp;
        at.fp += g.fp;
        points.push(at);
    }
    points
}

/// Positives (`tp`) and negatives (`fp`) sharing one score value.
#[derive(Debug, Clone, Copy)]
struct Group {
    tp: u64,
    fp: u64,
}

/// NaN ranks lowest; everything else by value (so −0.0 and 0.0 form one group).
fn rank_key(s: f32) -> f32 {
    if s.is_nan() {
        f32::NEG_INFINITY
    } else {
        s
    }
}

/// Groups of equal scores, highest score first.
fn tie_groups(scores: &[f32], labels: &[u8]) -> Vec<Group> {
    let mut order: Vec<(f32, bool)> = scores.iter().zip(labels).map(|(&s, &l)| (rank_key(s), l != 0)).collect();
    order.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    let mut groups: Vec<Group> = Vec::new();
    let mut last: Option<f32> = None;
    for (s, positive) in order {
        // `==` rather than total_cmp so that −0.0 and +0.0 tie.
        if last != Some(s) {
            groups.push(Group { tp: 0, fp: 0 });
            last = Some(s);
        }
        if let Some(g) = groups.last_mut() {
            if positive {
                g.tp += 1;
            } else {
                g.fp += 1;
            }
        }
    }
    groups
}

fn average_precision(groups: &[Group], positives: u64) -> f64 {
    if positives == 0 {
        return f64::NAN;
    }
    let (mut tp, mut fp, mut ap) = (0u64, 0u64, 0f64);
    for g in groups {
        tp += g.tp;
        fp += g.fp;
        if g.tp > 0 {
            let precision = tp as f64 / (tp + fp) as f64;
            ap += g.tp as f64 / positives as f64 * precision;
        }
    }
    ap
}

fn roc_auc(groups: &[Group], positives: u64, negatives: u64) -> f64 {
    if positives == 0 || negatives == 0 {
        return f64::NAN;
    }
    let (mut tp_above, mut u) = (0u64, 0f64);
    for g in groups {
        u += g.fp as f64 * (tp_above as f64 + 0.5 * g.tp as f64);
        tp_above += g.tp;
    }
    u / (positives as f64 * negatives as f64)
}

/// Cut-offs lie between tie groups (a cut-off inside a group would need an arbitrary order).
fn recall_at_fpr(groups: &[Group], positives: u64, negatives: u64, max_fpr: f64) -> f64 {
    if positives == 0 {
        return f64::NAN;
    }
    let (mut tp, mut fp, mut best) = (0u64, 0u64, 0u64);
    for g in groups {
        tp += g.tp;
        fp += g.fp;
        let fpr = if negatives == 0 { 0.0 } else { fp as f64 / negatives as f64 };
        if fpr > max_fpr {
            break;
        }
        best = tp;
    }
    best as f64 / positives as f64
}

fn threshold_metrics(scores: &[f32], labels: &[u8], threshold: f64, positives: u64) -> (f64, f64, f64) {
    let (mut tp, mut predicted) = (0u64, 0u64);
    for (&s, &l) in scores.iter().zip(labels) {
        // NaN > t is false: an unscorable event is never predicted positive.
        if f64::from(s) > threshold {
            predicted += 1;
            tp += u64::from(l != 0);
        }
    }
    let precision = if predicted == 0 { 0.0 } else { tp as f64 / predicted as f64 };
    let recall = if positives == 0 { f64::NAN } else { tp as f64 / positives as f64 };
    let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    (precision, recall, f1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn hand_computed_case() {
        let e = evaluate(&[0.1, 0.4, 0.35, 0.8], &[0, 0, 1, 1], 0.5);
        assert!(close(e.roc_auc, 0.75), "{e:?}");
        assert!(close(e.pr_auc, 0.5 + 0.5 * 2.0 / 3.0), "{e:?}");
        assert!(close(e.precision, 1.0) && close(e.recall, 0.5), "{e:?}");
        assert!(close(e.f1, 2.0 / 3.0), "{e:?}");
        // At FPR 0 only the 0.8 positive is caught.
        assert!(close(e.recall_at_1pct_fpr, 0.5), "{e:?}");
        assert_eq!((e.positives, e.negatives), (2, 2));
    }

    #[test]
    fn perfect_ranking() {
        let e = evaluate(&[0.9, 0.8, 0.2, 0.1, 0.05], &[1, 1, 0, 0, 0], 0.5);
        assert!(close(e.roc_auc, 1.0) && close(e.pr_auc, 1.0), "{e:?}");
        assert!(close(e.recall_at_1pct_fpr, 1.0) && close(e.f1, 1.0), "{e:?}");
    }

    #[test]
    fn inverted_ranking() {
        let e = evaluate(&[0.1, 0.2, 0.8, 0.9], &[1, 1, 0, 0], 0.5);
        assert!(close(e.roc_auc, 0.0), "{e:?}");
        // Positives at ranks 3 and 4: P = 1/3 then 2/4.
        assert!(close(e.pr_auc, 0.5 * (1.0 / 3.0) + 0.5 * 0.5), "{e:?}");
        assert!(close(e.recall_at_1pct_fpr, 0.0), "{e:?}");
        assert!(close(e.precision, 0.0) && close(e.f1, 0.0), "{e:?}");
    }

    #[test]
    fn all_ties() {
        let e = evaluate(&[0.5; 4], &[1, 0, 0, 1], 0.5);
        assert!(close(e.roc_auc, 0.5), "{e:?}");
        // One group: AP = precision of the whole set = the fraud rate.
        assert!(close(e.pr_auc, 0.5), "{e:?}");
        // The only cut-off with FPR ≤ 1 % is "nothing positive".
        assert!(close(e.recall_at_1pct_fpr, 0.0), "{e:?}");
        // 0.5 > 0.5 is false: nothing predicted positive.
        assert!(close(e.precision, 0.0) && close(e.recall, 0.0), "{e:?}");
    }

    #[test]
    fn ties_within_positives_and_negatives() {
        // sklearn: average_precision_score([1,0,1,0],[0.9,0.5,0.5,0.1]) = 0.5 + 0.5*(2/3)
        let e = evaluate(&[0.9, 0.5, 0.5, 0.1], &[1, 0, 1, 0], 0.0);
        assert!(close(e.pr_auc, 0.5 + 0.5 * 2.0 / 3.0), "{e:?}");
        // pairs: (0.9>0.5, 0.9>0.1, 0.5=0.5 → ½, 0.5>0.1) = 3.5 / 4
        assert!(close(e.roc_auc, 0.875), "{e:?}");
    }

    #[test]
    fn nan_scores_rank_last_and_undefined_metrics_are_nan() {
        let e = evaluate(&[f32::NAN, 0.3], &[0, 1], 0.1);
        assert!(close(e.roc_auc, 1.0), "{e:?}");
        let e = evaluate(&[0.2, 0.3], &[0, 0], 0.1);
        assert!(e.pr_auc.is_nan() && e.roc_auc.is_nan() && e.recall.is_nan());
        assert!(close(e.precision, 0.0));
        let e = evaluate(&[], &[], 0.1);
        assert_eq!((e.positives, e.negatives), (0, 0));
    }

    #[test]
    fn recall_at_fpr_uses_the_best_cut_off() {
        // 200 negatives: 1 % FPR allows two negatives above the cut-off.
        let mut scores = vec![0.1f32; 200];
        let mut labels = vec![0u8; 200];
        scores[0] = 0.99;
        scores[1] = 0.98;
        scores.extend([0.97, 0.5, 0.05]);
        labels.extend([1, 1, 1]);
        let e = evaluate(&scores, &labels, 0.5);
        assert!(close(e.recall_at_1pct_fpr, 2.0 / 3.0), "{e:?}");
    }

    fn pairwise_auc(scores: &[f32], labels: &[u8]) -> f64 {
        let (mut u, mut pairs) = (0f64, 0f64);
        for (&sp, _) in scores.iter().zip(labels).filter(|(_, &l)| l != 0) {
            for (&sn, _) in scores.iter().zip(labels).filter(|(_, &l)| l == 0) {
                pairs += 1.0;
                u += if sp > sn {
                    1.0
                } else if sp == sn {
                    0.5
                } else {
                    0.0
                };
            }
        }
        u / pairs
    }

    proptest! {
        #[test]
        fn roc_auc_equals_pair_count(
            data in prop::collection::vec((0u8..20, 0u8..2), 2..200)
        ) {
            // Few distinct scores so that ties are common.
            let scores: Vec<f32> = data.iter().map(|&(s, _)| f32::from(s) / 20.0).collect();
            let labels: Vec<u8> = data.iter().map(|&(_, l)| l).collect();
            let e = evaluate(&scores, &labels, 0.5);
            if e.positives > 0 && e.negatives > 0 {
                let want = pairwise_auc(&scores, &labels);
                prop_assert!((e.roc_auc - want).abs() < 1e-9, "{} vs {}", e.roc_auc, want);
            } else {
                prop_assert!(e.roc_auc.is_nan());
            }
            if e.positives > 0 {
                prop_assert!(e.pr_auc > 0.0 && e.pr_auc <= 1.0 + 1e-12);
            }
        }
    }

    #[test]
    fn cut_offs_step_through_tie_groups() {
        let points = cut_offs(&[0.9, 0.5, 0.5, 0.1, f32::NAN], &[1, 0, 1, 0, 1]);
        let pairs: Vec<(u64, u64)> = points.iter().map(|c| (c.tp, c.fp)).collect();
        assert_eq!(pairs, [(0, 0), (1, 0), (2, 1), (2, 2), (3, 2)]);
    }
}
