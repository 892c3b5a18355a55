//! Honest keep-alive: a response sent before its request body was read to the end (a 401, a
//! 503 of the in-flight bound, a 413 past the drain cap) says `Connection: close`.
//!
//! hyper closes such a connection after the response, as the unread rest of the body sits in
//! front of any next request; but unless it noticed before writing the response head, the head
//! does not say so, and a client that pools the connection sends its next request into a closed
//! socket (a cut connection). Saying it in every such response removes the race.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

/// Middleware of the API routes (outermost).
pub async fn close_if_unread(request: Request, next: Next) -> Response {
    let (request, read) = track(request);
    let mut response = next.run(request).await;
    if !read.load(Ordering::Acquire) {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// `request` with its body tracked, and the flag set once the body has been read to its end.
fn track(request: Request) -> (Request, Arc<AtomicBool>) {
    let read = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&read);
    let request = request.map(|inner| {
        flag.store(http_body::Body::is_end_stream(&inner), Ordering::Release);
        Body::new(Tracked { inner, read: flag })
    });
    (request, read)
}

/// A body that records reaching its end.
struct Tracked {
    inner: Body,
    read: Arc<AtomicBool>,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn read_then(body: Body, read_it: bool) -> bool {
        let (request, read) = track(Request::new(body));
        if read_it {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(request.into_body().collect()).unwrap();
        }
        read.load(Ordering::Acquire)
    }

    #[test]
    fn only_bodies_read_to_their_end_count_as_read() {
        assert!(read_then(Body::from("event"), true));
        assert!(!read_then(Body::from("event"), false));
        assert!(read_then(Body::empty(), false));
    }
}
