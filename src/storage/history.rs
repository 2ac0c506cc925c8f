//! What the store remembers of its past, for the web UI's overview: its size
//! over time, and the last garbage collections with what they freed. Both
//! are small JSON documents under `_stats/` of the store itself, so that a
//! restart keeps them and the replicas on one bucket share them.
//!
//! On a data folder the registry samples its size every few minutes. On a
//! bucket each replica counts only its own pushes until a collection walks
//! the bucket, so there a sample is taken after each collection, from the
//! walk's figures.
//!
//! Each is read, changed and written whole. Two replicas writing at once
//! lose one sample or one run of the history, never the store's content:
//! nothing else reads these keys. A document that does not read (written by
//! a newer berth, say) is left as it is.

use super::gc::GcReport;
use super::{Result, Store, paths};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Samples older than this are dropped…
const KEEP_FOR: Duration = Duration::from_secs(35 * 86400);
/// …and past this many, the oldest (one each ten minutes for 35 days).
const KEEP_SAMPLES: usize = 5040;
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
    /// Who asked for it: `request` (the admin API: the CronJob, `berth gc`)
    /// or `cap` (the registry, for a pull-through cache's cap).
    pub by: String,
    /// Why it failed, if it did (then the report is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(flatten)]
    pub report: GcReport,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `samples` with `sample` added if it is due (see the constants), the
/// oldest dropped past the limits. Samples from a clock that was ahead are
/// dropped too, so that they hold up no new one.
fn add_sample(mut samples: Vec<UsageSample>, sample: UsageSample) -> Option<Vec<UsageSample>> {
    samples.retain(|s| s.at <= sample.at && sample.at - s.at < KEEP_FOR.as_secs());
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
        self.blocking(|s| Ok(s.read_history(&paths::usage_history())?.unwrap_or_default()))
            .await
    }

    /// Adds the size of now to the history if a sample is due; on a bucket,
    /// only after a collection (see the module's doc).
    pub async fn record_usage(&self) -> Result<()> {
        if self.object().is_some() {
            return Ok(());
        }
        self.blocking(|s| s.sample_usage()).await
    }

    fn sample_usage(&self) -> Result<()> {
        let key = paths::usage_history();
        let usage = self.usage();
        let sample = UsageSample {
            at: now(),
            bytes: usage.blob_bytes,
            blobs: usage.blobs,
        };
        let Some(samples) = self.read_history(&key)? else {
            return Ok(());
        };
        if let Some(samples) = add_sample(samples, sample) {
            self.write_history(&key, &samples)?;
        }
        Ok(())
    }

    /// The last collections, oldest first.
    pub async fn gc_history(&self) -> Result<Vec<GcRun>> {
        self.blocking(|s| Ok(s.read_history(&paths::gc_history())?.unwrap_or_default()))
            .await
    }

    /// Adds a collection to the history (on a bucket, with a sample of the
    /// size it counted).
    pub async fn record_gc(&self, run: GcRun) -> Result<()> {
        self.blocking(move |s| {
            let key = paths::gc_history();
            if let Some(mut runs) = s.read_history::<GcRun>(&key)? {
                runs.push(run);
                let excess = runs.len().saturating_sub(KEEP_RUNS);
                runs.drain(..excess);
                s.write_history(&key, &runs)?;
            }
            if s.object().is_some() {
                s.sample_usage()?;
            }
            Ok(())
        })
        .await
    }

    /// A history document: empty when there is none, `None` when it does
    /// not read (an older or newer format), which is then left alone.
    fn read_history<T: serde::de::DeserializeOwned>(
        &self,
        key: &paths::Key,
    ) -> Result<Option<Vec<T>>> {
        Ok(match self.driver().read(key)? {
            None => Some(Vec::new()),
            Some(bytes) => serde_json::from_slice(&bytes).ok(),
        })
    }

    fn write_history<T: Serialize>(&self, key: &paths::Key, entries: &[T]) -> Result<()> {
        let bytes = serde_json::to_vec(entries).map_err(std::io::Error::other)?;
        Ok(self.driver().write(key, &bytes)?)
    }
}

/// A finished collection, for [`Store::record_gc`].
pub fn gc_run(by: &str, outcome: std::result::Result<&GcReport, String>) -> GcRun {
    let (report, error) = match outcome {
        Ok(report) => (report.clone(), None),
        Err(error) => (GcReport::default(), Some(error)),
    };
    GcRun {
        finished: now(),
        by: by.to_owned(),
        error,
        report,
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
            .map(|i| sample(i * 600, i))
            .collect();
        let next = add_sample(full, sample(KEEP_SAMPLES as u64 * 600, 1)).unwrap();
        assert_eq!(next.len(), KEEP_SAMPLES);
        assert_eq!(next[0].at, 600);
        assert_eq!(next.last().unwrap().bytes, 1);
        // Past 35 days, whatever the count.
        let old = vec![sample(0, 1), sample(KEEP_FOR.as_secs() - 600, 2)];
        let next = add_sample(old, sample(KEEP_FOR.as_secs(), 3)).unwrap();
        assert_eq!(next.iter().map(|s| s.bytes).collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn a_sample_from_a_clock_that_was_ahead_holds_up_none() {
        let ahead = vec![sample(1_000_000, 10)];
        let next = add_sample(ahead, sample(500_000, 20)).unwrap();
        assert_eq!(next, [sample(500_000, 20)]);
    }

    #[tokio::test]
    async fn collections_and_samples_are_kept_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).await.unwrap();
        for i in 0..KEEP_RUNS + 2 {
            let report = store.collect(Default::default()).await.unwrap();
            let outcome = if i == 0 {
                Err("first".into())
            } else {
                Ok(&report)
            };
            store.record_gc(gc_run("request", outcome)).await.unwrap();
        }
        store.record_usage().await.unwrap();
        drop(store);
        let store = Store::open(dir.path(), 0).await.unwrap();
        let runs = store.gc_history().await.unwrap();
        assert_eq!(runs.len(), KEEP_RUNS);
        assert!(runs.iter().all(|r| r.error.is_none() && r.by == "request"));
        assert_eq!(store.usage_history().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_history_that_does_not_read_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).await.unwrap();
        let file = store.file(&paths::gc_history());
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, b"{\"a newer\": \"format\"}").unwrap();
        store
            .record_gc(gc_run("request", Err("x".into())))
            .await
            .unwrap();
        assert!(store.gc_history().await.unwrap().is_empty());
        assert_eq!(std::fs::read(&file).unwrap(), b"{\"a newer\": \"format\"}");
    }
}
