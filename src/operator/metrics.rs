//! The operator's Prometheus metrics (prometheus-client): reconciles, failures by
//! error kind, and how long a pass takes. Served as text on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub error: String,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub failures: Family<FailureLabels, Counter>,
    pub duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let reconciles = Counter::default();
        let failures = Family::<FailureLabels, Counter>::default();
        // 5 ms to about 40 s: a pass is a dozen API calls, plus bcrypt once.
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let mut registry = Registry::with_prefix("berth_operator");
        registry.register("reconciles", "Reconcile passes started", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconcile passes that failed and were retried, by error kind",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconcile pass took",
            duration.clone(),
        );
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
        }
    }
}

/// Observes a pass's duration when dropped, however the pass ends.
pub struct Timer<'a> {
    histogram: &'a Histogram,
    start: Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

impl Metrics {
    /// Counts a pass and times it until the returned guard drops.
    pub fn pass(&self) -> Timer<'_> {
        self.reconciles.inc();
        Timer {
            histogram: &self.duration,
            start: Instant::now(),
        }
    }

    pub fn failure(&self, kind: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                error: kind.to_string(),
            })
            .inc();
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_passes_failures_and_durations() {
        let metrics = Metrics::default();
        drop(metrics.pass());
        drop(metrics.pass());
        metrics.failure("api");
        let text = metrics.encode();
        assert!(text.contains("berth_operator_reconciles_total 2"), "{text}");
        assert!(
            text.contains("berth_operator_reconcile_failures_total{error=\"api\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("berth_operator_reconcile_duration_seconds_count 2"),
            "{text}"
        );
    }
}
