//! Referrers (signatures, SBOMs) of mirrored images. Asked for (and, by the
//! registry's manifest handler, for each tag just fetched, in the background,
//! so that they come with the image), the upstream's referrers list is fetched (at most once per TTL for each subject), and each
//! referrer manifest not yet cached is fetched by digest, so that a client
//! verifying a signature then pulls it from the cache. The answer is always the
//! store's own index, which those fetches filled: when upstream cannot answer,
//! what was cached before is listed, and said to be stale. Requests for one
//! subject while its list is being fetched wait for that fetch, and share
//! its outcome, instead of asking upstream again.

use super::upstream::read_limited;
use super::{CacheStatus, Proxy, Route};
use crate::oci::manifest::{MAX_MANIFEST_SIZE, OCI_INDEX};
use crate::oci::{Descriptor, Digest, Reference, RepoName};
use crate::storage::Store;
use reqwest::{Method, StatusCode};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Subjects past which the map of [`Checked`] drops the entries it no longer needs.
const PRUNE_ABOVE: usize = 4096;

/// The last check of one subject's referrers upstream: its end, and how it went.
struct Check {
    at: Instant,
    status: CacheStatus,
}

/// A subject's last check, locked while one runs.
type Slot = Arc<tokio::sync::Mutex<Option<Check>>>;

/// Each subject's last check.
#[derive(Default)]
pub struct Checked(Mutex<HashMap<(RepoName, Digest), Slot>>);

impl Checked {
    /// The slot of `key`. Past [`PRUNE_ABOVE`] subjects, those not being
    /// checked whose check is older than `ttl` go first: they are as good as
    /// never checked.
    fn slot(&self, key: (RepoName, Digest), ttl: std::time::Duration) -> Slot {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= PRUNE_ABOVE && !map.contains_key(&key) {
            map.retain(|_, slot| match slot.try_lock() {
                Ok(check) => check.as_ref().is_some_and(|c| c.at.elapsed() < ttl),
                Err(_) => true,
            });
        }
        map.entry(key).or_default().clone()
    }
}

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
        let slot = self.referrers.slot((local.clone(), subject.clone()), ttl);
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
            let slot = checked.slot(key(i), ttl);
            let status = CacheStatus::Miss;
            // Every other one was checked long ago; the rest just now.
            let at = if i % 2 == 0 { old } else { Instant::now() };
            *slot.try_lock().unwrap() = Some(Check { at, status });
        }
        // One being checked right now, old as it is, stays.
        let running = checked.slot(key(0), ttl);
        let _guard = running.try_lock().unwrap();
        checked.slot(key(PRUNE_ABOVE), ttl);
        let map = checked.0.lock().unwrap();
        assert_eq!(map.len(), PRUNE_ABOVE / 2 + 2);
        assert!(map.contains_key(&key(0)) && !map.contains_key(&key(2)));
    }
}
