//! The part of a request body that the answer did not need.
//!
//! Many answers come before the body is read: a 416 for a chunk out of order, a
//! 404 for an unknown upload, a 400 for a bad name, a mount that needs no bytes.
//! On HTTP/1.1, hyper then drops the connection unless the rest of the body has
//! already arrived, and the response has not said so: a client that reuses the
//! connection (docker, containerd, Go's net/http all do) gets EOF on its next
//! request. So every request body is [`track`]ed, and before an answer goes out
//! [`Leftover::settle`] reads and drops what is left, up to [`LIMIT`], keeping
//! the connection; a larger or slower remainder gets `Connection: close`
//! instead. This is the one place that handles it, for every route.

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use warp::http::{HeaderValue, Response, Version, header};

/// The most of an unread body that is read and dropped to keep a connection:
/// enough for a client still sending a layer chunk to reach the point where it
/// reads our answer (closing under a client that is still writing resets the
/// connection, and the answer with it). Past it, reconnecting costs less.
pub const LIMIT: u64 = 64 << 20;

/// How long the rest of a body may take to arrive before we give up on it.
const PATIENCE: Duration = Duration::from_secs(10);

/// The request body, shared between the routes (which read it through
/// [`Tracked`]) and the connection (which takes what is left, [`Leftover`]).
struct Slot<B> {
    /// `None` once the answer is out and the connection has taken it back.
    body: Option<B>,
    /// Whether anything polled it: hyper sends `100 Continue` on the first poll.
    polled: bool,
    ended: bool,
}

type Shared<B> = Arc<Mutex<Slot<B>>>;

fn lock<B>(slot: &Shared<B>) -> MutexGuard<'_, Slot<B>> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// Splits `body` into what the routes read and what the connection settles.
pub fn track<B>(body: B) -> (Tracked<B>, Leftover<B>) {
    let slot = Arc::new(Mutex::new(Slot {
        body: Some(body),
        polled: false,
        ended: false,
    }));
    (Tracked(slot.clone()), Leftover(slot))
}

/// The body as the routes see it.
pub struct Tracked<B>(Shared<B>);

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut slot = lock(&self.0);
        slot.polled = true;
        let Some(body) = slot.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            slot.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let slot = lock(&self.0);
        slot.ended || slot.body.as_ref().is_none_or(B::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        lock(&self.0)
            .body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), B::size_hint)
    }
}

/// The connection's hold on the body, to settle once the answer is ready.
pub struct Leftover<B>(Shared<B>);

impl<B: Body + Unpin> Leftover<B> {
    /// Makes `response` safe to send on a connection the client may reuse:
    /// drains the unread rest of the body (at most [`LIMIT`], within
    /// [`PATIENCE`]) or marks the response `Connection: close`.
    ///
    /// `expect_continue`: the client sent `Expect: 100-continue`, so if nothing
    /// read the body, no `100 Continue` went out and the client has not sent
    /// it; asking for it only to drop it would waste the upload, so the
    /// connection closes instead. HTTP/2 needs none of this: a stream's unread
    /// body is reset on its own, and the connection lives on.
    pub async fn settle<R>(
        self,
        mut response: Response<R>,
        version: Version,
        expect_continue: bool,
    ) -> Response<R> {
        let (body, polled) = {
            let mut slot = lock(&self.0);
            let polled = slot.polled;
            match slot.body.take() {
                Some(body) if !slot.ended && !body.is_end_stream() => (body, polled),
                _ => return response,
            }
        };
        if version >= Version::HTTP_2 || response_closes(&response) {
            return response;
        }
        // Without a 100 Continue, the client is not sending the body.
        let sent = polled || !expect_continue;
        let keep = sent
            && body.size_hint().lower() <= LIMIT
            && matches!(
                tokio::time::timeout(PATIENCE, drain(body)).await,
                Ok(Drained::Whole)
            );
        if !keep {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

fn response_closes<R>(response: &Response<R>) -> bool {
    response
        .headers()
        .get(header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
}

enum Drained {
    /// Read to its end: the connection can take the next request.
    Whole,
    /// Longer than [`LIMIT`], or it failed.
    Abandoned,
}

async fn drain<B: Body + Unpin>(mut body: B) -> Drained {
    let mut dropped = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Drained::Abandoned;
        };
        if let Some(data) = frame.data_ref() {
            dropped += data.remaining() as u64;
            if dropped > LIMIT {
                return Drained::Abandoned;
            }
        }
    }
    Drained::Whole
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{Full, StreamBody};

    fn answer() -> Response<()> {
        Response::new(())
    }

    fn closes(response: &Response<()>) -> bool {
        response_closes(response)
    }

    fn stream_of(
        pieces: usize,
        size: usize,
    ) -> impl Body<Data = Bytes, Error = std::io::Error> + Unpin {
        let frames = (0..pieces).map(move |_| Ok(Frame::data(Bytes::from(vec![7u8; size]))));
        StreamBody::new(futures_util::stream::iter(frames.collect::<Vec<_>>()))
    }

    #[tokio::test]
    async fn a_body_read_by_the_route_is_left_alone() {
        let (mut tracked, leftover) = track(Full::new(Bytes::from_static(b"abc")));
        let read = (&mut tracked).collect().await.unwrap().to_bytes();
        assert_eq!(read.as_ref(), b"abc");
        let response = leftover.settle(answer(), Version::HTTP_11, false).await;
        assert!(!closes(&response));
    }

    #[tokio::test]
    async fn an_unread_body_is_drained_and_the_connection_kept() {
        let (tracked, leftover) = track(stream_of(16, 64 * 1024));
        let response = leftover.settle(answer(), Version::HTTP_11, false).await;
        assert!(!closes(&response));
        // Taken back by the connection: the routes see the end.
        assert!(tracked.is_end_stream());
    }

    #[tokio::test]
    async fn more_than_the_limit_closes_the_connection() {
        let (_tracked, leftover) = track(stream_of(65, 1 << 20));
        let response = leftover.settle(answer(), Version::HTTP_11, false).await;
        assert!(closes(&response));
        // Declared too long: closed without reading.
        let (_tracked, leftover) = track(Full::new(Bytes::from(vec![0u8; (LIMIT + 1) as usize])));
        let response = leftover.settle(answer(), Version::HTTP_11, false).await;
        assert!(closes(&response));
    }

    #[tokio::test]
    async fn an_unsent_body_after_expect_continue_closes_the_connection() {
        let (_tracked, leftover) = track(stream_of(1, 10));
        let response = leftover.settle(answer(), Version::HTTP_11, true).await;
        assert!(closes(&response));
        // Once the route asked for it, the client sends it: drain it and keep.
        let (mut tracked, leftover) = track(stream_of(2, 10));
        let _ = tracked.frame().await;
        let response = leftover.settle(answer(), Version::HTTP_11, true).await;
        assert!(!closes(&response));
    }

    #[tokio::test]
    async fn http2_streams_need_nothing() {
        let (_tracked, leftover) = track(stream_of(5, 1 << 20));
        let response = leftover.settle(answer(), Version::HTTP_2, false).await;
        assert!(!closes(&response));
    }
}
