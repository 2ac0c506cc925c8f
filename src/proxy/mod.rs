//! The pull-through cache: the repositories under an upstream's name (say
//! `docker.io/library/alpine` for the upstream `docker.io`) are read-only
//! mirrors of that upstream's repositories, filled on their first pull and
//! served from the store after that.
//!
//! Two ways in, one cache. containerd's mirror form asks for `library/alpine`
//! with `?ns=docker.io`; a client that cannot send `ns` asks for
//! `docker.io/library/alpine`. Both name the local repository
//! `docker.io/library/alpine`, so rights, the catalog and garbage collection
//! see cached content as ordinary content.
//!
//! What reaches the upstream, which may count each request against a rate limit:
//! * one request per missing manifest or blob, however many clients ask at
//!   once (`manifests.rs`, `blobs.rs`); every waiter gets the bytes as they
//!   arrive, and a cut transfer or bytes that do not hash to their digest
//!   store nothing;
//! * a pull by digest never goes upstream once cached;
//! * a pull by tag revalidates the cached tag with one HEAD once its TTL has
//!   passed, and GETs the manifest only when the digest moved. When upstream
//!   is unreachable, rate-limits, fails or has lost the tag, the cached copy is
//!   served and said to be stale (`Cache-Status` header, metric);
//! * one token request per scope, whatever waits on it (`token.rs`);
//! * a subject's referrers list at most once per TTL, and each referrer
//!   manifest once (`referrers.rs`).
//!
//! An upstream may have a size cap (`caps.rs`): past it, a collection evicts
//! its least recently pulled images, never one pulled within a protected window.

mod blobs;
mod caps;
mod credentials;
mod health;
mod manifests;
mod metrics;
mod referrers;
mod slots;
mod token;
mod upstream;

pub use blobs::{BlobFetch, Follower};
pub use credentials::Credentials;
pub use health::UpstreamStatus;
pub use manifests::Served;
pub use metrics::ProxyMetrics;
pub use upstream::{DEFAULT_KEEP_PULLED, UpstreamConfig, UpstreamError};

use crate::oci::RepoName;
use crate::storage::{CacheLimit, GcReport};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Notify;
use upstream::Upstream;

/// Where an upstream known by `name` is, when no URL is given: Docker Hub's
/// registry for docker.io, the name itself over HTTPS for any other.
pub fn default_url(name: &str) -> String {
    match name {
        "docker.io" => "https://registry-1.docker.io".to_owned(),
        _ => format!("https://{name}"),
    }
}

/// Whether `name` can name an upstream: one repository path component
/// (lowercase letters, digits and separators), e.g. docker.io.
pub fn valid_name(name: &str) -> bool {
    !name.contains('/') && name.parse::<RepoName>().is_ok()
}

/// How a cached answer relates to the upstream, for the `Cache-Status`
/// response header (RFC 9211) and the metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from the store, upstream not asked (or asked and unchanged).
    Hit,
    /// Fetched from upstream for this request, or for one it waited on.
    Miss,
    /// Served from the store because upstream could not answer; says why.
    Stale(String),
}

impl CacheStatus {
    /// The value of the `Cache-Status` header.
    pub fn header(&self) -> String {
        match self {
            CacheStatus::Hit => "berth; hit".to_owned(),
            CacheStatus::Miss => "berth; fwd=miss; stored".to_owned(),
            CacheStatus::Stale(why) => {
                format!(
                    "berth; hit; detail=\"stale: {}\"",
                    why.replace(['"', '\\'], "'")
                )
            }
        }
    }

    /// `hit`, `miss` or `stale`, for metrics and the access log.
    pub fn label(&self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Stale(_) => "stale",
        }
    }
}

/// Why a mirrored manifest or blob could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Store(#[from] crate::storage::StoreError),
}

/// A local repository that mirrors an upstream one.
#[derive(Clone)]
pub struct Route {
    upstream: Arc<Upstream>,
    /// The repository's name upstream.
    remote: String,
}

impl Route {
    /// The upstream's name, as in the `OCI-Namespace` response header.
    pub fn upstream(&self) -> &str {
        &self.upstream.name
    }
}

/// Every configured upstream and what is in flight from each.
#[derive(Default)]
pub struct Proxy {
    upstreams: BTreeMap<String, Arc<Upstream>>,
    manifests: manifests::Manifests,
    blobs: blobs::Flights,
    referrers: referrers::Checked,
    /// Woken when a capped upstream's cache may have outgrown its cap.
    over_cap: Arc<Notify>,
    pub metrics: ProxyMetrics,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "upstream name {0:?} is not one repository path component (lowercase letters, digits, '.', '_', '-'), e.g. docker.io"
    )]
    Name(String),
    #[error("upstream {0} is configured twice")]
    Duplicate(String),
    #[error(transparent)]
    Upstream(#[from] upstream::BuildError),
}

impl Proxy {
    pub fn new(configs: Vec<UpstreamConfig>) -> Result<Proxy, ConfigError> {
        let metrics = ProxyMetrics::default();
        let over_cap = Arc::new(Notify::new());
        let mut upstreams = BTreeMap::new();
        for config in configs {
            if !valid_name(&config.name) {
                return Err(ConfigError::Name(config.name));
            }
            let name = config.name.clone();
            let upstream = Upstream::new(config, metrics.clone(), &over_cap)?;
            if upstreams.insert(name.clone(), Arc::new(upstream)).is_some() {
                return Err(ConfigError::Duplicate(name));
            }
        }
        Ok(Proxy {
            upstreams,
            metrics,
            over_cap,
            ..Proxy::default()
        })
    }

    /// The caps a collection applies.
    pub fn cache_limits(&self) -> Vec<CacheLimit> {
        self.upstreams
            .values()
            .filter_map(|u| u.cap.as_ref().map(|cap| cap.limit.clone()))
            .collect()
    }

    /// How each upstream has been answering, and its cache's size and cap.
    pub fn status(&self) -> Vec<UpstreamStatus> {
        self.upstreams
            .values()
            .map(|u| UpstreamStatus {
                cache_bytes: u.cap.as_ref().and_then(|cap| cap.bytes()),
                max_size: u.cap.as_ref().map(|cap| cap.limit.max_size),
                ..u.health.status(&u.name, &u.base)
            })
            .collect()
    }

    fn caps(&self) -> impl Iterator<Item = &caps::Cap> {
        self.upstreams.values().filter_map(|u| u.cap.as_ref())
    }

    /// Returns once a capped upstream's cache calls for a collection (see
    /// caps.rs for when); right away after a start.
    pub async fn over_cap(&self) {
        loop {
            if self.caps().any(caps::Cap::due) {
                return;
            }
            match self.caps().filter_map(caps::Cap::recheck_at).min() {
                Some(at) => {
                    tokio::select! {
                        _ = self.over_cap.notified() => {}
                        _ = tokio::time::sleep_until(at.into()) => {}
                    }
                }
                None => self.over_cap.notified().await,
            }
        }
    }

    /// What each capped upstream has fetched so far, taken before a collection.
    pub fn fetched(&self) -> BTreeMap<String, u64> {
        self.caps()
            .map(|cap| (cap.limit.upstream.clone(), cap.fetched()))
            .collect()
    }

    /// Takes what a collection counted and evicted; `fetched_before` is what
    /// [`Proxy::fetched`] said when it started.
    pub fn collected(&self, report: &GcReport, fetched_before: &BTreeMap<String, u64>) {
        if report.dry_run {
            return;
        }
        for cache in &report.caches {
            if let Some(cap) = self
                .upstreams
                .get(&cache.upstream)
                .and_then(|u| u.cap.as_ref())
            {
                let before = fetched_before.get(&cache.upstream).copied().unwrap_or(0);
                cap.collected(cache, before);
                self.metrics.collected(cache);
            }
        }
    }

    /// Each upstream's name and URL.
    pub fn upstreams(&self) -> impl Iterator<Item = (&str, &str)> {
        self.upstreams
            .values()
            .map(|u| (u.name.as_str(), u.base.as_str()))
    }

    /// The local name of a request's repository: with an `ns` that names an
    /// upstream, the name goes under it. An `ns` naming no upstream is
    /// ignored, as the spec asks, and the name is served as it came; so is a
    /// name already under that upstream (containerd sends `ns` with a
    /// hosts.toml `override_path` to the path prefix, too).
    pub fn local_name(&self, name: RepoName, ns: Option<&str>) -> RepoName {
        let under = |ns: &str| {
            name.as_str()
                .strip_prefix(ns)
                .is_some_and(|rest| rest.starts_with('/'))
        };
        match ns.filter(|ns| self.upstreams.contains_key(*ns) && !under(ns)) {
            Some(ns) => format!("{ns}/{name}").parse().unwrap_or(name),
            None => name,
        }
    }

    /// Counts a blob of a mirrored repository served from the store.
    pub fn blob_hit(&self, route: &Route) {
        self.metrics
            .served(route.upstream(), metrics::Kind::Blob, &CacheStatus::Hit);
    }

    /// The upstream repository `local` mirrors, if it is under an upstream's name.
    pub fn route(&self, local: &RepoName) -> Option<Route> {
        let (first, rest) = local.as_str().split_once('/')?;
        let upstream = self.upstreams.get(first)?;
        Some(Route {
            upstream: upstream.clone(),
            remote: upstream.remote_name(rest),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(names: &[&str]) -> Proxy {
        Proxy::new(
            names
                .iter()
                .map(|n| UpstreamConfig::new(n, "http://127.0.0.1:1"))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn ns_and_path_prefix_name_one_local_repository() {
        let p = proxy(&["docker.io", "ghcr.io"]);
        let name: RepoName = "library/alpine".parse().unwrap();
        let local = p.local_name(name.clone(), Some("docker.io"));
        assert_eq!(local.as_str(), "docker.io/library/alpine");
        assert_eq!(p.route(&local).unwrap().remote, "library/alpine");
        assert_eq!(p.route(&local).unwrap().upstream(), "docker.io");
        // With ns, a name already under that upstream stays as it is.
        assert_eq!(p.local_name(local.clone(), Some("docker.io")), local);
        // An ns that names no upstream is ignored; so is a repository under none.
        assert_eq!(p.local_name(name.clone(), Some("quay.io")), name);
        assert!(p.route(&name).is_none());
        let own: RepoName = "team/app".parse().unwrap();
        assert!(p.route(&own).is_none());
        // A bare upstream name is no mirrored repository.
        assert!(p.route(&"docker.io".parse().unwrap()).is_none());
        // Docker Hub's official images live under library/.
        let short: RepoName = "docker.io/alpine".parse().unwrap();
        assert_eq!(p.route(&short).unwrap().remote, "library/alpine");
        let other: RepoName = "ghcr.io/alpine".parse().unwrap();
        assert_eq!(p.route(&other).unwrap().remote, "alpine");
    }

    #[test]
    fn bad_and_repeated_names_are_refused() {
        for bad in ["Docker.io", "a/b", "localhost:5000", ""] {
            let err = Proxy::new(vec![UpstreamConfig::new(bad, "http://x")]).err();
            assert!(matches!(err, Some(ConfigError::Name(_))), "{bad}");
        }
        let twice = vec![
            UpstreamConfig::new("docker.io", "http://a"),
            UpstreamConfig::new("docker.io", "http://b"),
        ];
        assert!(matches!(
            Proxy::new(twice).err(),
            Some(ConfigError::Duplicate(_))
        ));
    }
}
