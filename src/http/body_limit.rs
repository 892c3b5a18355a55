//! The request-body limit of the API, answered so that the client can read the answer.
//!
//! Refusing an oversized body without reading it (axum's `DefaultBodyLimit`) makes hyper close
//! the connection with the rest of the body unread; the kernel then resets it, and a client
//! still writing sees a cut connection instead of the 413. So the body is read frame by frame:
//! bytes up to [`BODY_LIMIT`] are kept for the handler, bytes past it are read and dropped, up
//! to [`DRAIN_CAP`] bytes and [`DRAIN_TIME`] after the limit was passed. A drained body leaves
//! the connection clean for its next request (keep-alive); past the cap or the time, or when
//! `Content-Length` already says the body is larger than the cap, the 413 is sent at once and
//! the connection ends after it (`super::keep_alive` says so in the response).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::error;

/// Largest body handed to the handler; larger events (> 1 MiB) still reach the parser, which
/// names the event limit in its error.
const BODY_LIMIT: u64 = 2 << 20;

/// Most bytes read (and dropped) from an oversized body to keep its connection usable.
const DRAIN_CAP: u64 = 64 << 20;

/// Longest time spent draining an oversized body: a client trickling bytes must not hold the
/// task (and its in-flight slot) for ever.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// The bounds of one read.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    keep: u64,
    drain: u64,
    drain_time: Duration,
}

const BOUNDS: Bounds = Bounds { keep: BODY_LIMIT, drain: DRAIN_CAP, drain_time: DRAIN_TIME };

/// How reading a body ended.
#[derive(Debug, PartialEq)]
enum Read {
    /// The whole body, within the limit.
    Whole(Bytes),
    /// Over the limit: `seen` bytes (at least), `drained` when read to its end.
    TooLarge { seen: u64, drained: bool },
    /// The body could not be read (the client went away, bad chunked encoding).
    Failed(String),
}

/// Middleware of the API routes: the handler gets the body buffered and within the limit.
pub async fn limit_body(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let read = match declared {
        Some(length) if length > BOUNDS.drain => Read::TooLarge { seen: length, drained: false },
        _ => read_bounded(body, BOUNDS).await,
    };
    match read {
        Read::Whole(bytes) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Read::TooLarge { seen, drained } => too_large(seen, drained),
        Read::Failed(e) => error(StatusCode::BAD_REQUEST, &format!("reading the body: {e}")),
    }
}

/// Reads `body`, keeping at most `bounds.keep` bytes (see the module comment).
async fn read_bounded(mut body: Body, bounds: Bounds) -> Read {
    let mut kept = Vec::new();
    let mut seen = 0_u64;
    let mut drain_until = None;
    loop {
        let frame = match drain_until {
            None => body.frame().await,
            Some(deadline) => match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(frame) => frame,
                Err(_) => return Read::TooLarge { seen, drained: false },
            },
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => return Read::Failed(e.to_string()),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_trailers) => continue,
            },
        };
        seen += data.len() as u64;
        if seen <= bounds.keep {
            kept.extend_from_slice(&data);
        } else if seen > bounds.drain {
            return Read::TooLarge { seen, drained: false };
        } else if drain_until.is_none() {
            kept = Vec::new();
            drain_until = Some(Instant::now() + bounds.drain_time);
        }
    }
    match drain_until {
        None => Read::Whole(Bytes::from(kept)),
        Some(_) => Read::TooLarge { seen, drained: true },
    }
}

/// 413 naming the size and the limit.
fn too_large(seen: u64, drained: bool) -> Response {
    let size = if drained { format!("{seen} bytes") } else { format!("at least {seen} bytes") };
    error(StatusCode::PAYLOAD_TOO_LARGE, &format!("body is {size}, more than the {BODY_LIMIT}-byte limit"))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use http_body::Frame;

    use super::*;

    const SMALL: Bounds = Bounds { keep: 10, drain: 100, drain_time: Duration::from_millis(200) };

    /// A body arriving as `frames`, the way a client's writes do; with `then_stall`, the client
    /// stops sending after them without ending the body.
    struct Frames {
        frames: VecDeque<Bytes>,
        then_stall: bool,
    }

    impl http_body::Body for Frames {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            match self.frames.pop_front() {
                Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                None if self.then_stall => Poll::Pending,
                None => Poll::Ready(None),
            }
        }
    }

    fn read(frames: &[&[u8]], then_stall: bool) -> Read {
        let frames = frames.iter().map(|f| Bytes::copy_from_slice(f)).collect();
        let body = Body::new(Frames { frames, then_stall });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        runtime.block_on(read_bounded(body, SMALL))
    }

    #[test]
    fn bodies_within_the_limit_are_kept_whole() {
        assert_eq!(read(&[b"01234", b"56789"], false), Read::Whole(Bytes::from_static(b"0123456789")));
        assert_eq!(read(&[], false), Read::Whole(Bytes::new()));
    }

    #[test]
    fn bodies_over_the_limit_are_drained_to_their_end() {
        let chunk = [b'x'; 30];
        assert_eq!(read(&[&chunk, &chunk, &chunk], false), Read::TooLarge { seen: 90, drained: true });
    }

    #[test]
    fn draining_stops_at_the_cap_and_at_the_time_bound() {
        let chunk = [b'x'; 60];
        assert_eq!(read(&[&chunk, &chunk, &chunk], false), Read::TooLarge { seen: 120, drained: false });
        assert_eq!(read(&[&chunk], true), Read::TooLarge { seen: 60, drained: false });
    }
}
