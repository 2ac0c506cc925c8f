//! Latency of small reads: `manifest-get` and `blob-head` hammer one small
//! image from many connections.

use super::steps::{expect_length, manifest_json, push_small, put_manifest};
use super::{ACCEPT_MANIFESTS, Bench, Image};
use crate::bench::BenchError;
use crate::bench::client::{Conn, ReqBody, expect_digest, expect_status};
use crate::bench::payload::{digest_of, random_bytes};
use crate::bench::report::{self, Latencies, ScenarioReport};
use bytes::Bytes;
use hyper::header;
use hyper::{Method, StatusCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

impl Bench {
    /// Pushes the small image of manifest-get and blob-head, once.
    async fn image(&mut self) -> Result<Arc<Image>, BenchError> {
        if let Some(image) = &self.image {
            return Ok(image.clone());
        }
        let repo = self.repo("image");
        let mut conn = self.target.connect().await?;
        let config = Bytes::from(format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"bench":"{}"}}"#,
            self.run
        ));
        let layer = Bytes::from(random_bytes(4096));
        let (config_digest, layer_digest) = (digest_of(&config), digest_of(&layer));
        push_small(&mut conn, &self.target, &repo, &config, &config_digest).await?;
        push_small(&mut conn, &self.target, &repo, &layer, &layer_digest).await?;
        let manifest = Bytes::from(manifest_json(
            &config_digest,
            config.len(),
            &[(&layer_digest, layer.len())],
        ));
        let manifest_digest =
            put_manifest(&mut conn, &self.target, &repo, "latest", &manifest).await?;
        let image = Arc::new(Image {
            repo,
            manifest,
            manifest_digest,
            layer_digest,
            layer_len: layer.len() as u64,
        });
        self.image = Some(image.clone());
        Ok(image)
    }

    pub(super) async fn manifest_get(&mut self) -> Result<ScenarioReport, BenchError> {
        let image = self.image().await?;
        let path = self
            .target
            .path(&format!("/v2/{}/manifests/latest", image.repo));
        let probe = Probe::Manifest { path, image };
        self.hammer("manifest-get", "GET a manifest by tag", probe)
            .await
    }

    pub(super) async fn blob_head(&mut self) -> Result<ScenarioReport, BenchError> {
        let image = self.image().await?;
        let path = self
            .target
            .path(&format!("/v2/{}/blobs/{}", image.repo, image.layer_digest));
        let probe = Probe::BlobHead { path, image };
        self.hammer("blob-head", "HEAD a blob", probe).await
    }

    /// Sends `probe` on every connection, back to back, for the run's duration;
    /// `what` says what a probe does, for the report.
    async fn hammer(
        &self,
        name: &'static str,
        what: &str,
        probe: Probe,
    ) -> Result<ScenarioReport, BenchError> {
        let connections = self.args.connections as usize;
        let duration = self.args.duration;
        let probe = Arc::new(probe);
        let mut conns = Vec::with_capacity(connections);
        for _ in 0..connections {
            let mut conn = self.target.connect().await?;
            // One untimed request each: the connection is warm and the answer right.
            probe.send(&mut conn).await?;
            conns.push(conn);
        }
        let progress = report::timer(duration, name);
        let ticker = {
            let progress = progress.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    progress.inc(1);
                }
            })
        };
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let deadline = started + duration;
        let tasks: Vec<_> = conns
            .into_iter()
            .map(|mut conn| {
                let (probe, stop) = (probe.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut latencies = Latencies::with_capacity(1 << 14);
                    while !stop.load(Ordering::Relaxed) {
                        let sent = Instant::now();
                        if sent >= deadline {
                            break;
                        }
                        if let Err(e) = probe.send(&mut conn).await {
                            stop.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                        latencies.record(sent.elapsed());
                    }
                    Ok((latencies, Instant::now()))
                })
            })
            .collect();
        let mut all = Latencies::default();
        let mut ended = started;
        let mut failure = None;
        for task in tasks {
            match task.await {
                Ok(Ok((latencies, end))) => {
                    all.extend(latencies);
                    ended = ended.max(end);
                }
                Ok(Err(e)) => failure = failure.or(Some(e)),
                Err(e) => failure = failure.or(Some(BenchError::Protocol(format!("worker: {e}")))),
            }
        }
        ticker.abort();
        progress.finish_and_clear();
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(ScenarioReport::new(
            name,
            format!(
                "{what} on {connections} keep-alive connections for {}",
                humantime::format_duration(duration)
            ),
            all.len() as u64,
            self.args.connections,
            ended - started,
        )
        .with_latency(all))
    }
}

/// What manifest-get and blob-head send, and how each answer is checked.
enum Probe {
    Manifest { path: String, image: Arc<Image> },
    BlobHead { path: String, image: Arc<Image> },
}

impl Probe {
    async fn send(&self, conn: &mut Conn) -> Result<(), BenchError> {
        match self {
            Probe::Manifest { path, image } => {
                let (r, body) = conn
                    .call(
                        Method::GET,
                        path,
                        &[(header::ACCEPT, ACCEPT_MANIFESTS)],
                        ReqBody::Empty,
                    )
                    .await?;
                let what = || format!("GET {path}");
                expect_status(&what(), &r, &body, &[StatusCode::OK])?;
                expect_digest(&what(), &r, &image.manifest_digest)?;
                if body != image.manifest {
                    return Err(BenchError::Content {
                        what: what(),
                        detail: format!("{} bytes that are not the manifest pushed", body.len()),
                    });
                }
            }
            Probe::BlobHead { path, image } => {
                let (r, body) = conn.call(Method::HEAD, path, &[], ReqBody::Empty).await?;
                let what = || format!("HEAD {path}");
                expect_status(&what(), &r, &body, &[StatusCode::OK])?;
                expect_digest(&what(), &r, &image.layer_digest)?;
                expect_length(&what(), &r, image.layer_len)?;
            }
        }
        Ok(())
    }
}
