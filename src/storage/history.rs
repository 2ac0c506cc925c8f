//! What the store remembers of its past, for the web UI's overview: its size
//! over time, and the last garbage collections with what they freed. Both
//! are small JSON documents under `_stats/` of the store itself, so that a
//! restart keeps them and the replicas on one bucket share them.
//!
//! Each is read, changed and written whole. Two replicas writing at once
//! lose one sample or one run of the history, never the store's content:
//! nothing else reads these keys.

use super::gc::GcReport;
use super::{Result, Store, paths};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Samples kept: at one an hour, three months.
const KEEP_SAMPLES: usize = 2200;
/// Collections kept.
const KEEP_RUNS: usize = 20;
/// A sample is taken no sooner than this after the last one…
const SAMPLE_CHANGED: Duration = Duration::from_secs(10 * 60);
/// …and then only if the size changed, or this long passed.
const SAMPLE_ANYWAY: Duration = Duration::from_secs(60 * 60);

/// The store's size at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageSample {
    /// Seconds since 1970.
    pub at: u64,
    pub bytes: u64,
    pub blobs: u64,
}

/// One collection, as the overview lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcRun {
    /// Seconds since 1970, when it ended.
    pub finished: u64,
    #[serde(flatten)]
    pub report: GcReport,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `samples` with `sample` added if it is due (see the constants), the
/// oldest dropped past the limit.
fn add_sample(mut samples: Vec<UsageSample>, sample: UsageSample) -> Option<Vec<UsageSample>> {
    if let Some(last) = samples.last() {
        let since = Duration::from_secs(sample.at.saturating_sub(last.at));
        let changed = (last.bytes, last.blobs) != (sample.bytes, sample.blobs);
        if since < SAMPLE_CHANGED || (!changed && since < SAMPLE_ANYWAY) {
            return None;
        }
    }
    samples.push(sample);
    let excess = samples.len().saturating_sub(KEEP_SAMPLES);
    samples.drain(..excess);
    Some(samples)
}

impl Store {
    /// The store's size over time, oldest first.
    pub async fn usage_history(&self) -> Result<Vec<UsageSample>> {
        self.blocking(|s| s.read_history(&paths::usage_history()))
            .await
    }

    /// Adds the size of now to the history if a sample is due.
    pub async fn record_usage(&self) -> Result<()> {
        self.blocking(|s| {
            let key = paths::usage_history();
            let usage = s.usage();
            let sample = UsageSample {
                at: now(),
                bytes: usage.blob_bytes,
                blobs: usage.blobs,
            };
            if let Some(samples) = add_sample(s.read_history(&key)?, sample) {
                s.write_history(&key, &samples)?;
            }
            Ok(())
        })
        .await
    }

    /// The last collections, oldest first.
    pub async fn gc_history(&self) -> Result<Vec<GcRun>> {
        self.blocking(|s| s.read_history(&paths::gc_history()))
            .await
    }

    /// Adds a finished collection to the history; a failure to write it is
    /// logged, never the collection's.
    pub(super) fn record_gc(&self, report: &GcReport) {
        let key = paths::gc_history();
        let written = self.read_history(&key).and_then(|mut runs: Vec<GcRun>| {
            runs.push(GcRun {
                finished: now(),
                report: report.clone(),
            });
            let excess = runs.len().saturating_sub(KEEP_RUNS);
            runs.drain(..excess);
            self.write_history(&key, &runs)
        });
        if let Err(e) = written {
            tracing::warn!(error = %e, "the collection is not in the history");
        }
    }

    /// A history document; none, or one that does not read (an older
    /// format), is an empty history.
    fn read_history<T: serde::de::DeserializeOwned>(&self, key: &paths::Key) -> Result<Vec<T>> {
        Ok(self
            .driver()
            .read(key)?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default())
    }

    fn write_history<T: Serialize>(&self, key: &paths::Key, entries: &[T]) -> Result<()> {
        let bytes = serde_json::to_vec(entries).map_err(std::io::Error::other)?;
        Ok(self.driver().write(key, &bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: u64, bytes: u64) -> UsageSample {
        UsageSample {
            at,
            bytes,
            blobs: bytes / 10,
        }
    }

    #[test]
    fn a_sample_is_taken_when_due() {
        let first = add_sample(Vec::new(), sample(1000, 10)).unwrap();
        assert_eq!(first.len(), 1);
        // Too soon, even changed.
        assert!(add_sample(first.clone(), sample(1000 + 599, 20)).is_none());
        // Changed, and ten minutes on.
        assert_eq!(
            add_sample(first.clone(), sample(1000 + 600, 20))
                .unwrap()
                .len(),
            2
        );
        // Unchanged: only after an hour.
        assert!(add_sample(first.clone(), sample(1000 + 3599, 10)).is_none());
        assert_eq!(add_sample(first, sample(1000 + 3600, 10)).unwrap().len(), 2);
    }

    #[test]
    fn the_oldest_samples_go_first() {
        let full: Vec<_> = (0..KEEP_SAMPLES as u64)
            .map(|i| sample(i * 3600, i))
            .collect();
        let next = add_sample(full, sample(KEEP_SAMPLES as u64 * 3600, 1)).unwrap();
        assert_eq!(next.len(), KEEP_SAMPLES);
        assert_eq!(next[0].at, 3600);
        assert_eq!(next.last().unwrap().bytes, 1);
    }

    #[tokio::test]
    async fn collections_and_samples_are_kept_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).await.unwrap();
        for _ in 0..KEEP_RUNS + 2 {
            store.collect(Default::default()).await.unwrap();
        }
        store.record_usage().await.unwrap();
        drop(store);
        let store = Store::open(dir.path(), 0).await.unwrap();
        assert_eq!(store.gc_history().await.unwrap().len(), KEEP_RUNS);
        assert_eq!(store.usage_history().await.unwrap().len(), 1);
    }
}
