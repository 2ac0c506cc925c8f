//! A blob arriving from elsewhere (the pull-through cache's upstream), written
//! in order to a staged file that readers may follow while it grows, and
//! committed only once every byte hashed to its digest.
//!
//! Unlike an upload it has no session: it lives as long as one transfer, and a
//! transfer cut short leaves nothing but a staged file, removed at once (or by
//! the next start-up's sweep of a dead process's staging folder).

use super::driver::Source;
use super::{Result, Store, StoreError};
use crate::oci::{Digest, Hasher, RepoName};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Bytes appended between two looks at the free space.
const SPACE_CHECK: u64 = 1 << 20;

/// The staged bytes of one blob. Every method blocks: call them off the async
/// threads. Dropped uncommitted, it removes its file.
pub struct IncomingBlob {
    store: Store,
    name: RepoName,
    digest: Digest,
    path: PathBuf,
    file: Arc<File>,
    hasher: Option<Hasher>,
    written: u64,
    /// Appends up to here need no new look at the free space.
    checked_to: u64,
}

impl Store {
    /// Stages a blob of `name` to be filled; `size`, when known, must fit
    /// above the free-space reserve.
    pub fn incoming_blob(
        &self,
        name: &RepoName,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<IncomingBlob> {
        self.check_space(size.unwrap_or(0))?;
        let path = self.staged_path();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(IncomingBlob {
            store: self.clone(),
            name: name.clone(),
            digest: digest.clone(),
            path,
            file: Arc::new(file),
            hasher: Some(digest.algorithm().hasher()),
            written: 0,
            checked_to: 0,
        })
    }
}

impl IncomingBlob {
    /// The staged file, for readers that follow it (`read_at` below
    /// [`IncomingBlob::written`]). It stays readable after the commit, which
    /// renames it.
    pub fn file(&self) -> Arc<File> {
        self.file.clone()
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends the next bytes, refusing them once they would eat into the
    /// free-space reserve (checked every [`SPACE_CHECK`] bytes, as uploads do
    /// per batch: upstream's Content-Length may be absent or several fetches
    /// may pass the first check together).
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        if self.written + bytes.len() as u64 > self.checked_to {
            self.store.check_space(SPACE_CHECK)?;
            self.checked_to = self.written + bytes.len() as u64 + SPACE_CHECK;
        }
        (&*self.file).write_all(bytes)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(bytes);
        }
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Verifies the bytes against the digest and, if they match, makes them
    /// the blob and links it into the repository, durably; returns its size.
    pub fn commit(mut self) -> Result<u64> {
        let computed = self
            .hasher
            .take()
            .expect("the hasher is only taken here")
            .finish();
        if computed != self.digest {
            return Err(StoreError::DigestMismatch {
                expected: self.digest.clone(),
                computed,
            });
        }
        self.store
            .commit_blob(&self.name, &self.digest, &Source::File(&self.path))?;
        Ok(self.written)
    }
}

impl Drop for IncomingBlob {
    fn drop(&mut self) {
        // After a commit the name is gone (renamed into blobs/): nothing to do.
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(file = %self.path.display(), error = %e, "could not remove a staged blob");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_that_match_are_committed_and_others_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).await.unwrap();
        let name: RepoName = "docker.io/library/app".parse().unwrap();
        let digest = Digest::sha256(b"layer bytes");

        let mut wrong = store.incoming_blob(&name, &digest, Some(11)).unwrap();
        wrong.append(b"layer ").unwrap();
        wrong.append(b"BYTES").unwrap();
        assert_eq!(wrong.written(), 11);
        let staged = wrong.path.clone();
        assert!(matches!(
            wrong.commit(),
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(!staged.exists(), "a mismatch leaves no staged file");
        assert!(store.stat_blob(&name, &digest).await.is_err());

        let mut right = store.incoming_blob(&name, &digest, None).unwrap();
        let file = right.file();
        right.append(b"layer ").unwrap();
        let mut seen = [0u8; 6];
        std::os::unix::fs::FileExt::read_exact_at(&*file, &mut seen, 0).unwrap();
        assert_eq!(&seen, b"layer ", "a follower reads what is written");
        right.append(b"bytes").unwrap();
        assert_eq!(right.commit().unwrap(), 11);
        assert_eq!(store.stat_blob(&name, &digest).await.unwrap(), 11);
        let mut all = [0u8; 11];
        std::os::unix::fs::FileExt::read_exact_at(&*file, &mut all, 0).unwrap();
        assert_eq!(
            &all, b"layer bytes",
            "the file stays readable after its commit"
        );

        // A transfer dropped half-way leaves nothing behind.
        let other = Digest::sha256(b"other");
        let mut cut = store.incoming_blob(&name, &other, Some(5)).unwrap();
        cut.append(b"ot").unwrap();
        let staged = cut.path.clone();
        drop(cut);
        assert!(!staged.exists());
    }
}
