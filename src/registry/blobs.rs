//! `GET|HEAD|DELETE /v2/<name>/blobs/<digest>`: blob reads with `Range` and
//! `If-None-Match`, and unlinking a blob from a repository.

use super::errors::{ApiError, Code};
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

/// `"<digest>"`, the ETag of content-addressed things.
pub fn etag(digest: &Digest) -> String {
    format!("\"{digest}\"")
}

/// Whether `If-None-Match` names this ETag (or `*`).
pub fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().trim_start_matches("W/"))
        .any(|v| v == etag || v == "*")
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

#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// Not a single byte range we serve: answer with the whole blob (RFC 9110 lets
    /// a server ignore Range).
    Ignore,
    Satisfiable(u64, u64),
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` or `bytes=-n` against a blob of `size` bytes.
fn parse_range(spec: &str, size: u64) -> RangeRequest {
    let Some(range) = spec.trim().strip_prefix("bytes=") else {
        return RangeRequest::Ignore;
    };
    if range.contains(',') {
        return RangeRequest::Ignore;
    }
    let Some((first, last)) = range.trim().split_once('-') else {
        return RangeRequest::Ignore;
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    let (start, end) = match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, true) => return RangeRequest::Ignore,
        // suffix: the last n bytes
        (true, false) => match parse(last) {
            Some(0) => return RangeRequest::Unsatisfiable,
            Some(n) if size > 0 => (size.saturating_sub(n), size - 1),
            Some(_) => return RangeRequest::Unsatisfiable,
            None => return RangeRequest::Ignore,
        },
        (false, true) => match parse(first) {
            Some(start) => (start, size.saturating_sub(1)),
            None => return RangeRequest::Ignore,
        },
        (false, false) => match (parse(first), parse(last)) {
            (Some(start), Some(end)) if start <= end => (start, end.min(size.saturating_sub(1))),
            _ => return RangeRequest::Ignore,
        },
    };
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Satisfiable(start, end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Satisfiable(0, 9));
        assert_eq!(parse_range("bytes=90-200", 100), Satisfiable(90, 99));
        assert_eq!(parse_range("bytes=95-", 100), Satisfiable(95, 99));
        assert_eq!(parse_range("bytes=-10", 100), Satisfiable(90, 99));
        assert_eq!(parse_range("bytes=-500", 100), Satisfiable(0, 99));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), Ignore);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ignore);
        assert_eq!(parse_range("items=0-1", 100), Ignore);
        assert_eq!(parse_range("bytes=x-1", 100), Ignore);
    }

    #[test]
    fn if_none_match() {
        let d = Digest::sha256(b"");
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, &etag(&d)));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&etag(&d)).unwrap(),
        );
        assert!(not_modified(&h, &etag(&d)));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn satisfiable_ranges_lie_inside_the_blob(spec in "\\PC{0,30}|bytes=[0-9]{0,4}-[0-9]{0,4}", size in 0u64..5000) {
            if let RangeRequest::Satisfiable(start, end) = parse_range(&spec, size) {
                prop_assert!(start <= end && end < size);
            }
        }
    }
}
