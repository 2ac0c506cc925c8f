//! Manifests, tags and the referrers index of each repository.

use super::shared_gc::BucketPin;
use super::{Result, Store, StoreError, durable, paths};
use crate::oci::manifest::Kind;
use crate::oci::{Digest, Manifest, Reference, RepoName, Tag};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::io;

/// What a `_manifests` link records: the media type the manifest was pushed
/// with, and whether the pull-through cache fetched it (only those it may
/// evict: a manifest pushed while its repository's upstream was not
/// configured is the only copy there is).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestLink {
    media_type: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    fetched: bool,
}

/// A manifest as stored: its exact bytes, digest and media type.
#[derive(Clone, Debug)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub body: Bytes,
}

/// A tag as the web UI lists it.
#[derive(Clone, Debug)]
pub struct TagEntry {
    pub tag: Tag,
    pub digest: Digest,
    /// When the tag was last written.
    pub pushed: std::time::SystemTime,
}

impl Store {
    /// Stores a validated manifest under `reference` (a tag, or the digest it must
    /// hash to), after checking that everything it refers to is in the repository.
    pub async fn put_manifest(
        &self,
        name: &RepoName,
        reference: &Reference,
        manifest: Manifest,
        body: Bytes,
    ) -> Result<Digest> {
        let (name, reference) = (name.clone(), reference.clone());
        self.blocking(move |s| s.put_manifest_sync(&name, &reference, &manifest, &body, true))
            .await
    }

    /// Stores a manifest the pull-through cache fetched, exactly as upstream
    /// sent it, under `reference` (a tag, or the digest it must hash to). Its
    /// blobs need not be here: each is fetched when first pulled.
    pub async fn put_fetched_manifest(
        &self,
        name: &RepoName,
        reference: &Reference,
        manifest: Manifest,
        body: Bytes,
    ) -> Result<Digest> {
        let (name, reference) = (name.clone(), reference.clone());
        self.blocking(move |s| s.put_manifest_sync(&name, &reference, &manifest, &body, false))
            .await
    }

    /// Stores a manifest; `check_references` is false only for fetched ones.
    fn put_manifest_sync(
        &self,
        name: &RepoName,
        reference: &Reference,
        manifest: &Manifest,
        body: &[u8],
        check_references: bool,
    ) -> Result<Digest> {
        let digest = match reference {
            Reference::Digest(expected) => {
                if !expected.matches(body) {
                    let mut hasher = expected.algorithm().hasher();
                    hasher.update(body);
                    return Err(StoreError::DigestMismatch {
                        expected: expected.clone(),
                        computed: hasher.finish(),
                    });
                }
                expected.clone()
            }
            Reference::Tag(_) => Digest::sha256(body),
        };
        // Held until the manifest is committed, so that a collection cannot sweep
        // a blob between our check and our commit (see gc.rs).
        let _commit = self.commit_guard();
        let referenced: Vec<Digest> = std::iter::once(digest.clone())
            .chain(manifest.blobs.iter().map(|b| b.digest.clone()))
            .chain(manifest.manifests.iter().map(|m| m.digest.clone()))
            .collect();
        // On a bucket that replicas share, the repository is in the catalog
        // and what the manifest names is pinned there, before the check
        // (shared_gc.rs).
        let bucket_pin = match self.object() {
            Some(object) => {
                let tag = match reference {
                    Reference::Tag(tag) => Some(tag),
                    Reference::Digest(_) => None,
                };
                self.remember_repository(name)?;
                Some(BucketPin::write(object, name, tag, &referenced)?)
            }
            None => None,
        };
        if check_references {
            self.check_references(name, manifest)?;
        }
        let _stale = self.inner.cache.stale(name);
        self.pin(referenced);

        let driver = self.driver();
        let blob = paths::blob(&digest);
        let size = body.len() as u64;
        match self.blob_size(&digest)? {
            // Stored already, but perhaps by a put that has renamed it and not
            // fsynced its folder yet (or crashed before it could): made durable
            // here, as commit_blob does, so that no tag outlives the manifest's name.
            Some(stored) if stored == size => {
                let mut pending = durable::Pending::default();
                driver.settle(&blob, &mut pending);
                driver.sync(pending)?;
            }
            // A damaged copy (its digest says what the bytes must be): replace it.
            Some(stored) => {
                driver.write(&blob, body)?;
                self.inner.usage.blob_removed(stored);
                self.inner.usage.blob_added(size);
            }
            None => {
                if driver.write_new(&blob, body)? {
                    self.inner.usage.blob_added(size);
                }
            }
        }
        let link = ManifestLink {
            media_type: manifest.media_type.clone(),
            fetched: !check_references,
        };
        let link = serde_json::to_vec(&link).map_err(io::Error::other)?;
        if let Some(pin) = &bucket_pin {
            pin.check_fresh()?;
        }
        driver.write(&paths::manifest_link(name, &digest), &link)?;
        if let Some(subject) = &manifest.subject {
            let descriptor = manifest.referrer_descriptor(digest.clone(), body.len() as u64);
            let descriptor = serde_json::to_vec(&descriptor).map_err(io::Error::other)?;
            driver.write(
                &paths::referrer(name, &subject.digest, &digest),
                &descriptor,
            )?;
        }
        if let Reference::Tag(tag) = reference {
            driver.write(&paths::tag(name, tag), digest.to_string().as_bytes())?;
        }
        self.remember_repository(name)?;
        Ok(digest)
    }

    /// Every blob an image needs must be linked in the repository with the size its
    /// descriptor states; every manifest an index lists must be in the repository.
    fn check_references(&self, name: &RepoName, manifest: &Manifest) -> Result<()> {
        match manifest.kind {
            Kind::Image => {
                for blob in manifest.blobs.iter().filter(|b| !b.is_foreign()) {
                    if !self.linked(name, &blob.digest)? {
                        return Err(StoreError::ManifestBlobUnknown(blob.digest.clone()));
                    }
                    let size = self
                        .blob_size(&blob.digest)?
                        .ok_or_else(|| StoreError::ManifestBlobUnknown(blob.digest.clone()))?;
                    if size != blob.size {
                        return Err(StoreError::ManifestInvalid(format!(
                            "descriptor of {} says {} bytes, the blob has {size}",
                            blob.digest, blob.size
                        )));
                    }
                }
            }
            Kind::Index => {
                for child in &manifest.manifests {
                    let link = paths::manifest_link(name, &child.digest);
                    if self.driver().read(&link)?.is_none() {
                        return Err(StoreError::ManifestBlobUnknown(child.digest.clone()));
                    }
                }
            }
        }
        Ok(())
    }

    /// The manifest `reference` names in `name`.
    pub async fn get_manifest(
        &self,
        name: &RepoName,
        reference: &Reference,
    ) -> Result<StoredManifest> {
        if let Some(manifest) = self.cached_manifest(name, reference) {
            return Ok(manifest);
        }
        let (name, reference) = (name.clone(), reference.clone());
        self.blocking(move |s| {
            let cache = &s.inner.cache;
            let generation = cache.generation();
            let digest = match &reference {
                Reference::Digest(d) => d.clone(),
                Reference::Tag(tag) => {
                    let digest = s.resolve_tag(&name, tag)?;
                    cache.insert_tag(generation, &name, tag, &digest);
                    digest
                }
            };
            let manifest = s.read_manifest(&name, &digest)?;
            cache.insert_manifest(generation, &name, &manifest);
            Ok(manifest)
        })
        .await
    }

    fn cached_manifest(&self, name: &RepoName, reference: &Reference) -> Option<StoredManifest> {
        let cache = &self.inner.cache;
        match reference {
            Reference::Digest(digest) => cache.manifest(name, digest),
            Reference::Tag(tag) => cache.manifest(name, &cache.tag(name, tag)?),
        }
    }

    pub(super) fn resolve_tag(&self, name: &RepoName, tag: &Tag) -> Result<Digest> {
        if !self.repository_exists(name)? {
            return Err(StoreError::NameUnknown);
        }
        self.driver()
            .read(&paths::tag(name, tag))?
            .and_then(|bytes| String::from_utf8(bytes).ok()?.parse().ok())
            .ok_or(StoreError::ManifestUnknown)
    }

    /// Whether the pull-through cache fetched the manifest `digest` of `name`
    /// (a link written by an older berth says no).
    pub(super) fn was_fetched(&self, name: &RepoName, digest: &Digest) -> Result<bool> {
        Ok(self
            .driver()
            .read(&paths::manifest_link(name, digest))?
            .and_then(|bytes| serde_json::from_slice::<ManifestLink>(&bytes).ok())
            .is_some_and(|link| link.fetched))
    }

    /// Reads a manifest of `name`, refusing bytes that no longer match their digest.
    pub(super) fn read_manifest(&self, name: &RepoName, digest: &Digest) -> Result<StoredManifest> {
        if !self.repository_exists(name)? {
            return Err(StoreError::NameUnknown);
        }
        let driver = self.driver();
        let link = driver
            .read(&paths::manifest_link(name, digest))?
            .and_then(|bytes| serde_json::from_slice::<ManifestLink>(&bytes).ok())
            .ok_or(StoreError::ManifestUnknown)?;
        let body = driver
            .read(&paths::blob(digest))?
            .filter(|body| digest.matches(body))
            .ok_or(StoreError::ManifestUnknown)?;
        Ok(StoredManifest {
            digest: digest.clone(),
            media_type: link.media_type,
            body: Bytes::from(body),
        })
    }

    /// Deletes a tag; the manifest stays reachable by digest and other tags.
    pub async fn delete_tag(&self, name: &RepoName, tag: &Tag) -> Result<()> {
        let (name, tag) = (name.clone(), tag.clone());
        self.blocking(move |s| {
            if !s.repository_exists(&name)? {
                return Err(StoreError::NameUnknown);
            }
            let _stale = s.inner.cache.stale(&name);
            if s.driver().remove(&paths::tag(&name, &tag))? {
                Ok(())
            } else {
                Err(StoreError::ManifestUnknown)
            }
        })
        .await
    }

    /// Deletes a manifest from `name`, with the tags that point at it and its
    /// entry in the referrers index of its subject.
    pub async fn delete_manifest(&self, name: &RepoName, digest: &Digest) -> Result<()> {
        let (name, digest) = (name.clone(), digest.clone());
        self.blocking(move |s| s.delete_manifest_sync(&name, &digest))
            .await
    }

    pub(super) fn delete_manifest_sync(&self, name: &RepoName, digest: &Digest) -> Result<()> {
        self.delete_manifest_tags(name, digest).map(drop)
    }

    /// [`Store::delete_manifest_sync`]; returns the tags it removed.
    pub(super) fn delete_manifest_tags(
        &self,
        name: &RepoName,
        digest: &Digest,
    ) -> Result<Vec<Tag>> {
        let _stale = self.inner.cache.stale(name);
        let stored = self.read_manifest(name, digest)?;
        let mut removed = Vec::new();
        for tag in self.tags_sync(name)? {
            if self.resolve_tag(name, &tag).ok().as_ref() == Some(digest)
                && self.driver().remove(&paths::tag(name, &tag))?
            {
                removed.push(tag);
            }
        }
        if let Ok(manifest) = Manifest::parse(Some(&stored.media_type), &stored.body)
            && let Some(subject) = manifest.subject
        {
            self.driver()
                .remove(&paths::referrer(name, &subject.digest, digest))?;
        }
        self.driver().remove(&paths::manifest_link(name, digest))?;
        self.forget_pull(name, digest)?;
        Ok(removed)
    }

    /// The tags of `name`, sorted.
    pub async fn tags(&self, name: &RepoName) -> Result<Vec<Tag>> {
        let name = name.clone();
        self.blocking(move |s| s.tags_sync(&name)).await
    }

    /// What each of `tags` of `name` points at, and when it was last pushed
    /// (the web UI's tag list); a tag removed meanwhile is left out.
    pub async fn tag_entries(&self, name: &RepoName, tags: Vec<Tag>) -> Result<Vec<TagEntry>> {
        let name = name.clone();
        self.blocking(move |s| {
            let mut entries = Vec::with_capacity(tags.len());
            for tag in tags {
                let pushed = s.driver().stat(&paths::tag(&name, &tag))?;
                let digest = match s.resolve_tag(&name, &tag) {
                    Ok(digest) => digest,
                    Err(StoreError::ManifestUnknown) => continue,
                    Err(e) => return Err(e),
                };
                if let Some(meta) = pushed {
                    entries.push(TagEntry {
                        tag,
                        digest,
                        pushed: meta.modified,
                    });
                }
            }
            Ok(entries)
        })
        .await
    }

    pub(super) fn tags_sync(&self, name: &RepoName) -> Result<Vec<Tag>> {
        if !self.repository_exists(name)? {
            return Err(StoreError::NameUnknown);
        }
        let mut tags: Vec<Tag> = self
            .driver()
            .list(&paths::tags_dir(name))?
            .into_iter()
            .filter_map(|t| t.parse().ok())
            .collect();
        tags.sort();
        Ok(tags)
    }
}
