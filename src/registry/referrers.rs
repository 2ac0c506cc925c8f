//! `GET /v2/<name>/referrers/<digest>`: an OCI index of the manifests whose
//! subject is that digest, optionally filtered by `artifactType`.

use super::blobs::parse_digest;
use super::state::Shared;
use super::{OCI_FILTERS_APPLIED, json, set_header};
use crate::oci::RepoName;
use crate::oci::manifest::OCI_INDEX;
use serde::Deserialize;
use warp::Rejection;
use warp::http::StatusCode;
use warp::reply::Response;

/// `?artifactType=`
#[derive(Debug, Default, Deserialize)]
pub struct ReferrersQuery {
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
}

pub async fn list(
    name: RepoName,
    digest: String,
    state: Shared,
    query: ReferrersQuery,
) -> Result<Response, Rejection> {
    let subject = parse_digest(&digest)?;
    let artifact_type = query.artifact_type;
    let filtered = artifact_type.is_some();
    let manifests = state
        .store
        .referrers(&name, &subject, artifact_type)
        .await?;
    let mut response = json(
        StatusCode::OK,
        OCI_INDEX,
        &serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        }),
    );
    if filtered {
        set_header(&mut response, OCI_FILTERS_APPLIED, "artifactType");
    }
    Ok(response)
}
