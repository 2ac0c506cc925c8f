//! Referrers (signatures, SBOMs) of mirrored images. Asked for (and, by the
//! registry's manifest handler, for each tag just fetched, in the background,
//! so that they come with the image), the upstream's referrers list is fetched (at most once per TTL for each subject), and each
//! referrer manifest not yet cached is fetched by digest, so that a client
//! verifying a signature then pulls it from the cache. The answer is always the
//! store's own index, which those fetches filled: when upstream cannot answer,
//! what was cached before is listed, and said to be stale. Requests for one
//! subject while its list is being fetched wait for that fetch, and share
//! its outcome, instead of asking upstream again.

use super::slots::Slots;
use super::upstream::read_limited;
use super::{CacheStatus, Proxy, Route};
use crate::oci::manifest::{MAX_MANIFEST_SIZE, OCI_INDEX};
use crate::oci::{Descriptor, Digest, Reference, RepoName};
use crate::storage::Store;
use reqwest::{Method, StatusCode};
use std::time::Instant;

/// The last check of one subject's referrers upstream: its end, and how it went.
pub struct Check {
    at: Instant,
    status: CacheStatus,
}

/// Each subject's last check (a check older than the TTL is as good as none).
pub type Checked = Slots<(RepoName, Digest), Check>;

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
        let ttl = route.upstream.tag_ttl;
        let key = (local.clone(), subject.clone());
        let slot = self.referrers.slot(key, |c| c.at.elapsed() < ttl);
        let asked = Instant::now();
        let mut last = slot.lock().await;
        match last.as_ref() {
            // A check ended while we waited for it: its outcome is ours.
            Some(check) if check.at >= asked => return check.status.clone(),
            Some(check) if check.at.elapsed() < ttl => return CacheStatus::Hit,
            _ => {}
        }
        let status = self.fetch_referrers(store, route, local, subject).await;
        *last = Some(Check {
            at: Instant::now(),
            status: status.clone(),
        });
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

#[cfg(test)]
mod tests {
    use super::super::slots::PRUNE_ABOVE;
    use super::*;
    use std::time::Duration;

    #[test]
    fn old_checks_are_dropped_once_there_are_many_and_running_ones_stay() {
        let checked = Checked::default();
        let key = |i: usize| {
            let repo: RepoName = "docker.io/library/app".parse().unwrap();
            (repo, Digest::sha256(i.to_string().as_bytes()))
        };
        let ttl = Duration::from_secs(60);
        let old = Instant::now() - Duration::from_secs(120);
        for i in 0..PRUNE_ABOVE {
            let slot = checked.slot(key(i), |c| c.at.elapsed() < ttl);
            let status = CacheStatus::Miss;
            // Every other one was checked long ago; the rest just now.
            let at = if i % 2 == 0 { old } else { Instant::now() };
            *slot.try_lock().unwrap() = Some(Check { at, status });
        }
        // One being checked right now, old as it is, stays.
        let running = checked.slot(key(0), |c| c.at.elapsed() < ttl);
        let _guard = running.try_lock().unwrap();
        checked.slot(key(PRUNE_ABOVE), |c| c.at.elapsed() < ttl);
        let map = checked.0.lock().unwrap();
        assert_eq!(map.len(), PRUNE_ABOVE / 2 + 2);
        assert!(map.contains_key(&key(0)) && !map.contains_key(&key(2)));
    }
}
