//! `GET|HEAD|DELETE /v2/<name>/blobs/<digest>`: blob reads with `Range` and
//! `If-None-Match`, and unlinking a blob from a repository.

use super::errors::{ApiError, Code};
use super::headers::{RangeRequest, etag, not_modified, parse_range};
use super::{DOCKER_CONTENT_DIGEST, empty, set_header};
use crate::oci::{Digest, RepoName};
use crate::storage::Store;
use std::io::SeekFrom;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use warp::http::{HeaderMap, HeaderValue, StatusCode, header};
use warp::reply::Response;
use warp::{Rejection, Reply};

/// Read size when streaming a blob: large reads keep the copy path lean.
const READ_CHUNK: usize = 256 * 1024;

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
    let (file, size) = store.open_blob(&name, &digest).await?;
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
        let mut response = if head {
            empty(status)
        } else {
            let mut file = tokio::fs::File::from_std(file);
            file.seek(SeekFrom::Start(start))
                .await
                .map_err(crate::storage::StoreError::from)?;
            let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), READ_CHUNK);
            let mut r = warp::reply::stream(stream).into_response();
            *r.status_mut() = status;
            r
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

pub async fn delete(name: RepoName, digest: String, store: Store) -> Result<Response, Rejection> {
    let digest = parse_digest(&digest)?;
    store.delete_blob(&name, &digest).await?;
    Ok(empty(StatusCode::ACCEPTED))
}
