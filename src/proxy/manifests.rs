//! Manifests of mirrored repositories: served from the store when it has them
//! (and, for a tag, when it was checked upstream less than the TTL ago),
//! fetched once however many requests wait, revalidated with a HEAD, and
//! served stale when upstream cannot answer.

use super::blobs::Leave;
use super::metrics::Kind;
use super::upstream::{BodyError, Upstream, read_limited};
use super::{CacheStatus, Proxy, ProxyError, Route};
use crate::oci::manifest::{
    DOCKER_LIST, DOCKER_MANIFEST, MAX_MANIFEST_SIZE, OCI_INDEX, OCI_MANIFEST,
};
use crate::oci::{Digest, Manifest, Reference, RepoName, Tag};
use crate::storage::{Store, StoreError, StoredManifest};
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use reqwest::{Method, StatusCode, header};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Every manifest type berth stores, for the upstream's content negotiation.
fn accept() -> String {
    [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST].join(", ")
}

/// A manifest as served, and where it came from.
#[derive(Clone)]
pub struct Served {
    pub manifest: StoredManifest,
    pub status: CacheStatus,
}

type Outcome = Result<Served, Arc<ProxyError>>;

/// Each fetch under way, by repository and reference, shared by its waiters.
type InFlight = HashMap<(RepoName, String), Shared<BoxFuture<'static, Outcome>>>;

/// Until when each cached tag, checked upstream, is trusted.
type Checked = HashMap<(RepoName, Tag), Instant>;

/// Tags past which [`Checked`] drops those whose trust has run out.
const PRUNE_ABOVE: usize = 4096;

/// Trust for a TTL too long for the clock: a century.
const FOREVER: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86400);

/// What is being fetched, and when each cached tag was last checked upstream.
#[derive(Default)]
pub struct Manifests {
    in_flight: Arc<Mutex<InFlight>>,
    /// In memory: after a restart each cached tag is checked once more.
    checked: Arc<Mutex<Checked>>,
}

impl Manifests {
    fn trusted(&self, name: &RepoName, tag: &Tag) -> bool {
        let checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        checked
            .get(&(name.clone(), tag.clone()))
            .is_some_and(|until| Instant::now() < *until)
    }
}

impl Proxy {
    /// The manifest `reference` names in the mirrored repository `local`.
    pub async fn manifest(
        &self,
        store: &Store,
        route: &Route,
        local: &RepoName,
        reference: &Reference,
    ) -> Outcome {
        let cached = match store.get_manifest(local, reference).await {
            Ok(manifest) => Some(manifest),
            Err(StoreError::ManifestUnknown | StoreError::NameUnknown) => None,
            Err(e) => return Err(Arc::new(e.into())),
        };
        let fresh = match (reference, &cached) {
            (Reference::Digest(_), Some(_)) => true,
            (Reference::Tag(tag), Some(_)) => self.manifests.trusted(local, tag),
            (_, None) => false,
        };
        let served = match cached {
            Some(manifest) if fresh => Ok(Served {
                manifest,
                status: CacheStatus::Hit,
            }),
            cached => {
                self.fetch_once(store, route, local, reference, cached)
                    .await
            }
        };
        if let Ok(served) = &served {
            self.metrics
                .served(route.upstream(), Kind::Manifest, &served.status);
            let (digest, every) = (&served.manifest.digest, route.upstream.record_pulls_every);
            if let Err(e) = store.record_pull(local, digest, every).await {
                // Only eviction's order depends on it.
                tracing::warn!(repository = %local, %digest, error = %e, "could not write down a pull");
            }
        }
        served
    }

    /// Runs one [`refresh`] for `reference`, or waits on the one running.
    async fn fetch_once(
        &self,
        store: &Store,
        route: &Route,
        local: &RepoName,
        reference: &Reference,
        cached: Option<StoredManifest>,
    ) -> Outcome {
        let key = (local.clone(), reference.to_string());
        let shared = {
            let mut in_flight = self
                .manifests
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(running) = in_flight.get(&key) {
                self.metrics.coalesced(route.upstream(), Kind::Manifest);
                running.clone()
            } else {
                let work = Refresh {
                    upstream: route.upstream.clone(),
                    remote: route.remote.clone(),
                    store: store.clone(),
                    local: local.clone(),
                    reference: reference.clone(),
                    checked: self.manifests.checked.clone(),
                };
                let leave = Leave {
                    map: self.manifests.in_flight.clone(),
                    key: Some(key.clone()),
                };
                // A task of its own, so that the fetch completes (and fills the
                // cache) even if every client waiting on it goes away.
                let task = tokio::spawn(async move {
                    let _leave = leave;
                    work.run(cached).await
                });
                let shared = async move {
                    task.await.unwrap_or_else(|e| {
                        Err(Arc::new(ProxyError::Store(StoreError::Io(
                            std::io::Error::other(e),
                        ))))
                    })
                }
                .boxed()
                .shared();
                in_flight.insert(key, shared.clone());
                shared
            }
        };
        shared.await
    }
}

/// One trip upstream for one reference.
struct Refresh {
    upstream: Arc<Upstream>,
    remote: String,
    store: Store,
    local: RepoName,
    reference: Reference,
    checked: Arc<Mutex<Checked>>,
}

impl Refresh {
    async fn run(self, cached: Option<StoredManifest>) -> Outcome {
        let Some(cached) = cached else {
            return self.fetch().await.map_err(Arc::new);
        };
        // A cached tag past its TTL: a HEAD, which rate limits count less.
        let path = format!("manifests/{}", self.reference);
        let head = self
            .upstream
            .send(Method::HEAD, &self.remote, &path, Some(&accept()))
            .await;
        let stale = |why: String| {
            tracing::warn!(repository = %self.local, reference = %self.reference, "serving a stale manifest: {why}");
            Served {
                manifest: cached.clone(),
                status: CacheStatus::Stale(why),
            }
        };
        let outcome = match head {
            Err(e) => Ok(stale(e.to_string())),
            Ok(response) if response.status() == StatusCode::OK => {
                let digest = header_digest(response.headers());
                if digest.as_ref() == Some(&cached.digest) {
                    Ok(Served {
                        manifest: cached.clone(),
                        status: CacheStatus::Hit,
                    })
                } else {
                    // Whatever went wrong (upstream, or storing the new
                    // manifest on a full disk), the cached copy still serves.
                    match self.fetch().await {
                        Ok(served) => Ok(served),
                        Err(e) => Ok(stale(e.to_string())),
                    }
                }
            }
            Ok(response) => Ok(stale(format!(
                "upstream {} answered {} to HEAD {path}",
                self.upstream.name,
                response.status()
            ))),
        };
        // Checked, whatever the answer: a down upstream is asked again after
        // the TTL, not by every pull meanwhile.
        self.mark_checked();
        outcome
    }

    fn mark_checked(&self) {
        if let Reference::Tag(tag) = &self.reference {
            let now = Instant::now();
            let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
            if checked.len() >= PRUNE_ABOVE {
                checked.retain(|_, until| now < *until);
            }
            let key = (self.local.clone(), tag.clone());
            // A TTL of centuries is a tag never checked again, not a panic.
            let until = now.checked_add(self.upstream.tag_ttl);
            checked.insert(key, until.unwrap_or(now + FOREVER));
        }
    }

    /// GETs the manifest, checks its bytes against every digest that names
    /// them, and stores it exactly as sent.
    async fn fetch(&self) -> Result<Served, ProxyError> {
        let upstream = &self.upstream;
        let path = format!("manifests/{}", self.reference);
        let response = upstream
            .send(Method::GET, &self.remote, &path, Some(&accept()))
            .await?;
        let status = response.status();
        if status != StatusCode::OK {
            return Err(upstream
                .status_error(status, format!("GET {}/{path}", self.remote))
                .into());
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let named = header_digest(response.headers());
        let body = match read_limited(response, MAX_MANIFEST_SIZE).await {
            Ok(body) => body,
            Err(BodyError::Cut(e)) => return Err(upstream.cut(&e).into()),
            Err(BodyError::TooLarge) => {
                return Err(upstream
                    .protocol_error(format!(
                        "the manifest {}/{path} is larger than the {MAX_MANIFEST_SIZE} bytes berth stores",
                        self.remote
                    ))
                    .into());
            }
        };
        upstream.metrics.received(&upstream.name, body.len() as u64);
        let asked = match &self.reference {
            Reference::Digest(digest) => Some(digest),
            Reference::Tag(_) => None,
        };
        for expected in [asked, named.as_ref()].into_iter().flatten() {
            if !expected.matches(&body) {
                return Err(upstream
                    .protocol_error(format!(
                        "the manifest sent for {}/{path} does not hash to {expected}; nothing was stored",
                        self.remote
                    ))
                    .into());
            }
        }
        let manifest = Manifest::parse(content_type.as_deref(), &body).map_err(|e| {
            upstream.protocol_error(format!("the manifest {}/{path}: {e}", self.remote))
        })?;
        let media_type = manifest.media_type.clone();
        let digest = self
            .store
            .put_fetched_manifest(&self.local, &self.reference, manifest, body.clone())
            .await?;
        if let Some(cap) = &upstream.cap {
            cap.stored(body.len() as u64);
        }
        self.mark_checked();
        Ok(Served {
            manifest: StoredManifest {
                digest,
                media_type,
                body,
            },
            status: CacheStatus::Miss,
        })
    }
}

/// The digest a response names in `Docker-Content-Digest`, if it is one.
fn header_digest(headers: &header::HeaderMap) -> Option<Digest> {
    headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}
