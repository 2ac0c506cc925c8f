//! A small in-memory cache of what pulls ask most: tag lookups, manifests, and
//! blob sizes (HEAD), so that a fleet pulling one image is answered without a
//! file read or a hop to the blocking pool.
//!
//! # Exactness
//!
//! A stale cache made distribution lose blobs (#1803: a re-push after GC was
//! skipped because a HEAD still said "exists"). So:
//!
//! * only what was read from disk is cached, never a negative answer, and
//!   additions on disk (a new link, a new blob) cannot make a positive entry wrong;
//! * every change that can make an entry wrong (a tag written or deleted, a
//!   manifest or blob link removed, a blob swept) invalidates, through
//!   [`Stale`], *after* the change is on disk, on success and on error alike: the
//!   repository's entries for a change in one repository, everything for a GC
//!   sweep;
//! * a reader that missed notes the generation before reading the disk and
//!   inserts only if no invalidation happened since, so an answer read before a
//!   change can never be inserted after it.
//!
//! Files changed behind the registry's back (by hand, or `berth gc --root` on
//! a running registry, which is refused by the docs) are not seen until restart.
//! A bucket is changed by every replica on it: there the cache holds nothing.

use super::StoredManifest;
use crate::oci::{Digest, RepoName, Tag};
use std::collections::HashMap;
use std::sync::Mutex;

/// Bytes of manifests kept at most; past it the cache starts over.
const MAX_BYTES: usize = 4 << 20;
/// Entries kept at most (tags, manifests and blob sizes together).
const MAX_ENTRIES: usize = 8192;
/// Manifests larger than this are read from disk each time.
const MAX_MANIFEST: usize = 256 << 10;

#[derive(Default)]
pub(super) struct Cache {
    state: Mutex<State>,
    /// Holds nothing: the store is shared with other processes, whose
    /// changes could not invalidate it.
    off: bool,
}

#[derive(Default)]
struct State {
    generation: u64,
    /// Changes made through this process, to each repository and to all at
    /// once: what the web UI keys its summaries of a repository by. Counted
    /// even when the cache holds nothing.
    changes: HashMap<RepoName, u64>,
    changes_all: u64,
    repos: HashMap<RepoName, Repo>,
    bytes: usize,
    entries: usize,
}

#[derive(Default)]
struct Repo {
    tags: HashMap<Tag, Digest>,
    manifests: HashMap<Digest, StoredManifest>,
    blobs: HashMap<Digest, u64>,
}

impl Cache {
    /// A cache that holds nothing (a bucket that replicas share).
    pub fn disabled() -> Cache {
        Cache {
            off: true,
            ..Cache::default()
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many changes this process made to `name` (including those to
    /// every repository at once); it only grows.
    pub fn changes(&self, name: &RepoName) -> u64 {
        let state = self.state();
        state.changes_all + state.changes.get(name).copied().unwrap_or(0)
    }

    /// The generation to pass to the `insert_*` calls that follow a disk read.
    pub fn generation(&self) -> u64 {
        self.state().generation
    }

    pub fn tag(&self, name: &RepoName, tag: &Tag) -> Option<Digest> {
        self.state().repos.get(name)?.tags.get(tag).cloned()
    }

    pub fn manifest(&self, name: &RepoName, digest: &Digest) -> Option<StoredManifest> {
        self.state().repos.get(name)?.manifests.get(digest).cloned()
    }

    pub fn blob_size(&self, name: &RepoName, digest: &Digest) -> Option<u64> {
        self.state().repos.get(name)?.blobs.get(digest).copied()
    }

    pub fn insert_tag(&self, generation: u64, name: &RepoName, tag: &Tag, digest: &Digest) {
        self.insert(generation, name, 0, |repo| {
            repo.tags.insert(tag.clone(), digest.clone()).is_none()
        });
    }

    pub fn insert_manifest(&self, generation: u64, name: &RepoName, manifest: &StoredManifest) {
        let size = manifest.body.len();
        if size > MAX_MANIFEST {
            return;
        }
        self.insert(generation, name, size, |repo| {
            repo.manifests
                .insert(manifest.digest.clone(), manifest.clone())
                .is_none()
        });
    }

    pub fn insert_blob_size(&self, generation: u64, name: &RepoName, digest: &Digest, size: u64) {
        self.insert(generation, name, 0, |repo| {
            repo.blobs.insert(digest.clone(), size).is_none()
        });
    }

    /// Inserts unless invalidated since `generation`; `add` says whether the
    /// entry is new. Past the budget the cache starts over: a cold read costs
    /// one file read, and a simple bound keeps memory small and predictable.
    fn insert(
        &self,
        generation: u64,
        name: &RepoName,
        bytes: usize,
        add: impl FnOnce(&mut Repo) -> bool,
    ) {
        if self.off {
            return;
        }
        let mut state = self.state();
        if state.generation != generation {
            return;
        }
        if state.entries >= MAX_ENTRIES || state.bytes + bytes > MAX_BYTES {
            state.repos.clear();
            state.entries = 0;
            state.bytes = 0;
        }
        let repo = state.repos.entry(name.clone()).or_default();
        if add(repo) {
            state.entries += 1;
            state.bytes += bytes;
        }
    }

    fn invalidate(&self, name: Option<&RepoName>) {
        let mut state = self.state();
        state.generation += 1;
        match name {
            Some(name) => *state.changes.entry(name.clone()).or_default() += 1,
            None => state.changes_all += 1,
        }
        match name {
            Some(name) => {
                if let Some(repo) = state.repos.remove(name) {
                    let bytes: usize = repo.manifests.values().map(|m| m.body.len()).sum();
                    let entries = repo.tags.len() + repo.manifests.len() + repo.blobs.len();
                    state.bytes -= bytes;
                    state.entries -= entries;
                }
            }
            None => {
                state.repos.clear();
                state.bytes = 0;
                state.entries = 0;
            }
        }
    }

    /// Invalidates `name`'s entries when dropped: take it before changing the
    /// repository on disk and hold it until the change is done.
    pub fn stale<'a>(&'a self, name: &RepoName) -> Stale<'a> {
        Stale {
            cache: self,
            name: Some(name.clone()),
        }
    }

    /// [`stale`](Self::stale) for a change that may touch any repository.
    pub fn stale_all(&self) -> Stale<'_> {
        Stale {
            cache: self,
            name: None,
        }
    }
}

/// Invalidates on drop, so that an early return or an error still does.
pub(super) struct Stale<'a> {
    cache: &'a Cache,
    name: Option<RepoName>,
}

impl Drop for Stale<'_> {
    fn drop(&mut self) {
        self.cache.invalidate(self.name.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn manifest(body: &'static [u8]) -> StoredManifest {
        StoredManifest {
            digest: Digest::sha256(body),
            media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
            body: Bytes::from_static(body),
        }
    }

    #[test]
    fn a_change_invalidates_its_repository_only() {
        let cache = Cache::default();
        let (a, b): (RepoName, RepoName) = ("a".parse().unwrap(), "b".parse().unwrap());
        let tag: Tag = "v1".parse().unwrap();
        let m = manifest(b"{}");
        let g = cache.generation();
        cache.insert_tag(g, &a, &tag, &m.digest);
        cache.insert_manifest(g, &a, &m);
        cache.insert_blob_size(g, &b, &m.digest, 2);
        assert_eq!(cache.tag(&a, &tag), Some(m.digest.clone()));
        drop(cache.stale(&a));
        assert_eq!(cache.tag(&a, &tag), None);
        assert!(cache.manifest(&a, &m.digest).is_none());
        assert_eq!(cache.blob_size(&b, &m.digest), Some(2));
        drop(cache.stale_all());
        assert_eq!(cache.blob_size(&b, &m.digest), None);
        let state = cache.state();
        assert_eq!((state.entries, state.bytes), (0, 0));
    }

    #[test]
    fn a_read_from_before_a_change_is_never_inserted_after_it() {
        let cache = Cache::default();
        let a: RepoName = "a".parse().unwrap();
        let m = manifest(b"{}");
        let before = cache.generation();
        // A reader read the disk here; then a change lands and invalidates.
        drop(cache.stale(&a));
        cache.insert_manifest(before, &a, &m);
        assert!(cache.manifest(&a, &m.digest).is_none());
        cache.insert_manifest(cache.generation(), &a, &m);
        assert!(cache.manifest(&a, &m.digest).is_some());
    }

    #[test]
    fn the_budget_bounds_memory() {
        let cache = Cache::default();
        let a: RepoName = "a".parse().unwrap();
        for i in 0..MAX_ENTRIES + 10 {
            let d = Digest::sha256(&i.to_le_bytes());
            cache.insert_blob_size(cache.generation(), &a, &d, 1);
        }
        assert!(cache.state().entries <= MAX_ENTRIES);
    }
}
