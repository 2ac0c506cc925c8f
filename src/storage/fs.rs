//! The file-system driver: each key is a file under the data folder, written
//! by the rules of durable.rs (stage, fsync, rename, fsync the folder), with
//! this process's staging folder under `tmp/` (staging.rs).

use super::driver::{Driver, Meta};
use super::durable::{self, Pending};
use super::paths::{self, Key};
use super::staging::Staging;
use super::{Result, StoreError};
use crate::oci::Algorithm;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use uuid::Uuid;

pub struct FsDriver {
    root: PathBuf,
    /// This process's staging folder, locked while the driver lives.
    staging: Staging,
}

impl FsDriver {
    /// Opens (creating if needed) the data folder `root` and claims a
    /// staging folder, clearing those a dead process left (staging.rs).
    pub fn open(root: PathBuf) -> io::Result<FsDriver> {
        for dir in [
            paths::blobs_dir(),
            paths::repositories_dir(),
            paths::uploads_dir(),
        ] {
            durable::ensure_dir(&root.join(dir.as_str()))?;
        }
        let tmp = root.join("tmp");
        durable::ensure_dir(&tmp)?;
        // Made once here rather than by the first push of each prefix, which
        // would then wait for one more folder fsync (a small push's p50 went
        // from 1.22 to 1.01 ms without it here). Only sha256: nearly every
        // client uses it. A push still makes a missing one, so a full disk,
        // where these cannot be made, is no reason to refuse to start.
        let prefixes = paths::blob_prefixes(Algorithm::Sha256).map(|key| root.join(key.as_str()));
        if let Err(e) = durable::ensure_dirs(prefixes) {
            tracing::warn!(error = %e, "could not make the blob prefix folders ahead");
        }
        let staging = Staging::claim(&tmp)?;
        Ok(FsDriver { root, staging })
    }

    /// Whether `root` holds a data folder (opening one would create it).
    pub fn is_store(root: &Path) -> bool {
        root.join(paths::blobs_dir().as_str()).is_dir()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of `key`.
    pub fn path(&self, key: &Key) -> PathBuf {
        self.root.join(key.as_str())
    }

    /// This process's staging folder, on the same file system as the store.
    pub fn staging_dir(&self) -> &Path {
        self.staging.dir()
    }

    /// Where a single-request upload (or a fetched blob) is staged before it
    /// becomes a blob.
    pub fn staged_blob(&self, id: &Uuid) -> PathBuf {
        self.staging_dir().join(format!("blob-{}", id.simple()))
    }

    /// How many other live processes serve this data folder.
    pub fn live_others(&self) -> io::Result<usize> {
        self.staging.live_others()
    }

    /// Bytes free for us on the store's file system.
    pub fn available(&self) -> io::Result<u64> {
        let stat = rustix::fs::statvfs(&self.root).map_err(io::Error::from)?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// Proves a durable write and removal work, in the staging folder.
    pub fn probe(&self) -> io::Result<()> {
        let probe = self.staging_dir().join("readyz");
        durable::write_atomic(self.staging_dir(), &probe, b"ok")?;
        durable::remove(&probe)?;
        Ok(())
    }

    /// Makes the complete staged file `from` the content of `key`, unless
    /// `key` exists (content-addressed: then `from` is removed). Says whether
    /// it did; either way `key` is durable once `pending` is synced.
    pub fn commit_file(&self, from: &Path, key: &Key, pending: &mut Pending) -> io::Result<bool> {
        durable::rename_new(from, &self.path(key), pending)
    }
}

fn meta(m: &std::fs::Metadata) -> Meta {
    Meta {
        size: m.len(),
        modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    }
}

impl Driver for FsDriver {
    fn read(&self, key: &Key) -> io::Result<Option<Vec<u8>>> {
        durable::read_optional(&self.path(key))
    }

    fn write(&self, key: &Key, bytes: &[u8]) -> io::Result<()> {
        durable::write_atomic(self.staging_dir(), &self.path(key), bytes)
    }

    fn write_new(&self, key: &Key, bytes: &[u8]) -> io::Result<bool> {
        durable::write_atomic_new(self.staging_dir(), &self.path(key), bytes)
    }

    fn create(&self, key: &Key, pending: &mut Pending) -> io::Result<bool> {
        durable::create_name(&self.path(key), pending)
    }

    fn settle(&self, key: &Key, pending: &mut Pending) {
        let path = self.path(key);
        pending.add(path.parent().expect("store paths always have a parent"));
    }

    fn sync(&self, pending: Pending) -> io::Result<()> {
        pending.sync()
    }

    fn remove(&self, key: &Key) -> io::Result<bool> {
        durable::remove(&self.path(key))
    }

    fn stat(&self, key: &Key) -> io::Result<Option<Meta>> {
        match std::fs::metadata(self.path(key)) {
            Ok(m) => Ok(Some(meta(&m))),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn exists(&self, key: &Key) -> io::Result<bool> {
        self.path(key).try_exists()
    }

    fn touch(&self, key: &Key) -> io::Result<()> {
        let path = self.path(key);
        let open = || {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
        };
        let file = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                durable::ensure_dir(path.parent().expect("store paths have a parent"))?;
                open()?
            }
            other => other?,
        };
        file.set_modified(SystemTime::now())
    }

    fn list(&self, dir: &Key) -> io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(self.path(dir)) {
            Ok(entries) => entries,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in entries {
            // Names that are not UTF-8 are none that the store wrote.
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn walk(&self, dir: &Key, visit: &mut dyn FnMut(Key, Meta) -> Result<()>) -> Result<()> {
        let entries = match std::fs::read_dir(self.path(dir)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for entry in entries {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let key = dir.child(&name);
            if entry.file_type()?.is_dir() {
                self.walk(&key, visit)?;
            } else {
                match entry.metadata() {
                    Ok(m) => visit(key, meta(&m))?,
                    // Removed since the listing.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::Io(e)),
                }
            }
        }
        Ok(())
    }

    fn open(&self, key: &Key) -> io::Result<Option<(File, u64)>> {
        match File::open(self.path(key)) {
            Ok(file) => {
                let size = file.metadata()?.len();
                Ok(Some((file, size)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}
