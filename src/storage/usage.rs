//! What the store holds, counted as it changes, so that `/metrics` never walks
//! the disk: one walk of `blobs/` and `uploads/` when the store opens, then each
//! blob created or swept and each upload session opened or closed adjusts the
//! counts.

use super::Result;
use super::blobs::each_blob;
use super::driver::Driver;
use super::paths;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(super) struct Usage {
    blob_bytes: AtomicU64,
    blobs: AtomicU64,
    uploads: AtomicU64,
}

/// The counts at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageSnapshot {
    /// Bytes of all blobs (layers, configs and manifests), each stored once.
    pub blob_bytes: u64,
    pub blobs: u64,
    /// Upload sessions started and neither finished, cancelled nor purged.
    pub uploads: u64,
}

impl Usage {
    /// Counts what is on disk under `paths`.
    pub(super) fn scan(driver: &dyn Driver) -> Result<Usage> {
        let usage = Usage::default();
        each_blob(driver, |_, _, meta| {
            usage.blob_added(meta.size);
            Ok(())
        })?;
        let uploads = driver.list(&paths::uploads_dir())?.len();
        usage.uploads.store(uploads as u64, Ordering::Relaxed);
        Ok(usage)
    }

    pub(super) fn blob_added(&self, size: u64) {
        self.blob_bytes.fetch_add(size, Ordering::Relaxed);
        self.blobs.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn blob_removed(&self, size: u64) {
        decrease(&self.blob_bytes, size);
        decrease(&self.blobs, 1);
    }

    /// Takes the counts a walk of every blob found: on a bucket that replicas
    /// share, each one's own additions and removals miss the others'.
    pub(super) fn set_blobs(&self, blobs: u64, bytes: u64) {
        self.blobs.store(blobs, Ordering::Relaxed);
        self.blob_bytes.store(bytes, Ordering::Relaxed);
    }

    pub(super) fn upload_opened(&self) {
        self.uploads.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn upload_closed(&self) {
        decrease(&self.uploads, 1);
    }

    pub(super) fn snapshot(&self) -> UsageSnapshot {
        UsageSnapshot {
            blob_bytes: self.blob_bytes.load(Ordering::Relaxed),
            blobs: self.blobs.load(Ordering::Relaxed),
            uploads: self.uploads.load(Ordering::Relaxed),
        }
    }
}

/// Takes `by` off a count, stopping at zero: on a bucket that replicas share,
/// one may remove what another counted.
fn decrease(count: &AtomicU64, by: u64) {
    let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
        Some(n.saturating_sub(by))
    });
}
