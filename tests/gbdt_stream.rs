//! A `gbdt` model scores in the stream exactly as the training crate predicts: the trees are
//! trained here with forust (through `learning::gbdt`), saved, and `vigil run` scores a
//! held-out file on two workers; every decision's score must equal the crate's own prediction
//! for the inputs the stream saw (`--emit-features`), calibrated with the model's stored
//! `(a, b)`, within 1e-5. The reference is forust's `predict`, never vigil's tree tables.

use std::collections::HashMap;
use std::path::Path;

use learning::gbdt::{forust_log_odds, train_gbdt_keeping_boosters, GbdtConfig};
use learning::outcome::TrainingData;
use operators::model::file::ThresholdPolicy;
use serde_json::Value;
use support::{read_jsonl, vigil};

mod support;

fn gen(path: &Path, seed: &str, events: &str) {
    let status = vigil()
        .args(["gen", "--seed", seed, "--events", events, "--users", "1500", "--out", path.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Runs the job with `model` over `input` on two workers; the decisions by eventId.
fn run(input: &Path, model: &Path, out: &Path) -> HashMap<String, Value> {
    let status = vigil()
        .args(["run", "--source", &format!("file:{}", input.display()), "--model", model.to_str().unwrap()])
        .args(["--out-dir", out.to_str().unwrap(), "--workers", "2", "--emit-features"])
        .status()
        .unwrap();
    assert!(status.success());
    read_jsonl(&out.join("decisions.jsonl"))
        .into_iter()
        .map(|d| (d["eventId"].as_str().unwrap().to_owned(), d))
        .collect()
}

/// The model inputs of a decision, in `names` order (`null` = missing = NaN).
fn inputs(decision: &Value, names: &[String]) -> Vec<f32> {
    names.iter().map(|n| decision["features"][n].as_f64().map_or(f32::NAN, |v| v as f32)).collect()
}

#[test]
fn streamed_gbdt_scores_equal_the_training_crates_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let (train_file, held_out) = (dir.path().join("train.jsonl"), dir.path().join("held-out.jsonl"));
    gen(&train_file, "5", "60000");
    gen(&held_out, "6", "20000");
    // The training rows: the shipped model's inputs, as the stream computes them.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.safetensors");
    let decisions = run(&train_file, &shipped, &dir.path().join("train-out"));
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(shipped.with_extension("json")).unwrap()).unwrap();
    let names: Vec<String> =
        meta["inputs"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_owned()).collect();
    let mut data = TrainingData { names: names.clone(), ..TrainingData::default() };
    for event in read_jsonl(&train_file) {
        let decision = &decisions[event["eventId"].as_str().unwrap()];
        data.rows.extend(inputs(decision, &names));
        data.labels.push(u8::from(event["label"] == 1));
        data.times_ms.push(data.times_ms.len() as i64);
    }
    let cfg = GbdtConfig { max_trees: 60, threshold: ThresholdPolicy::Fixed(0.5), ..GbdtConfig::default() };
    let (model, boosters) = train_gbdt_keeping_boosters(&data, &cfg).unwrap();
    let path = dir.path().join("gbdt.safetensors");
    model.save(&path).unwrap();
    let [a, b] = model.metadata().training.calibration.unwrap();
    assert!(model.metadata().trees.unwrap().trees >= 5, "{:?}", model.metadata().trees);

    let scored = run(&held_out, &path, &dir.path().join("held-out-out"));
    let events = read_jsonl(&held_out);
    assert_eq!(scored.len(), events.len());
    let mut rows = Vec::with_capacity(events.len() * names.len());
    let mut served = Vec::with_capacity(events.len());
    for event in &events {
        let decision = &scored[event["eventId"].as_str().unwrap()];
        assert_eq!(decision["model_version"], model.metadata().version.as_str());
        rows.extend(inputs(decision, &names));
        served.push(decision["anomaly_score"].as_f64().unwrap());
    }
    let missing = rows.iter().filter(|v| v.is_nan()).count();
    assert!(missing > 0, "the held-out inputs exercise missing values");
    let reference = forust_log_odds(&boosters, &rows, names.len());
    let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
    let mut worst = 0f64;
    for (i, (z, s)) in reference.iter().zip(&served).enumerate() {
        let want = sigmoid(a * z + b);
        worst = worst.max((want - s).abs());
        assert!((want - s).abs() <= 1e-5, "row {i}: stream {s}, forust {want}");
    }
    eprintln!("{} rows, {missing} missing inputs, largest difference {worst:e}", served.len());
}
