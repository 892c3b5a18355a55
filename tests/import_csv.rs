//! `vigil import`: every mapping option, missing cells, rejected rows with their line numbers,
//! time ordering, the train/test split, config errors (exit 2), and a round trip of the
//! imported events through `vigil features`. Expected values are worked out by hand.

use std::path::Path;

use serde_json::json;
use support::{read_jsonl, vigil};

mod support;

const CSV: &str = "\
txn,card,merchant,ts,amt,fraud,hour,dist,V1,V2,Other
t1,c1,m1,10,5.5,0,14,1.5,0.1,,7
t2,c1,m1,5,20,1,3,,NaN,-2,8
t3,c2,m9,bad,1,0,,,,,
t4,c2,m9,7,,0,,,,,
t5,c2,,8,1,0,,,,,
\"t6,x\",c2,m9,3600,2.25,,,,1e-3,0.5,
t7,c2,m9,20,1,0
t8,c1,m1,10,3,0,,,,,x
t9,c1,m1,10,4,0,,,,,
";

const MAPPING: &str = r#"
amount = "amt"
label = "fraud"
hour_of_day = "hour"
location_distance = "dist"

[event_id]
column = "txn"
prefix = "p-"

[user_id]
columns = ["card", "merchant"]
separator = "|"

[timestamp]
column = "ts"
unit = "s"
base = "2026-01-01T00:00:00Z"

[features]
columns = ["Other"]
pattern = "V*"
"#;

fn import(dir: &Path, csv: &str, mapping: &str, extra: &[&str]) -> std::process::Output {
    std::fs::write(dir.join("in.csv"), csv).unwrap();
    std::fs::write(dir.join("map.toml"), mapping).unwrap();
    let output = vigil()
        .args(["import", "--csv", dir.join("in.csv").to_str().unwrap()])
        .args(["--map", dir.join("map.toml").to_str().unwrap(), "--out", dir.join("events.jsonl").to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap();
    output
}

#[test]
fn every_mapping_option_missing_cells_rejects_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let out = import(dir.path(), CSV, MAPPING, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("imported 4 events (1 fraud, 1 unlabelled)"), "{stdout}");
    assert!(stdout.contains("rejected 5 rows"), "{stdout}");
    let events = read_jsonl(&dir.path().join("events.jsonl"));
    let expected = [
        json!({"eventId": "p-t2", "timestamp": "2026-01-01T00:00:05.000Z", "userId": "c1|m1", "value": 20.0,
               "features": {"amount": 20.0, "hour_of_day": 3.0, "other": 8.0, "v2": -2.0}, "label": 1}),
        json!({"eventId": "p-t1", "timestamp": "2026-01-01T00:00:10.000Z", "userId": "c1|m1", "value": 5.5,
               "features": {"amount": 5.5, "hour_of_day": 14.0, "location_distance": 1.5, "other": 7.0, "v1": 0.1},
               "label": 0}),
        json!({"eventId": "p-t9", "timestamp": "2026-01-01T00:00:10.000Z", "userId": "c1|m1", "value": 4.0,
               "features": {"amount": 4.0}, "label": 0}),
        json!({"eventId": "p-t6,x", "timestamp": "2026-01-01T01:00:00.000Z", "userId": "c2|m9", "value": 2.25,
               "features": {"amount": 2.25, "v1": 0.001, "v2": 0.5}}),
    ];
    assert_eq!(events, expected);
    let rejects = read_jsonl(&dir.path().join("events.rejects.jsonl"));
    let got: Vec<(u64, String)> =
        rejects.iter().map(|r| (r["line"].as_u64().unwrap(), r["error"].as_str().unwrap().to_owned())).collect();
    let want = [
        (4, "timestamp: `bad` is not a number"),
        (5, "amount: empty cell"),
        (6, "empty user id column"),
        (8, "6 fields, the header has 11"),
        (9, "other: `x` is not a number"),
    ];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for ((line, error), (want_line, want_error)) in got.iter().zip(want) {
        assert_eq!(*line, want_line, "{got:?}");
        assert!(error.contains(want_error), "line {line}: {error}");
    }
    assert_eq!(rejects[0]["raw"], "t3,c2,m9,bad,1,0,,,,,");
}

/// The imported file is valid input: `vigil features` scores all of it, with the window
/// features of the composite users computed by hand.
#[test]
fn imported_events_round_trip_through_features() {
    let dir = tempfile::tempdir().unwrap();
    assert!(import(dir.path(), CSV, MAPPING, &[]).status.success());
    let csv_out = dir.path().join("features.csv");
    let status = vigil()
        .args(["features", "--input", dir.path().join("events.jsonl").to_str().unwrap()])
        .args(["--out", csv_out.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&csv_out).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<String>> = lines.map(|l| l.rsplitn(21, ',').map(String::from).collect::<Vec<_>>()).collect();
    // rsplitn yields the columns right to left; the event id (which may hold a comma) is last.
    let cell = |r: usize, name: &str| rows[r][header.len() - 1 - col(name)].clone();
    let ids: Vec<String> = rows.iter().map(|r| r[20].trim_matches('"').to_owned()).collect();
    assert_eq!(ids, ["p-t2", "p-t1", "p-t9", "p-t6,x"]);
    let cnt: Vec<f64> = (0..4).map(|r| cell(r, "cnt_1h").parse().unwrap()).collect();
    assert_eq!(cnt, [1.0, 2.0, 3.0, 1.0]);
    assert_eq!(cell(2, "sum_1h").parse::<f64>().unwrap(), 29.5);
    assert_eq!(cell(1, "secs_since_prev").parse::<f64>().unwrap(), 5.0);
    assert_eq!(cell(3, "secs_since_prev").parse::<f64>().unwrap(), -1.0);
}

#[test]
fn row_numbers_constant_user_epoch_ms_and_split() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "when,amount,V1\n1000,1,0.5\n500,2,\n3000,3,1\n";
    let mapping = "amount = \"amount\"\n[event_id]\nrow_number = true\n[user_id]\nconstant = \"all\"\n\
                   [timestamp]\ncolumn = \"when\"\nunit = \"ms\"\n[features]\ncolumns = [\"V1\"]\n";
    let out = import(dir.path(), csv, mapping, &["--split-at", "1970-01-01T00:00:02Z"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.path().join("events.jsonl").exists(), "a split writes only the two parts");
    let ids = |part: &str| -> Vec<(String, String)> {
        read_jsonl(&dir.path().join(format!("events.{part}.jsonl")))
            .iter()
            .map(|e| (e["eventId"].as_str().unwrap().to_owned(), e["userId"].as_str().unwrap().to_owned()))
            .collect()
    };
    let pair = |id: &str| (id.to_owned(), "all".to_owned());
    assert_eq!(ids("train"), [pair("2"), pair("1")]);
    assert_eq!(ids("test"), [pair("3")]);
    let train = read_jsonl(&dir.path().join("events.train.jsonl"));
    assert_eq!(train[0]["timestamp"], "1970-01-01T00:00:00.500Z");
    assert!(train[0].get("label").is_none(), "no label column, no label");
    assert_eq!(train[1]["features"], json!({"amount": 1.0, "v1": 0.5}));
}

#[test]
fn mapping_errors_name_the_field_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (MAPPING.replace("prefix", "prefx"), "prefx"),
        (MAPPING.replace("label = \"fraud\"", "label = \"Class\""), "label: column `Class`"),
        (MAPPING.replace("unit = \"s\"", "unit = \"h\""), "unit"),
        (MAPPING.replace("columns = [\"card\", \"merchant\"]", "constant = \"x\"\ncolumn = \"card\""), "user_id"),
        (MAPPING.replace("columns = [\"Other\"]", "columns = [\"V1\"]"), "`v1` would be written twice"),
    ];
    for (mapping, needle) in cases {
        let out = import(dir.path(), CSV, &mapping, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{needle}: {stderr}");
        assert!(stderr.contains(needle) && stderr.contains("map.toml"), "{needle}: {stderr}");
    }
    let out = import(dir.path(), CSV, MAPPING, &["--split-at", "tomorrow"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--split-at"));
}
