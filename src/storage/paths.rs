//! The layout, in one place. Every key the store uses is built here from
//! validated values (`RepoName`, `Tag`, `Digest`, upload ids), so nothing a
//! client sends can name anything outside the store. A key is a path relative
//! to the store's root: a file under the data folder, an object in a bucket.
//!
//! ```text
//! blobs/<alg>/<hex[0..2]>/<hex>                 blob bytes (layers, configs, manifests)
//! repositories/<name>/_blobs/<alg>/<hex>        link: the repo may read that blob
//! repositories/<name>/_manifests/<alg>/<hex>    link: a manifest of the repo (JSON: its media type)
//! repositories/<name>/_tags/<tag>               the digest the tag points at
//! repositories/<name>/_referrers/<subject hex>/<hex>
//!                                               descriptor of a manifest whose subject is that digest
//!                                               (before: `_referrers/<alg>/<subject hex>/<alg>-<hex>`,
//!                                               moved when the store opens: referrers.rs)
//! repositories/<name>/_pulled/<alg>/<hex>       empty; its modification time is when the pull-through
//!                                               cache last served that manifest (pulls.rs)
//! uploads/<uuid>/info.json, data                an upload session and its bytes so far
//! quarantine/<alg>/<hex>-<time>                 a blob whose bytes did not match its digest, moved
//!                                               aside by a scrub (never served; kept for inspection)
//! _stats/usage.json, gc.json                    the store's size over time and its last collections,
//!                                               for the web UI (history.rs); nothing else reads them
//! ```
//!
//! In an object store (object.rs), also `uploads/<uuid>/chunks/<offset>-<part>`
//! and `uploads/<uuid>/offsets/<offset>` (a session's bytes, a chunk per
//! object, and the claim naming which one holds each offset), `touched/blobs/…` (when a blob was
//! last pushed again or mounted), `_catalog/<name>` (a marker per repository,
//! catalog.rs), `_pins/<id>`, `_gc/lock` and `trash/blobs/…` (a collection
//! on a bucket that replicas share: shared_gc.rs) and `readyz/<id>` (a
//! readiness probe's).
//!
//! On a file system, `tmp/<owner>/` is each process's staging folder, locked
//! while it lives (staging.rs, fs.rs): temp files, renamed into place once
//! complete, and single-request uploads (`tmp/<owner>/blob-<uuid>`).
//!
//! `quarantine/` is outside `blobs/`, so nothing that reads or counts blobs
//! (pulls, the usage scan, GC's sweep) ever sees what a scrub moved there.
//!
//! Repository name components never start with `_`, so `_blobs` and friends can
//! never collide with a nested repository such as `a/b`.

use crate::oci::{Algorithm, Digest, RepoName, Tag};
use std::fmt;
use uuid::Uuid;

/// The name of one stored thing, relative to the store's root: a path under
/// the data folder, or an object's name in the bucket. `/`-separated, built
/// only here, from validated values.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    fn new(parts: &[&str]) -> Key {
        Key(parts.join("/"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key of `name` inside this one.
    pub fn child(&self, name: &str) -> Key {
        Key(format!("{}/{name}", self.0))
    }

    /// The last part of the key.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn blobs_dir() -> Key {
    Key::new(&["blobs"])
}

/// The folder of `algorithm`'s blobs, which holds their prefix folders.
pub fn blobs_of(algorithm: Algorithm) -> Key {
    Key::new(&["blobs", algorithm.as_str()])
}

/// The 256 prefix folders of `algorithm`'s blobs (`00` to `ff`).
pub fn blob_prefixes(algorithm: Algorithm) -> impl Iterator<Item = Key> {
    let dir = blobs_of(algorithm);
    (0..=u8::MAX).map(move |byte| dir.child(&format!("{byte:02x}")))
}

pub fn blob(digest: &Digest) -> Key {
    let hex = digest.hex();
    Key::new(&["blobs", digest.algorithm().as_str(), &hex[..2], hex])
}

pub fn quarantine_dir() -> Key {
    Key::new(&["quarantine"])
}

/// Where a scrub moves the corrupt bytes stored as `digest`; `stamp` (the
/// time of the move) keeps apart two corrupt copies of one digest.
pub fn quarantined(digest: &Digest, stamp: &str) -> Key {
    quarantine_dir()
        .child(digest.algorithm().as_str())
        .child(&format!("{}-{stamp}", digest.hex()))
}

pub fn repositories_dir() -> Key {
    Key::new(&["repositories"])
}

pub fn repo(name: &RepoName) -> Key {
    Key::new(&["repositories", name.as_str()])
}

pub fn blob_link(name: &RepoName, digest: &Digest) -> Key {
    repo(name)
        .child("_blobs")
        .child(digest.algorithm().as_str())
        .child(digest.hex())
}

pub fn manifest_link(name: &RepoName, digest: &Digest) -> Key {
    manifest_links(name, digest.algorithm()).child(digest.hex())
}

/// The folder of `name`'s manifest links of one algorithm.
pub fn manifest_links(name: &RepoName, algorithm: Algorithm) -> Key {
    repo(name).child("_manifests").child(algorithm.as_str())
}

/// Marks when the manifest `digest` of `name` was last pulled (pulls.rs).
pub fn pulled(name: &RepoName, digest: &Digest) -> Key {
    repo(name)
        .child("_pulled")
        .child(digest.algorithm().as_str())
        .child(digest.hex())
}

pub fn tags_dir(name: &RepoName) -> Key {
    repo(name).child("_tags")
}

pub fn tag(name: &RepoName, tag: &Tag) -> Key {
    tags_dir(name).child(tag.as_str())
}

/// Holds the referrers index of `name`.
pub fn referrers_root(name: &RepoName) -> Key {
    repo(name).child("_referrers")
}

/// The referrers of `subject`. Digests are named by their hex alone here, as
/// its length tells the algorithm (64 for sha256, 128 for sha512): keys stay
/// short enough for object stores that keep one file per key (s3s-fs names a
/// file by the key in base64, within 255 bytes).
pub fn referrers_dir(name: &RepoName, subject: &Digest) -> Key {
    referrers_root(name).child(subject.hex())
}

pub fn referrer(name: &RepoName, subject: &Digest, referrer: &Digest) -> Key {
    referrers_dir(name, subject).child(referrer.hex())
}

/// Holds a marker per repository in a shared bucket (catalog.rs).
pub fn catalog_dir() -> Key {
    Key::new(&["_catalog"])
}

/// The marker of `name`: its `/` become `+`, which no name holds, so that a
/// marker is never a folder of another (stores that keep objects as files,
/// s3s-fs, cannot hold both `a` and `a/b`).
pub fn catalog_entry(name: &RepoName) -> Key {
    catalog_dir().child(&name.as_str().replace('/', "+"))
}

/// The repository a marker's name stands for.
pub fn catalog_name(entry: &str) -> Option<RepoName> {
    entry.replace('+', "/").parse().ok()
}

/// Holds the pins of manifest commits in a shared bucket (shared_gc.rs).
pub fn pins_dir() -> Key {
    Key::new(&["_pins"])
}

pub fn pin(id: &Uuid) -> Key {
    pins_dir().child(&id.simple().to_string())
}

/// The lock of a shared bucket's collection (shared_gc.rs).
pub fn gc_lock() -> Key {
    Key::new(&["_gc", "lock"])
}

/// The store's size over time (history.rs).
pub fn usage_history() -> Key {
    Key::new(&["_stats", "usage.json"])
}

/// The last garbage collections (history.rs).
pub fn gc_history() -> Key {
    Key::new(&["_stats", "gc.json"])
}

/// Written and removed by a readiness probe of an object store.
pub fn probe(id: &Uuid) -> Key {
    Key::new(&["readyz", &id.simple().to_string()])
}

pub fn uploads_dir() -> Key {
    Key::new(&["uploads"])
}

pub fn upload_dir(id: &Uuid) -> Key {
    uploads_dir().child(&id.hyphenated().to_string())
}

pub fn upload_info(id: &Uuid) -> Key {
    upload_dir(id).child("info.json")
}

pub fn upload_data(id: &Uuid) -> Key {
    upload_dir(id).child("data")
}

/// Names of the per-repository folders, which mark a folder as a repository.
pub const REPO_MARKERS: [&str; 3] = ["_blobs", "_manifests", "_tags"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_stable() {
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap();
        let name: RepoName = "team/app".parse().unwrap();
        assert_eq!(
            blob(&d).as_str(),
            "blobs/sha256/e3/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            tag(&name, &"v1".parse().unwrap()).as_str(),
            "repositories/team/app/_tags/v1"
        );
        assert!(
            blob_link(&name, &d)
                .as_str()
                .starts_with("repositories/team/app/_blobs/sha256/")
        );
        let prefixes: Vec<_> = blob_prefixes(Algorithm::Sha256).collect();
        assert_eq!(prefixes.len(), 256);
        assert_eq!(prefixes[0].as_str(), "blobs/sha256/00");
        assert_eq!(prefixes[255].as_str(), "blobs/sha256/ff");
        assert_eq!(
            quarantined(&d, "20250102T030405.000006Z").as_str(),
            "quarantine/sha256/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855-20250102T030405.000006Z"
        );
        assert!(
            prefixes
                .iter()
                .any(|dir| blob(&d).as_str().starts_with(&format!("{dir}/")))
        );
        assert_eq!(blob(&d).name(), d.hex());
        let entry = catalog_entry(&name);
        assert_eq!(entry.as_str(), "_catalog/team+app");
        assert_eq!(catalog_name(entry.name()), Some(name));
    }
}
