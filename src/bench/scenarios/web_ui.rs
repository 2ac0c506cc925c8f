//! `ui-repositories`, `ui-search`, `ui-tags`, `ui-image`, `ui-overview`: how
//! long berth's web UI takes to render its pages on a registry of many
//! repositories and tags, which the first of them creates (untimed): each
//! repository mounts one config and tags distinct manifests of it.
//!
//! Only for a registry with berth's web UI; none is in the default set.

use super::catalog::mount_or_push;
use super::steps::{push_small, put_manifest};
use super::{Bench, SETUP_WORKERS};
use crate::bench::BenchError;
use crate::bench::args::Scenario;
use crate::bench::client::{ReqBody, expect_status};
use crate::bench::payload::digest_of;
use crate::bench::report::{self, Latencies, ScenarioReport};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The repositories made for the UI's pages.
pub(super) struct Seeded {
    names: Vec<String>,
    prefix: String,
}

/// A manifest of `config`, told apart from its repository's others by `tag`.
fn tagged_manifest(config_digest: &str, config_len: usize, tag: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": super::OCI_MANIFEST,
            "config": {"mediaType": super::OCI_CONFIG, "digest": config_digest, "size": config_len},
            "layers": [],
            "annotations": {"org.opencontainers.image.version": tag},
        })
        .to_string(),
    )
}

impl Bench {
    /// Creates the repositories and tags once, for all the UI scenarios.
    async fn seed_ui(&mut self) -> Result<Arc<Seeded>, BenchError> {
        if let Some(seeded) = &self.ui {
            return Ok(seeded.clone());
        }
        let count = self.args.ui_repositories as usize;
        let tags = self.args.ui_tags as usize;
        let width = count.to_string().len();
        let prefix = self.repo("ui/");
        let names: Arc<Vec<String>> = Arc::new(
            (0..count)
                .map(|i| format!("{prefix}r{i:0width$}"))
                .collect(),
        );
        let config = Bytes::from(format!(
            r#"{{"architecture":"amd64","os":"linux","bench":"{}"}}"#,
            self.run
        ));
        let config_digest = digest_of(&config);
        let progress = report::bar((count * tags) as u64, false, "web UI setup");
        let mut conn = self.target.connect().await?;
        push_small(&mut conn, &self.target, &names[0], &config, &config_digest).await?;
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..SETUP_WORKERS.min(count) {
            let mut conn = self.target.connect().await?;
            let (names, next, progress, target) = (
                names.clone(),
                next.clone(),
                progress.clone(),
                self.target.clone(),
            );
            let (config, config_digest) = (config.clone(), config_digest.clone());
            workers.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(name) = names.get(i) else {
                        return Ok::<_, BenchError>(());
                    };
                    if i > 0 {
                        mount_or_push(&mut conn, &target, name, &names[0], &config, &config_digest)
                            .await?;
                    }
                    for t in 0..tags {
                        let tag = format!("t{t}");
                        let manifest = tagged_manifest(&config_digest, config.len(), &tag);
                        put_manifest(&mut conn, &target, name, &tag, &manifest).await?;
                        progress.inc(1);
                    }
                }
            }));
        }
        for worker in workers {
            worker
                .await
                .map_err(|e| BenchError::Protocol(format!("worker: {e}")))??;
        }
        progress.finish_and_clear();
        let seeded = Arc::new(Seeded {
            names: names.to_vec(),
            prefix,
        });
        self.ui = Some(seeded.clone());
        Ok(seeded)
    }

    /// Times `--ui-requests` GETs of the page `scenario` names, one after
    /// the other, each checked to be the page (200, HTML, naming `expect`).
    pub(super) async fn web_ui(
        &mut self,
        scenario: Scenario,
    ) -> Result<ScenarioReport, BenchError> {
        let seeded = self.seed_ui().await?;
        let middle = &seeded.names[seeded.names.len() / 2];
        let (path, expect, what) = match scenario {
            // All of ours, whatever else the registry holds: a page of 50.
            Scenario::UiRepositories => (
                format!("/?q={}", seeded.prefix),
                format!("href=\"/r/{}\"", seeded.names[0]),
                "the first page of repositories (50, each with its tags' size)".to_owned(),
            ),
            Scenario::UiSearch => {
                // A term that matches a tenth of ours, at most a page of them.
                let term = &middle[..middle.len() - 1];
                (
                    format!("/?q={term}"),
                    middle.clone(),
                    format!("a search matching up to 10 of {}", seeded.names.len()),
                )
            }
            Scenario::UiTags => (
                format!("/r/{middle}"),
                "t0".to_owned(),
                format!("a repository's {} tags", self.args.ui_tags),
            ),
            Scenario::UiImage => (
                format!("/r/{middle}/-/t0"),
                "docker pull".to_owned(),
                "an image's page (config, layers, referrers)".to_owned(),
            ),
            _ => (
                "/overview".to_owned(),
                "Storage used".to_owned(),
                "the overview (storage, its history, collections)".to_owned(),
            ),
        };
        let page = path;
        let path = self.target.path(&page);
        let label = format!("GET {path}");
        let requests = self.args.ui_requests;
        let mut conn = self.target.connect().await?;
        let progress = report::bar(u64::from(requests), false, scenario.name());
        let mut latencies = Latencies::with_capacity(requests as usize);
        let started = Instant::now();
        for _ in 0..requests {
            let sent = Instant::now();
            let (r, body) = conn.call(Method::GET, &path, &[], ReqBody::Empty).await?;
            latencies.record(sent.elapsed());
            expect_status(&label, &r, &body, &[StatusCode::OK])?;
            let html = String::from_utf8_lossy(&body);
            if !html.contains(&expect) {
                return Err(BenchError::Content {
                    what: label,
                    detail: format!(
                        "not the page: {expect:?} is not in it (does this registry have berth's web UI?)"
                    ),
                });
            }
            progress.inc(1);
        }
        let elapsed = started.elapsed();
        progress.finish_and_clear();
        Ok(ScenarioReport::new(
            scenario.name(),
            format!(
                "GET {page}: {what}, among {} repositories × {} tags ({} under {}), {requests} times",
                seeded.names.len(),
                self.args.ui_tags,
                seeded.names.len() * self.args.ui_tags as usize,
                seeded.prefix,
            ),
            u64::from(requests),
            1,
            elapsed,
        )
        .with_latency(latencies))
    }
}
