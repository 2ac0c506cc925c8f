//! The requests scenarios are made of (push a blob, put a manifest, check what
//! is stored), each checking the answer.

use super::{OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, OCTET_STREAM};
use crate::bench::BenchError;
use crate::bench::client::{
    Conn, ReqBody, Target, expect_digest, expect_status, header_str, location_with,
};
use crate::bench::payload::digest_of;
use bytes::Bytes;
use hyper::header::{self, HeaderName};
use hyper::{Method, StatusCode};

pub(super) fn expect_length<T>(
    what: &str,
    r: &hyper::Response<T>,
    expected: u64,
) -> Result<(), BenchError> {
    let got = header_str(r, "content-length").and_then(|v| v.parse::<u64>().ok());
    if got != Some(expected) {
        return Err(BenchError::Content {
            what: what.to_owned(),
            detail: format!("Content-Length {got:?}, expected {expected}"),
        });
    }
    Ok(())
}

/// An OCI image manifest of a config and layers (digest, size).
pub(super) fn manifest_json(
    config_digest: &str,
    config_len: usize,
    layers: &[(&str, usize)],
) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|(digest, size)| serde_json::json!({"mediaType": OCI_LAYER, "digest": digest, "size": size}))
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_len},
        "layers": layers,
    });
    manifest.to_string().into_bytes()
}

/// One small blob in a single `POST ?digest=`, or POST then PUT when the
/// registry answers the POST with a session. Returns the requests it took.
pub(super) async fn push_small(
    conn: &mut Conn,
    target: &Target,
    repo: &str,
    bytes: &Bytes,
    digest: &str,
) -> Result<u64, BenchError> {
    let path = target.path(&format!("/v2/{repo}/blobs/uploads/?digest={digest}"));
    let what = format!("POST {path}");
    let headers: [(HeaderName, &str); 1] = [(header::CONTENT_TYPE, OCTET_STREAM)];
    let (r, body) = conn
        .call(Method::POST, &path, &headers, ReqBody::full(bytes.clone()))
        .await?;
    expect_status(
        &what,
        &r,
        &body,
        &[StatusCode::CREATED, StatusCode::ACCEPTED],
    )?;
    if r.status() == StatusCode::CREATED {
        expect_digest(&what, &r, digest)?;
        return Ok(1);
    }
    let put = location_with(&what, &r, &format!("digest={digest}"))?;
    let what = format!("PUT {put}");
    let (r, body) = conn
        .call(Method::PUT, &put, &headers, ReqBody::full(bytes.clone()))
        .await?;
    expect_status(&what, &r, &body, &[StatusCode::CREATED])?;
    expect_digest(&what, &r, digest)?;
    Ok(2)
}

/// PUTs an OCI manifest under `reference`; returns its digest.
pub(super) async fn put_manifest(
    conn: &mut Conn,
    target: &Target,
    repo: &str,
    reference: &str,
    manifest: &Bytes,
) -> Result<String, BenchError> {
    let digest = digest_of(manifest);
    let path = target.path(&format!("/v2/{repo}/manifests/{reference}"));
    let what = format!("PUT {path}");
    let (r, body) = conn
        .call(
            Method::PUT,
            &path,
            &[(header::CONTENT_TYPE, OCI_MANIFEST)],
            ReqBody::full(manifest.clone()),
        )
        .await?;
    expect_status(&what, &r, &body, &[StatusCode::CREATED])?;
    expect_digest(&what, &r, &digest)?;
    Ok(digest)
}

/// HEAD: the blob is there with its size and digest.
pub(super) async fn check_stored(
    conn: &mut Conn,
    repo: &str,
    digest: &str,
    size: u64,
) -> Result<(), BenchError> {
    let path = conn.target().path(&format!("/v2/{repo}/blobs/{digest}"));
    let what = format!("HEAD {path}");
    let (r, body) = conn.call(Method::HEAD, &path, &[], ReqBody::Empty).await?;
    expect_status(&what, &r, &body, &[StatusCode::OK])?;
    expect_digest(&what, &r, digest)?;
    expect_length(&what, &r, size)
}
