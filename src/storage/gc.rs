//! Online garbage collection: apply retention rules, optionally drop untagged
//! manifests, mark every blob a manifest refers to, sweep the rest, purge
//! abandoned uploads. It runs while pushes and pulls go on: there is no
//! read-only window.
//!
//! # Why a push can never lose a blob to a collection
//!
//! * **Grace period.** Only blobs, manifests and tags older than the grace period
//!   (1 h by default) are deleted. A blob uploaded for a push in progress, whose
//!   manifest is not there yet, is young. Finishing an upload or a mount of a blob
//!   that is already stored refreshes its time, so re-pushing an old unreferenced
//!   layer protects it again.
//! * **Commit lock and pins.** Committing a blob (upload or mount) or a manifest
//!   holds the store's commit lock for reading; a manifest PUT checks that its
//!   blobs exist and commits under it, and while a collection runs it also pins
//!   every digest it refers to. The collection starts its pin set under the lock
//!   for writing, so a commit in flight finishes before the mark reads the
//!   manifests, and every later one is pinned. Each deletion takes the lock for
//!   writing and looks again, under it, at the pins and at the file's age. So for
//!   any manifest PUT either its check came first (its blobs are marked or pinned
//!   and stay) or the deletion did (the check fails with MANIFEST_BLOB_UNKNOWN
//!   and the client uploads again): an accepted manifest never points at a swept
//!   blob.
//! * **Marking is lenient.** Every string under a `"digest"` key anywhere in a
//!   stored manifest counts as a reference, whether or not today's parser accepts
//!   the manifest; a storage error while marking stops the run before anything
//!   is swept.
//! * **Restarts.** A collection lives in the process: a restart ends it, and the
//!   pins with it, which is safe because no deletion runs without them. Each
//!   deletion is a few unlinks, repository links before the blob, so a run cut
//!   short leaves at worst a link to a blob that is gone, which reads as "blob
//!   unknown", is never served, and makes a push upload the blob again. The next
//!   run finishes the work.

use super::blobs::digests_in;
use super::driver::Driver;
use super::evict::{CacheLimit, CacheReport};
use super::paths::{self, Key};
use super::shared_gc::GcLock;
use super::{Result, Store, StoreError};
use crate::oci::manifest::Kind;
use crate::oci::{Algorithm, Digest, Manifest, RepoName, Tag};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime};

/// What a collection may do.
#[derive(Clone, Debug)]
pub struct GcOptions {
    /// Count what would go, delete nothing.
    pub dry_run: bool,
    /// Also delete manifests no tag reaches (directly, as an index's child or as
    /// the subject of a reached manifest), once older than the grace period.
    pub delete_untagged: bool,
    /// Blobs, manifests and tags younger than this are kept whatever happens.
    pub grace: Duration,
    /// Upload sessions idle longer than this are purged.
    pub upload_max_age: Duration,
    /// Tag retention, per repository pattern; the first matching rule applies.
    pub retention: Vec<RetentionRule>,
    /// Caps on what the pull-through cache keeps from each upstream (evict.rs).
    pub caches: Vec<CacheLimit>,
}

impl Default for GcOptions {
    fn default() -> GcOptions {
        GcOptions {
            dry_run: false,
            delete_untagged: false,
            grace: Duration::from_secs(3600),
            upload_max_age: Duration::from_secs(24 * 3600),
            retention: Vec::new(),
            caches: Vec::new(),
        }
    }
}

/// In repositories matching `repositories`, a tag is deleted when it is neither
/// among the `keep_last` newest nor younger than `keep_within` (a limit that is
/// not set keeps nothing by itself). A repository under a rule also loses the
/// manifests its deleted tags left unreachable, as with `delete_untagged`.
#[derive(Clone, Debug)]
pub struct RetentionRule {
    pub repositories: glob::Pattern,
    pub keep_last: Option<usize>,
    pub keep_within: Option<Duration>,
}

/// What a collection did (or, dry, would do).
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct GcReport {
    pub dry_run: bool,
    pub blobs_deleted: u64,
    pub bytes_freed: u64,
    pub manifests_deleted: u64,
    pub tags_deleted: u64,
    pub uploads_purged: u64,
    pub duration_ms: u64,
    /// Each capped upstream of the pull-through cache.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub caches: Vec<CacheReport>,
}

/// Digests that manifests committed during a collection refer to (`None` when
/// no collection runs).
pub(super) type Pins = Option<HashSet<Digest>>;

/// Tags and manifests a dry run would have deleted, which the rest of the run
/// treats as gone (a real run deletes them, so it needs no such list).
#[derive(Default)]
pub(super) struct Doomed {
    pub(super) tags: HashSet<(RepoName, Tag)>,
    pub(super) manifests: HashSet<(RepoName, Digest)>,
}

/// Ends a collection (and its pins) however it ends.
struct Running<'a>(&'a Store);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let lock = self
            .0
            .inner
            .gc_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let (Some(lock), Some(driver)) = (lock, self.0.object()) {
            lock.release(driver);
        }
        *self.0.inner.pins.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.0.inner.gc_running.store(false, Ordering::SeqCst);
    }
}

/// How long ago `key` was last modified; `None` when it is gone.
pub(super) fn age(driver: &dyn Driver, key: &Key, now: SystemTime) -> Option<Duration> {
    let modified = driver.stat(key).ok()??.modified;
    Some(now.duration_since(modified).unwrap_or_default())
}

fn older_than(driver: &dyn Driver, key: &Key, now: SystemTime, limit: Duration) -> bool {
    age(driver, key, now).is_some_and(|a| a >= limit)
}

/// Every string under a `"digest"` key, at any depth of a JSON document.
pub(super) fn referenced_digests(value: &serde_json::Value, out: &mut HashSet<Digest>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match v {
                    serde_json::Value::String(s) if key == "digest" => {
                        if let Ok(digest) = s.parse() {
                            out.insert(digest);
                        }
                    }
                    _ => referenced_digests(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                referenced_digests(v, out);
            }
        }
        _ => {}
    }
}

impl Store {
    /// Runs one collection; `Err(GcRunning)` if one is already under way.
    pub async fn collect(&self, options: GcOptions) -> Result<GcReport> {
        if self.inner.gc_running.swap(true, Ordering::SeqCst) {
            return Err(StoreError::GcRunning);
        }
        self.blocking(move |s| {
            let _running = Running(s);
            // On a shared bucket, one collection among all the replicas.
            if let Some(driver) = s.object() {
                let lock = GcLock::take(driver)?;
                *s.inner.gc_lock.lock().unwrap_or_else(|e| e.into_inner()) = Some(lock);
            }
            {
                // Under the commit lock: a commit in flight finishes first, so the
                // mark sees it; every later commit pins what it refers to.
                let _lock = s.commit_lock();
                *s.inner.pins.lock().unwrap_or_else(|e| e.into_inner()) = Some(HashSet::new());
            }
            s.collect_sync(&options)
        })
        .await
    }

    fn collect_sync(&self, options: &GcOptions) -> Result<GcReport> {
        let started = Instant::now();
        let now = SystemTime::now();
        let mut report = GcReport {
            dry_run: options.dry_run,
            ..GcReport::default()
        };
        // A dry run counts the blobs its deletions would free.
        let mut doomed = Doomed::default();
        for limit in &options.caches {
            let mut cache = CacheReport {
                upstream: limit.upstream.clone(),
                max_size: limit.max_size,
                ..CacheReport::default()
            };
            report.manifests_deleted +=
                self.evict(limit, options.dry_run, now, &mut doomed, &mut cache)?;
            report.caches.push(cache);
        }
        let repositories = self.repositories_sync()?;
        for repo in &repositories {
            let rule = options
                .retention
                .iter()
                .find(|r| r.repositories.matches(repo.as_str()));
            if let Some(rule) = rule {
                report.tags_deleted +=
                    self.apply_retention(repo, rule, options, now, &mut doomed)?;
            }
            if options.delete_untagged || rule.is_some() {
                report.manifests_deleted +=
                    self.delete_untagged(repo, options, now, &mut doomed)?;
            }
        }
        // Read again: on a shared bucket, repositories made since the start
        // of the run must be marked (shared_gc.rs counts from here).
        let marking = Instant::now();
        let repositories = self.repositories_sync()?;
        let marked = self.mark(&repositories, &doomed)?;
        match self.object() {
            Some(driver) => {
                self.sweep_shared(driver, &marked, marking, options, now, &mut report)?;
            }
            None => self.sweep(&repositories, &marked, options, now, &mut report)?,
        }
        report.uploads_purged = self.purge_uploads(options, now)?;
        report.duration_ms = started.elapsed().as_millis() as u64;
        tracing::info!(?report, "garbage collection done");
        Ok(report)
    }

    /// Held for reading while a blob or manifest is committed (see the module doc).
    pub(super) fn commit_guard(&self) -> RwLockReadGuard<'_, ()> {
        self.inner
            .commit_lock
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Held for writing by each deletion a collection makes (and by each move
    /// of a scrub, see scrub.rs).
    pub(super) fn commit_lock(&self) -> RwLockWriteGuard<'_, ()> {
        self.inner
            .commit_lock
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Pins what a manifest being committed refers to, if a collection runs.
    pub(super) fn pin(&self, digests: impl IntoIterator<Item = Digest>) {
        let mut pins = self.inner.pins.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pins) = pins.as_mut() {
            pins.extend(digests);
        }
    }

    pub(super) fn pinned(&self, digest: &Digest) -> bool {
        let pins = self.inner.pins.lock().unwrap_or_else(|e| e.into_inner());
        pins.as_ref().is_some_and(|p| p.contains(digest))
    }

    /// The manifests of `repo`: digest and stored bytes, `None` for one whose
    /// bytes are missing or corrupt. Any other storage error stops the run.
    pub(super) fn manifests_of(
        &self,
        repo: &RepoName,
    ) -> Result<Vec<(Digest, Option<super::StoredManifest>)>> {
        let mut found = Vec::new();
        for algorithm in Algorithm::ALL {
            let dir = paths::manifest_links(repo, algorithm);
            for digest in digests_in(self.driver(), &dir, algorithm)? {
                let stored = match self.read_manifest(repo, &digest) {
                    Ok(stored) => Some(stored),
                    Err(StoreError::ManifestUnknown | StoreError::NameUnknown) => None,
                    Err(e) => return Err(e),
                };
                found.push((digest, stored));
            }
        }
        Ok(found)
    }

    /// Every digest a manifest of any repository is or refers to.
    fn mark(&self, repositories: &[RepoName], doomed: &Doomed) -> Result<HashSet<Digest>> {
        let mut marked = HashSet::new();
        for repo in repositories {
            self.renew_gc_lock()?;
            for (digest, stored) in self.manifests_of(repo)? {
                if doomed.manifests.contains(&(repo.clone(), digest.clone())) {
                    continue;
                }
                if let Some(json) = stored.and_then(|m| serde_json::from_slice(&m.body).ok()) {
                    referenced_digests(&json, &mut marked);
                }
                marked.insert(digest);
            }
        }
        Ok(marked)
    }

    /// Deletes the tags of `repo` that `rule` does not keep; returns how many.
    fn apply_retention(
        &self,
        repo: &RepoName,
        rule: &RetentionRule,
        options: &GcOptions,
        now: SystemTime,
        doomed: &mut Doomed,
    ) -> Result<u64> {
        let mut tags: Vec<(Tag, Duration)> = self
            .tags_sync(repo)?
            .into_iter()
            .filter_map(|tag| {
                let age = age(self.driver(), &paths::tag(repo, &tag), now)?;
                Some((tag, age))
            })
            .collect();
        tags.sort_by_key(|(_, age)| *age);
        let mut deleted = 0;
        for (rank, (tag, tag_age)) in tags.iter().enumerate() {
            let kept = rule.keep_last.is_some_and(|n| rank < n)
                || rule.keep_within.is_some_and(|d| *tag_age < d)
                || *tag_age < options.grace;
            if kept {
                continue;
            }
            if options.dry_run {
                doomed.tags.insert((repo.clone(), tag.clone()));
                deleted += 1;
                continue;
            }
            let key = paths::tag(repo, tag);
            let _lock = self.commit_lock();
            let _stale = self.inner.cache.stale(repo);
            // A tag pushed again since we looked is young again.
            if older_than(self.driver(), &key, now, *tag_age) && self.collect_tag(repo, tag)? {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Deletes the manifests of `repo` that nothing tagged reaches; returns how many.
    fn delete_untagged(
        &self,
        repo: &RepoName,
        options: &GcOptions,
        now: SystemTime,
        doomed: &mut Doomed,
    ) -> Result<u64> {
        let manifests: HashMap<Digest, Option<Manifest>> = self
            .manifests_of(repo)?
            .into_iter()
            .map(|(digest, stored)| {
                let parsed =
                    stored.and_then(|m| Manifest::parse(Some(&m.media_type), &m.body).ok());
                (digest, parsed)
            })
            .collect();
        let mut kept: HashSet<Digest> = HashSet::new();
        for tag in self.tags_sync(repo)? {
            if doomed.tags.contains(&(repo.clone(), tag.clone())) {
                continue;
            }
            if let Ok(digest) = self.resolve_tag(repo, &tag) {
                kept.insert(digest);
            }
        }
        // Close over index children and referrers of kept manifests; one that
        // cannot be parsed is kept, since what it reaches is unknown.
        loop {
            let before = kept.len();
            for (digest, manifest) in &manifests {
                let Some(m) = manifest else {
                    kept.insert(digest.clone());
                    continue;
                };
                if kept.contains(digest) && m.kind == Kind::Index {
                    kept.extend(m.manifests.iter().map(|c| c.digest.clone()));
                }
                if m.subject.as_ref().is_some_and(|s| kept.contains(&s.digest)) {
                    kept.insert(digest.clone());
                }
            }
            if kept.len() == before {
                break;
            }
        }
        let mut deleted = 0;
        for digest in manifests.keys().filter(|d| !kept.contains(d)) {
            let link = paths::manifest_link(repo, digest);
            if !older_than(self.driver(), &link, now, options.grace) {
                continue;
            }
            if options.dry_run {
                // Not counted twice when eviction doomed it already.
                if doomed.manifests.insert((repo.clone(), digest.clone())) {
                    deleted += 1;
                }
                continue;
            }
            let _lock = self.commit_lock();
            if !self.pinned(digest) && self.collect_manifest(repo, digest)? {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Deletes the blobs nothing marked refers to, with their repository links.
    fn sweep(
        &self,
        repositories: &[RepoName],
        marked: &HashSet<Digest>,
        options: &GcOptions,
        now: SystemTime,
        report: &mut GcReport,
    ) -> Result<()> {
        let driver = self.driver();
        self.for_each_blob(|digest, key, meta| {
            let young = now.duration_since(meta.modified).unwrap_or_default() < options.grace;
            if marked.contains(&digest) || young {
                return Ok(());
            }
            let size = meta.size;
            if options.dry_run {
                report.blobs_deleted += 1;
                report.bytes_freed += size;
                return Ok(());
            }
            let _lock = self.commit_lock();
            // Looked at again under the lock: an upload or mount may have
            // refreshed the blob since, or a commit pinned it.
            if self.pinned(&digest) || !older_than(driver, &key, now, options.grace) {
                return Ok(());
            }
            // Its links go from every repository: no cached size may outlive them.
            let _stale = self.inner.cache.stale_all();
            for repo in repositories {
                driver.remove(&paths::blob_link(repo, &digest))?;
            }
            if driver.remove(&key)? {
                self.inner.usage.blob_removed(size);
                report.blobs_deleted += 1;
                report.bytes_freed += size;
            }
            Ok(())
        })
    }

    /// Removes upload sessions whose data has not changed for `upload_max_age`.
    fn purge_uploads(&self, options: &GcOptions, now: SystemTime) -> Result<u64> {
        let mut purged = 0;
        let driver = self.driver();
        let uploads = paths::uploads_dir();
        for name in driver.list(&uploads)? {
            let dir = uploads.child(&name);
            // Since its last write: the data file's time on a file system,
            // the newest object's in a bucket (its chunks); else the folder's.
            let mut newest = None::<SystemTime>;
            if self.object().is_some() {
                driver.walk(&dir, &mut |_, meta| {
                    newest = newest.max(Some(meta.modified));
                    Ok(())
                })?;
            }
            let idle = age(driver, &dir.child("data"), now)
                .or_else(|| newest.map(|t| now.duration_since(t).unwrap_or_default()))
                .or_else(|| age(driver, &dir, now))
                .unwrap_or_default();
            if idle < options.upload_max_age {
                continue;
            }
            if options.dry_run {
                purged += 1;
                continue;
            }
            match name.parse().ok() {
                Some(id) => {
                    if self.purge_session(id)? {
                        purged += 1;
                    }
                }
                // Not a session's name: nothing could be using it.
                None => {
                    match self.fs() {
                        Some(fs) => std::fs::remove_dir_all(fs.path(&dir))?,
                        None => {
                            driver.walk(&dir, &mut |key, _| Ok(driver.remove(&key).map(drop)?))?
                        }
                    }
                    self.inner.usage.upload_closed();
                    purged += 1;
                }
            }
        }
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    // The guard is held across awaits on purpose: it stands for a commit in flight.
    #[allow(clippy::await_holding_lock)]
    async fn a_second_collection_is_refused_while_one_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).await.unwrap();
        // A commit in flight holds the first collection at its start.
        let commit = store.commit_guard();
        let first = tokio::spawn({
            let store = store.clone();
            async move { store.collect(GcOptions::default()).await }
        });
        while !store.inner.gc_running.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        let second = store.collect(GcOptions::default()).await;
        assert!(matches!(second, Err(StoreError::GcRunning)), "{second:?}");
        drop(commit);
        first.await.unwrap().unwrap();
        // Once it is over, the next one runs.
        store.collect(GcOptions::default()).await.unwrap();
    }

    #[test]
    fn every_digest_key_counts_as_a_reference() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let c = format!("sha256:{}", "c".repeat(64));
        let doc = serde_json::json!({
            "config": {"digest": a},
            "layers": [{"digest": b, "annotations": {"x": "y"}}],
            "future": {"nested": [{"digest": c}]},
            "digest": "not-a-digest",
        });
        let mut out = HashSet::new();
        referenced_digests(&doc, &mut out);
        let expected: HashSet<Digest> = [a, b, c].iter().map(|d| d.parse().unwrap()).collect();
        assert_eq!(out, expected);
    }
}
