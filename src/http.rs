//! The HTTP API (SPEC §6): `/metrics` (also at `/actuator/prometheus`), `/healthz` and
//! `POST /api/v1/detect`, served by axum on a small tokio runtime of its own, so no request
//! ever runs on (or blocks) a timely worker. Detect requests go into the running dataflow
//! through a bounded [`DetectChannel`]; a full queue answers 503 at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use operators::clock::unix_ms;
use operators::http_source::{DetectChannel, DetectReply, SubmitError};
use operators::metrics::Metrics;
use tokio::sync::oneshot;

use crate::detect::{ignored_features, with_ignored_features};
use crate::error::UsageError;

/// Largest request body read; larger events (> 1 MiB) still reach the parser, which names
/// the limit in its error.
const BODY_LIMIT: usize = 2 << 20;

/// Threads of the HTTP runtime: the timely workers own the cores, the API needs little.
const HTTP_THREADS: usize = 2;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub metrics: Arc<Metrics>,
    pub detect: Arc<DetectChannel>,
    /// Set on SIGINT/SIGTERM: health turns 503.
    pub stop: Arc<AtomicBool>,
}

/// A running server.
pub struct HttpServer {
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Binds `addr` and serves the API on its own threads.
pub fn start(addr: &str, state: ApiState) -> anyhow::Result<HttpServer> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(HTTP_THREADS)
        .thread_name("vigil-http")
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    let listener =
        runtime.block_on(tokio::net::TcpListener::bind(addr)).map_err(|e| UsageError(format!("--http {addr}: {e}")))?;
    let local: SocketAddr = listener.local_addr().context("reading the HTTP address")?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/actuator/prometheus", get(metrics))
        .route("/healthz", get(healthz))
        .route("/api/v1/detect", post(detect))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state);
    let (shutdown, stopped) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("vigil-http".into())
        .spawn(move || {
            let served = runtime.block_on(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
            });
            if let Err(e) = served {
                tracing::error!(target: "vigil::http", "HTTP server failed: {e}");
            }
        })
        .context("starting the HTTP thread")?;
    tracing::info!(target: "vigil::http", address = %local, "HTTP API listening");
    Ok(HttpServer { shutdown: Some(shutdown), thread: Some(thread) })
}

impl HttpServer {
    /// Stops accepting connections, finishes open requests and joins the server thread.
    pub fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn metrics(State(state): State<ApiState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
}

async fn healthz(State(state): State<ApiState>) -> Response {
    match state.stop.load(Ordering::Relaxed) {
        false => (StatusCode::OK, "ok\n").into_response(),
        true => (StatusCode::SERVICE_UNAVAILABLE, "stopping\n").into_response(),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn detect(State(state): State<ApiState>, body: Bytes) -> Response {
    let ignored = ignored_features(&body);
    let answer = match state.detect.submit(body.to_vec(), unix_ms() as i64) {
        Ok(answer) => answer,
        Err(e @ SubmitError::Overloaded) | Err(e @ SubmitError::Stopped) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
    };
    match answer.await {
        Ok(DetectReply::Decision(json)) => {
            let record = with_ignored_features(json, &ignored);
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], record).into_response()
        }
        Ok(DetectReply::DeadLetter(json)) => dead_letter_response(&json),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the job stopped before deciding"),
    }
}

/// A dead letter becomes 400 with its reason (409 for a duplicate eventId, which is not a
/// bad body).
fn dead_letter_response(json: &[u8]) -> Response {
    let reason = serde_json::from_slice::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "bad event".to_owned());
    let status = if reason == "duplicate" { StatusCode::CONFLICT } else { StatusCode::BAD_REQUEST };
    error(status, &reason)
}
