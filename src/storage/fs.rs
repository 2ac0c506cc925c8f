//! The file-system driver: each key is a file under the data folder, written
//! by the rules of durable.rs (stage, fsync, rename, fsync the folder), with
//! this process's staging folder under `tmp/` (staging.rs).

use super::driver::{Chunk, Claim, Claimed, Driver, Meta, Source};
use super::durable::{self, Pending};
use super::paths::{self, Key};
use super::read::BlobContent;
use super::sink::Sink;
use super::staging::{self, Staging};
use super::{Result, StoreError};
use crate::oci::Algorithm;
use bytes::Bytes;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read};
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

    /// How many other live processes serve this data folder.
    pub fn live_others(&self) -> io::Result<usize> {
        self.staging.live_others()
    }
}

/// A chunk written to a local file from `offset` (an upload session's data,
/// or a staged file), through a [`Sink`]: direct I/O where the file system
/// allows it. Undone by cutting the file back to `offset`.
pub struct FileChunk {
    path: PathBuf,
    offset: u64,
    sink: Option<Sink>,
    written: u64,
}

impl FileChunk {
    pub fn open(path: PathBuf, offset: u64) -> io::Result<FileChunk> {
        let sink = Sink::open(&path, offset, true)?;
        Ok(FileChunk {
            path,
            offset,
            sink: Some(sink),
            written: 0,
        })
    }
}

impl Chunk for FileChunk {
    fn write(&mut self, chunks: &[Bytes]) -> io::Result<()> {
        match &mut self.sink {
            Some(sink) => {
                sink.write(chunks)?;
                self.written += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
                Ok(())
            }
            None => Err(io::Error::other("chunk written after its end")),
        }
    }

    fn written(&self) -> u64 {
        self.written
    }

    fn finish(&mut self) -> io::Result<u64> {
        match self.sink.take() {
            Some(sink) => sink.finish(),
            None => Err(io::Error::other("chunk ended twice")),
        }
    }

    /// Cuts the file back to where the chunk began. (A chunk merely dropped,
    /// its request gone, leaves its bytes: the next claim finds the file's
    /// size and rebuilds the hash from it.)
    fn undo(self: Box<Self>) -> io::Result<()> {
        drop(self.sink);
        OpenOptions::new()
            .write(true)
            .open(&self.path)?
            .set_len(self.offset)
    }
}

/// Opens a session file; `None` if it is not there (the session is unknown).
fn open_session_file(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
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
            Err(e) if durable::absent(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn exists(&self, key: &Key) -> io::Result<bool> {
        self.path(key).try_exists()
    }

    fn touch(&self, key: &Key) -> io::Result<()> {
        let path = self.path(key);
        if key.as_str().starts_with("blobs/") {
            // A blob that vanished is not made again, empty, under its digest.
            let file = OpenOptions::new().write(true).open(&path)?;
            return file.set_modified(SystemTime::now());
        }
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
            Err(e) if durable::absent(&e) => return Ok(Vec::new()),
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

    fn open(&self, key: &Key) -> io::Result<Option<BlobContent>> {
        match File::open(self.path(key)) {
            Ok(file) => {
                let size = file.metadata()?.len();
                Ok(Some(BlobContent::file(file, size)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn available(&self) -> io::Result<Option<u64>> {
        let stat = rustix::fs::statvfs(&self.root).map_err(io::Error::from)?;
        Ok(Some(stat.f_bavail.saturating_mul(stat.f_frsize)))
    }

    fn probe(&self) -> io::Result<()> {
        let probe = self.staging_dir().join("readyz");
        durable::write_atomic(self.staging_dir(), &probe, b"ok")?;
        durable::remove(&probe)?;
        Ok(())
    }

    /// On the store's own file system, so that a staged file becomes a blob
    /// by a rename.
    fn staging_dir(&self) -> &Path {
        self.staging.dir()
    }

    fn upload_start(&self, id: &Uuid, info: &[u8]) -> io::Result<()> {
        durable::ensure_dir(&self.path(&paths::upload_dir(id)))?;
        File::create(self.path(&paths::upload_data(id)))?;
        self.write(&paths::upload_info(id), info)
    }

    fn upload_size(&self, id: &Uuid) -> io::Result<Option<u64>> {
        Ok(self.stat(&paths::upload_data(id))?.map(|m| m.size))
    }

    /// An flock on `info.json`: the async lock of each session orders the
    /// requests of one process; this one orders those of two processes that
    /// share the folder for a while (the overlap of a rolling update, see
    /// staging.rs), whose in-memory sessions know nothing of each other.
    fn upload_claim(&self, id: &Uuid, wait: bool) -> io::Result<Claimed> {
        let info = self.path(&paths::upload_info(id));
        let Some(file) = open_session_file(&info)? else {
            return Ok(Claimed::Gone);
        };
        if wait {
            file.lock()?;
        } else {
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Ok(Claimed::Busy),
                Err(TryLockError::Error(e)) => return Err(e),
            }
        }
        // Ended by another process while we waited: its folder is gone.
        if !staging::still_there(&info, &file)? {
            return Ok(Claimed::Gone);
        }
        Ok(match self.upload_size(id)? {
            Some(size) => Claimed::Held(Claim::locked(file), size),
            None => Claimed::Gone,
        })
    }

    fn upload_chunk(&self, id: &Uuid, offset: u64) -> io::Result<Box<dyn Chunk>> {
        Ok(Box::new(FileChunk::open(
            self.path(&paths::upload_data(id)),
            offset,
        )?))
    }

    fn upload_read(&self, id: &Uuid) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(File::open(self.path(&paths::upload_data(id)))?))
    }

    fn upload_remove(&self, id: &Uuid) -> io::Result<()> {
        match std::fs::remove_dir_all(self.path(&paths::upload_dir(id))) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn prepare(&self, source: &Source) -> io::Result<()> {
        durable::sync_file(&self.source_path(source))
    }

    fn publish(&self, source: &Source, key: &Key, pending: &mut Pending) -> io::Result<bool> {
        durable::rename_new(&self.source_path(source), &self.path(key), pending)
    }
}

impl FsDriver {
    fn source_path(&self, source: &Source) -> PathBuf {
        match source {
            Source::File(path) => path.to_path_buf(),
            Source::Upload(id, _) => self.path(&paths::upload_data(id)),
        }
    }
}
