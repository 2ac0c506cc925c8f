//! `POST /v2/<name>/blobs/uploads/` and `GET|PATCH|PUT|DELETE …/uploads/<id>`:
//! monolithic, chunked and resumable blob uploads, and cross-repository mounts.

use super::auth::{Identity, Right};
use super::blobs::parse_digest;
use super::errors::{ApiError, Code};
use super::headers::parse_content_range;
use super::state::Shared;
use super::{DOCKER_CONTENT_DIGEST, DOCKER_UPLOAD_UUID, empty, set_header};
use crate::oci::{Digest, RepoName};
use crate::storage::{Body, StoreError};
use serde::Deserialize;
use uuid::Uuid;
use warp::Rejection;
use warp::http::{HeaderMap, HeaderValue, StatusCode, header};
use warp::reply::Response;

fn session_location(name: &RepoName, id: Uuid) -> String {
    format!("/v2/{name}/blobs/uploads/{}", id.hyphenated())
}

/// `Range: 0-<last byte>` as clients expect it (`0-0` for an empty upload).
fn range_header(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

/// 202 (or 204 for status) with the session's Location, id and Range.
fn session_response(status: StatusCode, name: &RepoName, id: Uuid, size: u64) -> Response {
    let mut response = empty(status);
    set_header(&mut response, header::LOCATION, session_location(name, id));
    set_header(&mut response, DOCKER_UPLOAD_UUID, id.hyphenated());
    set_header(&mut response, header::RANGE, range_header(size));
    set_header(&mut response, header::CONTENT_LENGTH, 0);
    response
}

/// 201 for a blob now in the repository.
fn created(name: &RepoName, digest: &Digest) -> Response {
    let mut response = empty(StatusCode::CREATED);
    set_header(
        &mut response,
        header::LOCATION,
        format!("/v2/{name}/blobs/{digest}"),
    );
    set_header(&mut response, DOCKER_CONTENT_DIGEST, digest);
    set_header(&mut response, header::CONTENT_LENGTH, 0);
    response
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(id).map_err(|_| ApiError::new(Code::BlobUploadUnknown, "blob upload unknown"))
}

/// `?digest=` (a monolithic upload) or `?mount=&from=` (a cross-repository mount).
#[derive(Debug, Default, Deserialize)]
pub struct StartQuery {
    digest: Option<String>,
    mount: Option<String>,
    from: Option<String>,
}

pub async fn start(
    name: RepoName,
    who: Identity,
    state: Shared,
    query: StartQuery,
    body: Body,
) -> Result<Response, Rejection> {
    let store = &state.store;
    if let Some(mount) = &query.mount {
        let digest = parse_digest(mount)?;
        // A mount that cannot be done (a source we cannot name, may not pull
        // from, or that lacks the blob) falls back to a normal upload, as the
        // spec asks; it never tells whether the blob exists there.
        if let Some(from) = query.from.and_then(|f| f.parse::<RepoName>().ok())
            && state.auth.allows(&who, &from, Right::Pull)
            && store.mount_blob(&name, &from, &digest).await?.is_some()
        {
            return Ok(created(&name, &digest));
        }
    } else if let Some(digest) = &query.digest {
        let digest = parse_digest(digest)?;
        store.put_blob(&name, &digest, body).await?;
        return Ok(created(&name, &digest));
    }
    let id = store.start_upload(&name).await?;
    Ok(session_response(StatusCode::ACCEPTED, &name, id, 0))
}

pub async fn status(name: RepoName, id: String, state: Shared) -> Result<Response, Rejection> {
    let id = parse_id(&id)?;
    let size = state.store.upload_size(&name, id).await?;
    Ok(session_response(StatusCode::NO_CONTENT, &name, id, size))
}

pub async fn patch(
    name: RepoName,
    id: String,
    state: Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Rejection> {
    let store = &state.store;
    let id = parse_id(&id)?;
    let (start, length) = match headers.get(header::CONTENT_RANGE) {
        None => (None, None),
        Some(value) => {
            let (start, length) = value
                .to_str()
                .ok()
                .and_then(parse_content_range)
                .ok_or_else(|| {
                    ApiError::new(
                        Code::BlobUploadInvalid,
                        "Content-Range must be <start>-<end>",
                    )
                    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                })?;
            (Some(start), Some(length))
        }
    };
    match store.append_upload(&name, id, start, length, body).await {
        Ok(size) => Ok(session_response(StatusCode::ACCEPTED, &name, id, size)),
        // The session stays usable: tell the client where it stands.
        Err(e @ StoreError::RangeMismatch { size, .. }) => Err(ApiError::from(e)
            .with_header(header::LOCATION, header_value(session_location(&name, id)))
            .with_header(header::RANGE, header_value(range_header(size)))
            .into()),
        Err(e) => Err(e.into()),
    }
}

fn header_value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `?digest=`, which closing an upload requires.
#[derive(Debug, Default, Deserialize)]
pub struct FinishQuery {
    digest: Option<String>,
}

pub async fn finish(
    name: RepoName,
    id: String,
    state: Shared,
    query: FinishQuery,
    body: Body,
) -> Result<Response, Rejection> {
    let id = parse_id(&id)?;
    let digest = query.digest.ok_or_else(|| {
        ApiError::new(
            Code::DigestInvalid,
            "the digest query parameter is required",
        )
    })?;
    let digest = parse_digest(&digest)?;
    state.store.finish_upload(&name, id, &digest, body).await?;
    Ok(created(&name, &digest))
}

pub async fn cancel(name: RepoName, id: String, state: Shared) -> Result<Response, Rejection> {
    let id = parse_id(&id)?;
    state.store.cancel_upload(&name, id).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}
