//! The spec's error codes, their HTTP statuses, and the one place where store
//! errors and warp rejections become OCI error JSON:
//! `{"errors":[{"code":…,"message":…,"detail":…}]}`.

use crate::proxy::{ProxyError, UpstreamError};
use crate::storage::StoreError;
use serde_json::{Value, json};
use std::convert::Infallible;
use warp::http::{HeaderName, HeaderValue, StatusCode, header};
use warp::reply::Response;

/// An error code of the OCI Distribution Spec (plus distribution's pagination one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    PaginationNumberInvalid,
    /// Not in the spec: the disk is full (507), said plainly rather than as UNKNOWN.
    StorageFull,
    /// Not in the spec, admin API only: a collection is already running (409).
    GcRunning,
    /// Not in the spec, admin API only: a scrub is already running (409).
    ScrubRunning,
    Unknown,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            Code::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            Code::StorageFull => "STORAGE_FULL",
            Code::GcRunning => "GC_RUNNING",
            Code::ScrubRunning => "SCRUB_RUNNING",
            Code::Unknown => "UNKNOWN",
        }
    }

    /// The status a code is sent with unless the handler says otherwise.
    pub fn status(self) -> StatusCode {
        match self {
            Code::BlobUnknown
            | Code::BlobUploadUnknown
            | Code::ManifestUnknown
            | Code::NameUnknown => StatusCode::NOT_FOUND,
            Code::BlobUploadInvalid
            | Code::DigestInvalid
            | Code::ManifestBlobUnknown
            | Code::ManifestInvalid
            | Code::NameInvalid
            | Code::SizeInvalid
            | Code::PaginationNumberInvalid => StatusCode::BAD_REQUEST,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Denied => StatusCode::FORBIDDEN,
            Code::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Code::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Code::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
            Code::GcRunning | Code::ScrubRunning => StatusCode::CONFLICT,
            Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error answer: a code, a message for people, optional detail, and headers
/// some errors carry (an upload's `Range` after a refused chunk, say).
#[derive(Clone, Debug)]
pub struct ApiError {
    code: Code,
    status: StatusCode,
    message: String,
    detail: Option<Value>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            status: code.status(),
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    pub fn with_detail(mut self, detail: Value) -> ApiError {
        self.detail = Some(detail);
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    pub fn code(&self) -> Code {
        self.code
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code.as_str(), "message": self.message });
        if let Some(detail) = self.detail {
            error["detail"] = detail;
        }
        let body = json!({ "errors": [error] }).to_string();
        let mut response = Response::new(body.into());
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

impl ApiError {
    /// The answer for a mirrored manifest or blob the cache could not serve;
    /// `not_found` is the code of the thing asked for. An upstream's own
    /// refusal of our credentials is a 403 here, not a 401: the client's
    /// credentials are not the ones that failed.
    pub fn from_proxy(e: &ProxyError, not_found: Code) -> ApiError {
        let message = e.to_string();
        match e {
            ProxyError::Upstream(upstream) => match upstream {
                UpstreamError::Status { status, .. } => match *status {
                    StatusCode::NOT_FOUND => ApiError::new(not_found, message),
                    StatusCode::TOO_MANY_REQUESTS => ApiError::new(Code::TooManyRequests, message),
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                        ApiError::new(Code::Denied, message)
                    }
                    _ => ApiError::new(Code::Unknown, message).with_status(StatusCode::BAD_GATEWAY),
                },
                UpstreamError::Unreachable { .. } | UpstreamError::Protocol { .. } => {
                    ApiError::new(Code::Unknown, message).with_status(StatusCode::BAD_GATEWAY)
                }
            },
            ProxyError::Store(StoreError::InsufficientSpace { .. }) => {
                ApiError::new(Code::StorageFull, message)
            }
            ProxyError::Store(_) => ApiError::new(Code::Unknown, message),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let message = e.to_string();
        match e {
            StoreError::BlobUnknown => ApiError::new(Code::BlobUnknown, message),
            StoreError::ManifestUnknown => ApiError::new(Code::ManifestUnknown, message),
            StoreError::NameUnknown => ApiError::new(Code::NameUnknown, message),
            StoreError::UploadUnknown => ApiError::new(Code::BlobUploadUnknown, message),
            StoreError::RangeMismatch { .. } | StoreError::ChunkInProgress(_) => {
                ApiError::new(Code::BlobUploadInvalid, message)
                    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
            }
            StoreError::ChunkLength { .. } | StoreError::Body(_) => {
                ApiError::new(Code::BlobUploadInvalid, message)
            }
            StoreError::DigestMismatch { expected, computed } => {
                ApiError::new(Code::DigestInvalid, message).with_detail(json!({
                    "expected": expected.to_string(),
                    "computed": computed.to_string(),
                }))
            }
            StoreError::ManifestBlobUnknown(digest) => {
                ApiError::new(Code::ManifestBlobUnknown, message)
                    .with_detail(json!({ "digest": digest.to_string() }))
            }
            StoreError::ManifestInvalid(_) => ApiError::new(Code::ManifestInvalid, message),
            StoreError::InsufficientSpace { .. } => ApiError::new(Code::StorageFull, message),
            StoreError::GcRunning => ApiError::new(Code::GcRunning, message),
            StoreError::ScrubRunning => ApiError::new(Code::ScrubRunning, message),
            StoreError::Unsupported(_) => {
                ApiError::new(Code::Unsupported, message).with_status(StatusCode::NOT_IMPLEMENTED)
            }
            StoreError::Io(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                ) =>
            {
                tracing::error!(error = %e, "storage full");
                ApiError::new(
                    Code::StorageFull,
                    "storage is full; nothing was stored by this request",
                )
            }
            StoreError::Io(e) => {
                tracing::error!(error = %e, "storage failure");
                ApiError::new(Code::Unknown, "storage failure; see the registry's log")
            }
        }
    }
}

/// Turns every rejection into OCI error JSON, so no client ever gets warp's plain
/// text answers.
pub async fn recover(rejection: warp::Rejection) -> Result<Response, Infallible> {
    let error = if let Some(e) = rejection.find::<ApiError>() {
        e.clone()
    } else if rejection.is_not_found() {
        ApiError::new(Code::Unsupported, "no such endpoint").with_status(StatusCode::NOT_FOUND)
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(Code::Unsupported, "method not allowed on this endpoint")
    } else if rejection.find::<warp::reject::InvalidQuery>().is_some() {
        ApiError::new(Code::Unsupported, "malformed query string")
            .with_status(StatusCode::BAD_REQUEST)
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        ApiError::new(Code::Unsupported, e.to_string()).with_status(StatusCode::BAD_REQUEST)
    } else {
        tracing::warn!(?rejection, "unhandled rejection");
        ApiError::new(Code::Unsupported, "bad request").with_status(StatusCode::BAD_REQUEST)
    };
    Ok(error.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_507_not_500() {
        let full = ApiError::from(StoreError::Io(std::io::ErrorKind::StorageFull.into()));
        assert_eq!(full.code, Code::StorageFull);
        let response = full.into_response();
        assert_eq!(response.status(), StatusCode::INSUFFICIENT_STORAGE);
        let other = ApiError::from(StoreError::Io(std::io::ErrorKind::PermissionDenied.into()));
        assert_eq!(
            other.into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn store_errors_keep_their_spec_codes() {
        let cases = [
            (StoreError::BlobUnknown, "BLOB_UNKNOWN", 404),
            (StoreError::UploadUnknown, "BLOB_UPLOAD_UNKNOWN", 404),
            (
                StoreError::RangeMismatch { start: 5, size: 3 },
                "BLOB_UPLOAD_INVALID",
                416,
            ),
            (StoreError::NameUnknown, "NAME_UNKNOWN", 404),
        ];
        for (error, code, status) in cases {
            let e = ApiError::from(error);
            assert_eq!((e.code.as_str(), e.status.as_u16()), (code, status));
        }
    }
}
