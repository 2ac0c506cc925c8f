//! The pull-through cache: `pull-upstream` (the image straight from the
//! upstream, the baseline), `pull-through-cold` (its first pulls through the
//! cache, every blob fetched upstream while the clients wait) and
//! `pull-through-warm` (the same pulls again, served from the cache's store).
//!
//! An image of `--proxy-layers` layers is pushed to `--upstream` (untimed)
//! and read from it once, so that the upstream serves from its page cache in
//! every scenario. Then `--proxy-clients` clients pull it at once, manifest by
//! tag, config and every layer, as the nodes of a cluster do when a DaemonSet
//! rolls out; every byte is checked. The cache names the upstream's
//! repository `--mirror-prefix` + its name (berth: `NAME/`; a cache that
//! mirrors one upstream at its root, as distribution does: nothing).

use super::steps::{manifest_json, push_small, put_manifest};
use super::transfer::{pull_once, push_monolithic};
use super::{ACCEPT_MANIFESTS, Bench, size_text};
use crate::bench::BenchError;
use crate::bench::client::{Conn, ReqBody, Target, expect_digest, expect_status};
use crate::bench::payload::{Payload, digest_of};
use crate::bench::report::{self, ScenarioReport};
use bytes::Bytes;
use hyper::Method;
use hyper::StatusCode;
use hyper::header;
use indicatif::ProgressBar;
use std::sync::Arc;
use std::time::Instant;

/// The image the upstream holds, and what a pull of it checks.
pub(super) struct Mirrored {
    /// Its repository on the upstream.
    repo: String,
    manifest: Bytes,
    manifest_digest: String,
    config: Bytes,
    config_digest: String,
    layers: Vec<Arc<Payload>>,
}

impl Mirrored {
    fn bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.size()).sum::<u64>()
            + self.config.len() as u64
            + self.manifest.len() as u64
    }
}

/// Where a scenario pulls from.
enum From {
    Upstream,
    Cache,
}

impl Bench {
    /// Pushes the image to the upstream and reads it back once, the first time.
    async fn mirrored(&mut self) -> Result<(Arc<Target>, Arc<Mirrored>), BenchError> {
        let url = self.args.upstream.clone().ok_or_else(|| {
            BenchError::Usage(
                "the pull-through scenarios need --upstream URL, the registry the cache mirrors"
                    .to_owned(),
            )
        })?;
        let upstream = match &self.upstream {
            Some(upstream) => upstream.clone(),
            None => Arc::new(Target::new(&url, None)?),
        };
        self.upstream = Some(upstream.clone());
        if let Some(image) = &self.mirrored {
            return Ok((upstream, image.clone()));
        }
        let repo = self.repo("mirrored");
        let mut layers = Vec::new();
        for i in 0..self.args.proxy_layers {
            let what = format!("pull-through layer {}", i + 1);
            layers.push(
                self.prepare_sized(&what, self.args.proxy_layer_size)
                    .await?,
            );
        }
        let mut conn = upstream.connect().await?;
        for layer in &layers {
            push_monolithic(&mut conn, &repo, layer, None).await?;
        }
        let config = Bytes::from(format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"bench":"{}"}}"#,
            self.run
        ));
        let config_digest = digest_of(&config);
        push_small(&mut conn, &upstream, &repo, &config, &config_digest).await?;
        let refs: Vec<(&str, usize)> = layers
            .iter()
            .map(|l| (l.digest(), l.size() as usize))
            .collect();
        let manifest = Bytes::from(manifest_json(&config_digest, config.len(), &refs));
        let manifest_digest = put_manifest(&mut conn, &upstream, &repo, "v1", &manifest).await?;
        let image = Arc::new(Mirrored {
            repo,
            manifest,
            manifest_digest,
            config,
            config_digest,
            layers,
        });
        pull_image(conn, &image.repo, &image, &ProgressBar::hidden()).await?;
        self.mirrored = Some(image.clone());
        Ok((upstream, image))
    }

    pub(super) async fn pull_upstream(&mut self) -> Result<ScenarioReport, BenchError> {
        self.pull_through("pull-upstream", From::Upstream).await
    }

    pub(super) async fn pull_through_cold(&mut self) -> Result<ScenarioReport, BenchError> {
        self.pull_through("pull-through-cold", From::Cache).await
    }

    pub(super) async fn pull_through_warm(&mut self) -> Result<ScenarioReport, BenchError> {
        // A warm pull needs the cache filled: a cold one first, untimed, if
        // it was not run.
        if !self.cache_filled {
            self.pull_through("pull-through-cold", From::Cache).await?;
        }
        self.pull_through("pull-through-warm", From::Cache).await
    }

    async fn pull_through(
        &mut self,
        name: &'static str,
        from: From,
    ) -> Result<ScenarioReport, BenchError> {
        let (upstream, image) = self.mirrored().await?;
        let (target, repo, whence) = match from {
            From::Upstream => (upstream, image.repo.clone(), "straight from the upstream"),
            From::Cache => {
                let repo = format!("{}{}", self.args.mirror_prefix, image.repo);
                let whence = if self.cache_filled {
                    "through the cache, which holds it"
                } else {
                    "through the cache, which fetches it upstream"
                };
                (self.target.clone(), repo, whence)
            }
        };
        let clients = self.args.proxy_clients;
        let progress = report::bar(image.bytes() * u64::from(clients), true, name);
        // Connected before the clock starts, as nodes already are.
        let mut conns = Vec::new();
        for _ in 0..clients {
            conns.push(target.connect().await?);
        }
        let started = Instant::now();
        let pulls = conns.into_iter().map(|conn| {
            let (image, repo, progress) = (image.clone(), repo.clone(), progress.clone());
            tokio::spawn(async move { pull_image(conn, &repo, &image, &progress).await })
        });
        let mut requests = 0;
        for pull in pulls.collect::<Vec<_>>() {
            requests += pull
                .await
                .map_err(|e| BenchError::Protocol(format!("{name}: a client failed: {e}")))??;
        }
        let elapsed = started.elapsed();
        progress.finish_and_clear();
        if matches!(from, From::Cache) {
            self.cache_filled = true;
        }
        Ok(ScenarioReport::new(
            name,
            format!(
                "{clients} clients at once pull an image of {} layers of {} ({} in all), {whence}",
                image.layers.len(),
                size_text(self.args.proxy_layer_size),
                size_text(image.bytes()),
            ),
            requests,
            clients,
            elapsed,
        )
        .with_bytes(image.bytes() * u64::from(clients)))
    }
}

/// One client's pull of the image from `repo`: the manifest by tag, the
/// config, then each layer, every byte checked; returns the requests sent.
async fn pull_image(
    mut conn: Conn,
    repo: &str,
    image: &Mirrored,
    progress: &ProgressBar,
) -> Result<u64, BenchError> {
    let target = conn.target().clone();
    let path = target.path(&format!("/v2/{repo}/manifests/v1"));
    let what = format!("GET {path}");
    let accept = [(header::ACCEPT, ACCEPT_MANIFESTS)];
    let (r, body) = conn
        .call(Method::GET, &path, &accept, ReqBody::Empty)
        .await?;
    expect_status(&what, &r, &body, &[StatusCode::OK])?;
    expect_digest(&what, &r, &image.manifest_digest)?;
    expect_same(&what, &body, &image.manifest)?;
    progress.inc(body.len() as u64);
    let path = target.path(&format!("/v2/{repo}/blobs/{}", image.config_digest));
    let what = format!("GET {path}");
    let (r, body) = conn.call(Method::GET, &path, &[], ReqBody::Empty).await?;
    expect_status(&what, &r, &body, &[StatusCode::OK])?;
    expect_same(&what, &body, &image.config)?;
    progress.inc(body.len() as u64);
    for layer in &image.layers {
        let path = target.path(&format!("/v2/{repo}/blobs/{}", layer.digest()));
        pull_once(&mut conn, &path, layer, progress).await?;
    }
    Ok(2 + image.layers.len() as u64)
}

fn expect_same(what: &str, got: &Bytes, expected: &Bytes) -> Result<(), BenchError> {
    if got != expected {
        return Err(BenchError::Content {
            what: what.to_owned(),
            detail: format!("{} bytes, not the {} pushed", got.len(), expected.len()),
        });
    }
    Ok(())
}
