//! Scrubbing: reads every stored blob, hashes it with its digest's algorithm
//! (sha256 or sha512), and moves a blob whose bytes do not hash to its name
//! into `quarantine/`, so that it is never served again and the next push of
//! that digest stores it anew. It runs online, paced to a byte rate so that
//! pulls keep the disk, or on a stopped registry's folder (`berth scrub --root`).
//!
//! # Why a scrub never moves good bytes, and what it races with
//!
//! * **Hashing takes no lock.** Blobs are immutable and only ever appear by a
//!   rename onto a free name, so the open file is the blob for as long as the
//!   scrub reads it; pushes, pulls and collections go on meanwhile.
//! * **The move is decided again under the commit lock.** A corrupt blob is
//!   moved while the commit lock is held for writing, as a GC deletion is, and
//!   only if the name still holds the very file (device and inode) that was
//!   hashed. A blob deleted since (by GC) is gone, not corrupt; one deleted and
//!   pushed again since holds new, verified bytes and stays. Because a blob
//!   commit checks for the blob and renames it under the same lock (held for
//!   reading), a push of that digest either finishes before the move (it found
//!   the corrupt copy; its client learns of the loss as `BLOB_UNKNOWN` or
//!   `MANIFEST_BLOB_UNKNOWN` and pushes again) or after it, when the digest
//!   reads as absent and the push commits its own bytes.
//! * **Scrub and GC run side by side.** A scrub at the default rate takes hours
//!   on a large store, and refusing the scheduled collection that long would be
//!   worse than useless; nor is there anything to exclude: each change either
//!   makes is one blob, under the commit lock, looked at again there. A sweep
//!   that meets a blob already moved removes nothing and counts nothing, and a
//!   corrupt manifest was never marked by GC anyway (its bytes fail their
//!   digest when read), so moving it mid-mark changes nothing. Two scrubs do
//!   exclude each other (`ScrubRunning`): a second would only halve the pace.
//! * **Exactly what GC does when a blob goes**: the cache is invalidated whole
//!   (blob sizes of every repository, manifests) after the move, and the usage
//!   counts lose the blob. Repository links stay: a blob that is absent reads
//!   as unknown everywhere, and once a push heals it every repository that
//!   held it (whose manifests still name it) can read it again.
//!
//! The move is one rename within the file system, then an fsync of both
//! folders, so after a crash the blob is in one place or the other, and a
//! scrub that finds it still in `blobs/` moves it again.

use super::{Result, Store, StoreError, durable, paths};
use crate::oci::Digest;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, Read};
use std::num::NonZeroU64;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

/// The online pace unless a request says otherwise: 64 MiB/s, about a tenth
/// of what this machine's disk reads (and below what sha256 hashes on one
/// core), so a scrub of 100 GiB takes about half an hour and pulls barely see it.
pub const DEFAULT_SCRUB_RATE: u64 = 64 << 20;

/// Bytes read and hashed at a time.
const CHUNK: usize = 1 << 20;

/// How a scrub runs.
#[derive(Clone, Debug)]
pub struct ScrubOptions {
    /// Bytes read per second at most; `None` reads as fast as the disk goes.
    pub rate: Option<NonZeroU64>,
}

impl Default for ScrubOptions {
    fn default() -> ScrubOptions {
        ScrubOptions {
            rate: NonZeroU64::new(DEFAULT_SCRUB_RATE),
        }
    }
}

/// What a scrub found.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ScrubReport {
    /// Blobs read to the end and hashed.
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    /// Blobs whose bytes do not hash to their digest.
    pub corrupt: Vec<CorruptBlob>,
    /// Blobs that could not be read (or moved aside), with why.
    pub errors: Vec<ScrubFailure>,
    pub duration_ms: u64,
}

/// A blob whose bytes are not what its digest says.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CorruptBlob {
    pub digest: Digest,
    /// Bytes stored under that digest.
    pub size: u64,
    /// What those bytes hash to.
    pub computed: Digest,
    /// Where they were moved, relative to the data folder; `None` when the move
    /// failed (the failure is in the report's errors, and the blob is still served).
    pub moved_to: Option<String>,
}

/// A blob the scrub could not check or move.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ScrubFailure {
    pub digest: Digest,
    pub error: String,
}

/// Ends a scrub however it ends.
struct Running<'a>(&'a Store);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.inner.scrub_running.store(false, Ordering::SeqCst);
    }
}

/// Paces reads to a byte rate. It keeps no credit: after falling behind (a
/// slow disk, a long blob open) it starts counting again from then, so a scrub
/// never bursts above the rate to catch up.
struct Throttle {
    rate: Option<NonZeroU64>,
    since: Instant,
    bytes: u64,
}

impl Throttle {
    fn new(rate: Option<NonZeroU64>, now: Instant) -> Throttle {
        Throttle {
            rate,
            since: now,
            bytes: 0,
        }
    }

    /// How long to wait, having just read `n` more bytes at `now`.
    fn pause_after(&mut self, n: u64, now: Instant) -> Duration {
        let Some(rate) = self.rate else {
            return Duration::ZERO;
        };
        self.bytes += n;
        let due = Duration::from_secs_f64(self.bytes as f64 / rate.get() as f64);
        let elapsed = now.saturating_duration_since(self.since);
        if due > elapsed {
            due - elapsed
        } else {
            self.since = now;
            self.bytes = 0;
            Duration::ZERO
        }
    }
}

/// A scrub reads files; an object store keeps checksums of its own.
const NOT_ON_OBJECTS: StoreError =
    StoreError::Unsupported("a scrub checks a data folder, not an object store");

/// One blob, hashed.
enum Checked {
    /// Removed before it could be opened: not corruption.
    Gone,
    Good {
        size: u64,
    },
    /// Kept open, so that the move can tell whether the name still holds it.
    Corrupt {
        file: File,
        size: u64,
        computed: Digest,
    },
}

/// What became of a corrupt blob.
#[derive(Debug, PartialEq, Eq)]
enum Moved {
    To(PathBuf),
    /// Removed (by GC) since it was hashed.
    Gone,
    /// Removed and pushed again since it was hashed: the name holds new bytes.
    Replaced,
}

/// The time of a move as a file name part: `20250102T030405.000006Z`.
fn stamp(now: SystemTime) -> String {
    humantime::format_rfc3339_micros(now)
        .to_string()
        .replace(['-', ':'], "")
}

impl Store {
    /// Checks every stored blob; `Err(ScrubRunning)` if a scrub is already under
    /// way. Blobs that cannot be read are listed in the report, not fatal; only
    /// a failure to list the blobs stops the run.
    pub async fn scrub(&self, options: ScrubOptions) -> Result<ScrubReport> {
        if self.inner.scrub_running.swap(true, Ordering::SeqCst) {
            return Err(StoreError::ScrubRunning);
        }
        self.blocking(move |s| {
            let _running = Running(s);
            s.scrub_sync(&options)
        })
        .await
    }

    fn scrub_sync(&self, options: &ScrubOptions) -> Result<ScrubReport> {
        let started = Instant::now();
        let mut report = ScrubReport::default();
        let mut throttle = Throttle::new(options.rate, started);
        let mut buf = vec![0u8; CHUNK];
        let fs = self.fs().ok_or(NOT_ON_OBJECTS)?;
        self.for_each_blob(|digest, key, _| {
            let path = fs.path(&key);
            let (file, size, computed) =
                match check_blob(&digest, &path, &mut buf, &mut throttle) {
                    Ok(Checked::Gone) => return Ok(()),
                    Ok(Checked::Good { size }) => {
                        report.blobs_checked += 1;
                        report.bytes_checked += size;
                        return Ok(());
                    }
                    Ok(Checked::Corrupt {
                        file,
                        size,
                        computed,
                    }) => (file, size, computed),
                    Err(e) => {
                        tracing::error!(%digest, error = %e, "scrub could not read a blob");
                        report.errors.push(ScrubFailure {
                            digest,
                            error: e.to_string(),
                        });
                        return Ok(());
                    }
                };
            report.blobs_checked += 1;
            report.bytes_checked += size;
            let moved_to = match self.quarantine(&digest, &file, size) {
                Ok(Moved::To(target)) => {
                    let relative = target.strip_prefix(fs.root()).unwrap_or(&target);
                    tracing::error!(%digest, %computed, size, moved_to = %target.display(),
                        "corrupt blob moved aside");
                    Some(relative.display().to_string())
                }
                Ok(moved) => {
                    tracing::info!(%digest, ?moved, "a corrupt blob changed during the scrub: left alone");
                    return Ok(());
                }
                Err(e) => {
                    tracing::error!(%digest, error = %e, "corrupt blob could not be moved aside");
                    report.errors.push(ScrubFailure {
                        digest: digest.clone(),
                        error: format!("corrupt, and could not be moved aside: {e}"),
                    });
                    None
                }
            };
            report.corrupt.push(CorruptBlob {
                digest,
                size,
                computed,
                moved_to,
            });
            Ok(())
        })?;
        report.duration_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            blobs = report.blobs_checked,
            bytes = report.bytes_checked,
            corrupt = report.corrupt.len(),
            errors = report.errors.len(),
            duration_ms = report.duration_ms,
            "scrub done"
        );
        Ok(report)
    }

    /// Moves the corrupt blob `digest`, open as `file`, into `quarantine/`,
    /// if its name still holds that file (see the module doc).
    fn quarantine(&self, digest: &Digest, file: &File, size: u64) -> Result<Moved> {
        let held = file.metadata()?;
        let fs = self.fs().ok_or(NOT_ON_OBJECTS)?;
        let path = fs.path(&paths::blob(digest));
        let target = fs.path(&paths::quarantined(digest, &stamp(SystemTime::now())));
        // Made (and synced) before the lock: commits need not wait for it.
        let (Some(from_dir), Some(to_dir)) = (path.parent(), target.parent()) else {
            return Err(io::Error::other("store paths always have a parent").into());
        };
        durable::ensure_dir(to_dir)?;
        let _lock = self.commit_lock();
        match std::fs::symlink_metadata(&path) {
            Ok(now) if (now.dev(), now.ino()) == (held.dev(), held.ino()) => {}
            Ok(_) => return Ok(Moved::Replaced),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Moved::Gone),
            Err(e) => return Err(e.into()),
        }
        // Cached sizes of this digest (in any repository) and cached manifests
        // must not outlive the move: invalidated when this drops, after it.
        let _stale = self.inner.cache.stale_all();
        std::fs::rename(&path, &target)?;
        self.inner.usage.blob_removed(size);
        let mut pending = durable::Pending::default();
        pending.add(from_dir);
        pending.add(to_dir);
        pending.sync()?;
        Ok(Moved::To(target))
    }
}

/// Reads `path` to its end in `buf`-sized pieces, hashing as it goes and
/// pausing as `throttle` says, and compares the result with `digest`.
fn check_blob(
    digest: &Digest,
    path: &Path,
    buf: &mut [u8],
    throttle: &mut Throttle,
) -> io::Result<Checked> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Checked::Gone),
        Err(e) => return Err(e),
    };
    let mut hasher = digest.algorithm().hasher();
    let mut size = 0u64;
    loop {
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
        std::thread::sleep(throttle.pause_after(n as u64, Instant::now()));
    }
    let computed = hasher.finish();
    if computed == *digest {
        Ok(Checked::Good { size })
    } else {
        Ok(Checked::Corrupt {
            file,
            size,
            computed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{Algorithm, RepoName};
    use bytes::Bytes;

    fn body(bytes: Vec<u8>) -> super::super::Body {
        Box::pin(futures_util::stream::iter([Ok(Bytes::from(bytes))]))
    }

    fn digest_of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut hasher = algorithm.hasher();
        hasher.update(bytes);
        hasher.finish()
    }

    /// Flips one bit of the stored bytes of `digest`, in place.
    fn flip(store: &Store, digest: &Digest, at: usize) -> Vec<u8> {
        let path = store.file(&paths::blob(digest));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        bytes
    }

    fn unlimited() -> ScrubOptions {
        ScrubOptions { rate: None }
    }

    #[test]
    fn the_throttle_paces_reads_and_never_bursts_to_catch_up() {
        let t0 = Instant::now();
        let mut t = Throttle::new(NonZeroU64::new(1000), t0);
        // 500 bytes at once: half a second's worth, due at 0.5 s.
        assert_eq!(t.pause_after(500, t0), Duration::from_millis(500));
        // 500 more, read at 0.6 s: due at 1 s.
        let at = t0 + Duration::from_millis(600);
        assert_eq!(t.pause_after(500, at), Duration::from_millis(400));
        // A stall to 5 s: no credit for the 4 s lost, so the next bytes are paced
        // from 5 s on, not read at once.
        let at = t0 + Duration::from_secs(5);
        assert_eq!(t.pause_after(100, at), Duration::ZERO);
        assert_eq!(t.pause_after(1000, at), Duration::from_secs(1));
        // No rate: never a pause.
        let mut free = Throttle::new(None, t0);
        assert_eq!(free.pause_after(u64::MAX / 2, t0), Duration::ZERO);
        assert_eq!(
            ScrubOptions::default().rate.map(|r| r.get()),
            Some(64 << 20)
        );
    }

    #[tokio::test]
    async fn a_corrupt_blob_is_moved_aside_and_a_push_stores_it_anew() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).await.unwrap();
        let name: RepoName = "team/app".parse().unwrap();
        let good = b"good layer ".repeat(300);
        // Over one read chunk, so that hashing runs over several reads.
        let rotten256 = b"rotten sha256 layer ".repeat(60_000);
        let rotten512 = b"rotten sha512 layer ".repeat(100);
        let mut digests = Vec::new();
        for (algorithm, bytes) in [
            (Algorithm::Sha256, &good),
            (Algorithm::Sha256, &rotten256),
            (Algorithm::Sha512, &rotten512),
        ] {
            let digest = digest_of(algorithm, bytes);
            store
                .put_blob(&name, &digest, body(bytes.clone()))
                .await
                .unwrap();
            digests.push(digest);
        }
        let (good_d, bad256, bad512) = (&digests[0], &digests[1], &digests[2]);
        let total = (good.len() + rotten256.len() + rotten512.len()) as u64;

        let clean = store.scrub(unlimited()).await.unwrap();
        assert_eq!((clean.blobs_checked, clean.bytes_checked), (3, total));
        assert!(
            clean.corrupt.is_empty() && clean.errors.is_empty(),
            "{clean:?}"
        );

        // The sizes are cached (a HEAD), then the bytes rot on disk.
        for d in &digests {
            store.stat_blob(&name, d).await.unwrap();
        }
        let stored256 = flip(&store, bad256, CHUNK + 7);
        let stored512 = flip(&store, bad512, 0);
        let before = store.usage();

        let report = store.scrub(unlimited()).await.unwrap();
        assert_eq!((report.blobs_checked, report.bytes_checked), (3, total));
        assert!(report.errors.is_empty(), "{report:?}");
        let mut corrupt = report.corrupt.clone();
        corrupt.sort_by(|a, b| a.digest.cmp(&b.digest));
        assert_eq!(corrupt.len(), 2, "{report:?}");
        for (found, (digest, stored)) in corrupt
            .iter()
            .zip([(bad256, &stored256), (bad512, &stored512)])
        {
            assert_eq!(&found.digest, digest);
            assert_eq!(found.size, stored.len() as u64);
            assert_eq!(found.computed, digest_of(digest.algorithm(), stored));
            let moved = found.moved_to.as_deref().unwrap();
            assert!(
                moved.starts_with(&format!(
                    "quarantine/{}/{}-",
                    digest.algorithm().as_str(),
                    digest.hex()
                )),
                "{moved}"
            );
            assert_eq!(&std::fs::read(dir.path().join(moved)).unwrap(), stored);
            assert!(!store.file(&paths::blob(digest)).exists());
            // Never served again: not by the cached size, not by a read.
            assert!(matches!(
                store.stat_blob(&name, digest).await,
                Err(StoreError::BlobUnknown)
            ));
            assert!(matches!(
                store.open_blob(&name, digest).await,
                Err(StoreError::BlobUnknown)
            ));
        }
        assert_eq!(
            store.stat_blob(&name, good_d).await.unwrap(),
            good.len() as u64
        );
        let after = store.usage();
        assert_eq!(after.blobs, before.blobs - 2);
        let moved_bytes = (stored256.len() + stored512.len()) as u64;
        assert_eq!(after.blob_bytes, before.blob_bytes - moved_bytes);

        // A push of the right bytes stores them anew, and a scrub finds all well.
        store
            .put_blob(&name, bad256, body(rotten256.clone()))
            .await
            .unwrap();
        let content = store.open_blob(&name, bad256).await.unwrap();
        assert_eq!(content.size(), rotten256.len() as u64);
        assert_eq!(
            std::fs::read(store.file(&paths::blob(bad256))).unwrap(),
            rotten256
        );
        assert_eq!(store.usage().blobs, before.blobs - 1);
        let healed = store.scrub(unlimited()).await.unwrap();
        assert_eq!(healed.blobs_checked, 2);
        assert!(healed.corrupt.is_empty(), "{healed:?}");
    }

    #[tokio::test]
    async fn a_blob_removed_or_pushed_again_under_the_scrub_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).await.unwrap();
        let name: RepoName = "team/app".parse().unwrap();
        let bytes = b"layer".to_vec();
        let digest = Digest::sha256(&bytes);
        store
            .put_blob(&name, &digest, body(bytes.clone()))
            .await
            .unwrap();
        flip(&store, &digest, 0);
        let path = store.file(&paths::blob(&digest));
        let mut buf = vec![0u8; CHUNK];
        let mut throttle = Throttle::new(None, Instant::now());
        let Checked::Corrupt { file, size, .. } =
            check_blob(&digest, &path, &mut buf, &mut throttle).unwrap()
        else {
            panic!("the flipped blob hashed right");
        };

        // GC removed it, then a push stored the right bytes: they stay.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            store.quarantine(&digest, &file, size).unwrap(),
            Moved::Replaced
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes);

        // Removed and not pushed again: gone, which is not corruption.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(store.quarantine(&digest, &file, size).unwrap(), Moved::Gone);
        assert!(matches!(
            check_blob(&digest, &path, &mut buf, &mut throttle),
            Ok(Checked::Gone)
        ));
        assert!(
            !store
                .file(&paths::quarantine_dir())
                .join("sha256")
                .read_dir()
                .unwrap()
                .any(|_| true)
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_second_scrub_is_refused_while_one_runs_at_its_pace() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).await.unwrap();
        let name: RepoName = "team/app".parse().unwrap();
        let bytes = vec![7u8; 32 << 10];
        let digest = Digest::sha256(&bytes);
        store.put_blob(&name, &digest, body(bytes)).await.unwrap();
        // 32 KiB at 32 KiB/s: one second.
        let slow = ScrubOptions {
            rate: NonZeroU64::new(32 << 10),
        };
        let started = Instant::now();
        let first = tokio::spawn({
            let store = store.clone();
            async move { store.scrub(slow).await }
        });
        while !store.inner.scrub_running.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        let second = store.scrub(unlimited()).await;
        assert!(
            matches!(second, Err(StoreError::ScrubRunning)),
            "{second:?}"
        );
        let report = first.await.unwrap().unwrap();
        assert_eq!(report.blobs_checked, 1);
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
        // Once it is over, the next one runs.
        store.scrub(unlimited()).await.unwrap();
    }
}
