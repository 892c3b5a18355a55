//! `vigil train --kind mlp|gbdt|auto`: trains the asked kind, or with `auto` both on the same
//! time split, keeping the one with the better validation PR-AUC (ties go to the simpler,
//! cheaper-to-score MLP) and recording both scores in the model's metadata.

use operators::model::file::{Candidate, Model, ModelError};
use serde::{Deserialize, Serialize};

use crate::gbdt::{train_gbdt, GbdtConfig};
use crate::outcome::TrainingData;
use crate::training::{train_reporting, TrainConfig};

/// The supervised kinds `vigil train` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Mlp,
    Gbdt,
    Auto,
}

/// Trains `kind`; `on_epoch` reports MLP epochs (boosting logs its own progress).
pub fn train_kind(
    data: &TrainingData,
    kind: Kind,
    mlp: &TrainConfig,
    gbdt: &GbdtConfig,
    on_epoch: &dyn Fn(),
) -> Result<Model, ModelError> {
    match kind {
        Kind::Mlp => train_reporting(data, mlp, on_epoch),
        Kind::Gbdt => train_gbdt(data, gbdt),
        Kind::Auto => {
            let trees = train_gbdt(data, gbdt)?;
            let net = train_reporting(data, mlp, on_epoch)?;
            let candidates: Vec<Candidate> = [&net, &trees].iter().map(|m| candidate(m)).collect();
            let better_trees = trees.metadata().training.validation_pr_auc > net.metadata().training.validation_pr_auc;
            let mut best = if better_trees { trees } else { net };
            tracing::info!(
                kept = best.metadata().kind,
                mlp_pr_auc = format!("{:.4}", candidates[0].validation_pr_auc),
                gbdt_pr_auc = format!("{:.4}", candidates[1].validation_pr_auc),
                "auto: kinds compared on the validation split"
            );
            best.training_mut().candidates = candidates;
            Ok(best)
        }
    }
}

fn candidate(model: &Model) -> Candidate {
    let meta = model.metadata();
    Candidate {
        kind: meta.kind.clone(),
        validation_pr_auc: meta.training.validation_pr_auc,
        validation_roc_auc: meta.training.validation_roc_auc,
    }
}
