//! `small-push`: many small blobs pushed from many connections, where the
//! cost per request (and its fsyncs) shows.

use super::steps::{check_stored, push_small};
use super::{Bench, size_text};
use crate::bench::BenchError;
use crate::bench::payload::{digest_of, random_bytes};
use crate::bench::report::{self, Latencies, ScenarioReport};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

impl Bench {
    pub(super) async fn small_push(&mut self) -> Result<ScenarioReport, BenchError> {
        let count = self.args.small_count as usize;
        let size = self.args.small_size as usize;
        let blobs: Arc<Vec<(Bytes, String)>> = Arc::new(
            (0..count)
                .map(|_| {
                    let bytes = Bytes::from(random_bytes(size));
                    let digest = digest_of(&bytes);
                    (bytes, digest)
                })
                .collect(),
        );
        let repo = Arc::new(self.repo("small"));
        let workers = (self.args.small_concurrency as usize).min(count);
        let mut conns = Vec::with_capacity(workers);
        for _ in 0..workers {
            conns.push(self.target.connect().await?);
        }
        let progress = report::bar(count as u64, false, "small-push");
        let next = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let tasks: Vec<_> = conns
            .into_iter()
            .map(|mut conn| {
                let (blobs, repo, next, requests, progress) = (
                    blobs.clone(),
                    repo.clone(),
                    next.clone(),
                    requests.clone(),
                    progress.clone(),
                );
                let target = self.target.clone();
                tokio::spawn(async move {
                    let mut latencies = Latencies::with_capacity(blobs.len());
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((bytes, digest)) = blobs.get(i) else {
                            break;
                        };
                        let sent = Instant::now();
                        let n = push_small(&mut conn, &target, &repo, bytes, digest).await?;
                        latencies.record(sent.elapsed());
                        requests.fetch_add(n, Ordering::Relaxed);
                        progress.inc(1);
                    }
                    Ok::<_, BenchError>(latencies)
                })
            })
            .collect();
        let mut all = Latencies::default();
        for task in tasks {
            let latencies = task
                .await
                .map_err(|e| BenchError::Protocol(format!("worker: {e}")))??;
            all.extend(latencies);
        }
        let elapsed = started.elapsed();
        progress.finish_and_clear();
        let mut conn = self.target.connect().await?;
        for (bytes, digest) in blobs.iter() {
            check_stored(&mut conn, &repo, digest, bytes.len() as u64).await?;
        }
        let requests = requests.load(Ordering::Relaxed);
        let how = if requests == count as u64 {
            "one POST ?digest= each"
        } else {
            "POST, then PUT ?digest= each (the registry does not take POST ?digest=)"
        };
        let pushes = all.len() as u64;
        Ok(ScenarioReport::new(
            "small-push",
            format!(
                "{count} blobs of {}, {workers} at a time, {how}",
                size_text(size as u64)
            ),
            pushes,
            workers as u32,
            elapsed,
        )
        .with_latency(all))
    }
}
