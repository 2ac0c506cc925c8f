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
use std::fs::File;
use std::io;
use std::time::SystemTime;

/// What a stat says of a stored object.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub size: u64,
    /// When it was last written or touched (garbage collection's grace period).
    pub modified: SystemTime,
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

    fn exists(&self, key: &Key) -> io::Result<bool> {
        Ok(self.stat(key)?.is_some())
    }

    /// Gives `key` a fresh modification time, creating it empty if absent.
    fn touch(&self, key: &Key) -> io::Result<()>;

    /// The names directly under `dir`, objects and folders alike, in no order.
    fn list(&self, dir: &Key) -> io::Result<Vec<String>>;

    /// Calls `visit` with every object at any depth under `dir`. An object
    /// written or removed during the walk may or may not be visited.
    fn walk(&self, dir: &Key, visit: &mut dyn FnMut(Key, Meta) -> Result<()>) -> Result<()>;

    /// Opens the bytes of `key` for reading; `None` if absent.
    fn open(&self, key: &Key) -> io::Result<Option<(File, u64)>>;
}
