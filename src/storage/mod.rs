//! The store: blobs by digest, per-repository links, tags, referrers and upload
//! sessions. Its logic is written against one storage interface (`driver.rs`),
//! with keys laid out by `paths.rs`; the file system (`fs.rs`) is behind it.
//!
//! # Order of writes (what makes an acknowledged push survive a crash)
//!
//! Every write follows [`durable`]: stage, fsync, rename, fsync the folder
//! (a blob's link, being only a name, skips the staging).
//! On top of that, the store orders its writes so that anything visible is complete:
//!
//! * **blob**: the upload's data file is fsynced and its digest verified, then
//!   renamed to `blobs/…`, then the repository's link (an empty file named by the
//!   digest) is created, then the folders of both names are fsynced together,
//!   before the 201. A crash before the link leaves an unreferenced blob, which
//!   garbage collection reclaims. A power loss that keeps the link but not the
//!   blob's name leaves a link every reader ignores (a blob is readable only when
//!   both exist); never a name for missing or partial bytes.
//! * **manifest**: its bytes are written as a blob, then its `_manifests` link, then
//!   the referrers entry, and the tag last. A tag is therefore never visible before
//!   the manifest it names, and the 201 is sent only after all of these are durable.
//!   Moving a tag is the same: the new content replaces the old in one rename.
//! * **delete**: the reverse. A manifest's tags and its referrers entry are
//!   removed, each durably, before its `_manifests` link, so nothing names a
//!   manifest that is gone. Every removal is durable before the 202.
//! * **upload session**: `info.json` is written atomically when the session opens;
//!   chunks are appended to `data` and the offset is the file's length, so a
//!   restarted process resumes where the bytes on disk end. The hash state is kept
//!   in memory and rebuilt by re-reading `data` after a restart.
//!
//! `write_order.rs` checks this order on a journal of the operations (tests
//! only: a crash test cannot, as SIGKILL keeps the page cache).
//!
//! Blocking file work runs on tokio's blocking pool; request bodies stream through
//! in batches, hashed as they are written (with direct I/O where the file system
//! allows it, `sink.rs`), never held whole in memory.
//!
//! Tag lookups, manifests and blob sizes are served from a small cache that
//! every change invalidates after it is on disk (`cache.rs`); the write order
//! above is the same with or without it.
//!
//! Bytes that rot on disk after all this are found by a scrub (`scrub.rs`),
//! which moves them aside so that the digest reads as absent and the next
//! push stores it anew.

mod blobs;
pub mod bucket;
mod cache;
mod catalog;
mod driver;
pub(crate) mod durable;
mod evict;
mod fs;
mod gc;
mod history;
mod incoming;
#[cfg(test)]
mod journal;
mod manifests;
mod object;
pub(crate) mod paths;
mod pulls;
mod read;
mod referrers;
mod scrub;
mod shared_gc;
mod sink;
mod staging;
mod uploads;
mod usage;
#[cfg(test)]
mod write_order;

pub use evict::{CacheLimit, CacheReport};
pub use gc::{GcOptions, GcReport, RetentionRule};
pub use history::{GcRun, UsageSample, gc_run};
pub use incoming::IncomingBlob;
pub use manifests::{StoredManifest, TagEntry};
pub use pulls::record_interval;
pub use read::BlobContent;
pub use scrub::{CorruptBlob, DEFAULT_SCRUB_RATE, ScrubFailure, ScrubOptions, ScrubReport};
pub use uploads::Body;
pub use usage::UsageSnapshot;

use crate::oci::{Digest, RepoName};
use driver::Driver;
use fs::FsDriver;
use object::ObjectDriver;
use paths::{Key, REPO_MARKERS};
use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("blob unknown to this repository")]
    BlobUnknown,
    #[error("manifest unknown")]
    ManifestUnknown,
    #[error("repository name not known to registry")]
    NameUnknown,
    #[error("blob upload unknown")]
    UploadUnknown,
    #[error("chunk starts at {start}, but the upload holds {size} bytes")]
    RangeMismatch { start: u64, size: u64 },
    #[error("another request is appending to this upload at offset {0}")]
    ChunkInProgress(u64),
    #[error("chunk holds {received} bytes, but its Content-Range says {declared}")]
    ChunkLength { declared: u64, received: u64 },
    #[error("content digest is {computed}, not {expected}")]
    DigestMismatch { expected: Digest, computed: Digest },
    #[error("blob {0} is not in this repository")]
    ManifestBlobUnknown(Digest),
    #[error("{0}")]
    ManifestInvalid(String),
    #[error(
        "storage is nearly full: {} free, and {} is kept in reserve for manifests and tags",
        bytesize::ByteSize::b(*available),
        bytesize::ByteSize::b(*reserve)
    )]
    InsufficientSpace { available: u64, reserve: u64 },
    #[error("a garbage collection is already running")]
    GcRunning,
    #[error("a scrub is already running")]
    ScrubRunning,
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("request body ended early: {0}")]
    Body(io::Error),
    #[error("storage: {0}")]
    Io(#[from] io::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why an offline tool cannot work on a data folder.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{} is not a berth data folder (no blobs/ in it)", .0.display())]
    NotAStore(PathBuf),
    #[error(
        "{} is in use by a running berth serve; work through that registry with --url instead",
        .0.display()
    )]
    InUse(PathBuf),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The registry's storage; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// Where the content lives.
enum Backend {
    Fs(FsDriver),
    Object(ObjectDriver),
}

struct Inner {
    backend: Backend,
    /// Free space below which new upload bytes are refused, so that manifests,
    /// tags and upload state can still be written on a nearly full disk.
    min_free: u64,
    /// Every repository holding anything (catalog.rs).
    catalog: catalog::Catalog,
    /// Upload sessions touched since start-up (the rest are loaded on demand).
    sessions: Mutex<HashMap<Uuid, Arc<uploads::Session>>>,
    /// Taken to load a session from disk into `sessions` (see `Store::session`).
    session_loads: tokio::sync::Mutex<()>,
    /// Held for reading by a manifest commit, for writing by each GC deletion.
    commit_lock: RwLock<()>,
    /// Digests referred to by manifests committed while a collection runs.
    pins: Mutex<gc::Pins>,
    /// The pins of a shared bucket read so far (shared_gc.rs).
    bucket_pins: Mutex<shared_gc::Pins>,
    /// The lock of the collection running on a shared bucket.
    gc_lock: Mutex<Option<shared_gc::GcLock>>,
    gc_running: AtomicBool,
    scrub_running: AtomicBool,
    usage: usage::Usage,
    /// Tags, manifests and blob sizes recently read (see cache.rs: exact invalidation).
    cache: cache::Cache,
    /// When this process last wrote down each pull (pulls.rs).
    pulls: pulls::Recorded,
}

impl Store {
    /// Opens (creating if needed) the store rooted at `root`, claims a staging
    /// folder and clears those a dead process left (staging.rs), and indexes
    /// the repositories. Uploads are refused
    /// while less than `min_free` bytes are free.
    pub async fn open(root: impl Into<PathBuf>, min_free: u64) -> Result<Store> {
        let root = root.into();
        let fs = tokio::task::spawn_blocking(move || FsDriver::open(root))
            .await
            .map_err(io::Error::other)??;
        let store = Store::with(Backend::Fs(fs), min_free).await?;
        store
            .blocking(|s| {
                for repo in s.repositories_sync()? {
                    let moved = referrers::move_old_referrers(s.driver(), &repo)?;
                    if moved > 0 {
                        tracing::info!(repository = %repo, moved, "referrers index moved to its new layout");
                    }
                }
                Ok(())
            })
            .await?;
        Ok(store)
    }

    /// Opens the store kept in `bucket` (see bucket.rs), staging files in a
    /// folder of this process under `scratch` on local disk.
    /// With `redirect`, blob GETs are sent to signed URLs of the bucket
    /// ([`Store::blob_url`]); one is signed here, so that credentials that
    /// cannot sign (an Azure SAS) stop the start rather than every pull.
    pub async fn open_bucket(
        bucket: bucket::Connected,
        scratch: &Path,
        redirect: bool,
    ) -> Result<Store> {
        let mut driver = ObjectDriver::new(bucket.store, scratch)?;
        if redirect {
            driver = driver.with_signer(bucket.signer, bucket.prefix);
            driver
                .signed_get(&paths::blobs_dir(), blobs::REDIRECT_LIFE)
                .await
                .map_err(|e| {
                    io::Error::other(format!(
                        "--storage-redirect: these credentials cannot sign URLs of the store ({e}); run without it"
                    ))
                })?;
        }
        Store::with(Backend::Object(driver), 0).await
    }

    /// Indexes the repositories and counts the blobs of `backend`.
    async fn with(backend: Backend, min_free: u64) -> Result<Store> {
        let (backend, catalog, usage) = tokio::task::spawn_blocking(move || -> Result<_> {
            let driver = backend.driver();
            let catalog = match &backend {
                Backend::Fs(_) => {
                    let mut known = BTreeSet::new();
                    index_repositories(driver, &paths::repositories_dir(), "", &mut known)?;
                    catalog::Catalog::local(known)
                }
                Backend::Object(_) => catalog::Catalog::shared(driver)?,
            };
            let usage = usage::Usage::scan(driver)?;
            Ok((backend, catalog, usage))
        })
        .await
        .map_err(io::Error::other)??;
        // Replicas on one bucket change it behind each other's back: nothing
        // read from it may be answered from memory.
        let cache = match &backend {
            Backend::Fs(_) => cache::Cache::default(),
            Backend::Object(_) => cache::Cache::disabled(),
        };
        Ok(Store {
            inner: Arc::new(Inner {
                backend,
                min_free,
                catalog,
                sessions: Mutex::new(HashMap::new()),
                session_loads: tokio::sync::Mutex::new(()),
                commit_lock: RwLock::new(()),
                pins: Mutex::new(None),
                bucket_pins: Mutex::default(),
                gc_lock: Mutex::new(None),
                gc_running: AtomicBool::new(false),
                scrub_running: AtomicBool::new(false),
                usage,
                cache,
                pulls: pulls::Recorded::default(),
            }),
        })
    }

    /// Opens the store at `root` for an offline tool (`berth gc --root`,
    /// `berth scrub --root`). Refuses a folder that holds no store (opening
    /// would create one: a typo would check nothing), and one that a live
    /// process serves: its catalog, caches and GC pins would not see what the
    /// tool changes, and its commits would not be pinned against our sweep.
    pub async fn open_offline(root: &Path) -> Result<Store, OfflineError> {
        if !FsDriver::is_store(root) {
            return Err(OfflineError::NotAStore(root.to_owned()));
        }
        // No reserve: offline tools free space or only rename.
        let store = Store::open(root, 0).await?;
        let others = store
            .blocking(|s| Ok(s.fs().map_or(Ok(0), FsDriver::live_others)?))
            .await?;
        if others > 0 {
            return Err(OfflineError::InUse(root.to_owned()));
        }
        Ok(store)
    }

    /// Blob count and bytes, and open upload sessions, as of now.
    pub fn usage(&self) -> UsageSnapshot {
        self.inner.usage.snapshot()
    }

    /// Where the content lives, for the logic that is the same on every driver.
    fn driver(&self) -> &dyn Driver {
        self.inner.backend.driver()
    }

    /// The file-system driver, for what only it does (scrubs, for now).
    fn fs(&self) -> Option<&FsDriver> {
        match &self.inner.backend {
            Backend::Fs(fs) => Some(fs),
            Backend::Object(_) => None,
        }
    }

    /// The object-store driver, for what a bucket that replicas share needs.
    fn object(&self) -> Option<&ObjectDriver> {
        match &self.inner.backend {
            Backend::Object(object) => Some(object),
            Backend::Fs(_) => None,
        }
    }

    /// The file of `key`, in a test of a store on a file system.
    #[cfg(test)]
    fn file(&self, key: &Key) -> PathBuf {
        self.fs().expect("a store on a file system").path(key)
    }

    /// Runs blocking file work off the async threads.
    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))?
    }

    /// Refuses to take `incoming` more upload bytes if that would eat into the
    /// reserve (where the driver knows its free space: a bucket has no end).
    fn check_space(&self, incoming: u64) -> Result<()> {
        let Some(available) = self.driver().available()? else {
            return Ok(());
        };
        if available < self.inner.min_free.saturating_add(incoming) {
            return Err(StoreError::InsufficientSpace {
                available,
                reserve: self.inner.min_free,
            });
        }
        Ok(())
    }

    /// A stamp of `name` that changes with every change this process makes
    /// to it (for what is derived from its content and kept, like the web
    /// UI's summaries); `None` on a bucket that replicas share, where others
    /// change it unseen.
    pub fn repository_stamp(&self, name: &RepoName) -> Option<u64> {
        match self.inner.backend {
            Backend::Fs(_) => Some(self.inner.cache.changes(name)),
            Backend::Object(_) => None,
        }
    }

    /// Bytes free where the content lives; `None` for a bucket, which has no end.
    pub async fn free_space(&self) -> Result<Option<u64>> {
        self.blocking(|s| Ok(s.driver().available()?)).await
    }

    /// Proves the store can take writes: free space above the reserve, and a
    /// durable write and removal.
    pub async fn check_writable(&self) -> Result<()> {
        self.blocking(|s| {
            s.check_space(0)?;
            Ok(s.driver().probe()?)
        })
        .await
    }

    /// Every repository holding anything, in lexical order.
    pub async fn repositories(&self) -> Result<Vec<RepoName>> {
        self.blocking(|s| s.repositories_sync()).await
    }

    fn repositories_sync(&self) -> Result<Vec<RepoName>> {
        self.inner.catalog.all(self.driver())
    }

    fn remember_repository(&self, name: &RepoName) -> Result<()> {
        self.inner.catalog.remember(self.driver(), name)
    }

    fn repository_exists(&self, name: &RepoName) -> Result<bool> {
        self.inner.catalog.contains(self.driver(), name)
    }
}

impl Backend {
    fn driver(&self) -> &dyn Driver {
        match self {
            Backend::Fs(fs) => fs,
            Backend::Object(object) => object,
        }
    }
}

/// Walks `repositories/` once at start-up: a folder holding one of the marker
/// folders is a repository; marker folders themselves are not descended into.
fn index_repositories(
    driver: &dyn Driver,
    dir: &Key,
    prefix: &str,
    out: &mut BTreeSet<RepoName>,
) -> Result<()> {
    let children = driver.list(dir)?;
    if !prefix.is_empty()
        && children.iter().any(|c| REPO_MARKERS.contains(&c.as_str()))
        && let Ok(repo) = prefix.parse()
    {
        out.insert(repo);
    }
    for child in children.iter().filter(|c| !c.starts_with('_')) {
        let name = if prefix.is_empty() {
            child.clone()
        } else {
            format!("{prefix}/{child}")
        };
        index_repositories(driver, &dir.child(child), &name, out)?;
    }
    Ok(())
}
