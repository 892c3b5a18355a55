//! End to end through a real Kafka-protocol broker (nisshi, started by `scripts/kafka.sh`):
//! conservation with malformed messages over several partitions and workers, a SIGTERM and
//! restart in mid-stream, and a broker restart while the job runs. The output is checked by
//! an independent consumer (plain rdkafka) against the input the test produced.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::kafka::{Broker, OutputReader, Outputs, Records, Storage, ALERTS, DECISIONS, DLQ};
use support::{assert_same_decision, bad_lines, generate_keyed, vigil, Job};

mod support;

const PARTITIONS: i32 = 4;
const LIMIT: Duration = Duration::from_secs(300);

fn start_job(broker: &Broker) -> Job {
    let child = vigil()
        .args(["run", "--source", "kafka", "--sink", "kafka", "--brokers", &broker.brokers(), "--workers", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    Job(child)
}

/// SIGTERM, then the job must drain, commit and exit 0 within two minutes.
fn stop_job(job: Job) -> String {
    let pid = job.id().to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || sender.send(job.wait_with_output()));
    let Ok(out) = receiver.recv_timeout(Duration::from_secs(120)) else {
        let _ = std::process::Command::new("kill").args(["-KILL", &pid]).status();
        panic!("vigil run (pid {pid}) did not exit within 120 s of SIGTERM");
    };
    let out = out.unwrap();
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "vigil run exited with {} after SIGTERM:\n{summary}", out.status);
    summary
}

fn event_ids(values: &[Value]) -> Vec<String> {
    values.iter().map(|v| v["eventId"].as_str().unwrap().to_owned()).collect()
}

fn unique_decisions(outputs: &Outputs) -> usize {
    outputs.decided.len()
}

/// Valid generated events keyed by userId, and their eventIds.
fn valid_input(events: u64, seed: u64) -> (Records, BTreeSet<String>) {
    let records = generate_keyed(events, events as u32 / 50, seed);
    let ids = records
        .iter()
        .map(|(_, line)| serde_json::from_slice::<Value>(line).unwrap()["eventId"].as_str().unwrap().to_owned())
        .collect();
    (records.into_iter().map(|(k, l)| (Some(k), l)).collect(), ids)
}

#[test]
fn a_million_events_with_malformed_ones_are_all_accounted_for() {
    let broker = Broker::start(PARTITIONS as u32, Storage::Memory);
    let (good, mut valid_ids) = valid_input(1_000_000, 21);
    let bad = bad_lines();
    let huge = bad.iter().position(|(line, _)| line.len() > 1 << 20).unwrap();
    let mut records = Vec::with_capacity(good.len() * 102 / 100);
    let mut expected_dead: BTreeMap<String, (&str, usize)> = BTreeMap::new();
    let mut huge_left = 3;
    for (i, record) in good.into_iter().enumerate() {
        records.push(record);
        if i % 100_000 == 3 {
            // SPEC §1: a record without timestamp takes its Kafka message's.
            let id = format!("no-ts-{i}");
            let line = format!(r#"{{"eventId":"{id}","userId":"user_no_ts","value":12.5}}"#);
            records.push((Some(b"user_no_ts".to_vec()), line.into_bytes()));
            valid_ids.insert(id);
        }
        if i % 80 == 7 {
            let mut kind = (i / 80) % bad.len();
            if kind == huge {
                if huge_left == 0 {
                    kind = (kind + 1) % bad.len();
                }
                huge_left -= usize::from(kind == huge);
            }
            let (line, reason) = &bad[kind];
            let key = (i % 160 == 7).then(|| b"user_bad".to_vec());
            records.push((key, line.clone()));
            let raw = String::from_utf8_lossy(&line[..line.len().min(65_536)]).into_owned();
            expected_dead.entry(raw).or_insert((reason, 0)).1 += 1;
        }
    }
    let bad_count: usize = expected_dead.values().map(|(_, n)| n).sum();
    assert!(bad_count * 100 >= records.len(), "fewer than 1 % malformed messages");

    let job = start_job(&broker);
    let produced_from = SystemTime::now();
    broker.produce(&records, None);
    let produced_to = SystemTime::now();
    let mut reader = OutputReader::new(&broker);
    reader.read_until(LIMIT, |o| unique_decisions(o) >= valid_ids.len() && o.topic(DLQ).len() >= bad_count);
    let summary = stop_job(job);
    reader.read_to_end();
    let outputs = &reader.outputs;

    let decided = event_ids(outputs.topic(DECISIONS));
    assert_eq!(decided.len(), valid_ids.len(), "a valid event was decided more than once");
    assert_eq!(decided.into_iter().collect::<BTreeSet<_>>(), valid_ids, "decisions differ from the valid input");
    let unix_ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let produced = unix_ms(produced_from) - 1..=unix_ms(produced_to);
    let stamped: Vec<&Value> = outputs.topic(DECISIONS).iter().filter(|d| d["userId"] == "user_no_ts").collect();
    assert_eq!(stamped.len(), 10);
    for decision in stamped {
        assert_eq!(decision["timestamp_source"], "message", "{decision}");
        let ms = operators::time::rfc3339::parse_rfc3339_ms(decision["timestamp"].as_str().unwrap()).unwrap();
        assert!(produced.contains(&ms), "{decision} was not stamped while it was produced");
    }
    let dead = outputs.topic(DLQ);
    assert_eq!(dead.len(), bad_count, "dead letters differ from the malformed input");
    for letter in dead {
        let raw = letter["raw"].as_str().unwrap();
        let (reason, _) = expected_dead.get(raw).unwrap_or_else(|| panic!("unexpected dead letter {letter}"));
        let error = letter["error"].as_str().unwrap();
        assert!(error.contains(reason), "dead letter error `{error}` lacks `{reason}`");
        let source = letter["source"].as_str().unwrap();
        assert!(source.starts_with("anomaly-events/"), "dead letter source `{source}` is not TOPIC/PARTITION/OFFSET");
    }
    let blocked = outputs.blocked();
    let alerted = event_ids(outputs.topic(ALERTS));
    assert!(!blocked.is_empty());
    assert_eq!(alerted.len(), blocked.len(), "alerts are not one per block decision");
    assert_eq!(alerted.into_iter().collect::<BTreeSet<_>>(), blocked);
    let committed = broker.committed("vigil", PARTITIONS);
    let ends = broker.end_offsets(PARTITIONS);
    assert_eq!(committed, ends.iter().map(|&e| Some(e)).collect::<Vec<_>>(), "committed offsets after a clean stop");
    assert!(summary.contains("vigil run summary"), "{summary}");
}

/// Streams `events` events through a job at `rate` events/s, disturbs it once a quarter of
/// them are decided (while input is still arriving), and checks that every event still gets a
/// decision and the final offsets are committed; returns how many decisions came twice.
fn survives(seed: u64, storage: Storage, events: u64, rate: f64, disturb: impl FnOnce(&Broker, Job) -> Job) -> usize {
    let broker = Broker::start(PARTITIONS as u32, storage);
    let (records, valid_ids) = valid_input(events, seed);
    let job = start_job(&broker);
    let mut reader = OutputReader::new(&broker);
    let producer_failed = AtomicBool::new(false);
    let decided = std::thread::scope(|scope| {
        let producer = scope.spawn(|| {
            let produced = std::panic::catch_unwind(AssertUnwindSafe(|| broker.produce(&records, Some(rate))));
            producer_failed.store(produced.is_err(), Ordering::SeqCst);
        });
        let check = |o: &Outputs, target: usize| {
            assert!(!producer_failed.load(Ordering::SeqCst), "the test's producer failed");
            unique_decisions(o) >= target
        };
        reader.read_until(LIMIT, |o| check(o, valid_ids.len() / 4));
        let job = disturb(&broker, job);
        reader.read_until(LIMIT, |o| check(o, valid_ids.len()));
        producer.join().unwrap();
        stop_job(job);
        reader.read_to_end();
        event_ids(reader.outputs.topic(DECISIONS))
    });
    let duplicates = decided.len() - valid_ids.len();
    assert_eq!(decided.into_iter().collect::<BTreeSet<_>>(), valid_ids, "an event was lost or invented");
    let ends = broker.end_offsets(PARTITIONS);
    assert_eq!(broker.committed("vigil", PARTITIONS), ends.iter().map(|&e| Some(e)).collect::<Vec<_>>());
    duplicates
}

#[test]
fn sigterm_in_mid_stream_and_restart_lose_nothing() {
    let duplicates = survives(22, Storage::Memory, 200_000, 25_000.0, |broker, job| {
        stop_job(job);
        let committed = broker.committed("vigil", PARTITIONS);
        assert!(committed.iter().any(|c| c.is_some_and(|o| o > 0)), "nothing committed at the stop: {committed:?}");
        start_job(broker)
    });
    println!("decisions delivered twice across the SIGTERM restart: {duplicates}");
}

#[test]
fn broker_restart_while_the_job_runs_loses_nothing() {
    let duplicates = survives(23, Storage::Persistent, 100_000, 10_000.0, |broker, job| {
        broker.script(&["stop"]);
        broker.script(&["start"]);
        job
    });
    println!("decisions delivered twice across the broker restart: {duplicates}");
}

/// The decisions of one uninterrupted file run over the records' lines, by eventId.
fn uninterrupted_decisions(records: &Records) -> BTreeMap<String, Value> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let mut text = Vec::new();
    for (_, line) in records {
        text.extend_from_slice(line);
        text.push(b'\n');
    }
    std::fs::write(&input, text).unwrap();
    let out = dir.path().join("out");
    let status = vigil()
        .args(["run", "--source", &format!("file:{}", input.display()), "--emit-features"])
        .args(["--out-dir", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    support::read_jsonl(&out.join("decisions.jsonl"))
        .into_iter()
        .map(|d| (d["eventId"].as_str().unwrap().to_owned(), d))
        .collect()
}

/// Complete checkpoints in `dir`, oldest first.
fn complete_checkpoints(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<_> = entries.map(|e| e.unwrap().path()).filter(|p| p.join("MANIFEST").exists()).collect();
    found.sort();
    found
}

#[test]
fn kill_9_three_times_with_checkpoints_loses_nothing_and_restores_state_exactly() {
    let broker = Broker::start(PARTITIONS as u32, Storage::Memory);
    let (records, valid_ids) = valid_input(60_000, 24);
    let checkpoints = tempfile::tempdir().unwrap();
    let start = |workers: &str| {
        let child = vigil()
            .args(["run", "--source", "kafka", "--sink", "kafka", "--brokers", &broker.brokers(), "--emit-features"])
            .args(["--workers", workers, "--checkpoint-dir", checkpoints.path().to_str().unwrap()])
            .args(["--checkpoint-interval", "200ms"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        Job(child)
    };
    let mut reader = OutputReader::new(&broker);
    let producer_failed = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let producer = scope.spawn(|| {
            let produced = std::panic::catch_unwind(AssertUnwindSafe(|| broker.produce(&records, Some(8_000.0))));
            producer_failed.store(produced.is_err(), Ordering::SeqCst);
        });
        let mut job = start("2");
        let mut seen_checkpoint = None;
        // SIGKILL at three moments of the stream, each after a new checkpoint completed.
        for (round, fraction) in [0.2, 0.45, 0.7].into_iter().enumerate() {
            reader.read_until(LIMIT, |o| {
                assert!(!producer_failed.load(Ordering::SeqCst), "the test's producer failed");
                let newest = complete_checkpoints(checkpoints.path()).pop();
                unique_decisions(o) as f64 >= valid_ids.len() as f64 * fraction
                    && newest.is_some()
                    && newest != seen_checkpoint
            });
            job.kill().unwrap();
            job.wait().unwrap();
            seen_checkpoint = complete_checkpoints(checkpoints.path()).pop();
            job = start(if round % 2 == 0 { "1" } else { "2" });
        }
        reader.read_until(LIMIT, |o| unique_decisions(o) >= valid_ids.len());
        producer.join().unwrap();
        stop_job(job);
    });
    reader.read_to_end();
    let decisions = reader.outputs.topic(DECISIONS);
    let decided: BTreeSet<String> = event_ids(decisions).into_iter().collect();
    assert_eq!(decided, valid_ids, "an event was lost or invented");
    let expected = uninterrupted_decisions(&records);
    for decision in decisions {
        assert_same_decision(&expected[decision["eventId"].as_str().unwrap()], decision, "after SIGKILLs");
    }
    println!("decisions delivered more than once across three SIGKILLs: {}", decisions.len() - valid_ids.len());
}
