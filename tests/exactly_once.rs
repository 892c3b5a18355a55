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

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
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

/// A transactional producer restarted with the same `transactional.id` keeps its producer id;
/// once the broker has aborted the crashed instance's transaction, the new instance's committed
/// records must still reach a read_committed consumer that fetches from after the abort. The
/// exactly-once test above depends on it, and noida-db 0.2.3 unfixed fails it: it reports every
/// aborted transaction to every fetch, so the client discards the restarted producer's records
/// (scripts/noida-db.sh installs it with the fix).
#[test]
fn a_restarted_transactional_producers_commits_are_visible_past_its_aborted_transaction() {
    const TIMEOUT: Duration = Duration::from_secs(30);
    let broker = TransactionalBroker::start(1);
    let brokers = broker.brokers();
    let transactional = |id: &str| -> BaseProducer {
        let producer: BaseProducer =
            ClientConfig::new().set("bootstrap.servers", &brokers).set("transactional.id", id).create().unwrap();
        producer.init_transactions(TIMEOUT).unwrap();
        producer.begin_transaction().unwrap();
        producer
    };
    let crashed = transactional("restarted");
    crashed.send(BaseRecord::<(), _>::to(DECISIONS).partition(0).payload("aborted")).unwrap();
    crashed.flush(TIMEOUT).unwrap();
    // Forgotten, not dropped: like a crash, it ends nothing, and the restart must abort it.
    std::mem::forget(crashed);
    let restarted = transactional("restarted");
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("isolation.level", "read_committed")
        .set("group.id", "conformance")
        .create()
        .unwrap();
    let (_, after_abort) = reader.fetch_watermarks(DECISIONS, 0, TIMEOUT).unwrap();
    assert!(after_abort >= 2, "the broker wrote the aborted record and its abort marker");
    restarted.send(BaseRecord::<(), _>::to(DECISIONS).partition(0).payload("committed")).unwrap();
    restarted.commit_transaction(TIMEOUT).unwrap();

    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(DECISIONS, 0, Offset::Offset(after_abort)).unwrap();
    reader.assign(&assignment).unwrap();
    let deadline = std::time::Instant::now() + TIMEOUT;
    let message = loop {
        assert!(std::time::Instant::now() < deadline, "the committed record never reached the reader");
        if let Some(message) = reader.poll(Duration::from_millis(200)) {
            break message.unwrap();
        }
    };
    assert_eq!(message.payload(), Some(&b"committed"[..]));
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
