//! Blobs and the per-repository links that decide who may read them.

use super::driver::{Driver, Meta};
use super::object::ObjectDriver;
use super::paths::{self, Key};
use super::read::BlobContent;
use super::{Result, Store, StoreError, durable};
use crate::oci::{Algorithm, Digest, RepoName};
use bytes::Bytes;
use std::io;
use std::time::Duration;

/// How long a blob's signed URL lasts (as distribution's): long enough for a
/// slow client to fetch a large layer, short enough that a URL handed to one
/// client does not give lasting access.
pub const REDIRECT_LIFE: Duration = Duration::from_secs(20 * 60);

/// Parses the names in `dir` of `<hex>` entries as digests of `algorithm`;
/// other names (none that the store writes) are skipped.
pub(super) fn digests_in(
    driver: &dyn Driver,
    dir: &Key,
    algorithm: Algorithm,
) -> Result<Vec<Digest>> {
    Ok(driver
        .list(dir)?
        .into_iter()
        .filter_map(|hex| format!("{}:{hex}", algorithm.as_str()).parse().ok())
        .collect())
}

/// Calls `visit` with every stored blob (the count at start-up, GC's sweep,
/// scrub), as the driver walks them, so a large store is never listed whole
/// in memory. A blob committed or removed during the walk may or may not be
/// visited.
pub(super) fn each_blob(
    driver: &dyn Driver,
    mut visit: impl FnMut(Digest, Key, Meta) -> Result<()>,
) -> Result<()> {
    for algorithm in Algorithm::ALL {
        driver.walk(&paths::blobs_of(algorithm), &mut |key, meta| {
            let digest = format!("{}:{}", algorithm.as_str(), key.name()).parse();
            match digest {
                // Only a name in its own prefix folder is that blob.
                Ok(digest) if paths::blob(&digest) == key => visit(digest, key, meta),
                _ => Ok(()),
            }
        })?;
    }
    Ok(())
}

impl Store {
    /// Whether `name` holds a link to `digest` (as a blob or as a manifest).
    /// A blob link is an empty file named by the digest (older stores wrote the
    /// digest in it; nothing reads it); a manifest link holds the media type.
    pub(super) fn linked(&self, name: &RepoName, digest: &Digest) -> Result<bool> {
        let driver = self.driver();
        if driver.exists(&paths::blob_link(name, digest))? {
            return Ok(true);
        }
        Ok(driver.read(&paths::manifest_link(name, digest))?.is_some())
    }

    /// Calls `visit` with every stored blob (GC's sweep, scrub): see [`each_blob`].
    pub(super) fn for_each_blob(
        &self,
        visit: impl FnMut(Digest, Key, Meta) -> Result<()>,
    ) -> Result<()> {
        each_blob(self.driver(), visit)
    }

    /// Size of the stored bytes of `digest`, if present.
    pub(super) fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.driver().size(&paths::blob(digest))?)
    }

    /// Gives a stored blob a fresh modification time (see gc.rs: grace period).
    pub(super) fn touch_blob(&self, digest: &Digest) -> Result<()> {
        Ok(self.driver().touch(&paths::blob(digest))?)
    }

    /// Links the stored blob `digest` into `name`, making it readable there,
    /// durably. The blob's folder is fsynced too, as in commit_blob: the request
    /// that renamed the blob there may not have synced it yet.
    pub(super) fn link_blob(&self, name: &RepoName, digest: &Digest) -> Result<()> {
        let mut pending = durable::Pending::default();
        self.driver().settle(&paths::blob(digest), &mut pending);
        self.link_blob_pending(name, digest, &mut pending)?;
        self.driver().sync(pending)?;
        self.remember_repository(name)?;
        Ok(())
    }

    /// Links `digest` into `name`; the new link is durable once `pending` is synced.
    pub(super) fn link_blob_pending(
        &self,
        name: &RepoName,
        digest: &Digest,
        pending: &mut durable::Pending,
    ) -> Result<()> {
        self.driver()
            .create(&paths::blob_link(name, digest), pending)?;
        Ok(())
    }

    /// Size of a blob readable in `name`.
    pub async fn stat_blob(&self, name: &RepoName, digest: &Digest) -> Result<u64> {
        if let Some(size) = self.inner.cache.blob_size(name, digest) {
            return Ok(size);
        }
        let (name, digest) = (name.clone(), digest.clone());
        self.blocking(move |s| {
            let generation = s.inner.cache.generation();
            let size = s.stat_blob_sync(&name, &digest)?;
            s.inner
                .cache
                .insert_blob_size(generation, &name, &digest, size);
            Ok(size)
        })
        .await
    }

    fn stat_blob_sync(&self, name: &RepoName, digest: &Digest) -> Result<u64> {
        if !self.linked(name, digest)? {
            return Err(StoreError::BlobUnknown);
        }
        self.blob_size(digest)?.ok_or(StoreError::BlobUnknown)
    }

    /// Opens a blob readable in `name` for streaming.
    pub async fn open_blob(&self, name: &RepoName, digest: &Digest) -> Result<BlobContent> {
        let (name, digest) = (name.clone(), digest.clone());
        self.blocking(move |s| {
            if !s.linked(&name, &digest)? {
                return Err(StoreError::BlobUnknown);
            }
            s.driver()
                .open(&paths::blob(&digest))?
                .ok_or(StoreError::BlobUnknown)
        })
        .await
    }

    /// The whole of a small blob readable in `name` (an image's config, for
    /// the web UI): refused past `limit` bytes, and when the bytes no longer
    /// match their digest.
    pub async fn read_blob(&self, name: &RepoName, digest: &Digest, limit: u64) -> Result<Bytes> {
        let (name, digest) = (name.clone(), digest.clone());
        self.blocking(move |s| {
            if !s.linked(&name, &digest)? {
                return Err(StoreError::BlobUnknown);
            }
            let size = s.blob_size(&digest)?.ok_or(StoreError::BlobUnknown)?;
            if size > limit {
                return Err(StoreError::BlobUnknown);
            }
            s.driver()
                .read(&paths::blob(&digest))?
                .filter(|bytes| digest.matches(bytes))
                .map(Bytes::from)
                .ok_or(StoreError::BlobUnknown)
        })
        .await
    }

    /// Whether blob GETs go to signed URLs of the objects
    /// (`--storage-redirect`).
    pub fn signs_urls(&self) -> bool {
        self.object().is_some_and(ObjectDriver::signs)
    }

    /// A signed URL of the blob `digest`, valid [`REDIRECT_LIFE`], from a
    /// store that [signs URLs](Store::signs_urls). The caller looks the blob
    /// up in its repository first, as any GET does: that checks the link and
    /// puts the blob back from a collection's `trash/`. A sweep may still
    /// move an unreferenced blob away before the client comes (it then gets
    /// the store's 404), as a pull racing the collection of an unreferenced
    /// blob does on a data folder.
    pub async fn blob_url(&self, digest: &Digest) -> Result<String> {
        let object = self
            .object()
            .ok_or_else(|| io::Error::other("this store does not sign URLs"))?;
        Ok(object
            .signed_get(&paths::blob(digest), REDIRECT_LIFE)
            .await?)
    }

    /// Removes `digest` from `name`. The bytes stay until garbage collection finds
    /// that nothing else refers to them.
    pub async fn delete_blob(&self, name: &RepoName, digest: &Digest) -> Result<()> {
        let (name, digest) = (name.clone(), digest.clone());
        self.blocking(move |s| {
            let _stale = s.inner.cache.stale(&name);
            if s.driver().remove(&paths::blob_link(&name, &digest))? {
                Ok(())
            } else {
                Err(StoreError::BlobUnknown)
            }
        })
        .await
    }

    /// Cross-repository mount: links `digest` into `name` if `from` holds it.
    /// Returns the blob's size, or `None` when there is nothing to mount.
    pub async fn mount_blob(
        &self,
        name: &RepoName,
        from: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>> {
        let (name, from, digest) = (name.clone(), from.clone(), digest.clone());
        self.blocking(move |s| {
            let _commit = s.commit_guard();
            s.mount_blob_sync(&name, &from, &digest)
        })
        .await
    }

    fn mount_blob_sync(
        &self,
        name: &RepoName,
        from: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>> {
        match self.stat_blob_sync(from, digest) {
            Ok(size) => {
                // A fresh time puts a mounted blob back under the GC's grace period.
                self.touch_blob(digest)?;
                self.link_blob(name, digest)?;
                Ok(Some(size))
            }
            Err(StoreError::BlobUnknown) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn body(bytes: &'static [u8]) -> super::super::Body {
        Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(bytes))]))
    }

    #[tokio::test]
    async fn open_makes_every_sha256_prefix_folder_and_a_push_uses_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).await.unwrap();
        let sha256 = dir.path().join("blobs/sha256");
        let prefixes = std::fs::read_dir(&sha256)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .count();
        assert_eq!(prefixes, 256);
        // Opening again finds them all and leaves them be.
        drop(store);
        let store = Store::open(dir.path(), 0).await.unwrap();
        let name: RepoName = "team/app".parse().unwrap();
        let digest = Digest::sha256(b"layer");
        store
            .put_blob(&name, &digest, body(b"layer"))
            .await
            .unwrap();
        let blob = store.file(&paths::blob(&digest));
        assert_eq!(blob.parent().unwrap().parent().unwrap(), sha256);
        assert_eq!(std::fs::read_dir(&sha256).unwrap().count(), 256);
        assert_eq!(std::fs::read(blob).unwrap(), b"layer");
    }

    #[tokio::test]
    async fn a_pushed_blob_is_linked_by_an_empty_file_and_old_links_still_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).await.unwrap();
        let name: RepoName = "team/app".parse().unwrap();
        let digest = Digest::sha256(b"layer");
        assert_eq!(
            store
                .put_blob(&name, &digest, body(b"layer"))
                .await
                .unwrap(),
            5
        );
        let link = store.file(&paths::blob_link(&name, &digest));
        assert_eq!(std::fs::read(&link).unwrap(), b"");
        assert_eq!(store.stat_blob(&name, &digest).await.unwrap(), 5);

        // A store written by an older berth: the link holds the digest.
        let other: RepoName = "team/old".parse().unwrap();
        let old_link = store.file(&paths::blob_link(&other, &digest));
        std::fs::create_dir_all(old_link.parent().unwrap()).unwrap();
        std::fs::write(&old_link, digest.to_string()).unwrap();
        assert_eq!(store.stat_blob(&other, &digest).await.unwrap(), 5);

        // A link whose blob is gone (a power loss kept one name, not the other)
        // is no blob.
        std::fs::remove_file(store.file(&paths::blob(&digest))).unwrap();
        let unknown = "team/none".parse::<RepoName>().unwrap();
        store.link_blob(&unknown, &digest).unwrap();
        assert!(matches!(
            store.stat_blob(&unknown, &digest).await,
            Err(StoreError::BlobUnknown)
        ));
    }
}
