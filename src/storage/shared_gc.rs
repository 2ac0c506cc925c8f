//! Garbage collection on a bucket that several replicas share, where the
//! commit lock and pins of gc.rs, which live in one process, cannot see
//! another replica's commits.
//!
//! # Why a manifest committed through any replica never loses a blob
//!
//! * **Pins in the bucket.** A manifest commit writes the digests it refers
//!   to as an object `_pins/<id>` before it checks that they are stored. A
//!   pin is left to expire ([`PIN_LIFE`]) rather than removed: a collection
//!   that began before the commit must still find it.
//! * **The sweep moves, then looks, then purges.** An unreferenced blob past
//!   the grace period is first moved to `trash/` (copied, then removed), then
//!   the pins are listed, then each moved blob is either put back (a live pin
//!   names it) or purged.
//! * **Reading a blob puts it back.** A blob that is not in `blobs/` but in
//!   `trash/` is copied back by whoever reads it (object.rs), a commit's
//!   check included.
//! * **Both sides are quick.** A commit gives up if more than half a pin's
//!   life passed between its pin and its links, and a sweep stops (the next
//!   run goes on) once half a pin's life passed since its mark began.
//!
//! Take a commit of a manifest M naming a blob X, and a collection that
//! purges X. The collection's mark came before M's link, or X would be
//! marked. If the commit's pin came before the collection listed the pins
//! after moving X, then less than a pin's life separates the two (half for
//! the commit, half for the collection), so the pin was live and X was put
//! back. If the pin came after, so did the commit's check, which came after
//! the move: it put X back from `trash/`, or found it purged and refused
//! the manifest (`MANIFEST_BLOB_UNKNOWN`: the client uploads X again). No
//! order of the steps of the two replicas leaves a committed manifest naming
//! purged bytes. Two collections at once would be as safe, but one at a time
//! does the work once: a lock object (see [`GcLock`]).
//!
//! A swept blob's repository links stay: a link to bytes that are gone reads
//! as unknown, and removing them could race a commit's check of them.
//! Deleting manifests (untagged ones, retention, cache eviction) still relies
//! on the commit lock of one process: on a shared bucket, see the README.

use super::driver::Driver;
use super::gc::GcOptions;
use super::object::ObjectDriver;
use super::paths::{self, Key};
use super::{Result, Store, StoreError};
use crate::oci::Digest;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// How long a pin protects what it names; older ones are removed.
const PIN_LIFE: Duration = Duration::from_secs(20 * 60);

/// Blobs moved to `trash/` before the pins are looked at again.
const BATCH: usize = 256;

/// A collection's lock lasts this long unless renewed.
const LOCK_LIFE: Duration = Duration::from_secs(120);

/// The pin of one manifest commit; it expires by itself.
pub(super) struct BucketPin {
    written: Instant,
}

impl BucketPin {
    pub fn write(driver: &ObjectDriver, digests: &[Digest]) -> Result<BucketPin> {
        let key = paths::pin(&Uuid::new_v4());
        let list: Vec<String> = digests.iter().map(Digest::to_string).collect();
        driver.write(&key, &serde_json::to_vec(&list).map_err(io::Error::other)?)?;
        Ok(BucketPin {
            written: Instant::now(),
        })
    }

    /// Refuses to go on with a commit whose pin may have expired.
    pub fn check_fresh(&self) -> Result<()> {
        if self.written.elapsed() > PIN_LIFE / 2 {
            return Err(StoreError::Io(io::Error::other(
                "the manifest commit took too long; nothing was committed",
            )));
        }
        Ok(())
    }
}

/// The live pins, read once each (a pin never changes).
#[derive(Default)]
struct Pins {
    read: HashMap<String, Vec<Digest>>,
}

impl Pins {
    /// The digests every live pin names; expired pins are removed.
    fn refresh(&mut self, driver: &ObjectDriver, now: SystemTime) -> Result<HashSet<Digest>> {
        let mut live = HashMap::new();
        for name in driver.list(&paths::pins_dir())? {
            let key = paths::pins_dir().child(&name);
            let Some(meta) = driver.stat(&key)? else {
                continue;
            };
            if now.duration_since(meta.modified).unwrap_or_default() > PIN_LIFE {
                driver.remove(&key)?;
                continue;
            }
            let digests = match self.read.remove(&name) {
                Some(digests) => digests,
                None => {
                    let Some(bytes) = driver.read(&key)? else {
                        continue;
                    };
                    let list: Vec<String> = serde_json::from_slice(&bytes).unwrap_or_default();
                    list.iter().filter_map(|d| d.parse().ok()).collect()
                }
            };
            live.insert(name, digests);
        }
        self.read = live;
        Ok(self.read.values().flatten().cloned().collect())
    }
}

/// What the lock object says.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LockRecord {
    owner: String,
    /// Seconds since the epoch, on the holder's clock.
    expires: u64,
}

/// The one collection of a bucket at a time: the object `_gc/lock`, created
/// with a conditional PUT, renewed while the collection runs, and taken over
/// (by a PUT conditional on its ETag) once it expires.
pub(super) struct GcLock<'a> {
    driver: &'a ObjectDriver,
    owner: String,
    e_tag: Option<String>,
    renewed: Instant,
}

fn record(owner: &str) -> Result<Vec<u8>> {
    let expires = SystemTime::now()
        .checked_add(LOCK_LIFE)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let record = LockRecord {
        owner: owner.to_owned(),
        expires,
    };
    Ok(serde_json::to_vec(&record).map_err(io::Error::other)?)
}

impl<'a> GcLock<'a> {
    /// Takes the lock, or `Err(GcRunning)` while another collection holds it.
    pub fn take(driver: &'a ObjectDriver) -> Result<GcLock<'a>> {
        let owner = Uuid::new_v4().simple().to_string();
        let key = paths::gc_lock();
        let mut lock = GcLock {
            driver,
            owner,
            e_tag: None,
            renewed: Instant::now(),
        };
        if let Some(e_tag) = driver.create_versioned(&key, &record(&lock.owner)?)? {
            lock.e_tag = Some(e_tag);
            return Ok(lock);
        }
        let Some((bytes, e_tag)) = driver.read_versioned(&key)? else {
            // Released since: try once more.
            return match driver.create_versioned(&key, &record(&lock.owner)?)? {
                Some(e_tag) => {
                    lock.e_tag = Some(e_tag);
                    Ok(lock)
                }
                None => Err(StoreError::GcRunning),
            };
        };
        let expired = serde_json::from_slice::<LockRecord>(&bytes).map_or(true, |r| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            r.expires < now
        });
        if !expired {
            return Err(StoreError::GcRunning);
        }
        match driver.replace_versioned(&key, &record(&lock.owner)?, &e_tag)? {
            Some(e_tag) => {
                lock.e_tag = Some(e_tag);
                Ok(lock)
            }
            None => Err(StoreError::GcRunning),
        }
    }

    /// Extends the lock once a third of its life has passed; an error if
    /// another collection took it meanwhile.
    pub fn renew(&mut self) -> Result<()> {
        if self.renewed.elapsed() < LOCK_LIFE / 3 {
            return Ok(());
        }
        let e_tag = self.e_tag.clone().unwrap_or_default();
        match self
            .driver
            .replace_versioned(&paths::gc_lock(), &record(&self.owner)?, &e_tag)?
        {
            Some(e_tag) => {
                self.e_tag = Some(e_tag);
                self.renewed = Instant::now();
                Ok(())
            }
            None => Err(StoreError::GcRunning),
        }
    }
}

impl Drop for GcLock<'_> {
    /// Removed only while it is still ours.
    fn drop(&mut self) {
        let key = paths::gc_lock();
        let ours = match self.driver.read_versioned(&key) {
            Ok(Some((bytes, _))) => {
                serde_json::from_slice::<LockRecord>(&bytes).is_ok_and(|r| r.owner == self.owner)
            }
            _ => false,
        };
        if ours && let Err(e) = self.driver.remove(&key) {
            tracing::warn!(error = %e, "could not release the collection's lock; it expires");
        }
    }
}

impl Store {
    /// The sweep of a shared bucket (see the module doc): every blob nothing
    /// marked refers to and older than the grace period goes, a batch at a
    /// time, through `trash/`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sweep_shared(
        &self,
        driver: &ObjectDriver,
        lock: &mut GcLock,
        marked: &HashSet<Digest>,
        marking: Instant,
        options: &GcOptions,
        now: SystemTime,
        report: &mut super::GcReport,
    ) -> Result<()> {
        let mut batch: Vec<(Digest, Key, u64)> = Vec::new();
        let mut pins = Pins::default();
        let late = || marking.elapsed() > PIN_LIFE / 2;
        let mut stopped = false;
        self.for_each_blob(|digest, key, meta| {
            if stopped || late() {
                // Past half a pin's life since the mark: what is left waits
                // for the next run, which marks anew.
                stopped = true;
                return Ok(());
            }
            let young = now.duration_since(meta.modified).unwrap_or_default() < options.grace;
            if marked.contains(&digest) || young {
                return Ok(());
            }
            // The walk's time leaves out a touch (object.rs): looked at again.
            let Some(meta) = driver.stat(&key)? else {
                return Ok(());
            };
            if now.duration_since(meta.modified).unwrap_or_default() < options.grace {
                return Ok(());
            }
            if options.dry_run {
                report.blobs_deleted += 1;
                report.bytes_freed += meta.size;
                return Ok(());
            }
            batch.push((digest, key, meta.size));
            if batch.len() >= BATCH {
                lock.renew()?;
                self.sweep_batch(driver, &mut pins, std::mem::take(&mut batch), report)?;
            }
            Ok(())
        })?;
        if stopped {
            tracing::info!("the sweep stops here for this run: it has run long");
        } else if !batch.is_empty() {
            self.sweep_batch(driver, &mut pins, batch, report)?;
        }
        Ok(())
    }

    fn sweep_batch(
        &self,
        driver: &ObjectDriver,
        pins: &mut Pins,
        batch: Vec<(Digest, Key, u64)>,
        report: &mut super::GcReport,
    ) -> Result<()> {
        let mut moved = Vec::new();
        for (digest, key, size) in batch {
            // This replica's own commits are pinned in memory too.
            let _lock = self.commit_lock();
            if !self.pinned(&digest) && driver.trash(&key)? {
                moved.push((digest, key, size));
            }
        }
        let pins = pins.refresh(driver, SystemTime::now())?;
        for (digest, key, size) in moved {
            if pins.contains(&digest) || self.pinned(&digest) {
                driver.untrash(&key)?;
                continue;
            }
            driver.purge(&key)?;
            self.inner.usage.blob_removed(size);
            report.blobs_deleted += 1;
            report.bytes_freed += size;
        }
        Ok(())
    }
}
