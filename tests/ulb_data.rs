//! The real ULB credit-card set through `vigil import` (needs `scripts/fetch-data.sh ulb`;
//! skips with a message when data/creditcard.csv is absent, since data is never committed).
//! Counts are the published ones: 284,807 transactions, 492 frauds; day 1 (Time < 86400) has
//! 144,786 transactions of which 281 are fraud.

use std::path::PathBuf;

use support::vigil;

mod support;

#[test]
fn ulb_imports_completely_and_splits_at_day_one() {
    let csv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/creditcard.csv");
    if !csv.exists() {
        eprintln!("SKIPPED: {} is absent; run scripts/fetch-data.sh ulb to fetch it", csv.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ulb.jsonl");
    let output = vigil()
        .args(["import", "--csv", csv.to_str().unwrap(), "--map", "mappings/ulb-creditcard.toml"])
        .args(["--out", out.to_str().unwrap(), "--split-at", "2013-09-02T00:00:00Z"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
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
