//! Referrers (signatures, SBOMs) of mirrored images. Asked for, the upstream's
//! referrers list is fetched (at most once per TTL for each subject), and each
//! referrer manifest not yet cached is fetched by digest, so that a client
//! verifying a signature then pulls it from the cache. The answer is always the
//! store's own index, which those fetches filled: when upstream cannot answer,
//! what was cached before is listed, and said to be stale.

use super::upstream::read_limited;
use super::{CacheStatus, Proxy, Route};
use crate::oci::manifest::{MAX_MANIFEST_SIZE, OCI_INDEX};
use crate::oci::{Descriptor, Digest, Reference, RepoName};
use crate::storage::Store;
use reqwest::{Method, StatusCode};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// When each subject's referrers were last asked upstream.
#[derive(Default)]
pub struct Checked(Mutex<HashMap<(RepoName, Digest), Instant>>);

/// The part of an index this needs.
#[derive(serde::Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

impl Proxy {
    /// Brings the store's referrers of `subject` in the mirrored `local` up to
    /// date with upstream's, as far as upstream answers; says how it went.
    pub async fn refresh_referrers(
        &self,
        store: &Store,
        route: &Route,
        local: &RepoName,
        subject: &Digest,
    ) -> CacheStatus {
        let key = (local.clone(), subject.clone());
        let fresh = {
            let checked = self.referrers.0.lock().unwrap_or_else(|e| e.into_inner());
            checked
                .get(&key)
                .is_some_and(|at| at.elapsed() < route.upstream.tag_ttl)
        };
        if fresh {
            return CacheStatus::Hit;
        }
        let status = self.fetch_referrers(store, route, local, subject).await;
        self.referrers
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, Instant::now());
        status
    }

    async fn fetch_referrers(
        &self,
        store: &Store,
        route: &Route,
        local: &RepoName,
        subject: &Digest,
    ) -> CacheStatus {
        let upstream = &route.upstream;
        let path = format!("referrers/{subject}");
        let response = match upstream
            .send(Method::GET, &route.remote, &path, Some(OCI_INDEX))
            .await
        {
            Ok(response) => response,
            Err(e) => return CacheStatus::Stale(e.to_string()),
        };
        match response.status() {
            StatusCode::OK => {}
            // No referrers API upstream: nothing refers to anything there.
            StatusCode::NOT_FOUND => return CacheStatus::Miss,
            status => {
                return CacheStatus::Stale(format!(
                    "upstream {} answered {status} to GET {}/{path}",
                    upstream.name, route.remote
                ));
            }
        }
        let index = match read_index(response).await {
            Some(index) => index,
            None => {
                return CacheStatus::Stale(format!(
                    "upstream {} sent no index for GET {}/{path}",
                    upstream.name, route.remote
                ));
            }
        };
        for referrer in index.manifests {
            let reference = Reference::Digest(referrer.digest.clone());
            if let Err(e) = self.manifest(store, route, local, &reference).await {
                tracing::warn!(repository = %local, referrer = %referrer.digest, error = %e, "a referrer could not be cached");
            }
        }
        CacheStatus::Miss
    }
}

/// The index a response holds, read up to the manifest size limit.
async fn read_index(response: reqwest::Response) -> Option<Index> {
    let body = read_limited(response, MAX_MANIFEST_SIZE).await.ok()?;
    serde_json::from_slice(&body).ok()
}
