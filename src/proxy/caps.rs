//! Size caps of the cached upstreams. The store evicts (storage/evict.rs)
//! during a collection, whether the GC CronJob asked for it or the registry
//! did itself (`registry::admin::keep_caches`). Each capped upstream keeps a
//! running count of its bytes, set by the last collection (plus what was
//! fetched while it ran) and raised by each blob and manifest fetched since,
//! and asks for a collection when:
//! * no collection has counted it since the start;
//! * the count passes the cap, or, when the last collection could not get
//!   under it (every image left was pulled within the protected window),
//!   passes the count by a tenth of the cap more;
//! * the first image the last collection had to keep leaves the window.

use crate::storage::{CacheLimit, CacheReport};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};
use tokio::sync::Notify;

pub struct Cap {
    pub limit: CacheLimit,
    /// Bytes its images take, as far as this process knows.
    bytes: AtomicU64,
    /// A count past this asks for a collection.
    wake_above: AtomicU64,
    /// Whether a collection has counted it since the start.
    counted: AtomicBool,
    /// Every byte fetched since the start, to tell what came during a collection.
    fetched: AtomicU64,
    /// When an image the last collection had to keep may go.
    recheck_at: Mutex<Option<Instant>>,
    over_cap: Arc<Notify>,
}

impl Cap {
    pub fn new(limit: CacheLimit, over_cap: Arc<Notify>) -> Cap {
        Cap {
            limit,
            bytes: AtomicU64::new(0),
            wake_above: AtomicU64::new(0),
            counted: AtomicBool::new(false),
            fetched: AtomicU64::new(0),
            recheck_at: Mutex::new(None),
            over_cap,
        }
    }

    /// Counts `size` more bytes stored from this upstream.
    pub fn stored(&self, size: u64) {
        self.fetched.fetch_add(size, Ordering::Relaxed);
        let add = |b: u64| Some(b.saturating_add(size));
        let before = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, add)
            .unwrap_or_default();
        if before.saturating_add(size) > self.wake_above.load(Ordering::Relaxed) {
            self.over_cap.notify_one();
        }
    }

    /// The running total of bytes fetched, taken before a collection starts.
    pub fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    /// Takes what a collection that started when [`Cap::fetched`] said
    /// `fetched_before` counted; what was fetched while it ran is added.
    pub fn collected(&self, report: &CacheReport, fetched_before: u64) {
        let since = self.fetched().saturating_sub(fetched_before);
        self.bytes
            .store(report.bytes.saturating_add(since), Ordering::Relaxed);
        let max = self.limit.max_size;
        let above = if report.bytes > max {
            report.bytes.saturating_add(max / 10)
        } else {
            max
        };
        self.wake_above.store(above, Ordering::Relaxed);
        self.counted.store(true, Ordering::Relaxed);
        let recheck = report.evictable_at.map(|at| {
            let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
            Instant::now() + wait
        });
        *self.recheck_at.lock().unwrap_or_else(|e| e.into_inner()) = recheck;
    }

    /// Whether a collection is due for this cap.
    pub fn due(&self) -> bool {
        !self.counted.load(Ordering::Relaxed)
            || self.bytes.load(Ordering::Relaxed) > self.wake_above.load(Ordering::Relaxed)
            || self.recheck_at().is_some_and(|at| at <= Instant::now())
    }

    pub fn recheck_at(&self) -> Option<Instant> {
        *self.recheck_at.lock().unwrap_or_else(|e| e.into_inner())
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

    fn report(bytes: u64) -> CacheReport {
        CacheReport {
            upstream: "docker.io".into(),
            bytes,
            max_size: 1000,
            ..CacheReport::default()
        }
    }

    #[test]
    fn a_collection_is_asked_for_past_the_cap_and_not_for_every_fetch_after() {
        let notify = Arc::new(Notify::new());
        let cap = Cap::new(
            CacheLimit {
                upstream: "docker.io".into(),
                max_size: 1000,
                keep_pulled: Duration::from_secs(60),
            },
            notify.clone(),
        );
        // Nothing counted yet: due, and the first fetch says so.
        assert!(cap.due());
        cap.stored(1);
        assert!(woken(&notify));
        assert_eq!(cap.bytes(), None);
        cap.collected(&report(900), cap.fetched());
        assert!(!cap.due());
        cap.stored(100);
        assert!(
            !woken(&notify) && !cap.due(),
            "1000 bytes is not over a cap of 1000"
        );
        cap.stored(1);
        assert!(woken(&notify) && cap.due());
        // Left over the cap: due again only after a tenth more.
        let before = cap.fetched();
        cap.stored(40); // fetched while the collection ran: still counted
        assert!(woken(&notify)); // (over the old count: the collector's loop looks at due())
        cap.collected(&report(1500), before);
        assert_eq!(cap.bytes(), Some(1540));
        cap.stored(59);
        assert!(!woken(&notify) && !cap.due());
        cap.stored(2);
        assert!(woken(&notify) && cap.due());
    }

    #[test]
    fn an_image_leaving_the_window_makes_a_collection_due() {
        let cap = Cap::new(
            CacheLimit {
                upstream: "docker.io".into(),
                max_size: 1000,
                keep_pulled: Duration::from_secs(60),
            },
            Arc::new(Notify::new()),
        );
        let mut kept = report(1500);
        kept.evictable_at = Some(SystemTime::now() + Duration::from_secs(3600));
        cap.collected(&kept, cap.fetched());
        assert!(!cap.due());
        assert!(cap.recheck_at().unwrap() > Instant::now() + Duration::from_secs(3500));
        kept.evictable_at = Some(SystemTime::now() - Duration::from_secs(1));
        cap.collected(&kept, cap.fetched());
        assert!(cap.due());
    }
}
