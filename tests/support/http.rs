//! A `vigil run --http 127.0.0.1:0` in the background, its address and scheme read from its
//! log, and a minimal HTTP/1.1 exchange over a raw connection, for tests that need to see what
//! a client library would hide (keep-alive, a closed connection, a body sent in pieces).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use super::{vigil, Job};

/// A running job serving HTTP(S); killed when dropped.
pub struct Served {
    pub job: Job,
    pub addr: SocketAddr,
    /// `http://ADDR` or `https://ADDR`.
    pub base: String,
    /// stderr lines after the address line (the reader thread keeps draining the pipe).
    _log: Receiver<String>,
}

impl Served {
    /// Runs `vigil run` on the events of `input` with `extra` flags.
    pub fn start(input: &Path, out: &Path, extra: &[&str]) -> Served {
        let mut child = vigil()
            .env("RUST_LOG", "info")
            .args(["run", "--source", &format!("file:{}", input.display()), "--out-dir", out.to_str().unwrap()])
            .args(["--http", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let job = Job(child);
        let (tx, log) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let Ok(line) = log.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
                panic!("vigil did not log its HTTP address within 60 s; its log:\n{}", seen.join("\n"));
            };
            let field =
                |name: &str| Some(line.split(&format!(" {name}=")).nth(1)?.split_whitespace().next()?.to_owned());
            if let (Some(addr), Some(scheme)) = (field("address"), field("scheme")) {
                let addr: SocketAddr = addr.parse().unwrap();
                return Served { job, addr, base: format!("{scheme}://{addr}"), _log: log };
            }
            seen.push(line);
        }
    }

    /// GET `path`: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        match ureq::get(&format!("{}{path}", self.base)).call() {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
            Err(e) => panic!("GET {path}: {e}"),
        }
    }

    /// The Prometheus text of `/metrics` (status 200).
    pub fn metrics(&self) -> String {
        let (status, text) = self.get("/metrics");
        assert_eq!(status, 200);
        text
    }

    /// Scrapes until `done(metrics)` holds; fails after two minutes.
    pub fn wait_for_metrics(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let text = self.metrics();
            if done(&text) {
                return text;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; last scrape:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the job is still running.
    pub fn alive(&mut self) -> bool {
        self.job.try_wait().unwrap().is_none()
    }

    /// SIGTERM; the job must exit 0 within a minute.
    pub fn stop(mut self) {
        let pid = self.job.id().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.job.try_wait().unwrap() {
                assert!(status.success(), "vigil exited with {status} after SIGTERM");
                return;
            }
            assert!(Instant::now() < deadline, "vigil did not exit within 60 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} {}: {e}", self.status, String::from_utf8_lossy(&self.body)))
    }
}

/// One HTTP/1.1 connection driven by hand; reads time out instead of hanging.
pub struct RawConnection {
    reader: BufReader<TcpStream>,
}

impl RawConnection {
    pub fn open(addr: SocketAddr) -> RawConnection {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        RawConnection { reader: BufReader::new(stream) }
    }

    /// Writes raw bytes (a request head, a piece of a body).
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// Whether the server has already answered (or closed) this connection: bytes are waiting,
    /// seen without blocking.
    pub fn answered(&mut self) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        let stream = self.reader.get_ref();
        stream.set_nonblocking(true).unwrap();
        let waiting = !matches!(stream.peek(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        stream.set_nonblocking(false).unwrap();
        waiting
    }

    /// Reads one response with a `Content-Length` body.
    pub fn receive(&mut self) -> std::io::Result<RawResponse> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3)?.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP/1.1 status line: {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let Some((name, value)) = line.trim_end().split_once(':') else { break };
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        let mut response = RawResponse { status, headers, body: Vec::new() };
        let length: usize = response.header("content-length").map_or(0, |v| v.parse().unwrap());
        response.body.resize(length, 0);
        self.reader.read_exact(&mut response.body)?;
        Ok(response)
    }

    /// `POST path` with `body` and the extra header lines `headers`, and its answer.
    pub fn post(&mut self, path: &str, headers: &str, body: &[u8]) -> RawResponse {
        let head = format!("POST {path} HTTP/1.1\r\nHost: vigil\r\n{headers}Content-Length: {}\r\n\r\n", body.len());
        self.send(head.as_bytes()).unwrap();
        self.send(body).unwrap();
        self.receive().unwrap()
    }
}
