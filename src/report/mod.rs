//! `vigil eval --report DIR`: a model report as PNG charts and an `index.html` — PR and ROC
//! curves, the score histogram by class and the permutation importance of every input — for
//! a risk team that judges a model by looking at it rather than at one number.
//!
//! The data (`curves.rs`, `importance.rs`) are pure functions; `charts.rs` and `html.rs` only
//! draw them, so the numbers can be tested without pixels.

pub mod charts;
pub mod compare;
pub mod curves;
pub mod html;
pub mod importance;

use std::path::Path;

use anyhow::Context;
use learning::evaluation::{cut_offs, Evaluation};

use self::charts::Curve;
use self::importance::FeatureImportance;

/// File names of the charts, in page order.
pub const PR_CURVE: &str = "pr_curve.png";
pub const ROC_CURVE: &str = "roc_curve.png";
pub const SCORE_HISTOGRAM: &str = "score_histogram.png";
pub const IMPORTANCE: &str = "feature_importance.png";
/// Bins of the score histogram.
const HISTOGRAM_BINS: usize = 50;

/// Everything a report shows.
pub struct ReportData<'a> {
    pub model_version: &'a str,
    /// The evaluated file, as given.
    pub input: &'a str,
    pub scores: &'a [f32],
    pub labels: &'a [u8],
    pub evaluation: &'a Evaluation,
    pub importance: &'a [FeatureImportance],
}

/// Writes the charts and `index.html` into `dir` (created if missing).
pub fn write(dir: &Path, data: &ReportData) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("--report: cannot create {}", dir.display()))?;
    charts::register_font()?;
    let points = cut_offs(data.scores, data.labels);
    let e = data.evaluation;
    let fraud_rate = e.positives as f64 / (e.positives + e.negatives).max(1) as f64;
    let pr = curves::pr_points(&points);
    let pr_curve = Curve {
        title: format!("Precision-recall (PR-AUC {:.4})", e.pr_auc),
        x_label: "recall",
        y_label: "precision",
        points: &pr,
        reference: [(0.0, fraud_rate), (1.0, fraud_rate)],
    };
    chart(dir, PR_CURVE, |p| charts::curve_chart(p, &pr_curve))?;
    let roc = curves::roc_points(&points);
    let roc_curve = Curve {
        title: format!("ROC (ROC-AUC {:.4})", e.roc_auc),
        x_label: "false-positive rate",
        y_label: "true-positive rate",
        points: &roc,
        reference: [(0.0, 0.0), (1.0, 1.0)],
    };
    chart(dir, ROC_CURVE, |p| charts::curve_chart(p, &roc_curve))?;
    let histogram = curves::class_histogram(data.scores, data.labels, HISTOGRAM_BINS);
    chart(dir, SCORE_HISTOGRAM, |p| charts::histogram_chart(p, &histogram))?;
    chart(dir, IMPORTANCE, |p| charts::importance_chart(p, data.importance))?;
    let page = html::Page {
        model_version: data.model_version,
        input: data.input,
        evaluation: e,
        charts: &[
            (PR_CURVE, "Precision-recall curve"),
            (ROC_CURVE, "ROC curve"),
            (SCORE_HISTOGRAM, "Score histogram by class"),
            (IMPORTANCE, "Permutation importance"),
        ],
        importance: data.importance,
    };
    let index = dir.join("index.html");
    std::fs::write(&index, html::render(&page)?).with_context(|| format!("--report: cannot write {}", index.display()))
}

/// Draws one chart into `dir/name`, naming the file in any error.
fn chart(dir: &Path, name: &str, draw: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let path = dir.join(name);
    draw(&path).with_context(|| format!("--report: cannot draw {}", path.display()))
}
