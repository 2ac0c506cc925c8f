//! `GET /v2/<name>/referrers/<digest>`: an OCI index of the manifests whose
//! subject is that digest, optionally filtered by `artifactType`. For a
//! repository of the pull-through cache, upstream's referrers are cached first.

use super::blobs::parse_digest;
use super::state::Shared;
use super::{CACHE_STATUS, OCI_FILTERS_APPLIED, OCI_NAMESPACE, json, set_header};
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
    // A mirrored repository's list is first brought up to date from upstream.
    let mirrored = match state.proxy.route(&name) {
        Some(route) => {
            let status = state
                .proxy
                .refresh_referrers(&state.store, &route, &name, &subject)
                .await;
            Some((route, status))
        }
        None => None,
    };
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
    if let Some((route, status)) = mirrored {
        set_header(&mut response, OCI_NAMESPACE, route.upstream());
        set_header(&mut response, CACHE_STATUS, status.header());
        response.extensions_mut().insert(status);
    }
    Ok(response)
}
