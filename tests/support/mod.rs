//! Helpers shared by the end-to-end tests: the binary, generated events, malformed records.
#![allow(dead_code)]

pub mod http;
pub mod kafka;

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::{Child, Command};

use operators::generator::{Generator, GeneratorConfig};
use serde_json::Value;

/// `vigil` built by this test run, started in the repository root.
pub fn vigil() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).env("RUST_LOG", "warn");
    cmd
}

/// A running job that is killed when the test lets go of it, failed assertions included: a job
/// left behind would retry its (dropped) test broker forever and keep the test run's output open.
pub struct Job(pub Child);

impl Job {
    /// Waits for the job to exit and collects its (piped) stdout, like `Child::wait_with_output`.
    pub fn wait_with_output(mut self) -> std::io::Result<std::process::Output> {
        let mut stdout = Vec::new();
        if let Some(mut pipe) = self.0.stdout.take() {
            std::io::Read::read_to_end(&mut pipe, &mut stdout)?;
        }
        let status = self.0.wait()?;
        Ok(std::process::Output { status, stdout, stderr: Vec::new() })
    }
}

impl Deref for Job {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for Job {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A base port whose next `count` ports were free a moment ago, for a local cluster. Chosen
/// below Linux's ephemeral range (32768 and up): the outgoing connections of concurrent tests
/// (Kafka clients, for one) take their local ports from that range, so a port found free there
/// can be taken before a cluster process binds it. Successive calls start at different places.
pub fn free_port_block(count: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static CALLS: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() as u16)
        .wrapping_mul(97)
        .wrapping_add(CALLS.fetch_add(1, Ordering::Relaxed).wrapping_mul(211));
    (0..SPAN / count)
        .map(|i| LOW + start.wrapping_add(i * count) % (SPAN - count))
        .find(|&base| (base..base + count).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()))
        .unwrap_or_else(|| panic!("no {count} consecutive free ports between {LOW} and {}", LOW + SPAN))
}

/// The JSON records of a JSON-lines file (an output of vigil).
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path:?}: {e}: {l}"))).collect()
}

/// The generator's events as lines without the newline.
pub fn generate(events: u64, users: u32, seed: u64) -> Vec<Vec<u8>> {
    Generator::lines(GeneratorConfig { events, users, seed, ..GeneratorConfig::default() })
}

/// Every malformed kind of SPEC §1, each with the words its dead letter must contain.
pub fn bad_lines() -> Vec<(Vec<u8>, &'static str)> {
    let ok = r#""eventId":"bad-N","userId":"user_1","timestamp":"2026-01-02T00:00:00Z""#;
    vec![
        (b"this is not json".to_vec(), "expected"),
        (b"".to_vec(), "empty"),
        (br#"{"eventId":"x","userId":"u"#.to_vec(), "EOF"),
        (br#"{"userId":"u","timestamp":1,"features":{"amount":1}}"#.to_vec(), "missing eventId"),
        (br#"{"eventId":"e","timestamp":1,"features":{"amount":1}}"#.to_vec(), "missing userId"),
        // Not "missing timestamp": from Kafka that takes the message's time (SPEC §1).
        (br#"{"eventId":"e","userId":"u","timestamp":true,"features":{"amount":1}}"#.to_vec(), "timestamp"),
        (format!(r#"{{{ok},"features":{{"hour_of_day":3}}}}"#).into_bytes(), "missing features.amount"),
        (format!(r#"{{{ok},"features":{{"amount":"12.5"}}}}"#).into_bytes(), "features.amount"),
        (br#"{"eventId":7,"userId":"u","timestamp":1,"features":{"amount":1}}"#.to_vec(), "eventId"),
        (format!(r#"{{{ok},"features":{{"amount":NaN}}}}"#).into_bytes(), "expected"),
        (format!(r#"{{{ok},"features":{{"amount":1e400}}}}"#).into_bytes(), "out of range"),
        (br#"{"eventId":"e","userId":"u","timestamp":"soon","features":{"amount":1}}"#.to_vec(), "timestamp"),
        (
            b"{\"eventId\":\"\xff\xfe\",\"userId\":\"u\",\"timestamp\":1,\"features\":{\"amount\":1}}".to_vec(),
            "not valid UTF-8",
        ),
        ([b"{\"eventId\":\"e\",\"pad\":\"".to_vec(), vec![b'x'; (1 << 20) + 10], b"\"}".to_vec()].concat(), "1 MiB"),
    ]
}

/// The generator's events as (userId key, line without the newline), as `vigil gen --to
/// kafka` would produce them.
pub fn generate_keyed(events: u64, users: u32, seed: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    let cfg = GeneratorConfig { events, users, seed, ..GeneratorConfig::default() };
    let mut generator = Generator::new(cfg);
    let mut records = Vec::new();
    let (mut line, mut key) = (Vec::new(), Vec::new());
    while generator.next_keyed_line(&mut line, &mut key) {
        line.pop();
        records.push((key.clone(), std::mem::take(&mut line)));
    }
    records
}

/// Two decision records of one event agree: decision, reasons, score (1e-6) and every feature
/// (relative 1e-6) — what a restored job must reproduce for replayed events.
pub fn assert_same_decision(expected: &Value, got: &Value, what: &str) {
    let id = &expected["eventId"];
    assert_eq!(expected["decision"], got["decision"], "{what}: decision of {id}");
    assert_eq!(expected["reasons"], got["reasons"], "{what}: reasons of {id}");
    let score = |v: &Value| v["anomaly_score"].as_f64().unwrap();
    assert!((score(expected) - score(got)).abs() <= 1e-6, "{what}: score of {id}: {expected} vs {got}");
    let (a, b) = (expected["features"].as_object().unwrap(), got["features"].as_object().unwrap());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{what}: feature names of {id}");
    for (name, value) in a {
        match (value.as_f64(), b[name].as_f64()) {
            (Some(x), Some(y)) => {
                assert!((x - y).abs() <= 1e-6 * x.abs().max(1.0), "{what}: {name} of {id}: {x} vs {y}")
            }
            _ => assert_eq!(value, &b[name], "{what}: {name} of {id}"),
        }
    }
}
