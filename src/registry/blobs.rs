//! `GET|HEAD|DELETE /v2/<name>/blobs/<digest>`: blob reads with `Range` and
//! `If-None-Match`, and unlinking a blob from a repository.

use super::errors::{ApiError, Code};
use super::headers::{RangeRequest, etag, not_modified, parse_range};
use super::{DOCKER_CONTENT_DIGEST, empty, set_header};
use crate::oci::{Digest, RepoName};
use crate::storage::Store;
use bytes::Bytes;
use futures_util::Stream;
use memmap2::Advice;
use std::fs::File;
use std::sync::Arc;
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

/// Streams `len` bytes of `file` from `start`. The file is mapped into memory
/// and the body is made of slices of the mapping, so the only copy of a byte is
/// the kernel's, into the socket (a `read` into a buffer would make a second
/// one, which was a quarter of the CPU of a pull). One blocking task brings
/// each chunk's pages in (`MADV_POPULATE_READ`) a few chunks ahead of the
/// network, so the disk is waited for there and not on the async threads, and
/// a read error becomes an error of this body instead of a `SIGBUS`.
///
/// Mapping is safe here because a blob's file never changes once committed: it
/// is only ever replaced by a rename or unlinked, which leave the mapped file
/// whole until the mapping is dropped.
fn read_stream(file: File, start: u64, len: u64) -> impl Stream<Item = std::io::Result<Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        let result = (|| {
            // The file is shorter than its size said: send what there is, then
            // end the body early rather than send less than Content-Length.
            let present = file.metadata()?.len().saturating_sub(start).min(len);
            if present == 0 {
                return Ok(present);
            }
            // SAFETY: the file is immutable while mapped (see above), and only
            // `present` bytes, which the file holds, are mapped.
            let map = unsafe {
                memmap2::MmapOptions::new()
                    .offset(start)
                    .len(present as usize)
                    .map(&file)?
            };
            // Ignored if refused: only read-ahead advice.
            let _ = map.advise(Advice::Sequential);
            let map = Arc::new(map);
            let body = Bytes::from_owner(Mapped(map.clone()));
            for at in (0..map.len()).step_by(READ_CHUNK) {
                let end = (at + READ_CHUNK).min(map.len());
                match map.advise_range(Advice::PopulateRead, at, end - at) {
                    Err(e) if e.raw_os_error() != Some(libc::EINVAL) => return Err(e),
                    // EINVAL: a kernel before 5.14; the pages fault in on send.
                    _ => {}
                }
                // A closed channel is a client that went away: stop reading.
                if tx.blocking_send(Ok(body.slice(at..end))).is_err() {
                    return Ok(present);
                }
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

/// A shared mapping as the owner of a `Bytes`.
struct Mapped(Arc<memmap2::Mmap>);

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
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
