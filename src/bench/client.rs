//! A lean HTTP/1.1 client for the load generator: one keep-alive connection per
//! [`Conn`], straight on hyper, so that the bench spends as little CPU per request
//! as it can (it shares the machine with the registry it measures). Request
//! bodies are [`ReqBody`]: empty, a buffer, or a slice of a generated
//! [`Payload`] streamed without copying.

use super::BenchError;
use super::payload::Payload;
use base64::Engine as _;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use indicatif::ProgressBar;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// No single request may take longer (a 1 GiB push at 10 MB/s still fits).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Largest frame a payload body hands to hyper at once.
const FRAME: usize = 1 << 20;

/// Where the registry is and how to speak to it.
#[derive(Debug)]
pub struct Target {
    /// `host:port` to connect to, and the Host header.
    authority: String,
    host: HeaderValue,
    /// A path prefix before `/v2/` (usually empty).
    prefix: String,
    authorization: Option<HeaderValue>,
}

impl Target {
    /// Parses `http://host[:port][/prefix]`; `user` is `user:password`.
    pub fn new(url: &str, user: Option<&str>) -> Result<Target, BenchError> {
        let invalid = |why: &str| BenchError::Usage(format!("{url}: {why}"));
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            invalid("berth bench speaks plain HTTP: give an http:// URL (measure a TLS registry behind its proxy's plain port)")
        })?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(invalid("no host"));
        }
        let authority = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let host = HeaderValue::try_from(authority.as_str()).map_err(|_| invalid("bad host"))?;
        let authorization = match user {
            None => None,
            Some(user) => {
                if !user.contains(':') {
                    return Err(BenchError::Usage("--user must be USER:PASSWORD".to_owned()));
                }
                let encoded = base64::engine::general_purpose::STANDARD.encode(user);
                let mut value =
                    HeaderValue::try_from(format!("Basic {encoded}")).map_err(|_| {
                        BenchError::Usage(
                            "--user holds a character that cannot go in a header".to_owned(),
                        )
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(Target {
            authority,
            host,
            prefix: prefix.to_owned(),
            authorization,
        })
    }

    /// `/v2/…` under the URL's prefix.
    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    /// Opens a keep-alive connection.
    pub async fn connect(self: &Arc<Self>) -> Result<Conn, BenchError> {
        let mut conn = Conn {
            target: self.clone(),
            sender: None,
        };
        conn.ensure_open().await?;
        Ok(conn)
    }
}

/// A request body: nothing, a buffer, or part of a generated payload.
#[derive(Clone)]
pub enum ReqBody {
    Empty,
    Full(Option<Bytes>),
    Payload {
        payload: Arc<Payload>,
        offset: u64,
        end: u64,
        progress: Option<ProgressBar>,
    },
}

impl ReqBody {
    pub fn full(bytes: impl Into<Bytes>) -> ReqBody {
        ReqBody::Full(Some(bytes.into()))
    }

    /// Bytes `offset..end` of `payload`, advancing `progress` as they are sent.
    pub fn payload(
        payload: &Arc<Payload>,
        offset: u64,
        end: u64,
        progress: Option<&ProgressBar>,
    ) -> ReqBody {
        ReqBody::Payload {
            payload: payload.clone(),
            offset,
            end,
            progress: progress.cloned(),
        }
    }

    fn len(&self) -> u64 {
        match self {
            ReqBody::Empty | ReqBody::Full(None) => 0,
            ReqBody::Full(Some(bytes)) => bytes.len() as u64,
            ReqBody::Payload { offset, end, .. } => end - offset,
        }
    }
}

impl http_body::Body for ReqBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.get_mut() {
            ReqBody::Empty => None,
            ReqBody::Full(bytes) => bytes.take(),
            ReqBody::Payload {
                payload,
                offset,
                end,
                progress,
            } => {
                if offset == end {
                    None
                } else {
                    let max = (*end - *offset).min(FRAME as u64) as usize;
                    let bytes = payload.slice(*offset, max);
                    *offset += bytes.len() as u64;
                    if let Some(progress) = progress {
                        progress.inc(bytes.len() as u64);
                    }
                    Some(bytes)
                }
            }
        };
        Poll::Ready(frame.map(|bytes| Ok(Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        self.len() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len())
    }
}

/// One keep-alive connection; reopened transparently when the server closed it
/// between requests.
pub struct Conn {
    target: Arc<Target>,
    sender: Option<SendRequest<ReqBody>>,
}

impl Conn {
    pub fn target(&self) -> &Arc<Target> {
        &self.target
    }

    async fn ensure_open(&mut self) -> Result<(), BenchError> {
        if let Some(sender) = &mut self.sender {
            if sender.ready().await.is_ok() {
                return Ok(());
            }
            self.sender = None;
        }
        let authority = &self.target.authority;
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| BenchError::Connect(authority.clone(), e))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| BenchError::Http(format!("handshake with {authority}"), e))?;
        tokio::spawn(async move {
            // Ends when the server closes or the sender is dropped; a request on
            // a broken connection reports the error itself.
            let _ = connection.await;
        });
        self.sender = Some(sender);
        Ok(())
    }

    /// Sends a request for `path` (already prefixed, with its query) and returns
    /// the response with its body unread.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, &str)],
        body: ReqBody,
    ) -> Result<Response<Incoming>, BenchError> {
        let what = || format!("{method} {path}");
        self.ensure_open().await?;
        let mut request = Request::builder().method(method.clone()).uri(path);
        let h = request
            .headers_mut()
            .ok_or_else(|| BenchError::Usage(format!("bad request {}", what())))?;
        h.insert(header::HOST, self.target.host.clone());
        if let Some(auth) = &self.target.authorization {
            h.insert(header::AUTHORIZATION, auth.clone());
        }
        for (name, value) in headers {
            let value = HeaderValue::try_from(*value)
                .map_err(|_| BenchError::Usage(format!("bad header value in {}", what())))?;
            h.insert(name.clone(), value);
        }
        let length = body.len();
        if length > 0 || matches!(method, Method::PUT | Method::POST | Method::PATCH) {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        let request = request
            .body(body)
            .map_err(|e| BenchError::Usage(format!("bad request {}: {e}", what())))?;
        let sender = self
            .sender
            .as_mut()
            .ok_or_else(|| BenchError::Usage("connection not open".to_owned()))?;
        match tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(BenchError::Http(what(), e)),
            Err(_) => Err(BenchError::Timeout(what())),
        }
    }

    /// [`send`](Self::send), then reads the whole body (for small answers).
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, &str)],
        body: ReqBody,
    ) -> Result<(Response<()>, Bytes), BenchError> {
        let response = self.send(method.clone(), path, headers, body).await?;
        let (parts, body) = response.into_parts();
        let bytes = match tokio::time::timeout(REQUEST_TIMEOUT, body.collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) => return Err(BenchError::Http(format!("{method} {path}: body"), e)),
            Err(_) => return Err(BenchError::Timeout(format!("{method} {path}"))),
        };
        Ok((Response::from_parts(parts, ()), bytes))
    }
}

/// Fails unless the answer to `what` has one of the `expected` statuses.
pub fn expect_status<T>(
    what: &str,
    response: &Response<T>,
    body: &[u8],
    expected: &[StatusCode],
) -> Result<(), BenchError> {
    if expected.contains(&response.status()) {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
    Err(BenchError::Status {
        what: what.to_owned(),
        expected: expected.iter().map(|s| s.as_u16()).collect(),
        got: response.status().as_u16(),
        body: text,
    })
}

/// A response header as text, if present and readable.
pub fn header_str<'a, T>(response: &'a Response<T>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Fails if the response names a digest other than `expected`. A missing
/// Docker-Content-Digest is allowed (the spec makes it optional); the content
/// itself is checked elsewhere.
pub fn expect_digest<T>(
    what: &str,
    response: &Response<T>,
    expected: &str,
) -> Result<(), BenchError> {
    match header_str(response, "docker-content-digest") {
        Some(got) if got != expected => Err(BenchError::Digest {
            what: what.to_owned(),
            expected: expected.to_owned(),
            got: got.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// The path of an upload session's Location (absolute or relative), with
/// `query` appended.
pub fn location_with<T>(
    what: &str,
    response: &Response<T>,
    query: &str,
) -> Result<String, BenchError> {
    let location = header_str(response, "location").ok_or_else(|| {
        BenchError::Protocol(format!("{what}: the answer has no Location header"))
    })?;
    let path = match location.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => location,
    };
    Ok(with_query(path, query))
}

/// `path` with `query` appended (after `?` or `&`).
pub fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        return path.to_owned();
    }
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_need_plain_http_and_get_a_port() {
        let t = Target::new("http://127.0.0.1:5000/", None).unwrap();
        assert_eq!(t.authority, "127.0.0.1:5000");
        assert_eq!(t.path("/v2/"), "/v2/");
        let t = Target::new("http://registry/prefix/", Some("u:p")).unwrap();
        assert_eq!(t.authority, "registry:80");
        assert_eq!(t.path("/v2/"), "/prefix/v2/");
        assert!(t.authorization.is_some());
        assert!(Target::new("https://registry", None).is_err());
        assert!(Target::new("http://registry", Some("nopassword")).is_err());
    }

    #[test]
    fn locations_keep_their_query() {
        let r = |l: &str| Response::builder().header("location", l).body(()).unwrap();
        assert_eq!(
            location_with("x", &r("/v2/a/blobs/uploads/1?_state=s"), "digest=d").unwrap(),
            "/v2/a/blobs/uploads/1?_state=s&digest=d"
        );
        assert_eq!(
            location_with("x", &r("http://h:1/v2/a/blobs/uploads/1"), "digest=d").unwrap(),
            "/v2/a/blobs/uploads/1?digest=d"
        );
        assert!(location_with("x", &Response::new(()), "").is_err());
    }
}
