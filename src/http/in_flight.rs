//! The bound on API requests in flight: past it a request is refused at once with 503 and
//! `Retry-After`, instead of queueing without bound and timing out for every client alike.
//!
//! tower's `ConcurrencyLimit` holds the slots and `LoadShed` turns "no slot free" into an
//! immediate error, which [`retry_later`] answers. The same answer serves the detect queue of
//! the dataflow when it is full, so a client sees one kind of overload.

use axum::error_handling::HandleErrorLayer;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::{BoxError, Router};
use tower::limit::ConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::ServiceBuilder;

use super::error;

/// Default of `--http-max-in-flight`.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// Seconds a refused client is asked to wait: overload on this path clears within
/// milliseconds, so the shortest whole number.
const RETRY_AFTER_S: &str = "1";

/// `routes` with at most `max` requests in flight; the rest answer 503.
pub fn bound<S: Clone + Send + Sync + 'static>(routes: Router<S>, max: usize) -> Router<S> {
    let shed = move |_: BoxError| async move {
        retry_later(&format!("{max} requests in flight already (--http-max-in-flight); retry later"))
    };
    routes.route_layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(shed))
            .layer(LoadShedLayer::new())
            .layer(ConcurrencyLimitLayer::new(max)),
    )
}

/// 503 with `Retry-After`.
pub fn retry_later(message: &str) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, message);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S));
    response
}
