//! The access log: one line per request, at info level under the target
//! `berth::access`.
//!
//! The line is written when hyper lets go of the response body, that is once
//! the last byte went out or the client hung up, so `bytes_out` and `micros`
//! cover the whole transfer of a large blob and not only its first headers;
//! `complete` says whether the body was sent to its end.
//!
//! What a line holds: method, route template, repository (when the path names
//! a valid one), path (without its query), status, bytes in and out, duration,
//! the authenticated user, and for the pull-through cache's answers `cache`
//! (hit, miss or stale). Never a header, a query string or anything else
//! that may carry a credential.

use super::endpoint::Endpoint;
use super::metrics::Counted;
use crate::oci::RepoName;
use crate::proxy::CacheStatus;
use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use warp::http::{Method, Response, StatusCode, header};

/// The authenticated user of a request, set by the routes' identity check and
/// read when the line is written. A request extension, so the routes need not
/// know about logging beyond this slot.
#[derive(Clone, Debug, Default)]
pub struct RequestUser(Arc<OnceLock<String>>);

impl RequestUser {
    pub fn set(&self, name: &str) {
        let _ = self.0.set(name.to_owned());
    }
}

/// What is known of a request when it arrives.
pub struct Entry {
    method: Method,
    endpoint: Endpoint,
    repository: Option<RepoName>,
    path: String,
    started: Instant,
    received: Counter,
    user: RequestUser,
}

impl Entry {
    pub fn new(method: &Method, path: &str) -> Entry {
        let (endpoint, repository) = Endpoint::of(path);
        Entry {
            method: method.clone(),
            endpoint,
            repository,
            path: path.to_owned(),
            started: Instant::now(),
            received: Counter::default(),
            user: RequestUser::default(),
        }
    }

    /// The endpoint the request is for.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// Time since the request arrived.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The slot the routes fill with the user's name.
    pub fn user(&self) -> RequestUser {
        self.user.clone()
    }

    /// Wraps the request body so that its bytes count as `bytes_in`.
    pub fn count_in<B>(&self, body: B) -> Counted<B> {
        Counted::new(body, self.received.clone())
    }

    /// Wraps the response's body; the line is written when it is dropped.
    pub fn finish<B: Body>(self, response: Response<B>) -> Response<Logged<B>> {
        let status = response.status();
        let length = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let cache = response
            .extensions()
            .get::<CacheStatus>()
            .map(CacheStatus::label);
        response.map(|inner| Logged {
            inner,
            entry: self,
            status,
            length,
            cache,
            sent: 0,
            ended: false,
        })
    }
}

/// A response body that writes the request's line when dropped.
pub struct Logged<B: Body> {
    inner: B,
    entry: Entry,
    status: StatusCode,
    /// The Content-Length announced, if any.
    length: Option<u64>,
    /// How the pull-through cache answered, for its repositories.
    cache: Option<&'static str>,
    sent: u64,
    ended: bool,
}

impl<B: Body + Unpin> Body for Logged<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.remaining() as u64;
                }
            }
            Poll::Ready(None) => self.ended = true,
            _ => {}
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

impl<B: Body> Drop for Logged<B> {
    fn drop(&mut self) {
        let entry = &self.entry;
        tracing::info!(
            target: "berth::access",
            method = %entry.method,
            route = entry.endpoint.template(),
            repository = entry.repository.as_ref().map(RepoName::as_str),
            path = entry.path,
            status = self.status.as_u16(),
            bytes_in = entry.received.get(),
            bytes_out = self.sent,
            micros = entry.elapsed().as_micros() as u64,
            user = entry.user.0.get().map(String::as_str),
            cache = self.cache,
            // hyper stops polling a body once it has its Content-Length, or
            // when the body says it is empty: those are complete too.
            complete = self.ended || self.inner.is_end_stream() || self.length == Some(self.sent),
            "request"
        );
    }
}
