//! The on-disk layout, in one place. Every path the store touches is built here
//! from validated values (`RepoName`, `Tag`, `Digest`, upload ids), so nothing a
//! client sends can name a file outside the root.
//!
//! ```text
//! <root>/blobs/<alg>/<hex[0..2]>/<hex>                 blob bytes (layers, configs, manifests)
//! <root>/repositories/<name>/_blobs/<alg>/<hex>        link: the repo may read that blob
//! <root>/repositories/<name>/_manifests/<alg>/<hex>    link: a manifest of the repo (JSON: its media type)
//! <root>/repositories/<name>/_tags/<tag>               the digest the tag points at
//! <root>/repositories/<name>/_referrers/<alg>/<subject hex>/<alg>-<hex>
//!                                                      descriptor of a manifest whose subject is that digest
//! <root>/repositories/<name>/_pulled/<alg>/<hex>       empty; its modification time is when the pull-through
//!                                                      cache last served that manifest (pulls.rs)
//! <root>/uploads/<uuid>/info.json, data                an upload session and its bytes so far
//! <root>/tmp/<owner>/                                  a process's staging folder, locked while it lives
//!                                                      (staging.rs): temp files, renamed into place once complete
//! <root>/tmp/<owner>/blob-<uuid>                       a single-request upload (`POST ?digest=`) being staged
//! <root>/quarantine/<alg>/<hex>-<time>                 a blob whose bytes did not match its digest, moved
//!                                                      aside by a scrub (never served; kept for inspection)
//! ```
//!
//! `quarantine/` is outside `blobs/`, so nothing that reads or counts blobs
//! (pulls, the usage scan, GC's sweep) ever sees what a scrub moved there.
//!
//! Repository name components never start with `_`, so `_blobs` and friends can
//! never collide with a nested repository such as `a/b`.

use crate::oci::{Algorithm, Digest, RepoName, Tag};
use std::path::{Path, PathBuf};
use uuid::Uuid;

#[derive(Clone, Debug)]
pub struct Paths {
    root: PathBuf,
    /// Names this process's staging folder under `tmp/`.
    owner: Uuid,
}

impl Paths {
    pub fn new(root: impl Into<PathBuf>) -> Paths {
        Paths {
            root: root.into(),
            owner: Uuid::new_v4(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Holds every process's staging folder.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// This process's staging folder (claimed and locked by staging.rs).
    pub fn staging_dir(&self) -> PathBuf {
        self.tmp_dir().join(self.owner.simple().to_string())
    }

    /// Picks another name for this process's staging folder.
    pub fn renew_owner(&mut self) {
        self.owner = Uuid::new_v4();
    }

    /// Where a single-request upload is staged before it becomes a blob.
    pub fn staged_blob(&self, id: &Uuid) -> PathBuf {
        self.staging_dir().join(format!("blob-{}", id.simple()))
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// The folder of `algorithm`'s blobs, which holds their prefix folders.
    pub fn blobs_of(&self, algorithm: Algorithm) -> PathBuf {
        self.blobs_dir().join(algorithm.as_str())
    }

    /// The 256 prefix folders of `algorithm`'s blobs (`00` to `ff`).
    pub fn blob_prefixes(&self, algorithm: Algorithm) -> impl Iterator<Item = PathBuf> {
        let dir = self.blobs_of(algorithm);
        (0..=u8::MAX).map(move |byte| dir.join(format!("{byte:02x}")))
    }

    pub fn blob(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs_of(digest.algorithm()).join(&hex[..2]).join(hex)
    }

    pub fn quarantine_dir(&self) -> PathBuf {
        self.root.join("quarantine")
    }

    /// Where a scrub moves the corrupt bytes stored as `digest`; `stamp` (the
    /// time of the move) keeps apart two corrupt copies of one digest.
    pub fn quarantined(&self, digest: &Digest, stamp: &str) -> PathBuf {
        self.quarantine_dir()
            .join(digest.algorithm().as_str())
            .join(format!("{}-{stamp}", digest.hex()))
    }

    pub fn repositories_dir(&self) -> PathBuf {
        self.root.join("repositories")
    }

    pub fn repo(&self, name: &RepoName) -> PathBuf {
        self.repositories_dir().join(name.as_str())
    }

    pub fn blob_link(&self, name: &RepoName, digest: &Digest) -> PathBuf {
        self.repo(name)
            .join("_blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    pub fn manifest_link(&self, name: &RepoName, digest: &Digest) -> PathBuf {
        self.manifest_links(name, digest.algorithm())
            .join(digest.hex())
    }

    /// The folder of `name`'s manifest links of one algorithm.
    pub fn manifest_links(&self, name: &RepoName, algorithm: Algorithm) -> PathBuf {
        self.repo(name).join("_manifests").join(algorithm.as_str())
    }

    /// Marks when the manifest `digest` of `name` was last pulled (pulls.rs).
    pub fn pulled(&self, name: &RepoName, digest: &Digest) -> PathBuf {
        self.repo(name)
            .join("_pulled")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    pub fn tags_dir(&self, name: &RepoName) -> PathBuf {
        self.repo(name).join("_tags")
    }

    pub fn tag(&self, name: &RepoName, tag: &Tag) -> PathBuf {
        self.tags_dir(name).join(tag.as_str())
    }

    pub fn referrers_dir(&self, name: &RepoName, subject: &Digest) -> PathBuf {
        self.repo(name)
            .join("_referrers")
            .join(subject.algorithm().as_str())
            .join(subject.hex())
    }

    pub fn referrer(&self, name: &RepoName, subject: &Digest, referrer: &Digest) -> PathBuf {
        self.referrers_dir(name, subject).join(format!(
            "{}-{}",
            referrer.algorithm().as_str(),
            referrer.hex()
        ))
    }

    pub fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    pub fn upload_dir(&self, id: &Uuid) -> PathBuf {
        self.uploads_dir().join(id.hyphenated().to_string())
    }

    pub fn upload_info(&self, id: &Uuid) -> PathBuf {
        self.upload_dir(id).join("info.json")
    }

    pub fn upload_data(&self, id: &Uuid) -> PathBuf {
        self.upload_dir(id).join("data")
    }
}

/// Names of the per-repository folders, which mark a folder as a repository.
pub const REPO_MARKERS: [&str; 3] = ["_blobs", "_manifests", "_tags"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_stable() {
        let p = Paths::new("/r");
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap();
        let name: RepoName = "team/app".parse().unwrap();
        assert_eq!(
            p.blob(&d),
            Path::new(
                "/r/blobs/sha256/e3/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            )
        );
        assert_eq!(
            p.tag(&name, &"v1".parse().unwrap()),
            Path::new("/r/repositories/team/app/_tags/v1")
        );
        assert!(
            p.blob_link(&name, &d)
                .starts_with("/r/repositories/team/app/_blobs/sha256")
        );
        let prefixes: Vec<_> = p.blob_prefixes(Algorithm::Sha256).collect();
        assert_eq!(prefixes.len(), 256);
        assert_eq!(prefixes[0], Path::new("/r/blobs/sha256/00"));
        assert_eq!(prefixes[255], Path::new("/r/blobs/sha256/ff"));
        assert_eq!(
            p.quarantined(&d, "20250102T030405.000006Z"),
            Path::new(
                "/r/quarantine/sha256/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855-20250102T030405.000006Z"
            )
        );
        assert!(
            prefixes
                .iter()
                .any(|dir| Some(dir.as_path()) == p.blob(&d).parent())
        );
    }
}
