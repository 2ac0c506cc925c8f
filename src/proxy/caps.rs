//! Size caps of the cached upstreams. The store evicts (storage/evict.rs)
//! during a collection, whether the GC CronJob asked for it or the registry
//! did itself: each upstream keeps a running count of its bytes, set by the
//! last collection and raised by each blob it fetches, and wakes the
//! registry's collector (`registry::admin::keep_caches`) when it passes the cap.

use crate::storage::{CacheLimit, CacheReport};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::Notify;

pub struct Cap {
    pub limit: CacheLimit,
    /// Bytes its images take, as far as this process knows.
    bytes: AtomicU64,
    /// A count past this wakes the collector. Zero until a collection has
    /// counted: the first fetch after a start has one count the cache.
    wake_above: AtomicU64,
    /// Whether a collection has counted it since the start.
    counted: AtomicBool,
    over_cap: Arc<Notify>,
}

impl Cap {
    pub fn new(limit: CacheLimit, over_cap: Arc<Notify>) -> Cap {
        Cap {
            limit,
            bytes: AtomicU64::new(0),
            wake_above: AtomicU64::new(0),
            counted: AtomicBool::new(false),
            over_cap,
        }
    }

    /// Counts `size` more bytes stored from this upstream.
    pub fn stored(&self, size: u64) {
        let before = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_add(size))
            })
            .unwrap_or_default();
        if before.saturating_add(size) > self.wake_above.load(Ordering::Relaxed) {
            self.over_cap.notify_one();
        }
    }

    /// Takes what a collection counted. A cache it left over its cap (every
    /// image in it pulled within the protected window) wakes the collector
    /// again only once it has grown by a tenth of the cap, not with every
    /// fetch: nothing more could go until then, or until time passes, which
    /// the next scheduled collection sees.
    pub fn collected(&self, report: &CacheReport) {
        self.bytes.store(report.bytes, Ordering::Relaxed);
        let max = self.limit.max_size;
        let above = if report.bytes > max {
            report.bytes.saturating_add(max / 10)
        } else {
            max
        };
        self.wake_above.store(above, Ordering::Relaxed);
        self.counted.store(true, Ordering::Relaxed);
    }

    /// Bytes its images take; `None` until a collection has counted them.
    pub fn bytes(&self) -> Option<u64> {
        self.counted
            .load(Ordering::Relaxed)
            .then(|| self.bytes.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn woken(notify: &Notify) -> bool {
        let notified = notify.notified();
        tokio::pin!(notified);
        // A stored permit makes the first poll ready.
        futures_util::FutureExt::now_or_never(notified).is_some()
    }

    #[test]
    fn the_collector_is_woken_past_the_cap_and_not_for_every_fetch_after() {
        let notify = Arc::new(Notify::new());
        let cap = Cap::new(
            CacheLimit {
                upstream: "docker.io".into(),
                max_size: 1000,
                keep_pulled: Duration::from_secs(60),
            },
            notify.clone(),
        );
        // Nothing counted yet: the first fetch asks for a count.
        cap.stored(1);
        assert_eq!(cap.bytes(), None);
        assert!(woken(&notify));
        let report = |bytes| CacheReport {
            upstream: "docker.io".into(),
            bytes,
            max_size: 1000,
            ..CacheReport::default()
        };
        cap.collected(&report(900));
        cap.stored(100);
        assert!(!woken(&notify), "1000 bytes is not over a cap of 1000");
        cap.stored(1);
        assert!(woken(&notify));
        // Left over the cap: woken again only after a tenth more.
        cap.collected(&report(1500));
        cap.stored(99);
        assert!(!woken(&notify));
        cap.stored(2);
        assert!(woken(&notify));
        assert_eq!(cap.bytes(), Some(1601));
    }
}
