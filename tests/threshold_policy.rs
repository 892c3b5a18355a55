//! `vigil train --target-precision`: the threshold it stores meets the requested precision on
//! the validation split (the last 20 % of the labelled events), checked independently through
//! the serving path — `vigil run` scores the same file and the precision and calibration error
//! are recomputed here from its decision records and the input labels.

use std::collections::HashMap;

use serde_json::Value;
use support::{read_jsonl, vigil};

mod support;

#[test]
fn target_precision_is_met_on_validation_and_scores_are_calibrated() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let status = vigil()
        .args(["gen", "--seed", "3", "--events", "100000", "--users", "2000", "--out", input.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let model = dir.path().join("m.safetensors");
    let output = vigil()
        .args(["train", "--input", input.to_str().unwrap(), "--out", model.to_str().unwrap()])
        .args(["--target-precision", "0.9", "--epochs", "10"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("expected precision"), "{stdout}");
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("m.json")).unwrap()).unwrap();
    let training = &meta["training"];
    assert_eq!(training["threshold_policy"], serde_json::json!({"target_precision": 0.9}));
    assert!(training["expected_precision"].as_f64().unwrap() >= 0.9, "{training}");
    assert!(training["validation_ece"].as_f64().unwrap() < 0.05, "{training}");
    let threshold = meta["threshold"].as_f64().unwrap();

    let out = dir.path().join("out");
    let status = vigil()
        .args(["run", "--source", &format!("file:{}", input.display()), "--model", model.to_str().unwrap()])
        .args(["--out-dir", out.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let scores: HashMap<String, f64> = read_jsonl(&out.join("decisions.jsonl"))
        .into_iter()
        .map(|d| (d["eventId"].as_str().unwrap().to_owned(), d["anomaly_score"].as_f64().unwrap()))
        .collect();
    let labelled: Vec<(f64, bool)> = read_jsonl(&input)
        .iter()
        .filter(|e| e.get("label").is_some())
        .map(|e| (scores[e["eventId"].as_str().unwrap()], e["label"] == 1))
        .collect();
    let valid = &labelled[labelled.len() - (labelled.len() as f64 * 0.2).round() as usize..];
    let blocked: Vec<bool> = valid.iter().filter(|(s, _)| *s > threshold).map(|(_, fraud)| *fraud).collect();
    let precision = blocked.iter().filter(|&&f| f).count() as f64 / blocked.len() as f64;
    assert!(precision >= 0.9, "validation precision {precision} at threshold {threshold}");
    let expected = training["expected_precision"].as_f64().unwrap();
    assert!((precision - expected).abs() < 0.01, "{precision} vs expected {expected}");
    // ECE over 10 bins, from the served scores.
    let mut bins = [(0u64, 0f64, 0f64); 10];
    for &(s, fraud) in valid {
        let b = &mut bins[((s * 10.0) as usize).min(9)];
        *b = (b.0 + 1, b.1 + s, b.2 + f64::from(u8::from(fraud)));
    }
    let ece: f64 = bins.iter().map(|b| (b.1 - b.2).abs()).sum::<f64>() / valid.len() as f64;
    assert!(ece < 0.05, "ECE {ece}");
}
