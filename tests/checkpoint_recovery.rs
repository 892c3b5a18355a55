//! Checkpoints and recovery, end to end on the binary: a job killed with SIGKILL at random
//! moments and restarted from its checkpoints (with other worker and process counts) loses no
//! event and restores its state exactly — every event's decision, score, reasons and features
//! equal those of one uninterrupted run — and damaged checkpoints are skipped.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{assert_same_decision, bad_lines, generate, read_jsonl, vigil};

mod support;

/// A generated input with every kind of malformed line mixed in.
fn input_file(dir: &Path, events: u64) -> PathBuf {
    let path = dir.join("events.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let bad = bad_lines();
    for (i, line) in generate(events, 5_000, 17).into_iter().enumerate() {
        file.write_all(&line).unwrap();
        file.write_all(b"\n").unwrap();
        if i % 997 == 0 {
            let (bad_line, _) = &bad[(i / 997) % bad.len()];
            file.write_all(bad_line).unwrap();
            file.write_all(b"\n").unwrap();
        }
    }
    file.flush().unwrap();
    path
}

/// `vigil run` on `input` writing to `out`, with `--emit-features` so the restored state can
/// be compared feature by feature.
fn run_command(input: &Path, out: &Path) -> Command {
    let mut command = vigil();
    command.args(["run", "--source", &format!("file:{}", input.display()), "--emit-features"]).args([
        "--out-dir",
        out.to_str().unwrap(),
        "--block-len",
        "512",
    ]);
    command
}

/// Starts a paced, checkpointing job (`--checkpoint-interval 100ms`) with its log in `stderr`.
fn spawn_checkpointing(
    input: &Path,
    out: &Path,
    checkpoints: &Path,
    workers: usize,
    rate: u32,
    stderr: Stdio,
) -> Child {
    run_command(input, out)
        .args(["--workers", &workers.to_string(), "--rate", &rate.to_string()])
        .args(["--checkpoint-dir", checkpoints.to_str().unwrap(), "--checkpoint-interval", "100ms"])
        .env("RUST_LOG", "vigil::checkpoint=info")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// Decisions by eventId over every `decisions*.jsonl` in `dir`, checking that repeated
/// decisions of one event (replayed after a restore) agree.
fn decisions_by_event(dir: &Path) -> BTreeMap<String, Value> {
    let mut by_event: BTreeMap<String, Value> = BTreeMap::new();
    for record in files_with_prefix(dir, "decisions").iter().flat_map(|p| read_jsonl(p)) {
        let id = record["eventId"].as_str().unwrap().to_owned();
        if let Some(earlier) = by_event.get(&id) {
            assert_same_decision(earlier, &record, "a replayed decision");
        }
        by_event.insert(id, record);
    }
    by_event
}

fn files_with_prefix(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
        .collect();
    paths.sort();
    paths
}

/// Dead letters as (raw, error) over every `dead-letters*.jsonl` in `dir`, without repeats.
fn dead_letters(dir: &Path) -> std::collections::BTreeSet<(String, String)> {
    files_with_prefix(dir, "dead-letters")
        .iter()
        .flat_map(|p| read_jsonl(p))
        .map(|d| (d["raw"].as_str().unwrap().to_owned(), d["error"].as_str().unwrap().to_owned()))
        .collect()
}

/// Lines in `dir`'s decision files (complete lines only).
fn decided_lines(dir: &Path) -> usize {
    files_with_prefix(dir, "decisions")
        .iter()
        .map(|p| std::fs::read(p).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count()))
        .sum()
}

/// Complete checkpoints in `dir`.
fn complete_checkpoints(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.join("MANIFEST").exists()).collect();
    found.sort();
    found
}

/// Kills `child` with SIGKILL once it has decided more than `lines` events in `out` and a
/// checkpoint newer than `after` is complete; returns false if it finished first.
fn kill_when(child: &mut Child, out: &Path, lines: usize, checkpoints: &Path, after: Option<&PathBuf>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        let newest = complete_checkpoints(checkpoints).pop();
        if decided_lines(out) > lines && newest.is_some() && newest.as_ref() != after {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        assert!(Instant::now() < deadline, "the job made no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Flips one byte in the middle of the newest complete checkpoint's first part.
fn damage_newest_checkpoint(checkpoints: &Path) {
    let newest = complete_checkpoints(checkpoints).pop().expect("a complete checkpoint");
    let part = newest.join("part-0");
    let mut bytes = std::fs::read(&part).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&part, bytes).unwrap();
}

fn reference_run(input: &Path, dir: &Path) -> (BTreeMap<String, Value>, std::collections::BTreeSet<(String, String)>) {
    let out = dir.join("uninterrupted");
    let status = run_command(input, &out).status().unwrap();
    assert!(status.success());
    (decisions_by_event(&out), dead_letters(&out))
}

fn assert_matches_reference(out: &Path, input: &Path, dir: &Path) {
    let (expected, expected_dead) = reference_run(input, dir);
    let got = decisions_by_event(out);
    assert_eq!(got.len(), expected.len(), "every event decided, nothing else");
    for (id, record) in &expected {
        let restored = got.get(id).unwrap_or_else(|| panic!("event {id} was lost"));
        assert_same_decision(record, restored, "after restores");
    }
    assert_eq!(dead_letters(out), expected_dead, "the same dead letters");
}

#[test]
fn killed_three_times_the_job_loses_nothing_and_restores_its_state_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let input = input_file(dir.path(), 60_000);
    let (out, checkpoints) = (dir.path().join("out"), dir.path().join("checkpoints"));
    let total = 60_000;
    let mut last_checkpoint = None;
    // Kill points spread over the stream; worker counts change between runs (rescaling).
    for (round, (fraction, workers)) in [(0.2, 1), (0.45, 2), (0.7, 1)].into_iter().enumerate() {
        let log_path = dir.path().join(format!("run-{round}.log"));
        let log_file = std::fs::File::create(&log_path).unwrap();
        let mut child = spawn_checkpointing(&input, &out, &checkpoints, workers, 40_000, log_file.into());
        let killed =
            kill_when(&mut child, &out, (total as f64 * fraction) as usize, &checkpoints, last_checkpoint.as_ref());
        assert!(killed, "round {round}: the job finished before it could be killed");
        let log = std::fs::read_to_string(&log_path).unwrap();
        assert_eq!(log.contains("restoring"), round > 0, "round {round} restores iff a checkpoint exists: {log}");
        if round == 2 {
            assert!(log.contains("skipping checkpoint"), "the damaged checkpoint was skipped: {log}");
        }
        last_checkpoint = complete_checkpoints(&checkpoints).pop();
        if round == 1 {
            damage_newest_checkpoint(&checkpoints);
        }
    }
    let output = run_command(&input, &out)
        .args(["--workers", "2", "--checkpoint-dir", checkpoints.to_str().unwrap()])
        .env("RUST_LOG", "vigil::checkpoint=info")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("restoring"), "the last run restored a checkpoint: {log}");
    assert_matches_reference(&out, &input, dir.path());
}

#[test]
fn a_checkpoint_of_one_worker_restores_onto_two_processes() {
    let dir = tempfile::tempdir().unwrap();
    let input = input_file(dir.path(), 30_000);
    let (out, checkpoints) = (dir.path().join("out"), dir.path().join("checkpoints"));
    let mut child = spawn_checkpointing(&input, &out, &checkpoints, 1, 30_000, Stdio::null());
    assert!(kill_when(&mut child, &out, 10_000, &checkpoints, None), "the job finished before it could be killed");
    let port = support::free_port_block(2);
    let output = Command::new("bash")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("scripts/launch.sh")
        .args(["-n", "2", "-w", "1", "--port", &port.to_string(), "--bin", env!("CARGO_BIN_EXE_vigil"), "--"])
        .args(["--source", &format!("file:{}", input.display()), "--emit-features"])
        .args(["--out-dir", out.to_str().unwrap(), "--block-len", "512"])
        .args(["--checkpoint-dir", checkpoints.to_str().unwrap()])
        .env("RUST_LOG", "vigil::checkpoint=info")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert_eq!(log.matches("restoring").count(), 2, "both processes restored: {log}");
    assert_eq!(files_with_prefix(&out, "decisions-p").len(), 2, "each process wrote its own file");
    assert_matches_reference(&out, &input, dir.path());
}

#[test]
fn a_final_checkpoint_makes_a_rerun_of_a_finished_input_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let input = input_file(dir.path(), 5_000);
    let (out, checkpoints) = (dir.path().join("out"), dir.path().join("checkpoints"));
    let mut decided = Vec::new();
    for _ in 0..2 {
        let status = run_command(&input, &out).args(["--checkpoint-dir", checkpoints.to_str().unwrap()]).status();
        assert!(status.unwrap().success());
        decided.push(decided_lines(&out));
    }
    assert!(decided[0] > 4_000, "the first run decided the input: {decided:?}");
    assert_eq!(decided[1], decided[0], "the second run read nothing past the final checkpoint");
}

#[test]
fn checkpoint_flag_errors_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = input_file(dir.path(), 100);
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let under_a_file = blocker.join("sub");
    let cases: [(&[&str], &str); 4] = [
        (&["--checkpoint-dir", under_a_file.to_str().unwrap()], "--checkpoint-dir"),
        (&["--checkpoint-interval", "1s"], "need --checkpoint-dir"),
        (&["--checkpoint-dir", dir.path().to_str().unwrap(), "--checkpoint-interval", "0s"], "must be positive"),
        (&["--checkpoint-dir", dir.path().to_str().unwrap(), "--checkpoint-keep", "0"], "at least 1"),
    ];
    for (flags, message) in cases {
        let output = run_command(&input, &dir.path().join("out")).args(flags).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(message), "{flags:?}: {stderr}");
    }
    let other = dir.path().join("other.jsonl");
    std::fs::copy(&input, &other).unwrap();
    let checkpoints = dir.path().join("checkpoints");
    assert!(run_command(&input, &dir.path().join("o1"))
        .args(["--checkpoint-dir", checkpoints.to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    let output =
        run_command(&other, &dir.path().join("o2")).args(["--checkpoint-dir", checkpoints.to_str().unwrap()]).output();
    let output = output.unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not of this run's input"));
}
