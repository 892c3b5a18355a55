//! The HTTP API of `vigil run --http` (SPEC §6): Prometheus metrics that pass `promtool` and
//! count exactly what was processed, the detect endpoint sharing the stream's state, bad
//! bodies, a bounded loopback load test, and the per-operator timing summary.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::http::Served;
use support::{bad_lines, generate, read_jsonl, vigil};

mod support;

fn post(agent: &ureq::Agent, base: &str, body: &str) -> (u16, Value) {
    let response = match agent.post(&format!("{base}/api/v1/detect")).send_string(body) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("POST: {e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {text}: {e}")))
}

/// The value of an unlabelled-but-for-process sample, or of one with `labels` (in the
/// exposition's sorted order, without `process`).
fn sample(text: &str, name: &str, labels: &str) -> f64 {
    let wanted = match labels {
        "" => format!("{name}{{process=\"0\"}} "),
        l => format!("{name}{{{l},process=\"0\"}} "),
    };
    let alt = match labels {
        "" => wanted.clone(),
        l => format!("{name}{{process=\"0\",{l}}} "),
    };
    text.lines()
        .find_map(|line| line.strip_prefix(wanted.as_str()).or_else(|| line.strip_prefix(alt.as_str())))
        .unwrap_or_else(|| panic!("no sample {name}{{{labels}}} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Sum of every sample of `name` (all label values).
fn sample_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

fn promtool_check(text: &str) {
    let mut child = match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "promtool is needed to check the metrics format but could not be run ({e}); \
             install it with `apt-get install -y prometheus` (scripts/test.sh does)"
        ),
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_pass_promtool_and_count_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let good = generate(6_000, 300, 5);
    let bad = bad_lines();
    let mut lines = Vec::new();
    for (i, line) in good.iter().enumerate() {
        lines.push(line.clone());
        if i % 1000 == 0 {
            lines.push(line.clone());
        }
    }
    for (line, _) in bad.iter().take(6) {
        lines.push(line.clone());
    }
    // Six duplicates, and the first six bad kinds: not JSON, empty, truncated (malformed);
    // missing eventId, userId (missing field); a timestamp of the wrong type (malformed).
    let expected_dead = BTreeMap::from([("duplicate", 6), ("malformed", 4), ("missing_field", 2)]);
    std::fs::write(&input, lines.join(&b'\n')).unwrap();
    let out = dir.path().join("out");
    let served = Served::start(&input, &out, &["--workers", "2"]);
    let total = lines.len() as f64;
    let text = served.wait_for_metrics("all events counted", |t| {
        t.contains("vigil_events_total{") && sample_sum(t, "vigil_events_total") >= total
    });
    promtool_check(&text);
    for name in [
        "anomaly_detection_total",
        "anomaly_detection_blocked_total",
        "anomaly_detection_latency_seconds_bucket",
        "anomaly_dead_letters_total",
        "late_events_total",
        "vigil_operator_busy_seconds_total",
        "vigil_operator_activations_total",
        "vigil_model_info",
    ] {
        assert!(text.lines().any(|l| l.starts_with(name)), "{name} missing from /metrics");
    }
    assert_eq!(sample(&text, "anomaly_detection_total", ""), good.len() as f64);
    assert_eq!(sample(&text, "anomaly_detection_latency_seconds_count", ""), good.len() as f64);
    assert_eq!(sample(&text, "vigil_events_total", "source=\"file\""), total);
    for (reason, n) in &expected_dead {
        assert_eq!(sample(&text, "anomaly_dead_letters_total", &format!("reason=\"{reason}\"")), *n as f64, "{reason}");
    }
    assert_eq!(sample_sum(&text, "anomaly_dead_letters_total"), 12.0);
    let (status, prometheus) = served.get("/actuator/prometheus");
    assert_eq!(status, 200);
    assert!(prometheus.contains("anomaly_detection_total"));
    assert_eq!(served.get("/healthz").0, 200);
    let blocked = sample(&text, "anomaly_detection_blocked_total", "");
    let late = sample(&text, "late_events_total", "");
    served.stop();
    let decisions = read_jsonl(&out.join("decisions.jsonl"));
    assert_eq!(decisions.len(), good.len());
    assert_eq!(blocked, decisions.iter().filter(|d| d["decision"] == "block").count() as f64);
    let late_in_file = decisions.iter().filter(|d| d["reasons"].as_array().unwrap().iter().any(|r| r == "late event"));
    assert_eq!(late, late_in_file.count() as f64);
}

/// A JSON event of `user` at `ts` (epoch ms) with `amount`.
fn event(id: &str, user: &str, ts: i64, amount: f64) -> String {
    format!(r#"{{"eventId":"{id}","userId":"{user}","timestamp":{ts},"features":{{"amount":{amount}}}}}"#)
}

/// Milliseconds since the Unix epoch on this machine's clock.
fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn the_replaced_systems_calls_work_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, generate(500, 50, 4).join(&b'\n')).unwrap();
    let served = Served::start(&input, &dir.path().join("out"), &["--emit-features"]);
    let agent = ureq::AgentBuilder::new().build();

    // The documented Kafka event: epoch seconds.
    let documented = r#"{"eventId":"txn-789","userId":"alice-123","timestamp":1735516800,"value":5000,"features":{"amount":5000,"hour_of_day":14,"location_distance":250.5,"days_since_last_txn":0.5}}"#;
    let (status, decision) = post(&agent, &served.base, documented);
    assert_eq!(status, 200, "{decision}");
    assert_eq!(decision["timestamp"], "2024-12-30T00:00:00.000Z");
    assert!(decision.get("timestamp_source").is_none(), "{decision}");
    assert_eq!(decision["ignored_features"], serde_json::json!([]));

    // The documented curl call: no timestamp, the amount as `value`, a client-side ratio.
    let before = now_ms();
    let curl = r#"{"eventId":"test-123","userId":"alice-123","value":5000,"features":{"amount_ratio":33.3}}"#;
    let (status, decision) = post(&agent, &served.base, curl);
    let after = now_ms();
    assert_eq!(status, 200, "{decision}");
    assert_eq!(decision["eventId"], "test-123");
    assert_eq!(decision["timestamp_source"], "received");
    assert_eq!(decision["ignored_features"], serde_json::json!(["amount_ratio"]));
    let f = &decision["features"];
    assert_eq!(f["amount"], 5000.0);
    // Received two years after the documented event: nothing in 7 d, so the state's ratio is 1.
    assert_eq!(f["amount_ratio"], 1.0);
    assert_eq!(f["cnt_7d"], 1.0);
    let received = decision["timestamp"].as_str().unwrap();
    let received_ms = operators::time::rfc3339::parse_rfc3339_ms(received).unwrap();
    assert!((before - 1..=after).contains(&received_ms), "{received} not within the call ({before}..{after})");

    // Without eventId: one is generated and returned, a new one per call.
    let anonymous = r#"{"userId":"alice-123","value":12}"#;
    let (status, first) = post(&agent, &served.base, anonymous);
    assert_eq!(status, 200, "{first}");
    let (status, second) = post(&agent, &served.base, anonymous);
    assert_eq!(status, 200, "{second}");
    let (a, b) = (first["eventId"].as_str().unwrap(), second["eventId"].as_str().unwrap());
    assert!(a.len() >= 32 && b.len() >= 32 && a != b, "{a} {b}");
    served.stop();
}

#[test]
fn detect_sees_the_stream_state_rejects_bad_bodies_and_loses_nothing_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let mut lines = generate(3_000, 200, 9);
    let t = 1_800_000_000_000_i64;
    let hour = 3_600_000;
    // The probe user's history in the stream: 3 events in the last 24 h (one exactly 1 h
    // before), one 2 days before (outside 24 h, inside 7 d).
    let history = [(-48 * hour, 500.0), (-5 * hour, 10.0), (-2 * hour, 20.0), (-hour, 30.0)];
    for (i, (dt, amount)) in history.iter().enumerate() {
        lines.push(event(&format!("probe-{i}"), "probe_user", t + dt, *amount).into_bytes());
    }
    std::fs::write(&input, lines.join(&b'\n')).unwrap();
    let out = dir.path().join("out");
    let served = Served::start(&input, &out, &["--workers", "2", "--emit-features"]);
    let streamed = lines.len() as f64;
    served.wait_for_metrics("the file processed", |t| {
        t.contains("vigil_events_total{") && sample_sum(t, "vigil_events_total") >= streamed
    });
    let agent = ureq::AgentBuilder::new().build();

    // cnt/sum/max over [t − W, t] with the posted event: by hand from `history` + 40.
    let (status, decision) = post(&agent, &served.base, &event("probe-now", "probe_user", t, 40.0));
    assert_eq!(status, 200, "{decision}");
    assert_eq!(decision["eventId"], "probe-now");
    let f = &decision["features"];
    assert_eq!(f["cnt_1h"], 2.0);
    assert_eq!(f["sum_1h"], 70.0);
    assert_eq!(f["cnt_24h"], 4.0);
    assert_eq!(f["sum_24h"], 100.0);
    assert_eq!(f["max_24h"], 40.0);
    assert_eq!(f["cnt_7d"], 5.0);
    assert_eq!(f["sum_7d"], 600.0);
    assert!(["block", "approve"].contains(&decision["decision"].as_str().unwrap()));
    // The posted event updated the state: the next one sees it.
    let (status, next) = post(&agent, &served.base, &event("probe-next", "probe_user", t + 1000, 5.0));
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["features"]["cnt_24h"], 5.0);
    assert_eq!(next["features"]["sum_24h"], 105.0);

    for (body, reason) in [
        ("not json", "expected"),
        (r#"{"eventId":"x","userId":"u","timestamp":1}"#, "missing features.amount"),
        (r#"{"eventId":"x","userId":"u","timestamp":"soon","features":{"amount":1}}"#, "timestamp"),
    ] {
        let (status, error) = post(&agent, &served.base, body);
        assert_eq!(status, 400, "{body}: {error}");
        assert!(error["error"].as_str().unwrap().contains(reason), "{body}: {error}");
    }
    let (status, error) = post(&agent, &served.base, &event("probe-now", "probe_user", t, 40.0));
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["error"], "duplicate");

    // Load: 10,000 requests from 32 concurrent clients, each answered with its own decision.
    let clients = 32;
    let per_client = 313;
    let base = served.base.clone();
    let answered: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let base = base.clone();
                s.spawn(move || {
                    let agent = ureq::AgentBuilder::new().build();
                    let mut ok = 0;
                    for i in 0..per_client {
                        let id = format!("load-{c}-{i}");
                        let body = event(&id, &format!("load_user_{}", (c * 7 + i) % 500), t + i as i64, 12.5);
                        let (status, decision) = post(&agent, &base, &body);
                        assert_eq!(status, 200, "{id}: {decision}");
                        assert_eq!(decision["eventId"], id.as_str());
                        ok += 1;
                    }
                    ok
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let load = clients * per_client;
    assert!(load >= 10_000);
    assert_eq!(answered.iter().sum::<usize>(), load);
    let posted = 2 + 3 + 1 + load;
    let text = served.metrics();
    assert_eq!(sample(&text, "vigil_events_total", "source=\"http\""), posted as f64);
    served.stop();

    // HTTP decisions also reach the normal outputs, exactly once each.
    let decisions = read_jsonl(&out.join("decisions.jsonl"));
    let ids: BTreeSet<&str> = decisions.iter().map(|d| d["eventId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), decisions.len());
    assert_eq!(decisions.len(), lines.len() + 2 + load);
    assert!(ids.contains("probe-next") && ids.contains("load-31-312"));
}

#[test]
fn operator_timing_summary_names_every_operator_within_wall_time() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, generate(20_000, 500, 3).join(&b'\n')).unwrap();
    let workers = 2;
    let started = Instant::now();
    let out = vigil()
        .env("RUST_LOG", "vigil::timing=info")
        .args(["run", "--source", &format!("file:{}", input.display()), "--workers", "2"])
        .args(["--out-dir", dir.path().join("out").to_str().unwrap()])
        .output()
        .unwrap();
    let wall = started.elapsed().as_secs_f64();
    assert!(out.status.success());
    let log = String::from_utf8(out.stderr).unwrap();
    let field = |line: &str, name: &str| -> String {
        line.split(&format!(" {name}=")).nth(1).unwrap().split_whitespace().next().unwrap().to_owned()
    };
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut busy: BTreeMap<String, f64> = BTreeMap::new();
    for line in log.lines().filter(|l| l.contains("operator time") && l.contains("last=true")) {
        let worker = field(line, "worker");
        names.entry(worker.clone()).or_default().insert(field(line, "operator"));
        *busy.entry(worker).or_default() += field(line, "busy_s").parse::<f64>().unwrap();
    }
    let expected: BTreeSet<String> = [
        "FileSource",
        "Probe",
        "HttpSource",
        "Concatenate",
        "WindowState",
        "Enrich",
        "Infer",
        "Decide",
        "Observe",
        "Sink",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(names.len(), workers, "summaries of {names:?}:\n{log}");
    for (worker, seen) in &names {
        let missing: Vec<_> = expected.difference(seen).collect();
        assert!(missing.is_empty(), "worker {worker} lacks {missing:?}:\n{log}");
    }
    let total: f64 = busy.values().sum();
    assert!(total > 0.0);
    assert!(total <= wall * workers as f64, "busy {total} s > {wall} s x {workers}");
    for (worker, b) in &busy {
        assert!(*b <= wall, "worker {worker} busy {b} s in {wall} s");
    }
}

/// Detect latency on loopback at fixed offered rates (a measurement, not a check; run with
/// `cargo test --release --test http_api -- --ignored --nocapture`). Open loop: 32 clients each
/// send at rate/32 on a fixed schedule, and a request's latency counts from its scheduled
/// start, so a stall is not hidden by the clients slowing down.
#[test]
#[ignore]
fn detect_latency_at_fixed_rates() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, generate(10_000, 1_000, 1).join(&b'\n')).unwrap();
    let served = Served::start(&input, &dir.path().join("out"), &[]);
    served.wait_for_metrics("the file processed", |t| {
        t.contains("vigil_events_total{") && sample_sum(t, "vigil_events_total") >= 10_000.0
    });
    let clients = 32;
    let seconds = 5.0;
    for rate in [1_000.0, 10_000.0] {
        let per_client = (rate * seconds / clients as f64) as usize;
        let interval = Duration::from_secs_f64(clients as f64 / rate);
        let started = Instant::now();
        let histograms: Vec<hdrhistogram::Histogram<u64>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..clients)
                .map(|c| {
                    let base = served.base.clone();
                    s.spawn(move || {
                        let agent = ureq::AgentBuilder::new().build();
                        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
                        let offset = interval.mul_f64(c as f64 / clients as f64);
                        for i in 0..per_client {
                            let due = started + offset + interval * i as u32;
                            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                                std::thread::sleep(wait);
                            }
                            let body = event(
                                &format!("lat-{rate}-{c}-{i}"),
                                &format!("lat_user_{}", i % 1000),
                                1_800_000_000_000 + i as i64,
                                9.0,
                            );
                            let (status, _) = post(&agent, &base, &body);
                            assert_eq!(status, 200);
                            h.saturating_record(due.elapsed().as_micros() as u64);
                        }
                        h
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for h in &histograms {
            all.add(h).unwrap();
        }
        let achieved = all.len() as f64 / started.elapsed().as_secs_f64();
        println!(
            "offered {rate:.0}/s achieved {achieved:.0}/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} requests)",
            all.value_at_quantile(0.5) as f64 / 1e3,
            all.value_at_quantile(0.99) as f64 / 1e3,
            all.max() as f64 / 1e3,
            all.len()
        );
    }
    served.stop();
}
