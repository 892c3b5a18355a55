//! Exactly-once delivery against a broker with transactions (noida-db): a job killed with
//! SIGKILL twice while events stream in, and restarted from its checkpoints each time, shows a
//! `read_committed` consumer each eventId's decision exactly once, each malformed message's dead
//! letter exactly once, and an alert for exactly the blocks.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use support::kafka::{produce, OutputReader, Records, TransactionalBroker, ALERTS, DECISIONS, DLQ};
use support::{bad_lines, generate_keyed, vigil, Job};

mod support;

const PARTITIONS: i32 = 4;
const LIMIT: Duration = Duration::from_secs(300);

fn start_job(brokers: &str, checkpoints: &Path, workers: &str) -> Job {
    let child = vigil()
        .args(["run", "--source", "kafka", "--sink", "kafka", "--brokers", brokers, "--workers", workers])
        .args(["--delivery", "exactly-once", "--checkpoint-dir", checkpoints.to_str().unwrap()])
        .args(["--checkpoint-interval", "300ms"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Job(child)
}

fn newest_checkpoint(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries.map(|e| e.unwrap().path()).filter(|p| p.join("MANIFEST").exists()).max()
}

fn counts(values: &[Value], field: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for value in values {
        *counts.entry(value[field].as_str().unwrap().to_owned()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn killed_twice_a_read_committed_consumer_sees_every_decision_exactly_once() {
    let broker = TransactionalBroker::start(PARTITIONS);
    let brokers = broker.brokers();
    let bad = bad_lines();
    let mut records: Records = Vec::new();
    let mut valid = BTreeSet::new();
    let mut malformed = Vec::new();
    for (i, (key, line)) in generate_keyed(40_000, 1_000, 31).into_iter().enumerate() {
        let value: Value = serde_json::from_slice(&line).unwrap();
        valid.insert(value["eventId"].as_str().unwrap().to_owned());
        records.push((Some(key), line));
        if i % 400 == 3 {
            let (line, _) = &bad[(i / 400) % (bad.len() - 1)];
            malformed.push(String::from_utf8_lossy(line).into_owned());
            records.push((None, line.clone()));
        }
    }
    let checkpoints = tempfile::tempdir().unwrap();
    let mut reader = OutputReader::connect(&brokers, "read_committed");
    let producer_failed = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let producer = scope.spawn(|| {
            let produced = std::panic::catch_unwind(AssertUnwindSafe(|| produce(&brokers, &records, Some(5_000.0))));
            producer_failed.store(produced.is_err(), Ordering::SeqCst);
        });
        let mut job = start_job(&brokers, checkpoints.path(), "2");
        let mut seen = None;
        for (round, fraction) in [0.3, 0.6].into_iter().enumerate() {
            reader.read_until(LIMIT, |o| {
                assert!(!producer_failed.load(Ordering::SeqCst), "the test's producer failed");
                let newest = newest_checkpoint(checkpoints.path());
                o.decided.len() as f64 >= valid.len() as f64 * fraction && newest.is_some() && newest != seen
            });
            job.kill().unwrap();
            job.wait().unwrap();
            seen = newest_checkpoint(checkpoints.path());
            job = start_job(&brokers, checkpoints.path(), if round == 0 { "1" } else { "2" });
        }
        reader.read_until(LIMIT, |o| o.decided.len() >= valid.len() && o.topic(DLQ).len() >= malformed.len());
        producer.join().unwrap();
        let pid = job.id().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        assert!(job.wait().unwrap().success(), "the job drains and exits 0 on SIGTERM");
    });
    reader.read_to_end();
    let outputs = &reader.outputs;

    let decisions = counts(outputs.topic(DECISIONS), "eventId");
    assert_eq!(decisions.keys().cloned().collect::<BTreeSet<_>>(), valid, "an event was lost or invented");
    let repeated: Vec<_> = decisions.iter().filter(|(_, &n)| n > 1).take(5).collect();
    assert!(repeated.is_empty(), "decisions seen more than once: {repeated:?}");

    let dead = counts(outputs.topic(DLQ), "raw");
    let mut expected_dead: BTreeMap<String, usize> = BTreeMap::new();
    for raw in &malformed {
        *expected_dead.entry(raw.clone()).or_insert(0) += 1;
    }
    assert_eq!(dead, expected_dead, "each malformed message has exactly one dead letter");

    let blocked = outputs.blocked();
    let alerts = counts(outputs.topic(ALERTS), "eventId");
    assert!(!blocked.is_empty());
    assert_eq!(alerts.keys().cloned().collect::<BTreeSet<_>>(), blocked);
    assert!(alerts.values().all(|&n| n == 1), "an alert was seen twice");
}

#[test]
fn exactly_once_flag_errors_are_usage_errors() {
    let eo = ["--delivery", "exactly-once"];
    let kafka = ["--source", "kafka", "--sink", "kafka"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--delivery", "twice"], "not one of"),
        (eo.to_vec(), "--source kafka --sink kafka"),
        ([&eo[..], &kafka[..]].concat(), "--checkpoint-dir"),
        (
            [&eo[..], &kafka[..], &["--checkpoint-dir", "x", "--processes", "2", "--process", "0", "--hostfile", "h"]]
                .concat(),
            "one process",
        ),
    ];
    for (flags, message) in cases {
        let output = vigil().arg("run").args(&flags).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(message), "{flags:?}: {stderr}");
    }
}
