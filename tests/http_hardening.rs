//! The transport of the HTTP API (SPEC §6, issue 21) against a real `vigil run --http`: a body
//! over the limit gets a 413 the client can read on a connection that stays usable, a bearer
//! token guards `/api/*` (not metrics or health), HTTPS with rustls, 503 with `Retry-After`
//! past the in-flight bound, bad transport flags exit 2, and 10,000 hostile bodies get only
//! 2xx/4xx answers from a job that keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use support::http::{RawConnection, Served};
use support::{generate, vigil};

mod support;

const BODY_LIMIT: usize = 2 << 20;

/// A job on a small file of generated events, in `dir`.
fn serve(dir: &Path, extra: &[&str]) -> Served {
    let input = dir.join("events.jsonl");
    std::fs::write(&input, generate(500, 50, 21).join(&b'\n')).unwrap();
    Served::start(&input, &dir.join("out"), extra)
}

/// A valid event.
fn event(id: &str) -> String {
    format!(r#"{{"eventId":"{id}","userId":"hardening_user","timestamp":1800000000000,"features":{{"amount":12.5}}}}"#)
}

/// Status, `Retry-After` and body of a ureq call, whatever the status.
fn answer(result: Result<ureq::Response, ureq::Error>) -> (u16, Option<String>, String) {
    let response = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("no HTTP answer: {e}"),
    };
    let retry_after = response.header("retry-after").map(str::to_owned);
    (response.status(), retry_after, response.into_string().unwrap())
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build()
}

/// `clients` concurrent clients each posting `per_client` events to `detect` (ids
/// `PREFIX-CLIENT-I`): every answer's status and `Retry-After`.
fn concurrent_posts(detect: &str, prefix: &str, clients: usize, per_client: usize) -> Vec<(u16, Option<String>)> {
    std::thread::scope(|s| {
        let clients: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    let agent = agent();
                    (0..per_client)
                        .map(|i| {
                            let (status, retry_after, _) =
                                answer(agent.post(detect).send_string(&event(&format!("{prefix}-{c}-{i}"))));
                            (status, retry_after)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        clients.into_iter().flat_map(|c| c.join().unwrap()).collect()
    })
}

#[test]
fn oversized_bodies_get_a_readable_413_and_the_connection_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(dir.path(), &[]);
    let mut connection = RawConnection::open(served.addr);

    // 50 MB with Content-Length: read to its end and dropped, then answered.
    let huge = vec![b'x'; 50_000_000];
    let refused = connection.post("/api/v1/detect", "", &huge);
    assert_eq!(refused.status, 413, "{refused:?}");
    assert_eq!(refused.header("content-type"), Some("application/json"));
    let message = refused.json()["error"].as_str().unwrap().to_owned();
    assert!(message.contains("50000000 bytes") && message.contains(&format!("{BODY_LIMIT}-byte limit")), "{message}");
    assert_eq!(refused.header("connection"), None);
    let decided = connection.post("/api/v1/detect", "", event("after-50mb").as_bytes());
    assert_eq!(decided.status, 200, "{decided:?}");
    assert_eq!(decided.json()["eventId"], "after-50mb");

    // 3 MB chunked (no length announced): counted frame by frame.
    let head = "POST /api/v1/detect HTTP/1.1\r\nHost: vigil\r\nTransfer-Encoding: chunked\r\n\r\n";
    connection.send(head.as_bytes()).unwrap();
    for _ in 0..3 {
        connection.send(format!("{:x}\r\n", 1 << 20).as_bytes()).unwrap();
        connection.send(&vec![b'y'; 1 << 20]).unwrap();
        connection.send(b"\r\n").unwrap();
    }
    connection.send(b"0\r\n\r\n").unwrap();
    let refused = connection.receive().unwrap();
    assert_eq!(refused.status, 413, "{refused:?}");
    assert!(refused.json()["error"].as_str().unwrap().contains(&format!("{} bytes", 3 << 20)));
    let decided = connection.post("/api/v1/detect", "", event("after-chunked").as_bytes());
    assert_eq!(decided.status, 200, "{decided:?}");

    // Up to the limit the body reaches the parser, which names the 1 MiB event limit.
    let padded = format!(r#"{{"eventId":"big","pad":"{}"}}"#, "z".repeat(BODY_LIMIT - 30));
    assert!(padded.len() <= BODY_LIMIT);
    let parsed = connection.post("/api/v1/detect", "", padded.as_bytes());
    assert_eq!(parsed.status, 400, "{parsed:?}");
    assert!(parsed.json()["error"].as_str().unwrap().contains("1 MiB"), "{parsed:?}");

    // Announced beyond the drain cap: answered at once, and the connection is closed.
    let mut connection = RawConnection::open(served.addr);
    connection.send(b"POST /api/v1/detect HTTP/1.1\r\nHost: vigil\r\nContent-Length: 100000000\r\n\r\n").unwrap();
    let refused = connection.receive().unwrap();
    assert_eq!(refused.status, 413, "{refused:?}");
    assert_eq!(refused.header("connection"), Some("close"));
    assert!(connection.receive().is_err(), "the connection stays open after `Connection: close`");

    let (status, _, _) = answer(agent().get(&format!("{}/healthz", served.base)).call());
    assert_eq!(status, 200);
    assert!(served.alive());
    served.stop();
}

#[test]
fn api_routes_need_the_bearer_token_and_metrics_stay_open() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "  s3cret-token\n").unwrap();
    // The token file comes from the config file's key, as an operator would set it.
    let config = dir.path().join("vigil.toml");
    std::fs::write(&config, format!("[run]\nhttp_token_file = {:?}\n", token_file.to_str().unwrap())).unwrap();
    let served = serve(dir.path(), &["--config", config.to_str().unwrap()]);
    let agent = agent();
    let detect = format!("{}/api/v1/detect", served.base);

    for authorization in [None, Some("Bearer wrong-token"), Some("Bearer s3cret-toke"), Some("Basic czNjcmV0")] {
        let mut request = agent.post(&detect);
        if let Some(value) = authorization {
            request = request.set("Authorization", value);
        }
        let response = match request.send_string(&event("unauthorised")) {
            Err(ureq::Error::Status(_, r)) => r,
            other => panic!("{authorization:?}: expected 401, got {other:?}"),
        };
        assert_eq!(response.status(), 401, "{authorization:?}");
        let challenge = response.header("www-authenticate").unwrap_or_default().to_owned();
        assert!(challenge.starts_with("Bearer"), "{authorization:?}: WWW-Authenticate {challenge:?}");
        let error: serde_json::Value = serde_json::from_str(&response.into_string().unwrap()).unwrap();
        assert!(error["error"].as_str().unwrap().contains("token"), "{error}");
    }
    let (status, _, body) =
        answer(agent.post(&detect).set("Authorization", "Bearer s3cret-token").send_string(&event("authorised")));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"authorised\""), "{body}");

    for path in ["/metrics", "/actuator/prometheus", "/healthz"] {
        let (status, _, _) = answer(agent.get(&format!("{}{path}", served.base)).call());
        assert_eq!(status, 200, "{path} without a token");
    }
    served.stop();
}

/// A self-signed certificate for 127.0.0.1, written as PEM files; and a client trusting it.
fn certificate(dir: &Path) -> (PathBuf, PathBuf, ureq::Agent) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).tls_config(Arc::new(client)).build();
    (cert, key, agent)
}

#[test]
fn https_serves_the_api_with_rustls_and_refuses_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, agent) = certificate(dir.path());
    let served = serve(dir.path(), &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    assert!(served.base.starts_with("https://"), "{}", served.base);

    let (status, _, body) = answer(agent.get(&format!("{}/healthz", served.base)).call());
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, body) = answer(agent.post(&format!("{}/api/v1/detect", served.base)).send_string(&event("tls-1")));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"tls-1\""), "{body}");

    // A client that does not trust the certificate, and plain HTTP, get no answer.
    let untrusting = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    assert!(matches!(untrusting.get(&format!("{}/healthz", served.base)).call(), Err(ureq::Error::Transport(_))));
    let plain = format!("http://{}/healthz", served.addr);
    assert!(matches!(agent.get(&plain).call(), Err(ureq::Error::Transport(_))), "plain HTTP answered on the TLS port");
    let mut connection = RawConnection::open(served.addr);
    connection.send(b"GET /healthz HTTP/1.1\r\nHost: vigil\r\n\r\n").unwrap();
    assert!(connection.receive().is_err(), "plain HTTP answered on the TLS port");

    let (status, _, _) = answer(agent.get(&format!("{}/healthz", served.base)).call());
    assert_eq!(status, 200);
    served.stop();
}

#[test]
fn requests_past_the_in_flight_bound_get_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(dir.path(), &["--http-max-in-flight", "1"]);
    let detect = format!("{}/api/v1/detect", served.base);

    // A request whose body is still arriving holds the only slot…
    let body = event("holder");
    let head = format!("POST /api/v1/detect HTTP/1.1\r\nHost: vigil\r\nContent-Length: {}\r\n\r\n", body.len());
    let hold = || {
        let mut holder = RawConnection::open(served.addr);
        holder.send(head.as_bytes()).unwrap();
        holder.send(&body.as_bytes()[..10]).unwrap();
        holder
    };
    let mut holder = hold();
    // …so, once the server has it, every other API request is refused at once,
    let deadline = Instant::now() + Duration::from_secs(30);
    let agent = agent();
    for probe in 0.. {
        let (status, retry_after, text) = answer(agent.post(&detect).send_string(&event(&format!("probe-{probe}"))));
        if status == 503 {
            assert_eq!(retry_after.as_deref(), Some("1"), "{text}");
            assert!(text.contains("in flight"), "{text}");
            break;
        }
        assert_eq!(status, 200, "{text}");
        // The holder arrived while a probe had the slot, so it was refused itself: hold again.
        if holder.answered() {
            assert_eq!(holder.receive().unwrap().status, 503);
            holder = hold();
        }
        assert!(Instant::now() < deadline, "the held request never took the slot ({probe} probes got 200)");
    }
    let refused = concurrent_posts(&detect, "held", 4, 10);
    assert!(refused.iter().all(|(status, retry)| *status == 503 && retry.as_deref() == Some("1")), "{refused:?}");
    // …while metrics and health stay reachable.
    for path in ["/metrics", "/healthz"] {
        let (status, _, _) = answer(agent.get(&format!("{}{path}", served.base)).call());
        assert_eq!(status, 200, "{path} while the API is saturated");
    }
    // The held request completes and frees its slot.
    holder.send(&body.as_bytes()[10..]).unwrap();
    assert_eq!(holder.receive().unwrap().status, 200);
    let (status, _, text) = answer(agent.post(&detect).send_string(&event("after-hold")));
    assert_eq!(status, 200, "{text}");

    // Concurrent clients: each answer is a decision or a 503 to retry, never anything else.
    let statuses = concurrent_posts(&detect, "burst", 8, 40);
    let unexpected: Vec<_> = statuses
        .iter()
        .filter(|(status, retry)| !(*status == 200 || (*status == 503 && retry.as_deref() == Some("1"))))
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
    assert!(statuses.iter().any(|(status, _)| *status == 200));
    let (status, _, text) = answer(agent.post(&detect).send_string(&event("after-burst")));
    assert_eq!(status, 200, "{text}");
    assert!(served.alive());
    served.stop();
}

#[test]
fn bad_transport_flags_exit_2_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, generate(10, 5, 1).join(&b'\n')).unwrap();
    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, " \n").unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let (cert, key, _) = certificate(dir.path());
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--http-token-file".into(), path(&empty)], "--http-token-file"),
        (vec!["--http-token-file".into(), path(&dir.path().join("absent"))], "--http-token-file"),
        (vec!["--tls-cert".into(), path(&cert)], "--tls-key"),
        (vec!["--tls-key".into(), path(&key)], "--tls-cert"),
        (vec!["--tls-cert".into(), path(&garbage), "--tls-key".into(), path(&key)], "--tls-cert"),
        (vec!["--tls-cert".into(), path(&cert), "--tls-key".into(), path(&garbage)], "--tls-key"),
        (vec!["--http-max-in-flight".into(), "0".into()], "--http-max-in-flight"),
    ];
    for (flags, named) in cases {
        let out = vigil()
            .args(["run", "--source", &format!("file:{}", input.display()), "--http", "127.0.0.1:0"])
            .args(["--out-dir", dir.path().join("out").to_str().unwrap()])
            .args(&flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(named), "{flags:?} should name {named}: {stderr}");
    }
}

/// Hostile bodies: JSON-ish text, garbage bytes, mutated valid events, extreme numbers, deep
/// nesting, invalid UTF-8, sizes around the event and body limits.
fn hostile_body() -> impl Strategy<Value = Vec<u8>> {
    let valid = event("fuzz").into_bytes();
    let number = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|x| x.to_string()),
        Just("1e400".to_owned()),
        Just("-0".to_owned()),
        Just("9".repeat(400)),
        Just("0.0000000000000000000000000000000000001".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("NaN".to_owned()),
    ];
    let text = prop_oneof![
        "[ -~]{0,40}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("\"\\ud800\"".to_owned()),
        Just("\"2026-02-30T25:61:00Z\"".to_owned()),
        Just("null".to_owned()),
    ];
    let field = prop_oneof![number.clone(), text.clone(), Just("{}".to_owned()), Just("[]".to_owned())];
    let shaped = (field.clone(), field.clone(), field.clone(), field, proptest::option::of(number)).prop_map(
        |(id, user, ts, amount, value)| {
            let value = value.map(|v| format!(r#","value":{v}"#)).unwrap_or_default();
            format!(r#"{{"eventId":{id},"userId":{user},"timestamp":{ts},"features":{{"amount":{amount}}}{value}}}"#)
                .into_bytes()
        },
    );
    let mutated = (proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3_u8), 1..8)).prop_map(
        move |edits| {
            let mut bytes = valid.clone();
            for (at, byte, kind) in edits {
                let i = at.index(bytes.len() + 1);
                match kind {
                    0 if i < bytes.len() => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ if i < bytes.len() => {
                        bytes.remove(i);
                    }
                    _ => {}
                }
            }
            bytes
        },
    );
    let nested = (1..20_000_usize, prop::bool::ANY).prop_map(|(depth, objects)| match objects {
        true => format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth)).into_bytes(),
        false => format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes(),
    });
    let invalid_utf8 = proptest::collection::vec(0x80..=0xff_u8, 1..8).prop_map(|junk| {
        [br#"{"eventId":"u"#.as_slice(), &junk, br#"","userId":"u","timestamp":1,"features":{"amount":1}}"#].concat()
    });
    let sized = prop_oneof![Just((1 << 20) - 100), Just((1 << 20) + 1), Just(BODY_LIMIT - 40), Just(BODY_LIMIT + 1)]
        .prop_map(|n: usize| format!(r#"{{"eventId":"{}"}}"#, "p".repeat(n.saturating_sub(15))).into_bytes());
    prop_oneof![
        20 => proptest::collection::vec(any::<u8>(), 0..300),
        20 => r#"[{}\[\]":,0-9a-zA-Z.eE+\- ]{0,200}"#.prop_map(String::into_bytes),
        25 => shaped,
        25 => mutated,
        4 => nested,
        5 => invalid_utf8,
        1 => sized,
    ]
}

#[test]
fn ten_thousand_hostile_bodies_get_only_2xx_or_4xx_and_the_job_keeps_serving() {
    const BODIES: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(dir.path(), &[]);
    let detect = format!("{}/api/v1/detect", served.base);
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).build();
    let strategy = hostile_body();
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let started = Instant::now();
    let mut classes = [0_usize; 6];
    for n in 0..BODIES {
        let body = strategy.new_tree(&mut runner).unwrap().current();
        let shown =
            || format!("body #{n} ({} bytes): {:?}", body.len(), String::from_utf8_lossy(&body[..body.len().min(300)]));
        let status = match agent.post(&detect).send_bytes(&body) {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r.status(),
            Err(e) => panic!("{}: no answer: {e}", shown()),
        };
        assert!((200..500).contains(&status), "{}: status {status}", shown());
        classes[usize::from(status / 100)] += 1;
    }
    let elapsed = started.elapsed();
    assert!(classes[2] > 0 && classes[4] > 0, "the bodies should include valid and invalid events: {classes:?}");
    assert!(served.alive(), "vigil died under hostile bodies");
    let (status, _, _) = answer(agent.get(&format!("{}/healthz", served.base)).call());
    assert_eq!(status, 200);
    eprintln!("{BODIES} hostile bodies in {elapsed:?}: {} 2xx, {} 4xx", classes[2], classes[4]);
    served.stop();
}
