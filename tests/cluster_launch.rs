//! Multi-process jobs started by `scripts/launch.sh`: a 2 × 2 cluster decides exactly like one
//! worker, two processes share the partitions of a Kafka topic between them, and one process
//! dying stops the whole cluster with a clear message and a non-zero exit.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::kafka::{Broker, OutputReader, Storage, DECISIONS, DLQ};
use support::{bad_lines, generate, generate_keyed, read_jsonl, vigil};

mod support;

/// `scripts/launch.sh` with this test run's binary and a free base port.
fn launch(processes: usize, workers: usize) -> Command {
    let mut command = Command::new("bash");
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/launch.sh"))
        .args(["-n", &processes.to_string(), "-w", &workers.to_string()])
        .args(["--port", &support::free_port_block(processes as u16).to_string()])
        .args(["--bin", env!("CARGO_BIN_EXE_vigil")])
        .env("RUST_LOG", "warn");
    command
}

fn succeeded(output: Output, what: &str) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{what} failed with {}:\n{text}", output.status);
    text
}

/// The records of every file in `dir` whose name starts with `prefix`, with their count of files.
fn read_outputs(dir: &Path, prefix: &str) -> (Vec<Value>, usize) {
    let mut records = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.starts_with(prefix) && name.ends_with(".jsonl") {
            files += 1;
            records.extend(read_jsonl(&path));
        }
    }
    (records, files)
}

/// eventId → (decision, score) of a run's decision files, each eventId once.
fn decisions_by_id(dir: &Path) -> (BTreeMap<String, (String, f64)>, usize) {
    let (records, files) = read_outputs(dir, "decisions");
    let mut by_id = BTreeMap::new();
    for d in &records {
        let id = d["eventId"].as_str().unwrap().to_owned();
        let decided = (d["decision"].as_str().unwrap().to_owned(), d["anomaly_score"].as_f64().unwrap());
        assert!(by_id.insert(id.clone(), decided).is_none(), "{id} was decided twice");
    }
    (by_id, files)
}

#[test]
fn two_processes_of_two_workers_decide_exactly_like_one_worker() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let mut lines = generate(60_000, 1_500, 31);
    let bad = bad_lines();
    for i in 0..600 {
        lines.insert(i * 97 + 5, bad[i % bad.len()].0.clone());
    }
    std::fs::write(&input, lines.join(&b'\n')).unwrap();
    let source = format!("file:{}", input.display());
    let single = dir.path().join("single");
    let cluster = dir.path().join("cluster");

    let out = vigil().args(["run", "--source", &source, "--out-dir", single.to_str().unwrap()]).output().unwrap();
    succeeded(out, "vigil run (1 × 1)");
    let out = launch(2, 2)
        .args(["--", "--source", &source, "--out-dir", cluster.to_str().unwrap(), "--block-len", "1000"])
        .output()
        .unwrap();
    let log = succeeded(out, "launch.sh -n 2 -w 2");
    assert!(log.contains("[p0] vigil run summary") && log.contains("[p1] vigil run summary"), "{log}");

    let (expected, single_files) = decisions_by_id(&single);
    let (got, cluster_files) = decisions_by_id(&cluster);
    assert_eq!((single_files, cluster_files), (1, 2), "one decision file per process");
    assert_eq!(expected.len() + 600, lines.len());
    assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "different eventIds decided");
    for (id, (decision, score)) in &expected {
        let (got_decision, got_score) = &got[id];
        assert_eq!(got_decision, decision, "{id}");
        assert!((got_score - score).abs() <= 1e-6, "{id}: score {got_score} vs {score}");
    }
    let (dead_single, _) = read_outputs(&single, "dead-letters");
    let (dead_cluster, _) = read_outputs(&cluster, "dead-letters");
    let sources = |dead: &[Value]| {
        let mut s: Vec<String> = dead.iter().map(|d| d["source"].as_str().unwrap().to_owned()).collect();
        s.sort();
        s
    };
    assert_eq!(dead_single.len(), 600);
    assert_eq!(sources(&dead_cluster), sources(&dead_single), "different dead letters");
}

#[test]
fn two_processes_share_the_partitions_of_a_topic() {
    const PARTITIONS: i32 = 4;
    let broker = Broker::start(PARTITIONS as u32, Storage::Memory);
    let mut records: Vec<(Option<Vec<u8>>, Vec<u8>)> =
        generate_keyed(100_000, 2_000, 32).into_iter().map(|(k, l)| (Some(k), l)).collect();
    let valid = records.len();
    let bad = bad_lines();
    for i in 0..1_000 {
        records.insert(i * 101 + 3, (None, bad[i % bad.len()].0.clone()));
    }
    broker.produce(&records, None);

    let brokers = broker.brokers();
    let out = launch(2, 1)
        .args(["--", "--source", "kafka", "--sink", "kafka", "--brokers", &brokers, "--stop-at-end"])
        .output()
        .unwrap();
    let log = succeeded(out, "launch.sh -n 2 -w 1 with --source kafka");
    assert!(log.contains("[p0] vigil run summary") && log.contains("[p1] vigil run summary"), "{log}");

    let mut reader = OutputReader::new(&broker);
    reader.read_to_end();
    let decisions = reader.outputs.topic(DECISIONS);
    assert_eq!(decisions.len(), valid, "decisions: not one per valid message");
    assert_eq!(reader.outputs.decided.len(), valid, "a valid message was decided twice");
    assert_eq!(reader.outputs.topic(DLQ).len(), 1_000, "dead letters: not one per malformed message");
    let ends = broker.end_offsets(PARTITIONS);
    assert!(ends.iter().all(|&e| e > 0));
    assert_eq!(broker.committed("vigil", PARTITIONS), ends.into_iter().map(Some).collect::<Vec<_>>());
}

#[test]
fn one_process_dying_stops_the_cluster_with_an_error() {
    let out_dir = tempfile::tempdir().unwrap();
    let mut child = launch(2, 1)
        .env("VIGIL_STOP_GRACE", "3")
        .args(["--", "--events", "0", "--out-dir"])
        .arg(out_dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut pids = BTreeMap::new();
    let mut line = String::new();
    while pids.len() < 2 {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "launch.sh ended before starting both processes");
        if let Some(rest) = line.trim().strip_prefix("launch.sh: process ") {
            let index: usize = rest.split(' ').next().unwrap().parse().unwrap();
            let pid = rest.rsplit("(pid ").next().unwrap().trim_end_matches(')').to_owned();
            pids.insert(index, pid);
        }
    }
    let killed = Command::new("kill").args(["-KILL", &pids[&1]]).status().unwrap();
    assert!(killed.success());

    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        let _ = sender.send((child.wait(), rest));
    });
    let (status, log) = receiver.recv_timeout(Duration::from_secs(60)).expect("launch.sh did not exit within 60 s");
    let status = status.unwrap();
    assert!(!status.success(), "launch.sh exited 0 after a process was killed:\n{log}");
    assert!(log.contains("process 1 (127.0.0.1:") && log.contains("was killed by signal 9"), "{log}");
    let alive = Path::new("/proc").join(&pids[&0]).exists() && {
        let stat = std::fs::read_to_string(Path::new("/proc").join(&pids[&0]).join("stat")).unwrap_or_default();
        !stat.contains(") Z ")
    };
    assert!(!alive, "process 0 (pid {}) outlived launch.sh", pids[&0]);
}

#[test]
fn inconsistent_cluster_settings_are_refused() {
    let refuse = |args: &[&str], words: &str| {
        let out = vigil().arg("run").args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(words), "{args:?}: `{err}` lacks `{words}`");
    };
    refuse(&["--processes", "2", "--process", "2"], "--process: 2 is not below --processes 2");
    refuse(&["--workers", "0"], "--workers: must be at least 1");
    refuse(&["--hostfile", "/nonexistent"], "--hostfile: only meaningful with --processes > 1");
    let hosts = tempfile::NamedTempFile::new().unwrap();
    let hostfile = hosts.path().to_str().unwrap();
    std::fs::write(hosts.path(), "127.0.0.1:2101\n\n127.0.0.1:2102\n").unwrap();
    refuse(&["--processes", "3", "--hostfile", hostfile], "has 2 addresses, --processes needs 3");
    std::fs::write(hosts.path(), "127.0.0.1:2101\n\nnot-an-address\n").unwrap();
    refuse(&["--processes", "2", "--hostfile", hostfile], "line 3: `not-an-address` is not HOST:PORT");
    let out = launch(2, 1).args(["--", "--workers", "2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is set by launch.sh itself"));
}
