//! The scenarios. Each sets up what it needs untimed (blobs, an image, many
//! repositories) under `bench/<run id>/`, so runs never collide and a registry
//! never already holds what is pushed, then times only the requests it is named
//! after. Every answer is checked: status, digest header, content.
//!
//! One file per family: transfer.rs (push, push-chunked, pull), latency.rs
//! (manifest-get, blob-head), small_push.rs, catalog.rs, pull_through.rs
//! (pull-upstream, pull-through-cold, pull-through-warm), web_ui.rs (the
//! ui-* pages); steps.rs holds the requests they share.

mod catalog;
mod latency;
mod pull_through;
mod small_push;
mod steps;
mod transfer;
mod web_ui;

use super::BenchError;
use super::args::{BenchArgs, Scenario};
use super::client::{ReqBody, Target, expect_status};
use super::payload::{Payload, random_bytes};
use super::report::ScenarioReport;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use indicatif::ProgressBar;
use std::sync::Arc;
use std::time::Duration;

const OCTET_STREAM: &str = "application/octet-stream";
const OCI_MANIFEST: &str = crate::oci::manifest::OCI_MANIFEST;
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// What a client pulling by tag accepts.
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
/// Workers that create the catalog's repositories (setup, untimed).
const SETUP_WORKERS: usize = 8;

/// A small image pushed once and read by manifest-get and blob-head.
struct Image {
    repo: String,
    manifest: Bytes,
    manifest_digest: String,
    layer_digest: String,
    layer_len: u64,
}

pub struct Bench {
    target: Arc<Target>,
    args: BenchArgs,
    run: String,
    /// The large blob push stored, which pull reads back.
    pushed: Option<(String, Arc<Payload>)>,
    image: Option<Arc<Image>>,
    /// The registry the cache mirrors, and the image pushed there.
    upstream: Option<Arc<Target>>,
    mirrored: Option<Arc<pull_through::Mirrored>>,
    /// Whether the cache has been through a cold pull of that image.
    cache_filled: bool,
    /// The repositories the ui-* scenarios read.
    ui: Option<Arc<web_ui::Seeded>>,
}

/// `1 GiB`, `4 KiB`.
fn size_text(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

impl Bench {
    pub fn new(target: Arc<Target>, args: BenchArgs) -> Bench {
        let run = hex::encode(random_bytes(4));
        Bench {
            target,
            args,
            run,
            pushed: None,
            image: None,
            upstream: None,
            mirrored: None,
            cache_filled: false,
            ui: None,
        }
    }

    fn repo(&self, name: &str) -> String {
        format!("bench/{}/{name}", self.run)
    }

    /// `GET /v2/`: the registry is there and lets us in.
    pub async fn check_api(&self) -> Result<(), BenchError> {
        let mut conn = self.target.connect().await?;
        let path = self.target.path("/v2/");
        let (r, body) = conn.call(Method::GET, &path, &[], ReqBody::Empty).await?;
        if r.status() == StatusCode::UNAUTHORIZED {
            return Err(BenchError::Usage(format!(
                "GET {path}: 401: the registry wants credentials (--user USER:PASSWORD; berth bench speaks Basic auth only)"
            )));
        }
        expect_status(&format!("GET {path}"), &r, &body, &[StatusCode::OK])
    }

    pub async fn run(&mut self, scenario: Scenario) -> Result<ScenarioReport, BenchError> {
        match scenario {
            Scenario::Push => self.push().await,
            Scenario::PushChunked => self.push_chunked().await,
            Scenario::Pull => self.pull().await,
            Scenario::ManifestGet => self.manifest_get().await,
            Scenario::BlobHead => self.blob_head().await,
            Scenario::SmallPush => self.small_push().await,
            Scenario::Catalog => self.catalog().await,
            Scenario::PullUpstream => self.pull_upstream().await,
            Scenario::PullThroughCold => self.pull_through_cold().await,
            Scenario::PullThroughWarm => self.pull_through_warm().await,
            Scenario::UiRepositories
            | Scenario::UiSearch
            | Scenario::UiTags
            | Scenario::UiImage
            | Scenario::UiOverview => self.web_ui(scenario).await,
        }
    }

    /// Generates (and hashes) the large payload off the async threads.
    async fn prepare(&self, what: &str) -> Result<Arc<Payload>, BenchError> {
        self.prepare_sized(what, self.args.blob_size).await
    }

    /// Generates (and hashes) a payload of `size` off the async threads.
    async fn prepare_sized(&self, what: &str, size: u64) -> Result<Arc<Payload>, BenchError> {
        let spinner = ProgressBar::new_spinner().with_message(format!(
            "{what}: generating and hashing {}",
            size_text(size)
        ));
        spinner.enable_steady_tick(Duration::from_millis(200));
        let payload = tokio::task::spawn_blocking(move || Payload::generate(size))
            .await
            .map_err(|e| BenchError::Protocol(format!("generating the payload: {e}")))?;
        spinner.finish_and_clear();
        Ok(Arc::new(payload))
    }
}
