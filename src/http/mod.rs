//! The HTTP API (SPEC §6): `/metrics` (also at `/actuator/prometheus`), `/healthz` and
//! `POST /api/v1/detect`, served by axum on a small tokio runtime of its own, so no request
//! ever runs on (or blocks) a timely worker. Detect requests go into the running dataflow
//! through a bounded [`DetectChannel`]; a full queue answers 503 at once.
//!
//! The transport around the routes, one concern per module: [`auth`] (bearer token on `/api/*`),
//! [`in_flight`] (503 past a bound of requests in flight), [`body_limit`] (413 that the client
//! can read), [`keep_alive`] (`Connection: close` when a body was left unread) and [`tls`]
//! (HTTPS), configured by [`config`]. Only `/api/*` carries them: metrics and health stay
//! reachable without a token and while detect is overloaded.

mod auth;
mod body_limit;
mod config;
mod in_flight;
mod keep_alive;
mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Router};
use axum_server::tls_rustls::RustlsConfig;
use axum_server::Handle;
use operators::observe::metrics::Metrics;
use operators::source::http::{DetectChannel, DetectReply, SubmitError};
use operators::time::clock::unix_ms;

pub use self::config::HttpConfig;
use self::in_flight::retry_later;
use crate::detect::{peek, with_ignored_features};
use crate::error::UsageError;

/// Threads of the HTTP runtime: the timely workers own the cores, the API needs little.
const HTTP_THREADS: usize = 2;

/// Longest wait at shutdown for requests still being answered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
    handle: Handle<SocketAddr>,
    thread: Option<JoinHandle<()>>,
}

/// Binds the configured address and serves the API on its own threads.
pub fn start(config: HttpConfig, state: ApiState) -> anyhow::Result<HttpServer> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(HTTP_THREADS)
        .thread_name("vigil-http")
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    let addr = &config.addr;
    let listener = std::net::TcpListener::bind(addr).map_err(|e| UsageError(format!("--http {addr}: {e}")))?;
    let local: SocketAddr = listener.local_addr().context("reading the HTTP address")?;
    let scheme = config.scheme();
    let app = router(&config, state);
    let handle = Handle::new();
    let serving = handle.clone();
    let thread = std::thread::Builder::new()
        .name("vigil-http".into())
        .spawn(move || {
            // HTTP/1.1 only: the body limit keeps a connection usable by draining, which is an
            // HTTP/1 concern, and clients of a scoring API gain nothing from HTTP/2.
            let served = runtime.block_on(async move {
                let app = app.into_make_service();
                match config.tls {
                    None => axum_server::from_tcp(listener)?.http1_only().handle(serving).serve(app).await,
                    Some(tls) => {
                        let tls = RustlsConfig::from_config(tls);
                        axum_server::from_tcp_rustls(listener, tls)?.http1_only().handle(serving).serve(app).await
                    }
                }
            });
            if let Err(e) = served {
                tracing::error!(target: "vigil::http", "HTTP server failed: {e}");
            }
        })
        .context("starting the HTTP thread")?;
    tracing::info!(target: "vigil::http", address = %local, scheme = %scheme, "HTTP API listening");
    Ok(HttpServer { handle, thread: Some(thread) })
}

/// The routes; `/api/*` behind the transport's guards (outermost first: keep-alive, token,
/// in-flight bound, body limit).
fn router(config: &HttpConfig, state: ApiState) -> Router {
    let api = Router::new()
        .route("/api/v1/detect", post(detect))
        .route_layer(middleware::from_fn(body_limit::limit_body))
        // `limit_body` has bounded and buffered the body already.
        .route_layer(DefaultBodyLimit::disable());
    let mut api = in_flight::bound(api, config.max_in_flight);
    if let Some(token) = &config.token {
        api = api.route_layer(middleware::from_fn_with_state(Arc::clone(token), auth::require_token));
    }
    let api = api.route_layer(middleware::from_fn(keep_alive::close_if_unread));
    Router::new()
        .route("/metrics", get(metrics))
        .route("/actuator/prometheus", get(metrics))
        .route("/healthz", get(healthz))
        .merge(api)
        .with_state(state)
}

impl HttpServer {
    /// Stops accepting connections, finishes open requests and joins the server thread.
    pub fn shutdown(mut self) {
        self.handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
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
    let peek = peek(&body);
    let generated_id = (!peek.has_event_id).then(|| uuid::Uuid::new_v4().to_string());
    let answer = match state.detect.submit(body.to_vec(), unix_ms() as i64, generated_id) {
        Ok(answer) => answer,
        Err(e @ SubmitError::Overloaded) => return retry_later(&e.to_string()),
        Err(e @ SubmitError::Stopped) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    match answer.await {
        Ok(DetectReply::Decision(json)) => {
            let record = with_ignored_features(json, &peek.ignored_features);
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
