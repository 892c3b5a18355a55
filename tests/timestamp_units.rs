//! Events of the system vigil replaces, unchanged (SPEC §1): epoch seconds, float seconds,
//! milliseconds, microseconds, nanoseconds and RFC 3339 all name the same instant, the amount
//! may come as top-level `value`, and `--timestamp-unit` forces a unit.

use std::path::Path;

use serde_json::Value;
use support::{read_jsonl, vigil};

mod support;

/// The event of the replaced system's documentation, with its timestamp written as `timestamp`
/// and its user as `user`.
fn documented_event(user: &str, timestamp: &str) -> String {
    format!(
        r#"{{"eventId":"txn-789","userId":"{user}","timestamp":{timestamp},"value":5000,"features":{{"amount":5000,"hour_of_day":14,"location_distance":250.5,"days_since_last_txn":0.5}}}}"#
    )
}

/// Two earlier events of `user` (RFC 3339), so the windows have something to say.
fn history(user: &str) -> [String; 2] {
    [
        format!(
            r#"{{"eventId":"h1","userId":"{user}","timestamp":"2024-12-29T23:00:00Z","features":{{"amount":100,"location_distance":2}}}}"#
        ),
        format!(
            r#"{{"eventId":"h2","userId":"{user}","timestamp":"2024-12-29T23:59:59.999Z","features":{{"amount":120,"location_distance":3}}}}"#
        ),
    ]
}

fn run(input: &Path, out: &Path, extra: &[&str]) -> Vec<Value> {
    let status = vigil()
        .args(["run", "--source", &format!("file:{}", input.display()), "--out-dir", out.to_str().unwrap()])
        .args(["--emit-features"])
        .args(extra)
        .status()
        .unwrap();
    assert!(status.success(), "vigil run failed: {status}");
    read_jsonl(&out.join("decisions.jsonl"))
}

/// What must not differ between two decisions of the same instant: everything but the user,
/// and the timings.
fn decided(decision: &Value) -> Value {
    let mut d = decision.clone();
    let object = d.as_object_mut().unwrap();
    for varying in ["userId", "latency_ms", "inference_time_ms"] {
        object.remove(varying);
    }
    d
}

#[test]
fn every_unit_of_the_documented_instant_decides_identically() {
    let forms = [
        ("seconds", "1735516800"),
        ("float_seconds", "1735516800.0"),
        ("milliseconds", "1735516800000"),
        ("microseconds", "1735516800000000"),
        ("nanoseconds", "1735516800000000000"),
        ("rfc3339", "\"2024-12-30T00:00:00Z\""),
    ];
    let mut lines = Vec::new();
    for (user, timestamp) in forms {
        lines.extend(history(user));
        lines.push(documented_event(user, timestamp));
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let decisions = run(&input, &dir.path().join("out"), &[]);
    assert_eq!(decisions.len(), lines.len(), "one decision per event, no dead letter");
    let documented: Vec<&Value> = decisions.iter().filter(|d| d["eventId"] == "txn-789").collect();
    assert_eq!(documented.len(), forms.len());
    let first = documented[0];
    assert_eq!(first["timestamp"], "2024-12-30T00:00:00.000Z");
    assert!(first.get("timestamp_source").is_none(), "the event's own time: {first}");
    // By hand: the two history events are within 1 h ([t − 1h, t], both ends inclusive).
    let f = &first["features"];
    assert_eq!(f["cnt_1h"], 3.0);
    assert_eq!(f["sum_1h"], 5220.0);
    assert_eq!(f["amount"], 5000.0);
    // Model inputs are f32: 1 ms as seconds within f32 precision.
    assert!((f["secs_since_prev"].as_f64().unwrap() - 0.001).abs() < 1e-9, "{f}");
    for other in &documented[1..] {
        assert_eq!(decided(other), decided(first), "{other}");
    }
}

#[test]
fn value_is_the_amount_when_features_have_none_and_a_forced_unit_wins() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let lines = [
        // No features at all: `value` is the amount.
        r#"{"eventId":"a","userId":"u1","timestamp":1735516800.25,"value":42.5}"#,
        // Both: features.amount wins.
        r#"{"eventId":"b","userId":"u2","timestamp":1735516800,"value":1,"features":{"amount":7}}"#,
        // Neither a numeric value nor an amount: a dead letter naming what is missing.
        r#"{"eventId":"c","userId":"u3","timestamp":1735516800,"value":"5"}"#,
        // A string attribute (SPEC §1) is carried, not a reason to refuse the event.
        r#"{"eventId":"d","userId":"u4","timestamp":1735516800,"features":{"amount":3,"card":"c-1"}}"#,
    ];
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = dir.path().join("out");
    let decisions = run(&input, &out, &[]);
    let by_id = |id: &str| decisions.iter().find(|d| d["eventId"] == id).unwrap_or_else(|| panic!("no decision {id}"));
    assert_eq!(by_id("a")["features"]["amount"], 42.5);
    assert_eq!(by_id("a")["timestamp"], "2024-12-30T00:00:00.250Z");
    assert_eq!(by_id("b")["features"]["amount"], 7.0);
    assert_eq!(by_id("d")["features"]["amount"], 3.0);
    let dead = read_jsonl(&out.join("dead-letters.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0]["error"].as_str().unwrap().contains("missing features.amount"), "{}", dead[0]);

    // Forced to milliseconds, the documented seconds are 1970-01-21, as the old reading was.
    let forced = run(&input, &dir.path().join("forced"), &["--timestamp-unit", "ms"]);
    let b = forced.iter().find(|d| d["eventId"] == "b").unwrap();
    assert_eq!(b["timestamp"], "1970-01-21T02:05:16.800Z");
    let status = vigil().args(["run", "--timestamp-unit", "minutes", "--events", "1"]).status().unwrap();
    assert_eq!(status.code(), Some(2), "an unknown unit is a usage error");
}
