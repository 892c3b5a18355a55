//! The real ULB credit-card set through `vigil import` (needs `scripts/fetch-data.sh ulb`;
//! skips with a message when data/creditcard.csv is absent, since data is never committed).
//! Counts are the published ones: 284,807 transactions, 492 frauds; day 1 (Time < 86400) has
//! 144,786 transactions of which 281 are fraud.

use std::path::{Path, PathBuf};

use support::vigil;

mod support;

/// Imports the ULB CSV into `dir` (ulb.train.jsonl / ulb.test.jsonl, split at the end of day 1)
/// and returns import's standard output; `None` (with a message) when the data is absent.
fn import_ulb(dir: &Path) -> Option<String> {
    let csv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/creditcard.csv");
    if !csv.exists() {
        eprintln!("SKIPPED: {} is absent; run scripts/fetch-data.sh ulb to fetch it", csv.display());
        return None;
    }
    let out = dir.join("ulb.jsonl");
    let output = vigil()
        .args(["import", "--csv", csv.to_str().unwrap(), "--map", "mappings/ulb-creditcard.toml"])
        .args(["--out", out.to_str().unwrap(), "--split-at", "2013-09-02T00:00:00Z"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    Some(stdout)
}

#[test]
fn ulb_imports_completely_and_splits_at_day_one() {
    let dir = tempfile::tempdir().unwrap();
    let Some(stdout) = import_ulb(dir.path()) else { return };
    assert!(stdout.contains("imported 284807 events (492 fraud, 0 unlabelled)"), "{stdout}");
    assert!(stdout.contains("rejected 0 rows"), "{stdout}");
    let count = |part: &str, needle: &str| {
        let text = std::fs::read_to_string(dir.path().join(format!("ulb.{part}.jsonl"))).unwrap();
        (text.lines().count(), text.matches(needle).count())
    };
    assert_eq!(count("train", "\"label\":1"), (144_786, 281));
    assert_eq!(count("test", "\"label\":1"), (140_021, 211));
    let first = std::fs::read_to_string(dir.path().join("ulb.train.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    assert_eq!(first["eventId"], "ulb-1");
    assert_eq!(first["userId"], "ulb");
    assert_eq!(first["timestamp"], "2013-09-01T00:00:00.000Z");
    assert_eq!(first["features"]["amount"], 149.62);
    assert_eq!(first["features"]["v1"], -1.3598071336738);
    assert_eq!(first["features"].as_object().unwrap().len(), 29);
}

/// vigil's model on the standard split: 5 averaged networks trained on day 1 reach a day-2
/// PR-AUC of at least 0.75 (measured 0.813; the LightGBM baseline of scripts/quality.sh reached
/// 0.69–0.78), and the stored threshold policy is met on the validation split.
#[test]
fn ulb_day_two_quality() {
    let dir = tempfile::tempdir().unwrap();
    if import_ulb(dir.path()).is_none() {
        return;
    }
    let model = dir.path().join("ulb.safetensors");
    let output = vigil()
        .args(["train", "--input", dir.path().join("ulb.train.jsonl").to_str().unwrap()])
        .args(["--out", model.to_str().unwrap(), "--kind", "mlp", "--seeds", "5", "--target-precision", "0.8"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let output = vigil()
        .args(["eval", "--input", dir.path().join("ulb.test.jsonl").to_str().unwrap()])
        .args(["--model", model.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let eval: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(eval["positives"], 211);
    let pr_auc = eval["pr_auc"].as_f64().unwrap();
    assert!(pr_auc >= 0.75, "day-2 PR-AUC {pr_auc}");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("ulb.json")).unwrap()).unwrap();
    assert!(meta["training"]["expected_precision"].as_f64().unwrap() >= 0.8, "{}", meta["training"]);
    assert_eq!(meta["training"]["seeds"], 5);
}

/// Trains `args` on day 1 into `dir/NAME.safetensors` and evaluates it on day 2.
fn train_and_eval(dir: &Path, name: &str, args: &[&str]) -> serde_json::Value {
    let model = dir.join(format!("{name}.safetensors"));
    let output = vigil()
        .args(["train", "--input", dir.join("ulb.train.jsonl").to_str().unwrap(), "--out", model.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let output = vigil()
        .args(["eval", "--input", dir.join("ulb.test.jsonl").to_str().unwrap()])
        .args(["--model", model.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Issue 22's targets on ULB day 1 → day 2 (the README's model table): gradient-boosted trees
/// reach PR-AUC 0.80; `auto` is within 0.01 of the better of the MLP and the trees; the
/// unsupervised model, trained without labels, reaches PR-AUC 0.30 and ROC-AUC 0.94.
#[test]
fn ulb_every_kind_meets_its_target() {
    let dir = tempfile::tempdir().unwrap();
    if import_ulb(dir.path()).is_none() {
        return;
    }
    let pr = |e: &serde_json::Value| e["pr_auc"].as_f64().unwrap();
    let gbdt = train_and_eval(dir.path(), "gbdt", &["--kind", "gbdt"]);
    let mlp = train_and_eval(dir.path(), "mlp", &["--kind", "mlp"]);
    let auto = train_and_eval(dir.path(), "auto", &[]);
    let unsupervised = train_and_eval(dir.path(), "unsupervised", &["--unsupervised"]);
    eprintln!(
        "day-2 PR-AUC: gbdt {}, mlp {}, auto {}, unsupervised {}",
        pr(&gbdt),
        pr(&mlp),
        pr(&auto),
        pr(&unsupervised)
    );
    assert!(pr(&gbdt) >= 0.80, "gbdt {gbdt}");
    assert!(pr(&auto) >= pr(&gbdt).max(pr(&mlp)) - 0.01, "auto {auto}");
    assert!(pr(&unsupervised) >= 0.30, "unsupervised {unsupervised}");
    assert!(unsupervised["roc_auc"].as_f64().unwrap() >= 0.94, "unsupervised {unsupervised}");
}
