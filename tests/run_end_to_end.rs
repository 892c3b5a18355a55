//! End-to-end behaviour of `vigil run` on files: conservation with every kind of bad input,
//! identical results for 1 and 2 workers, decision-record schema, exit codes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{bad_lines, generate, read_jsonl, vigil};

mod support;

fn run_file(input: &Path, out: &Path, extra: &[&str]) {
    let status = vigil()
        .args(["run", "--source", &format!("file:{}", input.display()), "--out-dir", out.to_str().unwrap()])
        .args(extra)
        .status()
        .unwrap();
    assert!(status.success(), "vigil run failed: {status}");
}

#[test]
fn conservation_with_every_kind_of_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let good = generate(20_000, 400, 11);
    let bad = bad_lines();
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut expected_dead: BTreeMap<usize, &str> = BTreeMap::new();
    let mut valid_ids = BTreeSet::new();
    for (i, line) in good.iter().enumerate() {
        lines.push(line.clone());
        let v: Value = serde_json::from_slice(line).unwrap();
        valid_ids.insert(v["eventId"].as_str().unwrap().to_owned());
        if i % 12 == 5 {
            let (bad_line, reason) = &bad[(i / 12) % bad.len()];
            lines.push(bad_line.clone());
            expected_dead.insert(lines.len(), reason);
        }
        if i % 97 == 3 {
            lines.push(line.clone());
            expected_dead.insert(lines.len(), "duplicate");
        }
    }
    let bad_share = expected_dead.len() as f64 / lines.len() as f64;
    assert!(bad_share >= 0.05, "only {bad_share} bad lines");
    std::fs::write(&input, lines.join(&b'\n')).unwrap();
    let out = dir.path().join("out");
    run_file(&input, &out, &["--workers", "2"]);

    let decisions = read_jsonl(&out.join("decisions.jsonl"));
    let dead = read_jsonl(&out.join("dead-letters.jsonl"));
    let alerts = read_jsonl(&out.join("alerts.jsonl"));
    assert_eq!(decisions.len() + dead.len(), lines.len(), "events in != decisions + dead letters");
    let decided: BTreeSet<String> = decisions.iter().map(|d| d["eventId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(decided.len(), decisions.len(), "an eventId was decided twice");
    assert_eq!(decided, valid_ids);
    let prefix = format!("{}:", input.display());
    let got_dead: BTreeMap<usize, String> = dead
        .iter()
        .map(|d| {
            let line = d["source"].as_str().unwrap().strip_prefix(&prefix).unwrap().parse().unwrap();
            (line, d["error"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(got_dead.keys().collect::<Vec<_>>(), expected_dead.keys().collect::<Vec<_>>());
    for (line, reason) in &expected_dead {
        assert!(got_dead[line].contains(reason), "line {line}: `{}` lacks `{reason}`", got_dead[line]);
    }
    for d in &dead {
        assert!(d["raw"].as_str().unwrap().len() <= 65_536 + 3 * 65_536);
    }
    let blocked: Vec<&Value> = decisions.iter().filter(|d| d["decision"] == "block").collect();
    assert_eq!(alerts.len(), blocked.len());
    assert!(alerts.iter().all(|a| a["decision"] == "block"));
    let shipped: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.json")).unwrap(),
    )
    .unwrap();
    for d in &decisions {
        let score = d["anomaly_score"].as_f64().unwrap();
        let confidence = d["confidence"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score) && (0.0..=1.0).contains(&confidence));
        assert_eq!(d["is_anomaly"].as_bool().unwrap(), d["decision"] == "block");
        assert_eq!(d["decision"] == "block", score > 0.8);
        assert!(d["reasons"].is_array());
        assert_eq!(d["model_version"], shipped["version"], "decided by the shipped model");
        assert!(d["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(d["latency_ms"].as_f64().unwrap() >= 0.0 && d["inference_time_ms"].as_f64().unwrap() >= 0.0);
    }
}

fn decisions_by_id(out: &Path) -> BTreeMap<String, (String, f64)> {
    read_jsonl(&out.join("decisions.jsonl"))
        .into_iter()
        .map(|d| {
            let id = d["eventId"].as_str().unwrap().to_owned();
            (id, (d["decision"].as_str().unwrap().to_owned(), d["anomaly_score"].as_f64().unwrap()))
        })
        .collect()
}

#[test]
fn two_workers_decide_exactly_like_one() {
    let dir = tempfile::tempdir().unwrap();
    let input: PathBuf = dir.path().join("events.jsonl");
    std::fs::write(&input, generate(60_000, 2_000, 4).join(&b'\n')).unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    run_file(&input, &one, &["--workers", "1", "--block-len", "1000"]);
    run_file(&input, &two, &["--workers", "2", "--block-len", "333"]);
    let (a, b) = (decisions_by_id(&one), decisions_by_id(&two));
    assert_eq!(a.len(), 60_000);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let late = read_jsonl(&one.join("decisions.jsonl"))
        .iter()
        .filter(|d| d["reasons"].to_string().contains("late event"))
        .count();
    assert!(late > 0, "the input should exercise late events");
    for (id, (decision, score)) in &a {
        let (d2, s2) = &b[id];
        assert_eq!(decision, d2, "{id}");
        assert!((score - s2).abs() <= 1e-6, "{id}: {score} vs {s2}");
    }
}

#[test]
fn emit_features_match_the_features_command() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, generate(5_000, 100, 8).join(&b'\n')).unwrap();
    let out = dir.path().join("out");
    run_file(&input, &out, &["--emit-features"]);
    let csv = dir.path().join("features.csv");
    let status = vigil()
        .args(["features", "--input", input.to_str().unwrap(), "--out", csv.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut rows = text.lines();
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    assert_eq!(header.len(), 21);
    let by_id: BTreeMap<String, Value> = read_jsonl(&out.join("decisions.jsonl"))
        .into_iter()
        .map(|d| (d["eventId"].as_str().unwrap().to_owned(), d))
        .collect();
    let mut compared = 0;
    for row in rows {
        let cells: Vec<&str> = row.split(',').collect();
        let features = &by_id[cells[0]]["features"];
        for (name, cell) in header.iter().zip(&cells).skip(1) {
            let emitted = &features[*name];
            match cell.parse::<f64>() {
                Ok(v) => {
                    let e = emitted.as_f64().unwrap();
                    assert!((e - v).abs() <= 1e-6 * v.abs().max(1.0), "{name}: {e} vs {v}");
                }
                Err(_) => assert!(emitted.is_null(), "{name} should be missing"),
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 5_000 * 20);
}

#[test]
fn exit_codes_and_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let code = |args: &[&str]| vigil().args(args).output().unwrap().status.code();
    assert_eq!(code(&["run", "--source", "nowhere"]), Some(2));
    assert_eq!(code(&["run", "--source", "file:/does/not/exist"]), Some(2));
    assert_eq!(code(&["run", "--workers", "0"]), Some(2));
    assert_eq!(code(&["run", "--lateness", "soon"]), Some(2));
    assert_eq!(code(&["run", "--processes", "2", "--process", "2"]), Some(2));
    assert_eq!(code(&["frobnicate"]), Some(2));
    let config = dir.path().join("vigil.toml");
    std::fs::write(&config, "[run]\nno_such_flag = 1\n").unwrap();
    let output = vigil().args(["--config", config.to_str().unwrap(), "run"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no-such-flag"));
    std::fs::write(&config, "[run]\nworkers = \"many\"\n").unwrap();
    let output = vigil().args(["--config", config.to_str().unwrap(), "run"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--workers"));
    let model_dir = dir.path().join("model");
    std::fs::create_dir(&model_dir).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    std::fs::copy(shipped.with_extension("safetensors"), model_dir.join("m.safetensors")).unwrap();
    let meta = std::fs::read_to_string(shipped.with_extension("json")).unwrap().replace("\"cnt_1h\"", "\"cnt_2h\"");
    std::fs::write(model_dir.join("m.json"), meta).unwrap();
    let output = vigil()
        .args(["run", "--events", "10", "--model", model_dir.join("m.safetensors").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cnt_2h"));
}

#[test]
fn config_file_supplies_flags_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let config = dir.path().join("vigil.toml");
    std::fs::write(
        &config,
        format!("[run]\nevents = 5000\nusers = 50\nout_dir = \"{}\"\nthreshold = 0.0\n", out.display()),
    )
    .unwrap();
    let status = vigil().args(["--config", config.to_str().unwrap(), "run", "--threshold", "1.0"]).status().unwrap();
    assert!(status.success());
    let decisions = read_jsonl(&out.join("decisions.jsonl"));
    assert_eq!(decisions.len(), 5000);
    assert!(decisions.iter().all(|d| d["decision"] == "approve"), "--threshold 1.0 must override the file's 0.0");
}

#[test]
fn shipped_model_catches_fraud_on_unseen_seed() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("seed2.jsonl");
    let status =
        vigil().args(["gen", "--seed", "2", "--events", "1000000", "--out", input.to_str().unwrap()]).status().unwrap();
    assert!(status.success());
    let output =
        vigil().args(["eval", "--input", input.to_str().unwrap(), "--json", "--workers", "2"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let eval: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(eval["positives"].as_u64().unwrap() > 5_000);
    let pr_auc = eval["pr_auc"].as_f64().unwrap();
    assert!(pr_auc >= 0.90, "PR-AUC {pr_auc} on seed 2");
}

#[test]
fn rate_paces_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let started = std::time::Instant::now();
    let status = vigil()
        .args(["run", "--events", "10000", "--users", "100", "--rate", "20000", "--block-len", "1000"])
        .args(["--out-dir", out.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    // The last block starts at event 9000, due 9000 / 20000 = 0.45 s after the start.
    assert!(started.elapsed().as_secs_f64() >= 0.45, "finished in {:?}", started.elapsed());
    assert_eq!(read_jsonl(&out.join("decisions.jsonl")).len(), 10_000);
    assert_eq!(vigil().args(["run", "--rate", "0"]).output().unwrap().status.code(), Some(2));
}

/// Bounded state: with a million distinct users (two events each) the summary's state size,
/// less the 32 bytes of each retained event, stays under 1 KiB per user, and the test prints it.
#[test]
fn state_memory_per_user_with_a_million_users() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("users.jsonl");
    let mut text = String::with_capacity(200_000_000);
    for i in 0..2_000_000u64 {
        let user = i % 1_000_000;
        let ms = 1_767_225_600_000 + i * 1_000;
        let amount = 10 + i % 90;
        text.push_str(&format!(
            "{{\"eventId\":\"e{i}\",\"userId\":\"u{user}\",\"timestamp\":{ms},\"features\":{{\"amount\":{amount}}}}}\n"
        ));
    }
    std::fs::write(&input, text).unwrap();
    let output = vigil()
        .args(["run", "--source", &format!("file:{}", input.display()), "--workers", "2"])
        .args(["--out-dir", dir.path().join("out").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success());
    let summary = String::from_utf8_lossy(&output.stdout);
    let line = summary.lines().find(|l| l.trim_start().starts_with("state")).expect("a state line");
    let numbers: Vec<f64> = line
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().unwrap())
        .collect();
    let (users, retained, mib) = (numbers[0], numbers[1], numbers[2]);
    assert_eq!((users, retained), (1_000_000.0, 2_000_000.0), "{line}");
    let per_user = (mib * 1_048_576.0 - 32.0 * retained) / users;
    println!("{users} users, {retained} retained events: {per_user:.0} B per user beyond the event buffer");
    assert!(per_user > 0.0 && per_user < 1024.0, "{per_user:.0} B per user: {line}");
}

/// `--lateness` reaches training and evaluation too: the features `vigil features --lateness
/// 1h` writes (the rows `train` and `eval` use) are exactly what `vigil run --lateness 1h`
/// serves for every event, and they differ from the default lateness's on the same events (the
/// generator's late events).
#[test]
fn lateness_gives_training_the_windows_the_job_serves() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let mut text = generate(20_000, 300, 3).join(&b'\n');
    text.push(b'\n');
    std::fs::write(&input, text).unwrap();
    let features = |lateness: Option<&str>, name: &str| -> BTreeMap<String, Vec<f32>> {
        let csv = dir.path().join(name);
        let mut command = vigil();
        command.args(["features", "--input", input.to_str().unwrap(), "--out", csv.to_str().unwrap()]);
        if let Some(lateness) = lateness {
            command.args(["--lateness", lateness]);
        }
        assert!(command.status().unwrap().success());
        let text = std::fs::read_to_string(&csv).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(header[0], "eventId");
        lines
            .map(|l| {
                let mut cells = l.split(',');
                let id = cells.next().unwrap().to_owned();
                (id, cells.map(|c| c.parse().unwrap()).collect())
            })
            .collect()
    };
    let late = features(Some("1h"), "late.csv");
    assert_ne!(late, features(None, "default.csv"), "an hour of lateness changes some windows");

    let out = dir.path().join("out");
    run_file(&input, &out, &["--lateness", "1h", "--emit-features"]);
    let decisions = read_jsonl(&out.join("decisions.jsonl"));
    assert_eq!(decisions.len(), late.len());
    let header = std::fs::read_to_string(dir.path().join("late.csv")).unwrap();
    let names: Vec<&str> = header.lines().next().unwrap().split(',').skip(1).collect();
    assert_eq!(names.len(), 20);
    for d in &decisions {
        let row = &late[d["eventId"].as_str().unwrap()];
        for (j, name) in names.iter().enumerate() {
            assert_eq!(d["features"][name].as_f64().unwrap() as f32, row[j], "{name} of {}", d["eventId"]);
        }
    }

    let model = dir.path().join("m.safetensors");
    let refused = vigil()
        .args([
            "train",
            "--input",
            input.to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
            "--lateness",
            "5 minutes",
        ])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--lateness"));
}
