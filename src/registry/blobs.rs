//! `GET|HEAD|DELETE /v2/<name>/blobs/<digest>`: blob reads with `Range` and
//! `If-None-Match`, and unlinking a blob from a repository.

use super::errors::{ApiError, Code};
use super::headers::{RangeRequest, etag, not_modified, parse_range};
use super::{DOCKER_CONTENT_DIGEST, empty, set_header};
use crate::oci::{Digest, RepoName};
use crate::storage::Store;
use bytes::Bytes;
use futures_util::Stream;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use warp::http::{HeaderMap, HeaderValue, StatusCode, header};
use warp::reply::Response;
use warp::{Rejection, Reply};

/// Read size when streaming a blob: large reads keep the copy path lean.
const READ_CHUNK: usize = 1 << 20;

/// Reads made ahead of the network while it sends the one before.
const READ_AHEAD: usize = 2;

pub fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    s.parse()
        .map_err(|e: crate::oci::DigestError| ApiError::new(Code::DigestInvalid, e.to_string()))
}

pub async fn get(
    name: RepoName,
    digest: String,
    head: bool,
    store: Store,
    headers: HeaderMap,
) -> Result<Response, Rejection> {
    let digest = parse_digest(&digest)?;
    // A HEAD needs only the size, which the store answers from its cache.
    let (file, size) = if head {
        (None, store.stat_blob(&name, &digest).await?)
    } else {
        let (file, size) = store.open_blob(&name, &digest).await?;
        (Some(file), size)
    };
    let tag = etag(&digest);

    let mut response = if not_modified(&headers, &tag) {
        empty(StatusCode::NOT_MODIFIED)
    } else {
        let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
            None => None,
            Some(spec) => match parse_range(spec, size) {
                RangeRequest::Ignore => None,
                RangeRequest::Satisfiable(start, end) => Some((start, end)),
                RangeRequest::Unsatisfiable => {
                    let mut r = empty(StatusCode::RANGE_NOT_SATISFIABLE);
                    set_header(&mut r, header::CONTENT_RANGE, format!("bytes */{size}"));
                    return Ok(r);
                }
            },
        };
        let (start, len, status) = match range {
            Some((start, end)) => (start, end - start + 1, StatusCode::PARTIAL_CONTENT),
            None => (0, size, StatusCode::OK),
        };
        let mut response = if let Some(file) = file {
            let mut r = warp::reply::stream(read_stream(file, start, len)).into_response();
            *r.status_mut() = status;
            r
        } else {
            empty(status)
        };
        set_header(&mut response, header::CONTENT_LENGTH, len);
        if let Some((start, end)) = range {
            set_header(
                &mut response,
                header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{size}"),
            );
        }
        response
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    set_header(&mut response, DOCKER_CONTENT_DIGEST, &digest);
    set_header(&mut response, header::ETAG, tag);
    set_header(&mut response, header::CACHE_CONTROL, "max-age=31536000");
    Ok(response)
}

/// Streams `len` bytes of `file` from `start`: one blocking task reads large
/// chunks straight into the buffers the response sends (no intermediate copy,
/// no hop to the blocking pool per chunk), a few reads ahead of the network.
fn read_stream(file: File, start: u64, len: u64) -> impl Stream<Item = std::io::Result<Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        let mut file = file;
        if let Err(e) = file.seek(SeekFrom::Start(start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut left = len;
        while left > 0 {
            let want = left.min(READ_CHUNK as u64);
            let mut buf = Vec::with_capacity(want as usize);
            let chunk = match (&mut file).take(want).read_to_end(&mut buf) {
                // The file is shorter than its size said: end the body early
                // rather than send less than Content-Length promised.
                Ok(0) => Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    left -= n as u64;
                    Ok(Bytes::from(buf))
                }
                Err(e) => Err(e),
            };
            let failed = chunk.is_err();
            // A closed channel is a client that went away: stop reading.
            if tx.blocking_send(chunk).is_err() || failed {
                return;
            }
        }
    });
    tokio_stream_of(rx)
}

/// The receiving end of a channel as a stream.
fn tokio_stream_of<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

pub async fn delete(name: RepoName, digest: String, store: Store) -> Result<Response, Rejection> {
    let digest = parse_digest(&digest)?;
    store.delete_blob(&name, &digest).await?;
    Ok(empty(StatusCode::ACCEPTED))
}
