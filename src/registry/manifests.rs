//! `GET|HEAD|PUT|DELETE /v2/<name>/manifests/<reference>`.

use super::blobs::parse_digest;
use super::errors::{ApiError, Code};
use super::headers::{acceptable, etag, not_modified};
use super::state::Shared;
use super::{CACHE_STATUS, DOCKER_CONTENT_DIGEST, OCI_NAMESPACE, OCI_SUBJECT, empty, set_header};
use crate::oci::manifest::MAX_MANIFEST_SIZE;
use crate::oci::{Manifest, Reference, RepoName, Tag};
use crate::proxy::CacheStatus;
use crate::storage::{Body, StoreError};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use warp::Rejection;
use warp::http::{HeaderMap, StatusCode, header};
use warp::reply::Response;

/// Parses the reference of a manifest path; a bad tag is `invalid` (which differs
/// between reads, where nothing can match it, and writes).
fn parse_reference(s: &str, invalid: Code) -> Result<Reference, ApiError> {
    if s.contains(':') {
        return Ok(Reference::Digest(parse_digest(s)?));
    }
    s.parse::<Tag>()
        .map(Reference::Tag)
        .map_err(|e| ApiError::new(invalid, e.to_string()))
}

pub async fn get(
    name: RepoName,
    reference: String,
    head: bool,
    state: Shared,
    headers: HeaderMap,
) -> Result<Response, Rejection> {
    let reference = parse_reference(&reference, Code::ManifestUnknown)?;
    // A mirrored repository's manifest comes through the cache, which says
    // where it came from.
    let (manifest, mirrored) = match state.proxy.route(&name) {
        None => (state.store.get_manifest(&name, &reference).await?, None),
        Some(route) => {
            let served = state
                .proxy
                .manifest(&state.store, &route, &name, &reference)
                .await
                .map_err(|e| ApiError::from_proxy(&e, Code::ManifestUnknown))?;
            // Signatures and SBOMs come with the image: a tag just fetched
            // has its referrers asked for in the background (once per TTL;
            // an upstream without the referrers API answers 404, and that is all).
            if served.status == CacheStatus::Miss && matches!(reference, Reference::Tag(_)) {
                let (state, route, name) = (state.clone(), route.clone(), name.clone());
                let subject = served.manifest.digest.clone();
                tokio::spawn(async move {
                    let proxy = &state.proxy;
                    proxy
                        .refresh_referrers(&state.store, &route, &name, &subject)
                        .await;
                });
            }
            (served.manifest, Some((route, served.status)))
        }
    };
    if !acceptable(&headers, &manifest.media_type) {
        return Err(ApiError::new(
            Code::ManifestUnknown,
            format!(
                "the manifest is a {}, which the Accept header does not list",
                manifest.media_type
            ),
        )
        .into());
    }
    let tag = etag(&manifest.digest);
    let size = manifest.body.len();
    let mut response = if not_modified(&headers, &tag) {
        empty(StatusCode::NOT_MODIFIED)
    } else if head {
        empty(StatusCode::OK)
    } else {
        Response::new(manifest.body.into())
    };
    if response.status() == StatusCode::OK {
        set_header(&mut response, header::CONTENT_LENGTH, size);
    }
    set_header(&mut response, header::CONTENT_TYPE, &manifest.media_type);
    set_header(&mut response, DOCKER_CONTENT_DIGEST, &manifest.digest);
    set_header(&mut response, header::ETAG, tag);
    if let Some((route, status)) = mirrored {
        set_header(&mut response, OCI_NAMESPACE, route.upstream());
        set_header(&mut response, CACHE_STATUS, status.header());
        // For the access log.
        response.extensions_mut().insert(status);
    }
    Ok(response)
}

/// Reads a manifest body, refusing it once it passes the size limit.
async fn read_limited(headers: &HeaderMap, mut body: Body) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(4096).min(MAX_MANIFEST_SIZE));
    let mut received = 0usize;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::from(StoreError::Body(e)))?;
        received += chunk.len();
        if received > MAX_MANIFEST_SIZE {
            // The rest is left to the connection (leftover.rs), which reads
            // and drops it so the client gets this answer.
            break;
        }
        buf.extend_from_slice(&chunk);
    }
    if received > MAX_MANIFEST_SIZE {
        return Err(ApiError::new(
            Code::SizeInvalid,
            format!("manifest is larger than the {MAX_MANIFEST_SIZE} bytes this registry accepts"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE));
    }
    Ok(buf.freeze())
}

pub async fn put(
    name: RepoName,
    reference: String,
    state: Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Rejection> {
    let store = &state.store;
    let reference = parse_reference(&reference, Code::ManifestInvalid)?;
    let body = read_limited(&headers, body).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let manifest = Manifest::parse(content_type, &body)
        .map_err(|e| ApiError::new(Code::ManifestInvalid, e.to_string()))?;
    let subject = manifest.subject.as_ref().map(|s| s.digest.clone());
    let digest = store
        .put_manifest(&name, &reference, manifest, body)
        .await?;

    let mut response = empty(StatusCode::CREATED);
    set_header(
        &mut response,
        header::LOCATION,
        format!("/v2/{name}/manifests/{digest}"),
    );
    set_header(&mut response, DOCKER_CONTENT_DIGEST, &digest);
    set_header(&mut response, header::CONTENT_LENGTH, 0);
    if let Some(subject) = subject {
        set_header(&mut response, OCI_SUBJECT, subject);
    }
    Ok(response)
}

pub async fn delete(
    name: RepoName,
    reference: String,
    state: Shared,
) -> Result<Response, Rejection> {
    let store = &state.store;
    match parse_reference(&reference, Code::ManifestUnknown)? {
        Reference::Tag(tag) => store.delete_tag(&name, &tag).await?,
        Reference::Digest(digest) => store.delete_manifest(&name, &digest).await?,
    }
    Ok(empty(StatusCode::ACCEPTED))
}
