//! Eviction from the pull-through cache, the first step of a collection: when
//! the images cached from one upstream take more than its cap, the least
//! recently pulled go first (pulls.rs), and none pulled within the protected
//! window goes at all. The mark and sweep that follow free their blobs, as
//! they free any other blob nothing refers to, and under the same rules (the
//! grace period, the commit lock and pins of gc.rs).
//!
//! An image is a root manifest of a mirrored repository (one that is tagged,
//! or that no index lists and that refers to no subject) with what it
//! reaches: an index's children, and the referrers (signatures, SBOMs) of any
//! of them. It is evicted whole. Only manifests the cache fetched count:
//! one pushed under the upstream's name while it was not configured is the
//! only copy there is, and is never evicted. Its size is that of the blobs it refers to
//! that are stored (a layer not pulled yet takes no room); a blob two images
//! share counts once, and is freed only with the last of them.

use super::gc::{Doomed, referenced_digests};
use super::pulls::record_interval;
use super::{Result, Store, StoreError};
use crate::oci::manifest::Kind;
use crate::oci::{Digest, Manifest, RepoName};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

/// The cap on what the cache holds from one upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheLimit {
    /// The upstream's name, the first component of its repositories.
    pub upstream: String,
    /// Bytes of blobs its images may take before the oldest are evicted.
    pub max_size: u64,
    /// An image pulled within this long is never evicted.
    pub keep_pulled: Duration,
}

/// What the cache of one upstream held after a collection, and what went.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CacheReport {
    pub upstream: String,
    /// Bytes its images take once the evicted ones are gone.
    pub bytes: u64,
    pub max_size: u64,
    pub images_evicted: u64,
    /// Bytes that the evicted images referred to and no image left of this
    /// upstream does: freed by the sweep once past the grace period, unless
    /// another repository's image refers to them too.
    pub bytes_evicted: u64,
    /// When over its cap with every image left pulled within the window:
    /// when the first of them leaves it.
    #[serde(skip)]
    pub evictable_at: Option<SystemTime>,
}

/// One cached image: the manifests it is made of and the blobs they refer to.
struct Image {
    repo: RepoName,
    manifests: Vec<Digest>,
    blobs: HashSet<Digest>,
    pulled: SystemTime,
}

/// A stored manifest of one repository, as eviction needs it.
struct Node {
    /// Its own digest and every digest it names (leniently, as the mark does).
    refs: HashSet<Digest>,
    children: Vec<Digest>,
    subject: Option<Digest>,
}

impl Store {
    /// Evicts what `limit` asks from its upstream's repositories (in a dry
    /// run, only counts it, into `doomed`); returns how many manifests went.
    pub(super) fn evict(
        &self,
        limit: &CacheLimit,
        dry_run: bool,
        now: SystemTime,
        doomed: &mut Doomed,
        report: &mut CacheReport,
    ) -> Result<u64> {
        let prefix = format!("{}/", limit.upstream);
        let mut images = Vec::new();
        for repo in self.repositories_sync()? {
            if repo.as_str().starts_with(&prefix) {
                self.images_of(&repo, &mut images)?;
            }
        }
        // How many images hold each blob and each manifest, and the sizes.
        let mut holders: HashMap<Digest, usize> = HashMap::new();
        let mut members: HashMap<(RepoName, Digest), usize> = HashMap::new();
        for image in &images {
            for blob in &image.blobs {
                *holders.entry(blob.clone()).or_default() += 1;
            }
            for digest in &image.manifests {
                *members
                    .entry((image.repo.clone(), digest.clone()))
                    .or_default() += 1;
            }
        }
        let mut sizes = HashMap::new();
        for blob in holders.keys() {
            if let Some(size) = self.blob_size(blob)? {
                sizes.insert(blob.clone(), size);
            }
        }
        let mut total: u64 = sizes.values().sum();
        // Once over the cap, down to nine tenths of it, so that the next
        // fetch does not call for the next collection.
        let goal = match total > limit.max_size {
            true => limit.max_size - limit.max_size / 10,
            false => limit.max_size,
        };
        // The record may lag a pull by up to one interval: protect that too.
        let protected = limit
            .keep_pulled
            .saturating_add(record_interval(limit.keep_pulled));
        images.sort_by_key(|image| image.pulled);
        let mut deleted = 0;
        for image in &images {
            if total <= goal {
                break;
            }
            let age = now.duration_since(image.pulled).unwrap_or_default();
            if age < protected {
                // Sorted by pull: every image after this one is protected too.
                tracing::warn!(
                    upstream = %limit.upstream,
                    bytes = total,
                    max_size = limit.max_size,
                    "the cache is over its cap, but every image left was pulled within {}",
                    humantime::format_duration(limit.keep_pulled)
                );
                report.evictable_at = image.pulled.checked_add(protected);
                break;
            }
            // Looked at again: the listing may be old on a large store, and a
            // pull since then protects the image.
            let pulled_since = image
                .manifests
                .iter()
                .filter_map(|d| self.pulled_at(&image.repo, d))
                .max()
                .is_some_and(|at| now.duration_since(at).unwrap_or_default() < protected);
            if pulled_since {
                continue;
            }
            let mut kept = false;
            for digest in &image.manifests {
                let key = (image.repo.clone(), digest.clone());
                let count = members.get_mut(&key).expect("counted above");
                *count -= 1;
                if *count == 0 {
                    match self.evict_manifest(&image.repo, digest, dry_run, doomed)? {
                        true => deleted += 1,
                        false => kept = true,
                    }
                }
            }
            // A commit since the listing refers to part of it: it stays
            // counted, and the next collection looks again.
            if kept {
                continue;
            }
            for blob in &image.blobs {
                let count = holders.get_mut(blob).expect("counted above");
                *count -= 1;
                if *count == 0 {
                    let size = sizes.get(blob).copied().unwrap_or(0);
                    total -= size;
                    report.bytes_evicted += size;
                }
            }
            report.images_evicted += 1;
            tracing::info!(repository = %image.repo, manifest = %image.manifests[0], "evicted from the cache");
        }
        report.bytes = total;
        Ok(deleted)
    }

    /// Deletes one manifest of an evicted image, unless a commit since the
    /// collection started refers to it.
    fn evict_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        dry_run: bool,
        doomed: &mut Doomed,
    ) -> Result<bool> {
        if dry_run {
            doomed.manifests.insert((repo.clone(), digest.clone()));
            return Ok(true);
        }
        let _lock = self.commit_lock();
        if self.pinned(digest) {
            return Ok(false);
        }
        match self.collect_manifest(repo, digest) {
            Ok(deleted) => Ok(deleted),
            Err(StoreError::ManifestUnknown) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The images of one repository, appended to `out`.
    fn images_of(&self, repo: &RepoName, out: &mut Vec<Image>) -> Result<()> {
        let mut nodes = HashMap::new();
        for (digest, stored) in self.manifests_of(repo)? {
            if !self.was_fetched(repo, &digest)? {
                continue;
            }
            let mut refs = HashSet::from([digest.clone()]);
            let (mut children, mut subject) = (Vec::new(), None);
            if let Some(stored) = stored {
                if let Ok(json) = serde_json::from_slice(&stored.body) {
                    referenced_digests(&json, &mut refs);
                }
                if let Ok(m) = Manifest::parse(Some(&stored.media_type), &stored.body) {
                    if m.kind == Kind::Index {
                        children = m.manifests.into_iter().map(|c| c.digest).collect();
                    }
                    subject = m.subject.map(|s| s.digest);
                }
            }
            nodes.insert(
                digest,
                Node {
                    refs,
                    children,
                    subject,
                },
            );
        }
        let mut referrers: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
        let mut reached = HashSet::new();
        for (digest, node) in &nodes {
            reached.extend(node.children.iter().filter(|c| nodes.contains_key(*c)));
            if let Some(subject) = node.subject.as_ref().filter(|s| nodes.contains_key(*s)) {
                referrers.entry(subject).or_default().push(digest);
                reached.insert(digest);
            }
        }
        let tagged: HashSet<Digest> = self
            .tags_sync(repo)?
            .iter()
            .filter_map(|tag| self.resolve_tag(repo, tag).ok())
            .collect();
        for root in nodes
            .keys()
            .filter(|d| tagged.contains(*d) || !reached.contains(d))
        {
            let mut image = Image {
                repo: repo.clone(),
                manifests: Vec::new(),
                blobs: HashSet::new(),
                pulled: SystemTime::UNIX_EPOCH,
            };
            let mut seen = HashSet::new();
            let mut next = vec![root];
            while let Some(digest) = next.pop() {
                let Some(node) = nodes.get(digest).filter(|_| seen.insert(digest)) else {
                    continue;
                };
                image.manifests.push(digest.clone());
                image.blobs.extend(node.refs.iter().cloned());
                if let Some(pulled) = self.pulled_at(repo, digest) {
                    image.pulled = image.pulled.max(pulled);
                }
                next.extend(node.children.iter());
                next.extend(referrers.get(digest).into_iter().flatten().copied());
            }
            out.push(image);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::manifest::{OCI_INDEX, OCI_MANIFEST};
    use crate::oci::{Reference, Tag};
    use crate::storage::paths;
    use bytes::Bytes;
    use serde_json::json;

    struct Cache {
        _dir: tempfile::TempDir,
        store: Store,
    }

    impl Cache {
        async fn blob(&self, repo: &RepoName, bytes: &[u8]) -> serde_json::Value {
            let digest = Digest::sha256(bytes);
            let body = Bytes::copy_from_slice(bytes);
            let body = Box::pin(futures_util::stream::iter([Ok(body)]));
            self.store.put_blob(repo, &digest, body).await.unwrap();
            json!({"mediaType": "application/octet-stream", "digest": digest.to_string(), "size": bytes.len()})
        }

        /// Stores a manifest (tagged when `tag` is given); returns its descriptor.
        async fn manifest(
            &self,
            repo: &RepoName,
            doc: serde_json::Value,
            tag: Option<&str>,
        ) -> serde_json::Value {
            let body = serde_json::to_vec(&doc).unwrap();
            let digest = Digest::sha256(&body);
            let reference = match tag {
                Some(tag) => Reference::Tag(tag.parse::<Tag>().unwrap()),
                None => Reference::Digest(digest.clone()),
            };
            let media_type = doc["mediaType"].as_str().unwrap();
            let manifest = Manifest::parse(Some(media_type), &body).unwrap();
            self.store
                .put_fetched_manifest(repo, &reference, manifest, body.clone().into())
                .await
                .unwrap();
            json!({"mediaType": media_type, "digest": digest.to_string(), "size": body.len()})
        }

        async fn image(
            &self,
            repo: &RepoName,
            config: &[u8],
            layers: &[serde_json::Value],
        ) -> serde_json::Value {
            let config = self.blob(repo, config).await;
            let doc = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers});
            self.manifest(repo, doc, None).await
        }

        /// Makes every manifest of `repo` look last pulled `ago`.
        fn pulled(&self, repo: &RepoName, ago: Duration) {
            let at = SystemTime::now() - ago;
            for (digest, _) in self.store.manifests_of(repo).unwrap() {
                let path = self.store.file(&paths::manifest_link(repo, &digest));
                std::fs::File::options()
                    .write(true)
                    .open(path)
                    .unwrap()
                    .set_modified(at)
                    .unwrap();
            }
        }

        fn evict(&self, max_size: u64, keep_pulled: Duration) -> (u64, CacheReport) {
            let limit = CacheLimit {
                upstream: "up.test".into(),
                max_size,
                keep_pulled,
            };
            let mut report = CacheReport::default();
            let deleted = self
                .store
                .evict(
                    &limit,
                    false,
                    SystemTime::now(),
                    &mut Doomed::default(),
                    &mut report,
                )
                .unwrap();
            (deleted, report)
        }
    }

    fn digest(descriptor: &serde_json::Value) -> Digest {
        descriptor["digest"].as_str().unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn an_index_goes_whole_with_its_referrers_and_a_shared_layer_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).await.unwrap();
        let c = Cache { _dir: dir, store };
        let multi: RepoName = "up.test/lib/multi".parse().unwrap();
        let single: RepoName = "up.test/lib/single".parse().unwrap();
        let own: RepoName = "team/app".parse().unwrap();

        // multi: an index of two platforms sharing layer l1, and a signature
        // of one of them; single: one image that also has l1.
        let l1 = c.blob(&multi, &[1; 1000]).await;
        let l2 = c.blob(&multi, &[2; 1000]).await;
        let l3 = c.blob(&multi, &[3; 1000]).await;
        let amd64 = c.image(&multi, b"amd64", &[l1.clone(), l2]).await;
        let arm64 = c.image(&multi, b"arm64", &[l1.clone(), l3]).await;
        let index =
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd64, arm64]});
        c.manifest(&multi, index, Some("v1")).await;
        let sig = c.blob(&multi, &[4; 500]).await;
        let empty = c.blob(&multi, b"{}").await;
        let signature = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.test.sig", "config": empty,
            "layers": [sig], "subject": amd64});
        c.manifest(&multi, signature, None).await;
        let l1_again = c.blob(&single, &[1; 1000]).await;
        let l4 = c.blob(&single, &[5; 1000]).await;
        let image = c.image(&single, b"single", &[l1_again, l4]).await;
        c.manifest(
            &single,
            json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": c.blob(&single, b"single").await, "layers": []}),
            Some("v1"),
        )
        .await;
        // Not under the upstream: never counted, never evicted.
        let mine = c.blob(&own, &[6; 5000]).await;
        let mine = c.image(&own, b"mine", &[mine]).await;
        // Under its name, but pushed (while it was not configured): the only
        // copy there is, never counted, never evicted.
        let pushed: RepoName = "up.test/lib/pushed".parse().unwrap();
        let layer = c.blob(&pushed, &[7; 3000]).await;
        let config = c.blob(&pushed, b"pushed").await;
        let doc = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]});
        let body = serde_json::to_vec(&doc).unwrap();
        let manifest = Manifest::parse(Some(OCI_MANIFEST), &body).unwrap();
        let v1 = Reference::Tag("v1".parse().unwrap());
        c.store
            .put_manifest(&pushed, &v1, manifest, body.into())
            .await
            .unwrap();
        c.pulled(&pushed, Duration::from_secs(9 * 86400));

        c.pulled(&multi, Duration::from_secs(2 * 86400));
        c.pulled(&single, Duration::from_secs(86400));
        // Within a window of three days, nothing goes, whatever the cap.
        let (deleted, report) = c.evict(0, Duration::from_secs(3 * 86400));
        assert_eq!((deleted, report.images_evicted), (0, 0));
        let total = report.bytes;
        assert!(total > 6500 && total < 9000, "{report:?}");

        // One byte over: multi, the least recently pulled, goes whole (index,
        // both platforms, the signature); l1 is single's too, so stays counted.
        let (deleted, report) = c.evict(total - 1, Duration::from_secs(3600));
        assert_eq!((deleted, report.images_evicted), (4, 1), "{report:?}");
        assert_eq!(report.bytes + report.bytes_evicted, total);
        assert!(report.bytes > 2000 && report.bytes < 3000, "{report:?}");
        assert!(c.store.manifests_of(&multi).unwrap().is_empty());
        assert!(c.store.tags_sync(&multi).unwrap().is_empty());
        // single's untagged image and its tagged one are two images; both stay.
        assert_eq!(c.store.manifests_of(&single).unwrap().len(), 2);
        assert!(c.store.read_manifest(&single, &digest(&image)).is_ok());
        assert!(c.store.read_manifest(&own, &digest(&mine)).is_ok());
        // Even with no room at all, the pushed one stays.
        let (_, report) = c.evict(0, Duration::from_secs(3600));
        assert_eq!(report.images_evicted, 2, "{report:?}");
        assert_eq!(report.bytes, 0);
        assert_eq!(c.store.tags_sync(&pushed).unwrap().len(), 1);
        assert!(c.store.pulled_at(&multi, &digest(&amd64)).is_none());
    }
}
