//! `catalog`: a page of `/v2/_catalog` among many repositories, which it
//! creates first (untimed) by mounting one config into each.

use super::steps::{manifest_json, push_small, put_manifest};
use super::{Bench, OCTET_STREAM, SETUP_WORKERS};
use crate::bench::BenchError;
use crate::bench::client::{Conn, ReqBody, Target, expect_digest, expect_status, location_with};
use crate::bench::payload::digest_of;
use crate::bench::report::{self, Latencies, ScenarioReport};
use bytes::Bytes;
use hyper::header;
use hyper::{Method, StatusCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

impl Bench {
    pub(super) async fn catalog(&mut self) -> Result<ScenarioReport, BenchError> {
        let count = self.args.repositories as usize;
        let width = count.to_string().len();
        let prefix = self.repo("catalog/");
        let names: Arc<Vec<String>> = Arc::new(
            (0..count)
                .map(|i| format!("{prefix}r{i:0width$}"))
                .collect(),
        );
        let config = Bytes::from(format!(r#"{{"bench":"{}","catalog":true}}"#, self.run));
        let config_digest = digest_of(&config);
        let manifest = Bytes::from(manifest_json(&config_digest, config.len(), &[]));

        // Setup, untimed: the first repository gets the config blob, the others
        // mount it from there; each gets a tagged manifest.
        let progress = report::bar(count as u64, false, "catalog setup");
        let mut conn = self.target.connect().await?;
        push_small(&mut conn, &self.target, &names[0], &config, &config_digest).await?;
        put_manifest(&mut conn, &self.target, &names[0], "v1", &manifest).await?;
        progress.inc(1);
        let next = Arc::new(AtomicUsize::new(1));
        let mut tasks = Vec::new();
        for _ in 0..SETUP_WORKERS.min(count) {
            let mut conn = self.target.connect().await?;
            let (names, next, progress, target) = (
                names.clone(),
                next.clone(),
                progress.clone(),
                self.target.clone(),
            );
            let (config, config_digest, manifest) =
                (config.clone(), config_digest.clone(), manifest.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(name) = names.get(i) else {
                        return Ok::<_, BenchError>(());
                    };
                    mount_or_push(&mut conn, &target, name, &names[0], &config, &config_digest)
                        .await?;
                    put_manifest(&mut conn, &target, name, "v1", &manifest).await?;
                    progress.inc(1);
                }
            }));
        }
        for task in tasks {
            task.await
                .map_err(|e| BenchError::Protocol(format!("worker: {e}")))??;
        }
        progress.finish_and_clear();

        // `last` starts the page at our first repository (`{prefix}r` sorts just
        // before `{prefix}r0…`), so repositories already in the registry that
        // sort first do not push ours off the page.
        let path = self
            .target
            .path(&format!("/v2/_catalog?n={count}&last={prefix}r"));
        let what = format!("GET {path}");
        let requests = self.args.catalog_requests;
        let progress = report::bar(u64::from(requests), false, "catalog");
        let mut latencies = Latencies::with_capacity(requests as usize);
        let started = Instant::now();
        for _ in 0..requests {
            let sent = Instant::now();
            let (r, body) = conn.call(Method::GET, &path, &[], ReqBody::Empty).await?;
            latencies.record(sent.elapsed());
            expect_status(&what, &r, &body, &[StatusCode::OK])?;
            check_catalog(&what, &body, &names)?;
            progress.inc(1);
        }
        let elapsed = started.elapsed();
        progress.finish_and_clear();
        Ok(ScenarioReport::new(
            "catalog",
            format!(
                "GET /v2/_catalog?n={count}&last=…: one page of {count} repositories, {requests} times"
            ),
            u64::from(requests),
            1,
            elapsed,
        )
        .with_latency(latencies))
    }
}

/// Mounts a blob from `from`, pushing it when the registry will not mount.
pub(super) async fn mount_or_push(
    conn: &mut Conn,
    target: &Target,
    repo: &str,
    from: &str,
    bytes: &Bytes,
    digest: &str,
) -> Result<(), BenchError> {
    let path = target.path(&format!(
        "/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"
    ));
    let what = format!("POST {path}");
    let (r, body) = conn.call(Method::POST, &path, &[], ReqBody::Empty).await?;
    expect_status(
        &what,
        &r,
        &body,
        &[StatusCode::CREATED, StatusCode::ACCEPTED],
    )?;
    if r.status() == StatusCode::CREATED {
        return expect_digest(&what, &r, digest);
    }
    let put = location_with(&what, &r, &format!("digest={digest}"))?;
    let what = format!("PUT {put}");
    let (r, body) = conn
        .call(
            Method::PUT,
            &put,
            &[(header::CONTENT_TYPE, OCTET_STREAM)],
            ReqBody::full(bytes.clone()),
        )
        .await?;
    expect_status(&what, &r, &body, &[StatusCode::CREATED])?;
    expect_digest(&what, &r, digest)
}

/// The page lists every repository the scenario created.
pub(super) fn check_catalog(what: &str, body: &[u8], names: &[String]) -> Result<(), BenchError> {
    #[derive(serde::Deserialize)]
    struct Catalog {
        repositories: Vec<String>,
    }
    let catalog: Catalog = serde_json::from_slice(body).map_err(|e| BenchError::Content {
        what: what.to_owned(),
        detail: format!("not a catalog: {e}"),
    })?;
    if catalog.repositories != names {
        let listed = catalog.repositories.len();
        let ours = catalog
            .repositories
            .iter()
            .filter(|r| names.contains(r))
            .count();
        return Err(BenchError::Content {
            what: what.to_owned(),
            detail: format!(
                "the page lists {listed} repositories, {ours} of them among the {} created, where it should list exactly those, in order",
                names.len()
            ),
        });
    }
    Ok(())
}
