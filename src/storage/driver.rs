//! What the store asks of the place its content lives, in the shape of
//! distribution's storage driver: small objects put, read, stat, listed and
//! removed by [`Key`], and blob bytes opened for reading. The store's logic
//! (manifests, tags, links, referrers, garbage collection) is written once on
//! top of it; the file system (`fs.rs`) is one driver.
//!
//! Every write is durable when the call returns, except the names a call puts
//! in a [`Pending`], which are durable once it is synced: on a file system a
//! push's new names are fsynced together (see durable.rs), where an object
//! store's writes are durable on return and leave it empty.

use super::Result;
use super::durable::Pending;
use super::paths::Key;
use super::read::BlobContent;
use bytes::Bytes;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::time::SystemTime;
use uuid::Uuid;

/// What a stat says of a stored object.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub size: u64,
    /// When it was last written or touched (garbage collection's grace period).
    pub modified: SystemTime,
}

/// Bytes waiting to become a blob.
pub enum Source<'a> {
    /// A complete file in the staging folder (a single-request upload, a
    /// blob fetched from upstream).
    File(&'a Path),
    /// The first `size` bytes of upload session `id`.
    Upload(Uuid, u64),
}

/// One chunk being appended to an upload session.
pub trait Chunk: Send {
    fn write(&mut self, chunks: &[Bytes]) -> io::Result<()>;

    /// The bytes taken so far.
    fn written(&self) -> u64;

    /// Ends the chunk, which is then part of the session for good; returns
    /// how many bytes it appended.
    fn finish(&mut self) -> io::Result<u64>;

    /// Takes back a chunk that did not finish (or whose finish failed).
    fn undo(self: Box<Self>) -> io::Result<()>;
}

/// What a claim on an upload session found.
pub enum Claimed {
    /// Ours until the claim drops; the session holds this many bytes.
    Held(Claim, u64),
    /// Another process holds it (only when not waiting).
    Busy,
    /// Ended, or never was.
    Gone,
}

/// A session claimed across processes (on a file system, an flock on its
/// `info.json`), released when dropped.
pub struct Claim {
    _lock: Option<File>,
}

impl Claim {
    /// A claim held by the lock on `file`.
    pub fn locked(file: File) -> Claim {
        Claim { _lock: Some(file) }
    }

    /// A claim that holds nothing, where the driver needs no lock.
    pub fn unlocked() -> Claim {
        Claim { _lock: None }
    }
}

pub trait Driver: Send + Sync + 'static {
    /// Reads a small object whole; `None` if absent.
    fn read(&self, key: &Key) -> io::Result<Option<Vec<u8>>>;

    /// Replaces `key` with `bytes`, atomically: a reader sees the old bytes
    /// or the new ones, never a part.
    fn write(&self, key: &Key, bytes: &[u8]) -> io::Result<()>;

    /// Writes `key` unless it exists (content-addressed keys, where what is
    /// there holds the same bytes); says whether it wrote.
    fn write_new(&self, key: &Key, bytes: &[u8]) -> io::Result<bool>;

    /// Creates `key` empty unless it exists (a name is all it says); says
    /// whether it did. Durable once `pending` is synced.
    fn create(&self, key: &Key, pending: &mut Pending) -> io::Result<bool>;

    /// Makes sure `key`, which exists, is durable once `pending` is synced:
    /// whoever wrote it may not have synced it yet.
    fn settle(&self, key: &Key, pending: &mut Pending);

    /// Makes the names in `pending` durable.
    fn sync(&self, pending: Pending) -> io::Result<()>;

    /// Removes `key`; `Ok(false)` if it was not there.
    fn remove(&self, key: &Key) -> io::Result<bool>;

    fn stat(&self, key: &Key) -> io::Result<Option<Meta>>;

    /// The size of `key`; `None` if absent.
    fn size(&self, key: &Key) -> io::Result<Option<u64>> {
        Ok(self.stat(key)?.map(|m| m.size))
    }

    fn exists(&self, key: &Key) -> io::Result<bool> {
        Ok(self.stat(key)?.is_some())
    }

    /// Gives `key` a fresh modification time. A blob must exist; other keys
    /// (pull records, which say nothing but their time) are created empty.
    fn touch(&self, key: &Key) -> io::Result<()>;

    /// The names directly under `dir`, objects and folders alike, in no order.
    fn list(&self, dir: &Key) -> io::Result<Vec<String>>;

    /// Calls `visit` with every object at any depth under `dir`. An object
    /// written or removed during the walk may or may not be visited.
    fn walk(&self, dir: &Key, visit: &mut dyn FnMut(Key, Meta) -> Result<()>) -> Result<()>;

    /// Opens the bytes of `key` for reading; `None` if absent.
    fn open(&self, key: &Key) -> io::Result<Option<BlobContent>>;

    /// Bytes free for new uploads, where the driver can tell.
    fn available(&self) -> io::Result<Option<u64>>;

    /// Proves the store takes writes, with a durable write and removal.
    fn probe(&self) -> io::Result<()>;

    /// A local folder of this process's for files being staged.
    fn staging_dir(&self) -> &Path;

    /// Opens upload session `id`, empty, recording `info`.
    fn upload_start(&self, id: &Uuid, info: &[u8]) -> io::Result<()>;

    /// The bytes session `id` holds; `None` if there is no such session.
    fn upload_size(&self, id: &Uuid) -> io::Result<Option<u64>>;

    /// Claims session `id` against other processes, waiting for one that
    /// holds it if `wait`.
    fn upload_claim(&self, id: &Uuid, wait: bool) -> io::Result<Claimed>;

    /// A chunk appended to session `id` from `offset`, its size.
    fn upload_chunk(&self, id: &Uuid, offset: u64) -> io::Result<Box<dyn Chunk>>;

    /// Reads session `id`'s bytes from the start (rebuilding its hash).
    fn upload_read(&self, id: &Uuid) -> io::Result<Box<dyn Read + Send + '_>>;

    /// Removes session `id` and its bytes.
    fn upload_remove(&self, id: &Uuid) -> io::Result<()>;

    /// Makes `source` durable where it is, ahead of its commit, so that the
    /// commit itself (under the commit lock) is quick.
    fn prepare(&self, source: &Source) -> io::Result<()>;

    /// Makes `source` the content of `key` unless `key` exists (content
    /// addressed: it holds the same bytes), and says whether it did. `key`
    /// is durable once `pending` is synced.
    fn publish(&self, source: &Source, key: &Key, pending: &mut Pending) -> io::Result<bool>;
}
