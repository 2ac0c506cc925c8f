//! The pull-through cache's metrics, registered with the registry's others.
//! Labels hold upstream names from the configuration, never a repository or
//! a digest, so the series stay few.

use super::CacheStatus;
use crate::storage::CacheReport;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServeLabels {
    upstream: String,
    kind: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    upstream: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    upstream: String,
    /// The HTTP status, or `error` when no answer came.
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

/// Cheap to clone: every clone counts into the same series.
#[derive(Clone, Default)]
pub struct ProxyMetrics {
    served: Family<ServeLabels, Counter>,
    coalesced: Family<KindLabels, Counter>,
    upstream_requests: Family<StatusLabels, Counter>,
    token_requests: Family<StatusLabels, Counter>,
    upstream_bytes: Family<UpstreamLabels, Counter>,
    cache_bytes: Family<UpstreamLabels, Gauge>,
    cache_max_bytes: Family<UpstreamLabels, Gauge>,
    evicted_images: Family<UpstreamLabels, Counter>,
    evicted_bytes: Family<UpstreamLabels, Counter>,
}

/// What a count is about.
#[derive(Clone, Copy)]
pub enum Kind {
    Manifest,
    Blob,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Manifest => "manifest",
            Kind::Blob => "blob",
        }
    }
}

fn status_label(response: Option<&reqwest::Response>) -> String {
    response.map_or_else(|| "error".to_owned(), |r| r.status().as_u16().to_string())
}

impl ProxyMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "proxy_served",
            "Manifests and blobs of mirrored repositories served, by upstream and result (hit, miss, stale)",
            self.served.clone(),
        );
        registry.register(
            "proxy_coalesced",
            "Requests that waited on a fetch another request had started, instead of asking upstream",
            self.coalesced.clone(),
        );
        registry.register(
            "proxy_upstream_requests",
            "Requests sent to upstreams, by status (error: no answer)",
            self.upstream_requests.clone(),
        );
        registry.register(
            "proxy_token_requests",
            "Requests sent to upstreams' token servers, by status (error: no answer)",
            self.token_requests.clone(),
        );
        registry.register_with_unit(
            "proxy_upstream_received",
            "Manifest and blob bytes received from upstreams",
            Unit::Bytes,
            self.upstream_bytes.clone(),
        );
        registry.register_with_unit(
            "proxy_cache",
            "Bytes the cached images of each capped upstream take, as the last collection counted them",
            Unit::Bytes,
            self.cache_bytes.clone(),
        );
        registry.register_with_unit(
            "proxy_cache_max",
            "The cap on what is cached from each capped upstream",
            Unit::Bytes,
            self.cache_max_bytes.clone(),
        );
        registry.register(
            "proxy_evicted_images",
            "Cached images evicted because their upstream's cache was over its cap",
            self.evicted_images.clone(),
        );
        registry.register_with_unit(
            "proxy_evicted",
            "Bytes that only evicted images referred to",
            Unit::Bytes,
            self.evicted_bytes.clone(),
        );
    }

    /// Records what a collection counted and evicted for one upstream.
    pub fn collected(&self, report: &CacheReport) {
        let labels = UpstreamLabels {
            upstream: report.upstream.clone(),
        };
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.cache_bytes
            .get_or_create(&labels)
            .set(gauge(report.bytes));
        self.cache_max_bytes
            .get_or_create(&labels)
            .set(gauge(report.max_size));
        self.evicted_images
            .get_or_create(&labels)
            .inc_by(report.images_evicted);
        self.evicted_bytes
            .get_or_create(&labels)
            .inc_by(report.bytes_evicted);
    }

    pub fn served(&self, upstream: &str, kind: Kind, status: &CacheStatus) {
        self.served
            .get_or_create(&ServeLabels {
                upstream: upstream.to_owned(),
                kind: kind.label(),
                result: status.label(),
            })
            .inc();
    }

    pub fn coalesced(&self, upstream: &str, kind: Kind) {
        self.coalesced
            .get_or_create(&KindLabels {
                upstream: upstream.to_owned(),
                kind: kind.label(),
            })
            .inc();
    }

    pub fn upstream_response(&self, upstream: &str, response: Option<&reqwest::Response>) {
        self.upstream_requests
            .get_or_create(&StatusLabels {
                upstream: upstream.to_owned(),
                status: status_label(response),
            })
            .inc();
    }

    pub fn token_request(&self, upstream: &str, response: Option<&reqwest::Response>) {
        self.token_requests
            .get_or_create(&StatusLabels {
                upstream: upstream.to_owned(),
                status: status_label(response),
            })
            .inc();
    }

    pub fn received(&self, upstream: &str, bytes: u64) {
        self.upstream_bytes
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_owned(),
            })
            .inc_by(bytes);
    }
}
