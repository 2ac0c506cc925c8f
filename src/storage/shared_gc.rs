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
//! * **Both sides are quick.** A commit gives up if more than a quarter of a
//!   pin's life passed between its pin and its link, and a sweep puts back
//!   what it moved and stops (the next run goes on) once a quarter of a
//!   pin's life passed since its mark began (the catalog is read again
//!   then, and a commit writes its repository's marker before its pin).
//!
//! Take a commit of a manifest M naming a blob X, and a collection that
//! purges X. The collection's mark came before M's link, or X would be
//! marked. If the commit's pin came before the collection listed the pins
//! after moving X, then less than half a pin's life separates the two (a
//! quarter for each side), so the pin was live and X was put
//! back. If the pin came after, so did the commit's check, which came after
//! the move: it put X back from `trash/`, or found it purged and refused
//! the manifest (`MANIFEST_BLOB_UNKNOWN`: the client uploads X again). No
//! order of the steps of the two replicas leaves a committed manifest naming
//! purged bytes. One collection at a time: a lock object (see [`GcLock`]),
//! held again before each purge, so that a run whose lock lapsed stops and
//! puts back what it moved.
//!
//! A blob pushed again or mounted while the sweep moves it is put back (its
//! touch marker is looked at once it is moved), and what a run left in
//! `trash/` (it stopped, or died) is decided by the next one.
//!
//! A swept blob's repository links stay: a link to bytes that are gone reads
//! as unknown, and removing them could race a commit's check of them.
//!
//! A collection's deletions of manifests and tags (untagged manifests,
//! retention, the pull-through cache's caps) race a push of the same ones
//! through another replica. Each looks at the pins once it has deleted
//! (`collect_manifest`, `collect_tag`): a live pin naming the manifest, or
//! the tag, means a commit is writing it, and what the deletion removed is
//! written back where nothing was written since. A commit whose pin came
//! later writes its links and tag after the deletion.

use super::driver::Driver;
use super::gc::GcOptions;
use super::object::ObjectDriver;
use super::paths::{self, Key};
use super::{Result, Store, StoreError};
use crate::oci::{Digest, RepoName, Tag};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// How long a pin protects what it names; older ones are removed. A
/// commit and a sweep each get a quarter of it (see the module doc), which
/// leaves half of it for the clocks of replicas and bucket to disagree.
const PIN_LIFE: Duration = Duration::from_secs(2 * 3600);

/// Blobs moved to `trash/` before the pins are looked at again.
const BATCH: usize = 256;

/// A collection's lock lasts this long unless renewed.
const LOCK_LIFE: Duration = Duration::from_secs(30 * 60);

/// What a pin says: the digests a commit names, and the tag it writes.
#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PinRecord {
    digests: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tag: Option<PinnedTag>,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct PinnedTag {
    repository: String,
    tag: String,
    digest: String,
}

/// The pin of one manifest commit; it expires by itself.
pub(super) struct BucketPin {
    written: Instant,
}

impl BucketPin {
    /// Pins `digests`, and `tag` of `name` if the commit writes it (it then
    /// names the first digest).
    pub fn write(
        driver: &ObjectDriver,
        name: &RepoName,
        tag: Option<&Tag>,
        digests: &[Digest],
    ) -> Result<BucketPin> {
        // Counted from before the pin is written: it may be live from then.
        let written = Instant::now();
        let key = paths::pin(&Uuid::new_v4());
        let record = PinRecord {
            digests: digests.iter().map(Digest::to_string).collect(),
            tag: tag.zip(digests.first()).map(|(tag, digest)| PinnedTag {
                repository: name.to_string(),
                tag: tag.to_string(),
                digest: digest.to_string(),
            }),
        };
        driver.write(
            &key,
            &serde_json::to_vec(&record).map_err(io::Error::other)?,
        )?;
        Ok(BucketPin { written })
    }

    /// Refuses to go on with a commit whose pin may have expired.
    pub fn check_fresh(&self) -> Result<()> {
        if self.written.elapsed() > PIN_LIFE / 4 {
            return Err(StoreError::Io(io::Error::other(
                "the manifest commit took too long; nothing was committed",
            )));
        }
        Ok(())
    }
}

/// The live pins, read once each (a pin never changes).
#[derive(Default)]
pub(super) struct Pins {
    read: HashMap<String, Pinned>,
}

/// What the live pins name.
#[derive(Default, Clone)]
pub(super) struct Pinned {
    pub digests: HashSet<Digest>,
    /// Tags being written, with the digest each names (the newest pin's).
    pub tags: HashMap<(RepoName, Tag), (SystemTime, Digest)>,
}

impl Pinned {
    fn add(&mut self, other: &Pinned) {
        self.digests.extend(other.digests.iter().cloned());
        for (tag, (at, digest)) in &other.tags {
            let newer = self.tags.get(tag).is_none_or(|(seen, _)| seen < at);
            if newer {
                self.tags.insert(tag.clone(), (*at, digest.clone()));
            }
        }
    }
}

impl Pins {
    /// What every live pin names; expired pins are removed.
    pub fn refresh(&mut self, driver: &ObjectDriver, now: SystemTime) -> Result<Pinned> {
        // One listing gives every pin's time: only new pins are read.
        let mut listed = Vec::new();
        driver.walk(&paths::pins_dir(), &mut |key, meta| {
            listed.push((key, meta.modified));
            Ok(())
        })?;
        let mut live = HashMap::new();
        for (key, modified) in listed {
            if now.duration_since(modified).unwrap_or_default() > PIN_LIFE {
                driver.remove(&key)?;
                continue;
            }
            let name = key.name().to_owned();
            let pinned = match self.read.remove(&name) {
                Some(pinned) => pinned,
                None => {
                    let Some(bytes) = driver.read(&key)? else {
                        continue;
                    };
                    parse_pin(&bytes, modified)
                }
            };
            live.insert(name, pinned);
        }
        self.read = live;
        let mut all = Pinned::default();
        for pinned in self.read.values() {
            all.add(pinned);
        }
        Ok(all)
    }
}

/// A pin's record; one that does not parse names nothing.
fn parse_pin(bytes: &[u8], written: SystemTime) -> Pinned {
    let record: PinRecord = serde_json::from_slice(bytes).unwrap_or_default();
    let mut pinned = Pinned {
        digests: record
            .digests
            .iter()
            .filter_map(|d| d.parse().ok())
            .collect(),
        ..Pinned::default()
    };
    if let Some(t) = record.tag
        && let (Ok(repo), Ok(tag), Ok(digest)) =
            (t.repository.parse(), t.tag.parse(), t.digest.parse())
    {
        pinned.tags.insert((repo, tag), (written, digest));
    }
    pinned
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
/// with a conditional PUT, renewed all through the run (every phase calls
/// [`Store::renew_gc_lock`]), held again before each purge, and taken over
/// (by a PUT conditional on its ETag) once it has been expired for a whole
/// life: its expiry is on its holder's clock.
pub(super) struct GcLock {
    owner: String,
    e_tag: String,
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

impl GcLock {
    /// Takes the lock, or `Err(GcRunning)` while another collection holds it.
    pub fn take(driver: &ObjectDriver) -> Result<GcLock> {
        let owner = Uuid::new_v4().simple().to_string();
        let key = paths::gc_lock();
        let taken = |e_tag: String| GcLock {
            owner: owner.clone(),
            e_tag,
            renewed: Instant::now(),
        };
        if let Some(e_tag) = driver.create_versioned(&key, &record(&owner)?)? {
            return Ok(taken(e_tag));
        }
        let Some((bytes, e_tag)) = driver.read_versioned(&key)? else {
            // Released since: try once more.
            return match driver.create_versioned(&key, &record(&owner)?)? {
                Some(e_tag) => Ok(taken(e_tag)),
                None => Err(StoreError::GcRunning),
            };
        };
        let expired = serde_json::from_slice::<LockRecord>(&bytes).map_or(true, |r| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            // A whole life past its expiry: clocks may disagree that much.
            r.expires.saturating_add(LOCK_LIFE.as_secs()) < now
        });
        if !expired {
            return Err(StoreError::GcRunning);
        }
        match driver.replace_versioned(&key, &record(&owner)?, &e_tag)? {
            Some(e_tag) => Ok(taken(e_tag)),
            None => Err(StoreError::GcRunning),
        }
    }

    /// Extends the lock once a third of its life has passed; an error if
    /// another collection took it meanwhile.
    fn renew(&mut self, driver: &ObjectDriver) -> Result<()> {
        if self.renewed.elapsed() < LOCK_LIFE / 3 {
            return Ok(());
        }
        self.hold(driver)
    }

    /// Extends the lock now: proves it is still ours.
    fn hold(&mut self, driver: &ObjectDriver) -> Result<()> {
        match driver.replace_versioned(&paths::gc_lock(), &record(&self.owner)?, &self.e_tag)? {
            Some(e_tag) => {
                self.e_tag = e_tag;
                self.renewed = Instant::now();
                Ok(())
            }
            None => Err(StoreError::GcRunning),
        }
    }

    /// Removes the lock while it is still ours.
    pub fn release(&self, driver: &ObjectDriver) {
        let key = paths::gc_lock();
        let ours = match driver.read_versioned(&key) {
            Ok(Some((bytes, _))) => {
                serde_json::from_slice::<LockRecord>(&bytes).is_ok_and(|r| r.owner == self.owner)
            }
            _ => false,
        };
        if ours && let Err(e) = driver.remove(&key) {
            tracing::warn!(error = %e, "could not release the collection's lock; it expires");
        }
    }
}

/// What a sweep goes by.
struct Sweep<'a> {
    driver: &'a ObjectDriver,
    marking: Instant,
    grace: Duration,
    now: SystemTime,
}

impl Sweep<'_> {
    /// Past a quarter of a pin's life since the mark: what is left waits for
    /// the next run, which marks anew.
    fn late(&self) -> bool {
        self.marking.elapsed() > PIN_LIFE / 4
    }

    fn young(&self, modified: SystemTime) -> bool {
        self.now.duration_since(modified).unwrap_or_default() < self.grace
    }
}

/// The digest a blob's key names.
fn digest_of(key: &Key) -> Option<Digest> {
    let mut parts = key.as_str().split('/');
    let (_, algorithm, _, hex) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    format!("{algorithm}:{hex}").parse().ok()
}

impl Store {
    /// Renews this run's lock on a shared bucket when a third of its life
    /// has passed (a no-op elsewhere); an error once another run took it.
    pub(super) fn renew_gc_lock(&self) -> Result<()> {
        self.with_gc_lock(false)
    }

    /// Proves this run still holds the lock on a shared bucket.
    fn hold_gc_lock(&self) -> Result<()> {
        self.with_gc_lock(true)
    }

    fn with_gc_lock(&self, now: bool) -> Result<()> {
        let Some(driver) = self.object() else {
            return Ok(());
        };
        let mut lock = self.inner.gc_lock.lock().unwrap_or_else(|e| e.into_inner());
        match lock.as_mut() {
            Some(lock) if now => lock.hold(driver),
            Some(lock) => lock.renew(driver),
            None => Ok(()),
        }
    }

    /// What the bucket's live pins name, as of now.
    fn bucket_pins(&self, driver: &ObjectDriver) -> Result<Pinned> {
        let mut pins = self
            .inner
            .bucket_pins
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        pins.refresh(driver, SystemTime::now())
    }

    /// The sweep of a shared bucket (see the module doc): every blob nothing
    /// marked refers to and older than the grace period goes, a batch at a
    /// time, through `trash/`. What an earlier run left there comes first.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sweep_shared(
        &self,
        driver: &ObjectDriver,
        marked: &HashSet<Digest>,
        marking: Instant,
        options: &GcOptions,
        now: SystemTime,
        report: &mut super::GcReport,
    ) -> Result<()> {
        let sweep = Sweep {
            driver,
            marking,
            grace: options.grace,
            now,
        };
        if !options.dry_run {
            let left: Vec<_> = driver
                .trashed_blobs()?
                .into_iter()
                .filter_map(|key| Some((digest_of(&key)?, key, 0)))
                .collect();
            for (digest, key, _) in &left {
                if marked.contains(digest) {
                    driver.untrash(key)?;
                }
            }
            let left = left.into_iter().filter(|(d, ..)| !marked.contains(d));
            self.decide(&sweep, left.collect(), report)?;
        }
        let mut batch: Vec<(Digest, Key, u64)> = Vec::new();
        let mut stopped = false;
        // Every blob the walk finds, for the storage metrics.
        let (mut blobs, mut bytes) = (0u64, 0u64);
        self.for_each_blob(|digest, key, meta| {
            blobs += 1;
            bytes += meta.size;
            if stopped || sweep.late() {
                stopped = true;
                return Ok(());
            }
            if marked.contains(&digest) || sweep.young(meta.modified) {
                return Ok(());
            }
            // The walk's time leaves out a touch (object.rs): looked at again.
            let Some(meta) = driver.stat(&key)? else {
                return Ok(());
            };
            if sweep.young(meta.modified) {
                return Ok(());
            }
            if meta.size > super::object::COPY_LIMIT {
                tracing::warn!(blob = %key, "a blob too large to move aside in the store is left");
                return Ok(());
            }
            if options.dry_run {
                report.blobs_deleted += 1;
                report.bytes_freed += meta.size;
                return Ok(());
            }
            self.renew_gc_lock()?;
            batch.push((digest, key, meta.size));
            if batch.len() >= BATCH {
                stopped = !self.sweep_batch(&sweep, std::mem::take(&mut batch), report)?;
            }
            Ok(())
        })?;
        if !stopped && !batch.is_empty() {
            stopped = !self.sweep_batch(&sweep, batch, report)?;
        }
        if stopped {
            tracing::warn!(
                "the sweep stopped for this run: it ran past a quarter of a pin's life since its mark; the next run goes on"
            );
        } else if !options.dry_run {
            // What this run purged was counted out as it went.
            let purged = report.blobs_deleted.min(blobs);
            self.inner
                .usage
                .set_blobs(blobs - purged, bytes.saturating_sub(report.bytes_freed));
        }
        Ok(())
    }

    /// Moves a batch of candidates to `trash/`, then decides; `false` if the
    /// run must stop (it ran long).
    fn sweep_batch(
        &self,
        sweep: &Sweep,
        batch: Vec<(Digest, Key, u64)>,
        report: &mut super::GcReport,
    ) -> Result<bool> {
        // What a live pin names now would only be put back: left alone.
        let pinned_before = self.bucket_pins(sweep.driver)?.digests;
        let mut moved = Vec::new();
        for (digest, key, size) in batch {
            if pinned_before.contains(&digest) || self.pinned(&digest) {
                continue;
            }
            if let Err(e) = self.renew_gc_lock() {
                self.put_back(sweep.driver, &moved)?;
                return Err(e);
            }
            match sweep.driver.trash(&key) {
                Ok(true) => moved.push((digest, key, size)),
                Ok(false) => {}
                Err(e) => {
                    self.put_back(sweep.driver, &moved)?;
                    return Err(e.into());
                }
            }
        }
        self.decide(sweep, moved, report)
    }

    /// Puts back or purges blobs moved to `trash/`, once the pins have been
    /// looked at and the lock proved ours; `false` (all put back) if the run
    /// ran long or lost its lock.
    fn decide(
        &self,
        sweep: &Sweep,
        moved: Vec<(Digest, Key, u64)>,
        report: &mut super::GcReport,
    ) -> Result<bool> {
        let pins = self.bucket_pins(sweep.driver)?.digests;
        if sweep.late() {
            self.put_back(sweep.driver, &moved)?;
            return Ok(false);
        }
        if let Err(e) = self.hold_gc_lock() {
            self.put_back(sweep.driver, &moved)?;
            return Err(e);
        }
        for (digest, key, size) in moved {
            let touched = sweep
                .driver
                .touched_at(&key)?
                .is_some_and(|t| sweep.young(t));
            if touched || pins.contains(&digest) || self.pinned(&digest) {
                sweep.driver.untrash(&key)?;
                continue;
            }
            sweep.driver.purge(&key)?;
            self.inner.usage.blob_removed(size);
            report.blobs_deleted += 1;
            report.bytes_freed += size;
        }
        Ok(true)
    }

    fn put_back(&self, driver: &ObjectDriver, moved: &[(Digest, Key, u64)]) -> Result<()> {
        for (_, key, _) in moved {
            driver.untrash(key)?;
        }
        Ok(())
    }

    /// Deletes a manifest for a collection (untagged, or evicted from the
    /// pull-through cache). On a shared bucket another replica may be pushing
    /// it again at this moment: the pins are looked at once it is deleted,
    /// and if a live one names it, what the deletion removed is written back
    /// (where nothing else was written since). Says whether it stays deleted.
    pub(super) fn collect_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        self.renew_gc_lock()?;
        let Some(object) = self.object() else {
            self.delete_manifest_sync(repo, digest)?;
            return Ok(true);
        };
        let driver: &dyn Driver = object;
        let link_key = paths::manifest_link(repo, digest);
        let Some(link) = driver.read(&link_key)? else {
            return Err(StoreError::ManifestUnknown);
        };
        let stored = self.read_manifest(repo, digest)?;
        let mut removed = vec![(link_key, link)];
        if let Ok(manifest) = crate::oci::Manifest::parse(Some(&stored.media_type), &stored.body)
            && let Some(subject) = manifest.subject
        {
            let key = paths::referrer(repo, &subject.digest, digest);
            if let Some(descriptor) = driver.read(&key)? {
                removed.push((key, descriptor));
            }
        }
        let tags = self.delete_manifest_tags(repo, digest)?;
        let pinned = self.bucket_pins(object)?;
        // A tag the deletion took that a push was moving elsewhere goes
        // back where the push put it.
        let mut kept = Vec::new();
        for tag in tags {
            match pinned.tags.get(&(repo.clone(), tag.clone())) {
                Some((_, moved))
                    if moved != digest && driver.exists(&paths::manifest_link(repo, moved))? =>
                {
                    driver.write_new(&paths::tag(repo, &tag), moved.to_string().as_bytes())?;
                }
                _ => kept.push(tag),
            }
        }
        if !pinned.digests.contains(digest) {
            return Ok(true);
        }
        // The tags it took (one a push wrote just before is among them),
        // after the links, as a commit writes them. Not those of older pins:
        // a tag deleted since would come back.
        removed.extend(
            kept.into_iter()
                .map(|tag| (paths::tag(repo, &tag), digest.to_string().into_bytes())),
        );
        for (key, bytes) in removed {
            driver.write_new(&key, &bytes)?;
        }
        tracing::info!(repository = %repo, %digest, "a manifest being pushed again is kept");
        Ok(false)
    }

    /// Deletes a tag for a collection's retention rules. On a shared bucket,
    /// if a live pin says a commit writes that tag, the commit's digest is
    /// written back where the deletion took it away. Says whether it stays
    /// deleted.
    pub(super) fn collect_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        self.renew_gc_lock()?;
        let key = paths::tag(repo, tag);
        if !self.driver().remove(&key)? {
            return Ok(false);
        }
        let Some(object) = self.object() else {
            return Ok(true);
        };
        let pinned = self.bucket_pins(object)?;
        let Some((_, digest)) = pinned.tags.get(&(repo.clone(), tag.clone())) else {
            return Ok(true);
        };
        // A commit that failed (its pin stays) wrote no link: nothing to name.
        if !object.exists(&paths::manifest_link(repo, digest))? {
            return Ok(true);
        }
        object.write_new(&key, digest.to_string().as_bytes())?;
        tracing::info!(repository = %repo, %tag, "a tag being pushed again is kept");
        Ok(false)
    }
}
