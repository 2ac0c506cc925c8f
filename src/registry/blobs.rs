//! `GET|HEAD|DELETE /v2/<name>/blobs/<digest>`: blob reads with `Range` and
//! `If-None-Match`, and unlinking a blob from a repository.

use super::errors::{ApiError, Code};
use super::headers::{RangeRequest, etag, not_modified, parse_range};
use super::state::Shared;
use super::{CACHE_STATUS, DOCKER_CONTENT_DIGEST, OCI_NAMESPACE, empty, set_header};
use crate::oci::{Digest, RepoName};
use crate::proxy::{BlobFetch, CacheStatus, ProxyError, Route};
use crate::storage::StoreError;
use warp::http::{HeaderMap, HeaderValue, StatusCode, header};
use warp::reply::Response;
use warp::{Rejection, Reply};

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
    // A HEAD needs only the size, which the store answers from its cache;
    // so does a GET that a store which signs URLs sends to the object.
    let redirect = !head && store.signs_urls();
    let mut content = if head || redirect {
        None
    } else {
        Some(store.open_blob(name, digest).await?)
    };
    let size = match &content {
        Some(content) => content.size(),
        None => store.stat_blob(name, digest).await?,
    };
    if not_modified(headers, &etag(digest)) {
        return Ok(blob_headers(empty(StatusCode::NOT_MODIFIED), digest));
    }
    if redirect {
        match store.blob_url(digest).await {
            Ok(url) => return Ok(redirect_to(&url, digest)),
            // Credentials that signed at start-up may fail to later (a
            // refresh that failed): the registry serves the blob itself.
            Err(error) => {
                tracing::warn!(%error, %digest, "cannot sign a URL of the blob; serving it instead");
                content = Some(store.open_blob(name, digest).await?);
            }
        }
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
    let mut response = if let Some(content) = content {
        let mut r = warp::reply::stream(content.stream(start, len)).into_response();
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

/// The 307 to a signed URL of the blob: what a client needs to follow it,
/// and no caching, since the URL expires (a cached redirect would send the
/// next client to a dead URL).
fn redirect_to(url: &str, digest: &Digest) -> Response {
    let mut response = empty(StatusCode::TEMPORARY_REDIRECT);
    set_header(&mut response, header::LOCATION, url);
    set_header(&mut response, DOCKER_CONTENT_DIGEST, digest);
    set_header(&mut response, header::CACHE_CONTROL, "no-store");
    response
}

/// The headers of every blob answer but a 416 and a redirect.
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

pub async fn delete(name: RepoName, digest: String, state: Shared) -> Result<Response, Rejection> {
    let digest = parse_digest(&digest)?;
    state.store.delete_blob(&name, &digest).await?;
    Ok(empty(StatusCode::ACCEPTED))
}
