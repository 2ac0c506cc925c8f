//! When each manifest of a mirrored repository was last pulled, for the
//! pull-through cache's eviction (evict.rs): the modification time of an empty
//! file, `_pulled/<alg>/<hex>`, set at most once per interval, so a busy image
//! costs one small write an interval and not one per pull.
//!
//! The record is a hint, not stored content: it is not fsynced, and a crash
//! that loses it makes the image look as old as its last record (or as its
//! manifest link, when there is none), so at worst it is evicted a little
//! earlier than it would have been. Nothing served depends on it.

use super::{Result, Store, paths};
use crate::oci::{Digest, RepoName};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Records older than this are dropped from memory once it holds many: no
/// interval is longer.
const LONGEST_INTERVAL: Duration = Duration::from_secs(3600);

/// Entries of [`Recorded`] past which old ones are pruned.
const PRUNE_ABOVE: usize = 4096;

/// How often a pull of one manifest is written down, for images kept at
/// least `keep_pulled` after their last pull: often enough that the record
/// is never more than a small part of that window behind.
pub fn record_interval(keep_pulled: Duration) -> Duration {
    (keep_pulled / 8).min(LONGEST_INTERVAL)
}

/// When this process last wrote each pull record.
#[derive(Default)]
pub(super) struct Recorded(Mutex<HashMap<(RepoName, Digest), Instant>>);

impl Recorded {
    /// Whether a pull now needs writing down; if so, counts it as written.
    fn due(&self, name: &RepoName, digest: &Digest, interval: Duration) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let key = (name.clone(), digest.clone());
        if map.get(&key).is_some_and(|at| at.elapsed() < interval) {
            return false;
        }
        if map.len() >= PRUNE_ABOVE {
            map.retain(|_, at| at.elapsed() < LONGEST_INTERVAL);
        }
        map.insert(key, Instant::now());
        true
    }

    pub(super) fn forget(&self, name: &RepoName, digest: &Digest) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&(name.clone(), digest.clone()));
    }
}

impl Store {
    /// Writes down that the manifest `digest` of `name` was just pulled,
    /// unless this process did less than `interval` ago.
    pub async fn record_pull(
        &self,
        name: &RepoName,
        digest: &Digest,
        interval: Duration,
    ) -> Result<()> {
        if !self.inner.pulls.due(name, digest, interval) {
            return Ok(());
        }
        let key = paths::pulled(name, digest);
        self.blocking(move |s| Ok(s.driver().touch(&key)?)).await
    }

    /// When the manifest `digest` of `name` was last pulled, as far as the
    /// records say, or stored, whichever is later; `None` when it is gone.
    pub(super) fn pulled_at(&self, name: &RepoName, digest: &Digest) -> Option<SystemTime> {
        let modified = |key| Some(self.driver().stat(&key).ok()??.modified);
        let stored = modified(paths::manifest_link(name, digest))?;
        Some(match modified(paths::pulled(name, digest)) {
            Some(pulled) => pulled.max(stored),
            None => stored,
        })
    }

    /// Drops the pull record of a manifest being deleted.
    pub(super) fn forget_pull(&self, name: &RepoName, digest: &Digest) -> Result<()> {
        self.inner.pulls.forget(name, digest);
        self.driver().remove(&paths::pulled(name, digest))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_is_written_down_once_per_interval() {
        let recorded = Recorded::default();
        let name: RepoName = "docker.io/library/alpine".parse().unwrap();
        let digest = Digest::sha256(b"m");
        let hour = Duration::from_secs(3600);
        assert!(recorded.due(&name, &digest, hour));
        assert!(!recorded.due(&name, &digest, hour));
        // A zero interval writes every pull down.
        assert!(recorded.due(&name, &digest, Duration::ZERO));
        recorded.forget(&name, &digest);
        assert!(recorded.due(&name, &digest, hour));
        assert_eq!(
            record_interval(Duration::from_secs(80)),
            Duration::from_secs(10)
        );
        assert_eq!(record_interval(Duration::from_secs(7 * 86400)), hour);
    }
}
