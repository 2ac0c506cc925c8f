//! `GET|HEAD|DELETE /v2/<name>/blobs/<digest>`: blob reads with `Range` and
//! `If-None-Match`, and unlinking a blob from a repository.

use super::errors::{ApiError, Code};
use super::headers::{RangeRequest, etag, not_modified, parse_range};
use super::state::Shared;
use super::{CACHE_STATUS, DOCKER_CONTENT_DIGEST, OCI_NAMESPACE, empty, set_header};
use crate::oci::{Digest, RepoName};
use crate::proxy::{BlobFetch, CacheStatus, ProxyError, Route};
use crate::storage::StoreError;
use bytes::Bytes;
use futures_util::Stream;
use memmap2::Advice;
use std::fs::File;
use warp::http::{HeaderMap, HeaderValue, StatusCode, header};
use warp::reply::Response;
use warp::{Rejection, Reply};

/// Bytes of a blob brought into memory and sent at a time.
const READ_CHUNK: usize = 1 << 20;

/// Chunks brought in ahead of the network while it sends the one before.
const READ_AHEAD: usize = 2;

pub fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    s.parse()
        .map_err(|e: crate::oci::DigestError| ApiError::new(Code::DigestInvalid, e.to_string()))
}

pub async fn get(
    name: RepoName,
    digest: String,
    head: bool,
    state: Shared,
    headers: HeaderMap,
) -> Result<Response, Rejection> {
    let digest = parse_digest(&digest)?;
    let Some(route) = state.proxy.route(&name) else {
        return serve_stored(&name, &digest, head, &state, &headers).await;
    };
    // A mirrored repository: what the store lacks comes from upstream.
    let (mut response, status) = match state.store.stat_blob(&name, &digest).await {
        Ok(_) => {
            if !head {
                state.proxy.blob_hit(&route);
            }
            let response = serve_stored(&name, &digest, head, &state, &headers).await?;
            (response, CacheStatus::Hit)
        }
        Err(StoreError::BlobUnknown) => {
            let response = serve_mirrored(&name, &digest, head, &state, &headers, &route).await?;
            (response, CacheStatus::Miss)
        }
        Err(e) => return Err(e.into()),
    };
    set_header(&mut response, OCI_NAMESPACE, route.upstream());
    set_header(&mut response, CACHE_STATUS, status.header());
    // For the access log.
    response.extensions_mut().insert(status);
    Ok(response)
}

/// A blob the store holds, with `Range` and `If-None-Match`.
async fn serve_stored(
    name: &RepoName,
    digest: &Digest,
    head: bool,
    state: &Shared,
    headers: &HeaderMap,
) -> Result<Response, Rejection> {
    let store = &state.store;
    // A HEAD needs only the size, which the store answers from its cache.
    let (file, size) = if head {
        (None, store.stat_blob(name, digest).await?)
    } else {
        let (file, size) = store.open_blob(name, digest).await?;
        (Some(file), size)
    };
    if not_modified(headers, &etag(digest)) {
        return Ok(blob_headers(empty(StatusCode::NOT_MODIFIED), digest));
    }
    let range = match requested_range(headers, size) {
        RangeRequest::Ignore => None,
        RangeRequest::Satisfiable(start, end) => Some((start, end)),
        RangeRequest::Unsatisfiable => return Ok(unsatisfiable(size)),
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
    Ok(blob_headers(response, digest))
}

/// A blob of a mirrored repository that the store lacks: a HEAD asks
/// upstream for its size, a GET follows the one fetch of it (proxy/blobs.rs)
/// from its first bytes. A range waits for the blob to be verified.
async fn serve_mirrored(
    name: &RepoName,
    digest: &Digest,
    head: bool,
    state: &Shared,
    headers: &HeaderMap,
    route: &Route,
) -> Result<Response, Rejection> {
    let proxy = &state.proxy;
    let failed = |e: std::sync::Arc<ProxyError>| ApiError::from_proxy(&e, Code::BlobUnknown);
    // The digest is the content's name: a client holding it needs nothing.
    if not_modified(headers, &etag(digest)) {
        return Ok(blob_headers(empty(StatusCode::NOT_MODIFIED), digest));
    }
    if head {
        let size = proxy.blob_size(route, name, digest).await.map_err(failed)?;
        let mut response = empty(StatusCode::OK);
        set_header(&mut response, header::CONTENT_LENGTH, size);
        return Ok(blob_headers(response, digest));
    }
    let (size, follower) = match proxy
        .blob(&state.store, route, name, digest)
        .await
        .map_err(failed)?
    {
        BlobFetch::Local => return serve_stored(name, digest, head, state, headers).await,
        BlobFetch::Flight { size, follower } => (size, follower),
    };
    // A range may end before the blob does, and once its last byte is sent
    // the body looks whole: it is served from the store, once verified.
    if headers.contains_key(header::RANGE) {
        follower.verified().await.map_err(failed)?;
        return serve_stored(name, digest, head, state, headers).await;
    }
    let Some(size) = size else {
        // Upstream gave no length: the whole blob, chunked, and no ranges.
        let mut response = warp::reply::stream(follower.stream(None)).into_response();
        response
            .headers_mut()
            .insert(header::ACCEPT_RANGES, HeaderValue::from_static("none"));
        return Ok(blob_headers(response, digest));
    };
    let mut response = warp::reply::stream(follower.stream(Some(size))).into_response();
    set_header(&mut response, header::CONTENT_LENGTH, size);
    Ok(blob_headers(response, digest))
}

/// What the request's `Range` asks of `size` bytes.
fn requested_range(headers: &HeaderMap, size: u64) -> RangeRequest {
    match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => RangeRequest::Ignore,
        Some(spec) => parse_range(spec, size),
    }
}

/// The 416 for a range outside `size` bytes.
fn unsatisfiable(size: u64) -> Response {
    let mut r = empty(StatusCode::RANGE_NOT_SATISFIABLE);
    set_header(&mut r, header::CONTENT_RANGE, format!("bytes */{size}"));
    r
}

/// The headers of every blob answer but a 416.
fn blob_headers(mut response: Response, digest: &Digest) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.entry(header::ACCEPT_RANGES)
        .or_insert(HeaderValue::from_static("bytes"));
    set_header(&mut response, DOCKER_CONTENT_DIGEST, digest);
    set_header(&mut response, header::ETAG, etag(digest));
    set_header(&mut response, header::CACHE_CONTROL, "max-age=31536000");
    response
}

/// Streams `len` bytes of `file` from `start`. Each chunk of the body is a
/// mapping of the file, so the only copy of a byte is the kernel's, into the
/// socket (a `read` into a buffer made a second one, a quarter of the CPU of a
/// pull), and is unmapped once sent, so a pull holds a few chunks, not the blob.
/// One blocking task maps each chunk and brings its pages in a few chunks ahead
/// of the network, so the disk is waited for there, not on the async threads.
fn read_stream(file: File, start: u64, len: u64) -> impl Stream<Item = std::io::Result<Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        let result = (|| {
            // The file is shorter than its size said: send what there is, then
            // end the body early rather than send less than Content-Length.
            let present = file.metadata()?.len().saturating_sub(start).min(len);
            let mut at = 0;
            while at < present {
                let n = (present - at).min(READ_CHUNK as u64) as usize;
                let chunk = map_chunk(&file, start + at, n)?;
                // A closed channel is a client that went away: stop reading.
                if tx.blocking_send(Ok(chunk)).is_err() {
                    break;
                }
                at += n as u64;
            }
            Ok(present)
        })();
        let failure = match result {
            Ok(sent) if sent < len => std::io::ErrorKind::UnexpectedEof.into(),
            Ok(_) => return,
            Err(e) => e,
        };
        let _ = tx.blocking_send(Err(failure));
    });
    tokio_stream_of(rx)
}

/// Maps `len` bytes of `file` from `offset`, which the file holds, and brings
/// them into memory (`MADV_POPULATE_READ`), so that a read error is an error
/// here rather than a `SIGBUS` when the socket copies from the mapping.
fn map_chunk(file: &File, offset: u64, len: usize) -> std::io::Result<Bytes> {
    // SAFETY: a mapping is undefined behaviour if the file changes under it. A
    // blob's file never does once committed: it is only replaced by a rename
    // or unlinked, which leave the mapped file whole until the mapping goes.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .map(file)?
    };
    match map.advise(Advice::PopulateRead) {
        // EINVAL: a kernel before 5.14; the pages fault in as they are sent.
        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => Err(e),
        _ => Ok(Bytes::from_owner(map)),
    }
}

/// The receiving end of a channel as a stream.
fn tokio_stream_of<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

pub async fn delete(name: RepoName, digest: String, state: Shared) -> Result<Response, Rejection> {
    let digest = parse_digest(&digest)?;
    state.store.delete_blob(&name, &digest).await?;
    Ok(empty(StatusCode::ACCEPTED))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    async fn collect(file: File, start: u64, len: u64) -> (Vec<u8>, Option<std::io::Error>) {
        let mut stream = std::pin::pin!(read_stream(file, start, len));
        let mut bytes = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(e) => return (bytes, Some(e)),
            }
        }
        (bytes, None)
    }

    fn blob_file(len: usize) -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let content: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        (dir, path, content)
    }

    #[tokio::test]
    async fn a_range_from_mid_page_across_chunks_is_sent_exactly() {
        let (_dir, path, content) = blob_file(3 * READ_CHUNK + 5000);
        let (start, len) = (4097, 2 * READ_CHUNK as u64 + 333);
        let (sent, error) = collect(File::open(&path).unwrap(), start, len).await;
        assert!(error.is_none(), "{error:?}");
        assert!(sent == content[start as usize..(start + len) as usize]);
    }

    #[tokio::test]
    async fn a_file_shorter_than_promised_ends_the_body_with_an_error() {
        let (_dir, path, content) = blob_file(READ_CHUNK + 10);
        let (sent, error) = collect(File::open(&path).unwrap(), 0, content.len() as u64 + 50).await;
        assert!(sent == content, "what the file holds is sent");
        assert_eq!(error.unwrap().kind(), std::io::ErrorKind::UnexpectedEof);
        // Nothing at all from a start past the end.
        let (sent, error) = collect(File::open(&path).unwrap(), 2 * READ_CHUNK as u64, 10).await;
        assert!(sent.is_empty());
        assert_eq!(error.unwrap().kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
