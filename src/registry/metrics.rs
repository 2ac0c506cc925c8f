//! Prometheus metrics of the registry, served at `GET /metrics` in the text
//! format.
//!
//! Requests are counted where they enter and leave the server (`server.rs`), by
//! method, route template and status: a label never holds a repository name or
//! a digest, so the number of series stays bounded whatever clients send. Body
//! bytes are counted as they stream, both ways. Storage figures come from the
//! store's running counts, never from a walk of the disk.

use super::endpoint::Endpoint;
use crate::proxy::ProxyMetrics;
use crate::storage::{GcReport, ScrubReport, UsageSnapshot};
use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use warp::http::{Method, StatusCode};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of the registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily<RouteLabels>,
    received: Counter,
    sent: Counter,
    pulls: Family<KindLabels, Counter>,
    pushes: Family<KindLabels, Counter>,
    auth_failures: Family<ReasonLabels, Counter>,
    uploads_in_progress: Gauge,
    storage_bytes: Gauge,
    storage_blobs: Gauge,
    gc_runs: Family<ResultLabels, Counter>,
    gc_duration: Histogram,
    gc_bytes_freed: Counter,
    gc_blobs_deleted: Counter,
    gc_uploads_purged: Counter,
    scrub_runs: Family<ResultLabels, Counter>,
    scrub_corrupt: Gauge,
    scrub_errors: Gauge,
    scrub_quarantined: Counter,
    scrub_blobs: Counter,
    scrub_bytes: Counter,
    scrub_last_run: Gauge,
    scrub_duration: Gauge<f64, AtomicU64>,
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 26 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("berth");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route template and status",
            requests.clone(),
        );
        let duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to its response headers",
            Unit::Seconds,
            duration.clone(),
        );
        let received = Counter::default();
        registry.register_with_unit(
            "http_received",
            "Request body bytes received",
            Unit::Bytes,
            received.clone(),
        );
        let sent = Counter::default();
        registry.register_with_unit(
            "http_sent",
            "Response body bytes sent",
            Unit::Bytes,
            sent.clone(),
        );
        let pulls = Family::<KindLabels, Counter>::default();
        registry.register("pulls", "Manifests and blobs served (GET)", pulls.clone());
        let pushes = Family::<KindLabels, Counter>::default();
        registry.register(
            "pushes",
            "Manifests and blobs stored or mounted",
            pushes.clone(),
        );
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Refused requests: bad_credentials (401 with credentials), denied (403), throttled (429)",
            auth_failures.clone(),
        );
        let uploads_in_progress = Gauge::default();
        registry.register(
            "uploads_in_progress",
            "Upload sessions started and not yet finished, cancelled or purged",
            uploads_in_progress.clone(),
        );
        let storage_bytes = Gauge::default();
        registry.register_with_unit(
            "storage",
            "Bytes of all stored blobs, each counted once",
            Unit::Bytes,
            storage_bytes.clone(),
        );
        let storage_blobs = Gauge::default();
        registry.register("storage_blobs", "Stored blobs", storage_blobs.clone());
        let gc_runs = Family::<ResultLabels, Counter>::default();
        registry.register("gc_runs", "Garbage collections by result", gc_runs.clone());
        let gc_duration = latency_histogram();
        registry.register_with_unit(
            "gc_duration",
            "Duration of garbage collections",
            Unit::Seconds,
            gc_duration.clone(),
        );
        let gc_bytes_freed = Counter::default();
        registry.register_with_unit(
            "gc_freed",
            "Bytes freed by garbage collection",
            Unit::Bytes,
            gc_bytes_freed.clone(),
        );
        let gc_blobs_deleted = Counter::default();
        registry.register(
            "gc_blobs_deleted",
            "Blobs deleted by garbage collection",
            gc_blobs_deleted.clone(),
        );
        let gc_uploads_purged = Counter::default();
        registry.register(
            "gc_uploads_purged",
            "Idle upload sessions purged by garbage collection",
            gc_uploads_purged.clone(),
        );
        let scrub_runs = Family::<ResultLabels, Counter>::default();
        registry.register("scrub_runs", "Scrubs by result", scrub_runs.clone());
        let scrub_corrupt = Gauge::default();
        registry.register(
            "scrub_corrupt_blobs",
            "Blobs whose bytes failed their digest in the last scrub",
            scrub_corrupt.clone(),
        );
        let scrub_errors = Gauge::default();
        registry.register(
            "scrub_unreadable_blobs",
            "Blobs the last scrub could not read or move aside",
            scrub_errors.clone(),
        );
        let scrub_quarantined = Counter::default();
        registry.register(
            "scrub_quarantined_blobs",
            "Corrupt blobs moved to quarantine/ by scrubs",
            scrub_quarantined.clone(),
        );
        let scrub_blobs = Counter::default();
        registry.register(
            "scrub_verified_blobs",
            "Blobs read and checked against their digest by scrubs",
            scrub_blobs.clone(),
        );
        let scrub_bytes = Counter::default();
        registry.register_with_unit(
            "scrub_verified",
            "Bytes read and checked against their digest by scrubs",
            Unit::Bytes,
            scrub_bytes.clone(),
        );
        let scrub_last_run = Gauge::default();
        registry.register_with_unit(
            "scrub_last_run_timestamp",
            "When the last scrub that ran to its end ended (Unix time)",
            Unit::Seconds,
            scrub_last_run.clone(),
        );
        let scrub_duration = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "scrub_last_run_duration",
            "How long the last scrub that ran to its end took",
            Unit::Seconds,
            scrub_duration.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            received,
            sent,
            pulls,
            pushes,
            auth_failures,
            uploads_in_progress,
            storage_bytes,
            storage_blobs,
            gc_runs,
            gc_duration,
            gc_bytes_freed,
            gc_blobs_deleted,
            gc_uploads_purged,
            scrub_runs,
            scrub_corrupt,
            scrub_errors,
            scrub_quarantined,
            scrub_blobs,
            scrub_bytes,
            scrub_last_run,
            scrub_duration,
        }
    }
}

impl Metrics {
    /// The registry's metrics with the pull-through cache's among them.
    pub fn with_proxy(proxy: &ProxyMetrics) -> Metrics {
        let mut metrics = Metrics::default();
        proxy.register(&mut metrics.registry);
        metrics
    }

    /// Records a request once its response headers are ready.
    pub fn request(
        &self,
        method: &Method,
        endpoint: Endpoint,
        status: StatusCode,
        had_credentials: bool,
        elapsed: Duration,
    ) {
        let code = status.as_u16();
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: endpoint.template().to_owned(),
                status: code,
            })
            .inc();
        self.duration
            .get_or_create(&RouteLabels {
                method: method.to_string(),
                route: endpoint.template().to_owned(),
            })
            .observe(elapsed.as_secs_f64());
        let is = |m: &Method, e: Endpoint, codes: &[u16]| {
            method == m && endpoint == e && codes.contains(&code)
        };
        if is(&Method::GET, Endpoint::Manifest, &[200]) {
            self.pulls
                .get_or_create(&KindLabels { kind: "manifest" })
                .inc();
        } else if is(&Method::GET, Endpoint::Blob, &[200, 206]) {
            self.pulls.get_or_create(&KindLabels { kind: "blob" }).inc();
        } else if is(&Method::PUT, Endpoint::Manifest, &[201]) {
            self.pushes
                .get_or_create(&KindLabels { kind: "manifest" })
                .inc();
        } else if is(&Method::POST, Endpoint::UploadStart, &[201])
            || is(&Method::PUT, Endpoint::Upload, &[201])
        {
            self.pushes
                .get_or_create(&KindLabels { kind: "blob" })
                .inc();
        }
        let reason = match code {
            401 if had_credentials => Some("bad_credentials"),
            403 => Some("denied"),
            429 => Some("throttled"),
            _ => None,
        };
        if let Some(reason) = reason {
            self.auth_failures
                .get_or_create(&ReasonLabels { reason })
                .inc();
        }
    }

    /// Records a garbage collection (a dry run frees nothing, so it counts no bytes).
    pub fn gc(&self, result: Result<&GcReport, ()>, elapsed: Duration) {
        self.gc_duration.observe(elapsed.as_secs_f64());
        let label = match result {
            Ok(report) if report.dry_run => "dry_run",
            Ok(report) => {
                self.gc_bytes_freed.inc_by(report.bytes_freed);
                self.gc_blobs_deleted.inc_by(report.blobs_deleted);
                self.gc_uploads_purged.inc_by(report.uploads_purged);
                "ok"
            }
            Err(()) => "error",
        };
        self.gc_runs
            .get_or_create(&ResultLabels { result: label })
            .inc();
    }

    /// Records a scrub. The gauges say what the last one that ran to its end
    /// found, so an alert on `berth_scrub_corrupt_blobs > 0` clears once a
    /// scrub after the heal finds nothing.
    pub fn scrub(&self, result: Result<&ScrubReport, ()>, elapsed: Duration) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let label = match result {
            Ok(report) => {
                let moved = report.corrupt.iter().filter(|c| c.moved_to.is_some());
                self.scrub_corrupt.set(gauge(report.corrupt.len()));
                self.scrub_errors.set(gauge(report.errors.len()));
                self.scrub_quarantined.inc_by(moved.count() as u64);
                self.scrub_blobs.inc_by(report.blobs_checked);
                self.scrub_bytes.inc_by(report.bytes_checked);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                self.scrub_last_run
                    .set(i64::try_from(now.as_secs()).unwrap_or(i64::MAX));
                self.scrub_duration.set(elapsed.as_secs_f64());
                "ok"
            }
            Err(()) => "error",
        };
        self.scrub_runs
            .get_or_create(&ResultLabels { result: label })
            .inc();
    }

    /// The text exposition, with the store's current figures.
    pub fn encode(&self, usage: UsageSnapshot) -> String {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.storage_bytes.set(gauge(usage.blob_bytes));
        self.storage_blobs.set(gauge(usage.blobs));
        self.uploads_in_progress.set(gauge(usage.uploads));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Wraps a body so that its bytes are added to `received` as they arrive.
    pub fn count_received<B>(&self, body: B) -> Counted<B> {
        Counted::new(body, self.received.clone())
    }

    /// Wraps a body so that its bytes are added to `sent` as they leave.
    pub fn count_sent<B>(&self, body: B) -> Counted<B> {
        Counted::new(body, self.sent.clone())
    }
}

/// A body that adds the bytes of each data frame to a counter.
pub struct Counted<B> {
    inner: B,
    counter: Counter,
}

impl<B> Counted<B> {
    pub fn new(inner: B, counter: Counter) -> Counted<B> {
        Counted { inner, counter }
    }
}

impl<B: Body + Unpin> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.counter.inc_by(data.remaining() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
