//! SPEC §2b end to end: `vigil features --features SPEC` on events with string and numeric
//! attributes, late events, duplicates and events without a key value, on 1 and 2 workers,
//! against a naive reference written from the SPEC text (per event, a scan of the key's whole
//! history; acceptance judged per user as SPEC §2 says).

mod support;

use std::collections::HashMap;
use std::path::Path;

use operators::event::hashing::mix64;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
const LATENESS: i64 = 5 * MIN;

const SPEC: &str = r#"
# Card testing and shared devices.
[[entity]]
name = "card"
key = ["card"]

[[window]]
entity = "card"
windows = ["10m", "1h", "24h", "all"]
aggs = ["cnt", "sum", "max", "min", "mean", "std"]

[[prior]]
entity = "card"
aggs = ["secs_since_prev", "amount_ratio", "distinct:userId:1h", "new:device:30d"]

[[entity]]
name = "device"
key = ["device"]

[[window]]
entity = "device"
of = "location_distance"
windows = ["1h", "all"]
aggs = ["cnt", "sum", "mean"]

[[prior]]
entity = "device"
aggs = ["distinct:card:24h", "secs_since_prev"]
"#;

/// One input event as the reference sees it.
#[derive(Clone, Debug)]
struct Ev {
    id: String,
    user: u32,
    ts: i64,
    amount: f64,
    location: Option<f64>,
    card: Option<String>,
    device: Option<i64>,
}

impl Ev {
    fn line(&self) -> String {
        let mut features = format!(r#""amount":{}"#, self.amount);
        if let Some(l) = self.location {
            features += &format!(r#","location_distance":{l}"#);
        }
        if let Some(c) = &self.card {
            features += &format!(r#","card":"{c}""#);
        }
        if let Some(d) = self.device {
            features += &format!(r#","device":{d}"#);
        }
        format!(
            r#"{{"eventId":"{}","userId":"u{}","timestamp":{},"features":{{{features}}}}}"#,
            self.id, self.user, self.ts
        )
    }
}

/// Events of 30 users over ~3 days: cards shared by several users (card testing), devices
/// with numeric ids, jittered clocks (out of order across users, within and beyond lateness
/// per user), exact duplicates, and events without a card or device.
fn generate(n: usize, seed: u64) -> Vec<Ev> {
    let mut state = seed;
    let mut next = move |m: u64| {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(state) % m
    };
    let base = 1_767_225_600_000;
    let mut clock = base;
    let mut out: Vec<Ev> = Vec::with_capacity(n);
    for i in 0..n {
        if i > 10 && next(40) == 0 {
            let copy = out[out.len() - 1 - next(10) as usize].clone();
            out.push(copy);
            continue;
        }
        clock += next(4 * MIN as u64) as i64;
        let jitter = match next(20) {
            0 => -(20 * MIN),
            1 | 2 => -(next(4 * MIN as u64) as i64),
            _ => 0,
        };
        let user = next(30) as u32;
        out.push(Ev {
            id: format!("e{i}"),
            user,
            ts: clock + jitter,
            amount: (next(20_000) as f64) / 100.0,
            location: (next(4) != 0).then(|| next(500) as f64 / 10.0),
            card: (next(10) != 0)
                .then(|| format!("card-{}", if next(3) == 0 { next(3) } else { u64::from(user) % 12 })),
            device: (next(5) != 0).then(|| next(8) as i64 + 1000),
        });
    }
    out
}

/// What SPEC §2 makes of each event: scored (accepted or late) or a duplicate.
fn judge(events: &[Ev]) -> Vec<Option<bool>> {
    let mut newest: HashMap<u32, i64> = HashMap::new();
    let mut scored_ids: HashMap<(u32, String), i64> = HashMap::new();
    events
        .iter()
        .map(|e| {
            if let Some(&first) = scored_ids.get(&(e.user, e.id.clone())) {
                if (e.ts - first).abs() <= DAY {
                    return None;
                }
            }
            scored_ids.insert((e.user, e.id.clone()), e.ts);
            let n = newest.get(&e.user).copied();
            let late = n.is_some_and(|n| e.ts < n - LATENESS);
            if !late {
                newest.insert(e.user, n.map_or(e.ts, |n| n.max(e.ts)));
            }
            Some(!late)
        })
        .collect()
}

/// Aggregates of `values` (None = missing) with the event's own value last.
fn aggregates(values: &[Option<f64>], aggs: &[&str]) -> Vec<f64> {
    let present: Vec<f64> = values.iter().flatten().copied().collect();
    let n = present.len() as f64;
    let sum: f64 = present.iter().sum();
    let mean = sum / n;
    aggs.iter()
        .map(|agg| match *agg {
            "cnt" => values.len() as f64,
            "sum" => sum,
            _ if present.is_empty() => f64::NAN,
            "max" => present.iter().copied().fold(f64::MIN, f64::max),
            "min" => present.iter().copied().fold(f64::MAX, f64::min),
            "mean" => mean,
            "std" => (present.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt(),
            other => panic!("{other}"),
        })
        .collect()
}

/// The reference's features of the spec above, by name, for every scored event.
fn reference(events: &[Ev]) -> Vec<(String, HashMap<String, f64>)> {
    let verdicts = judge(events);
    let mut rows = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let Some(_) = verdicts[i] else { continue };
        let mut row = HashMap::new();
        // History of an entity: accepted events before e with the same key, retained (newest
        // of them minus 30 d), and those with timestamps in [t − W, t].
        let history = |same: &dyn Fn(&Ev) -> bool| -> (Vec<&Ev>, Vec<&Ev>) {
            let all: Vec<&Ev> = events[..i]
                .iter()
                .zip(&verdicts)
                .filter(|(p, v)| **v == Some(true) && same(p))
                .map(|(p, _)| p)
                .collect();
            let newest = all.iter().map(|p| p.ts).max().unwrap_or(i64::MIN);
            let retained = all.iter().copied().filter(|p| p.ts >= newest.saturating_sub(30 * DAY)).collect();
            (all, retained)
        };
        let within = |retained: &[&Ev], w: i64| -> Vec<Ev> {
            retained.iter().filter(|p| p.ts >= e.ts - w && p.ts <= e.ts).map(|p| (*p).clone()).collect()
        };
        let since_prev = |retained: &[&Ev]| {
            within(retained, 30 * DAY).iter().map(|p| p.ts).max().map_or(-1.0, |p| (e.ts - p) as f64 / 1000.0)
        };
        let card_aggs = ["cnt", "sum", "max", "min", "mean", "std"];
        match &e.card {
            Some(card) => {
                let (all, retained) = history(&|p| p.card.as_ref() == Some(card));
                for (label, members) in [
                    ("10m", within(&retained, 10 * MIN)),
                    ("1h", within(&retained, HOUR)),
                    ("24h", within(&retained, DAY)),
                    ("all", all.iter().map(|p| (*p).clone()).collect()),
                ] {
                    let values: Vec<Option<f64>> =
                        members.iter().map(|p| Some(p.amount)).chain([Some(e.amount)]).collect();
                    for (agg, v) in card_aggs.iter().zip(aggregates(&values, &card_aggs)) {
                        row.insert(format!("card.{agg}_{label}"), v);
                    }
                }
                row.insert("card.secs_since_prev".into(), since_prev(&retained));
                let week = within(&retained, 7 * DAY);
                let ratio = if week.is_empty() {
                    1.0
                } else {
                    e.amount / (week.iter().map(|p| p.amount).sum::<f64>() / week.len() as f64)
                };
                row.insert("card.amount_ratio".into(), if ratio.is_finite() { ratio } else { f64::NAN });
                let mut users: Vec<u32> = within(&retained, HOUR).iter().map(|p| p.user).chain([e.user]).collect();
                users.sort_unstable();
                users.dedup();
                row.insert("card.distinct_userId_1h".into(), users.len() as f64);
                let new_device = match e.device {
                    None => f64::NAN,
                    Some(d) => f64::from(u8::from(!within(&retained, 30 * DAY).iter().any(|p| p.device == Some(d)))),
                };
                row.insert("card.new_device_30d".into(), new_device);
            }
            None => {
                for name in card_names() {
                    row.insert(name, f64::NAN);
                }
            }
        }
        match e.device {
            Some(device) => {
                let (all, retained) = history(&|p| p.device == Some(device));
                for (label, members) in
                    [("1h", within(&retained, HOUR)), ("all", all.iter().map(|p| (*p).clone()).collect())]
                {
                    let values: Vec<Option<f64>> = members.iter().map(|p| p.location).chain([e.location]).collect();
                    for (agg, v) in ["cnt", "sum", "mean"].iter().zip(aggregates(&values, &["cnt", "sum", "mean"])) {
                        row.insert(format!("device.{agg}_{label}"), v);
                    }
                }
                let mut cards: Vec<String> =
                    within(&retained, DAY).iter().filter_map(|p| p.card.clone()).chain(e.card.clone()).collect();
                cards.sort_unstable();
                cards.dedup();
                row.insert("device.distinct_card_24h".into(), cards.len() as f64);
                row.insert("device.secs_since_prev".into(), since_prev(&retained));
            }
            None => {
                for name in device_names() {
                    row.insert(name, f64::NAN);
                }
            }
        }
        rows.push((e.id.clone(), row));
    }
    rows
}

fn card_names() -> Vec<String> {
    let mut names = Vec::new();
    for w in ["10m", "1h", "24h", "all"] {
        for a in ["cnt", "sum", "max", "min", "mean", "std"] {
            names.push(format!("card.{a}_{w}"));
        }
    }
    names.extend(
        ["card.secs_since_prev", "card.amount_ratio", "card.distinct_userId_1h", "card.new_device_30d"]
            .map(String::from),
    );
    names
}

fn device_names() -> Vec<String> {
    let mut names = Vec::new();
    for w in ["1h", "all"] {
        for a in ["cnt", "sum", "mean"] {
            names.push(format!("device.{a}_{w}"));
        }
    }
    names.extend(["device.distinct_card_24h", "device.secs_since_prev"].map(String::from));
    names
}

/// The CSV as (header, rows of (eventId, values)).
fn read_csv(path: &Path) -> (Vec<String>, Vec<(String, Vec<f64>)>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    let rows = lines
        .map(|l| {
            let mut cells = l.split(',');
            let id = cells.next().unwrap().to_owned();
            (id, cells.map(|c| if c.is_empty() { f64::NAN } else { c.parse().unwrap() }).collect())
        })
        .collect();
    (header, rows)
}

fn features(dir: &Path, input: &Path, spec: Option<&Path>, workers: u32) -> (Vec<String>, Vec<(String, Vec<f64>)>) {
    let out = dir.join(format!("features-{workers}-{}.csv", spec.is_some()));
    let mut cmd = support::vigil();
    cmd.args(["features", "--input"]).arg(input).arg("--out").arg(&out).args(["--workers", &workers.to_string()]);
    if let Some(spec) = spec {
        cmd.arg("--features").arg(spec);
    }
    let status = cmd.status().unwrap();
    assert!(status.success());
    read_csv(&out)
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-6 || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

#[test]
fn entity_features_equal_the_naive_reference_on_any_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(3000, 7);
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, events.iter().map(|e| e.line() + "\n").collect::<String>()).unwrap();
    let spec = dir.path().join("spec.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let expected = reference(&events);
    let (plain_header, plain) = features(dir.path(), &input, None, 1);
    for workers in [1, 2] {
        let (header, rows) = features(dir.path(), &input, Some(&spec), workers);
        let names: Vec<String> = card_names().into_iter().chain(device_names()).collect();
        assert_eq!(&header[..21], &plain_header[..], "SPEC §2 columns first, unchanged");
        assert_eq!(&header[21..], &names[..]);
        assert_eq!(rows.len(), expected.len());
        let mut compared = 0;
        for ((row, want), plain_row) in rows.iter().zip(&expected).zip(&plain) {
            assert_eq!(row.0, want.0);
            assert_eq!(
                &row.1[..20].iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                &plain_row.1.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            for (name, got) in names.iter().zip(&row.1[20..]) {
                let want = want.1[name];
                assert!(close(*got, want), "{workers} workers, event {}: {name} = {got}, reference {want}", row.0);
                compared += 1;
            }
        }
        assert!(compared > 100_000, "{compared}");
    }
    // The data exercises what it should: card testing, late events, missing keys.
    let most_users = expected.iter().map(|r| r.1["card.distinct_userId_1h"]).fold(0.0, f64::max);
    assert!(most_users >= 4.0, "{most_users}");
    assert!(expected.len() < events.len(), "duplicates were dropped");
}

#[test]
fn a_bad_specification_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, generate(10, 1).iter().map(|e| e.line() + "\n").collect::<String>()).unwrap();
    let spec = dir.path().join("spec.toml");
    std::fs::write(&spec, "[[entity]]\nname = \"card\"\nkey = [\"card\"]\n\n[[window]]\nentity = \"card\"\nwindows = [\"1h\"]\naggs = [\"median\"]\n").unwrap();
    let out = support::vigil()
        .args(["features", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(dir.path().join("x.csv"))
        .arg("--features")
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 8") && stderr.contains("window.aggs") && stderr.contains("median"), "{stderr}");
}

/// Training stores the specification in the model; `run` with that model computes the same
/// entity features as `vigil features` (on 2 workers), and a different `--features` is refused.
#[test]
fn a_model_trained_with_a_specification_serves_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let spec = root.join("features/cards-devices-ips.toml");
    let events = dir.path().join("events.jsonl");
    let gen = support::vigil()
        .args(["gen", "--entities", "--events", "20000", "--users", "300", "--fraud-rate", "0.03", "--out"])
        .arg(&events)
        .status()
        .unwrap();
    assert!(gen.success());
    let model = dir.path().join("m.safetensors");
    let train = support::vigil()
        .args(["train", "--kind", "gbdt", "--max-trees", "20", "--input"])
        .arg(&events)
        .arg("--out")
        .arg(&model)
        .arg("--features")
        .arg(&spec)
        .output()
        .unwrap();
    assert!(train.status.success(), "{}", String::from_utf8_lossy(&train.stderr));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("m.json")).unwrap()).unwrap();
    assert!(meta["features"].as_str().unwrap().contains("distinct:userId:24h"));
    assert!(meta["inputs"].as_array().unwrap().iter().any(|i| i["name"] == "device.distinct_userId_7d"));

    let out = dir.path().join("out");
    let run = support::vigil()
        .args(["run", "--workers", "2", "--emit-features", "--source"])
        .arg(format!("file:{}", events.display()))
        .arg("--model")
        .arg(&model)
        .arg("--out-dir")
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let (header, rows) = features(dir.path(), &events, Some(&spec), 1);
    let decisions: HashMap<String, serde_json::Value> = support::read_jsonl(&out.join("decisions.jsonl"))
        .into_iter()
        .map(|d| (d["eventId"].as_str().unwrap().to_owned(), d))
        .collect();
    assert_eq!(decisions.len(), rows.len());
    let mut compared = 0;
    for (id, values) in &rows {
        let emitted = &decisions[id]["features"];
        for (name, value) in header[1..].iter().zip(values).filter(|(n, _)| n.contains('.')) {
            match emitted[name].as_f64() {
                // The model reads f32 inputs; the CSV is f64.
                Some(e) => assert!((e - value).abs() <= 1e-6 * value.abs().max(1.0), "{id} {name}: {e} vs {value}"),
                None => assert!(value.is_nan(), "{id} {name}: missing in the decision, {value} in the CSV"),
            }
            compared += 1;
        }
    }
    assert_eq!(compared, rows.len() * 25);

    let other = dir.path().join("other.toml");
    std::fs::write(&other, "[[entity]]\nname = \"card\"\nkey = [\"card\"]\n").unwrap();
    let refused = support::vigil()
        .args(["run", "--events", "10", "--model"])
        .arg(&model)
        .arg("--features")
        .arg(&other)
        .arg("--out-dir")
        .arg(dir.path().join("refused"))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("differs from the specification"));
    let no_checkpoints = support::vigil()
        .args(["run", "--events", "10", "--model"])
        .arg(&model)
        .arg("--checkpoint-dir")
        .arg(dir.path().join("ck"))
        .arg("--out-dir")
        .arg(dir.path().join("refused"))
        .output()
        .unwrap();
    assert_eq!(no_checkpoints.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_checkpoints.stderr).contains("checkpoints do not hold"));
}
