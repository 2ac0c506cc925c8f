//! The scenarios. Each sets up what it needs untimed (blobs, an image, many
//! repositories) under `bench/<run id>/`, so runs never collide and a registry
//! never already holds what is pushed, then times only the requests it is named
//! after. Every answer is checked: status, digest header, content.

use super::BenchError;
use super::args::{BenchArgs, Scenario};
use super::client::{
    Conn, REQUEST_TIMEOUT, ReqBody, Target, expect_digest, expect_status, header_str,
    location_with, with_query,
};
use super::payload::{Payload, digest_of, random_bytes};
use super::report::{self, Latencies, ScenarioReport};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{self, HeaderName};
use hyper::{Method, StatusCode};
use indicatif::ProgressBar;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
        }
    }

    /// Generates (and hashes) a large payload off the async threads.
    async fn prepare(&self, what: &str) -> Result<Arc<Payload>, BenchError> {
        let spinner = ProgressBar::new_spinner().with_message(format!(
            "{what}: generating and hashing {}",
            size_text(self.args.blob_size)
        ));
        spinner.enable_steady_tick(Duration::from_millis(200));
        let size = self.args.blob_size;
        let payload = tokio::task::spawn_blocking(move || Payload::generate(size))
            .await
            .map_err(|e| BenchError::Protocol(format!("generating the payload: {e}")))?;
        spinner.finish_and_clear();
        Ok(Arc::new(payload))
    }

    async fn push(&mut self) -> Result<ScenarioReport, BenchError> {
        let payload = self.prepare("push").await?;
        let repo = self.repo("push");
        let mut conn = self.target.connect().await?;
        let progress = report::bar(payload.size(), true, "push");
        let started = Instant::now();
        push_monolithic(&mut conn, &repo, &payload, Some(&progress)).await?;
        let elapsed = started.elapsed();
        progress.finish_and_clear();
        check_stored(&mut conn, &repo, payload.digest(), payload.size()).await?;
        let size = payload.size();
        self.pushed = Some((repo, payload));
        Ok(ScenarioReport::new(
            "push",
            format!(
                "one {} blob, monolithic: POST, then PUT ?digest= with the body",
                size_text(size)
            ),
            2,
            1,
            elapsed,
        )
        .with_bytes(size))
    }

    async fn push_chunked(&mut self) -> Result<ScenarioReport, BenchError> {
        let payload = self.prepare("push-chunked").await?;
        let repo = self.repo("chunked");
        let mut conn = self.target.connect().await?;
        let size = payload.size();
        let chunk = self.args.chunk_size;
        let progress = report::bar(size, true, "push-chunked");
        let started = Instant::now();

        let path = self.target.path(&format!("/v2/{repo}/blobs/uploads/"));
        let what = format!("POST {path}");
        let (r, body) = conn.call(Method::POST, &path, &[], ReqBody::Empty).await?;
        expect_status(&what, &r, &body, &[StatusCode::ACCEPTED])?;
        let mut location = location_with(&what, &r, "")?;
        let mut requests = 1;
        let mut offset = 0;
        while offset < size {
            let end = (offset + chunk).min(size);
            let range = format!("{offset}-{}", end - 1);
            let what = format!("PATCH {location} ({range})");
            let (r, body) = conn
                .call(
                    Method::PATCH,
                    &location,
                    &[
                        (header::CONTENT_TYPE, OCTET_STREAM),
                        (header::CONTENT_RANGE, &range),
                    ],
                    ReqBody::payload(&payload, offset, end, Some(&progress)),
                )
                .await?;
            requests += 1;
            expect_status(&what, &r, &body, &[StatusCode::ACCEPTED])?;
            let expected_range = format!("0-{}", end - 1);
            if header_str(&r, "range") != Some(expected_range.as_str()) {
                return Err(BenchError::Protocol(format!(
                    "{what}: Range says {:?}, expected {expected_range}",
                    header_str(&r, "range")
                )));
            }
            location = location_with(&what, &r, "")?;
            offset = end;
        }
        let put = with_query(&location, &format!("digest={}", payload.digest()));
        let what = format!("PUT {put}");
        let (r, body) = conn
            .call(
                Method::PUT,
                &put,
                &[(header::CONTENT_TYPE, OCTET_STREAM)],
                ReqBody::Empty,
            )
            .await?;
        requests += 1;
        expect_status(&what, &r, &body, &[StatusCode::CREATED])?;
        expect_digest(&what, &r, payload.digest())?;
        let elapsed = started.elapsed();
        progress.finish_and_clear();
        check_stored(&mut conn, &repo, payload.digest(), size).await?;
        Ok(ScenarioReport::new(
            "push-chunked",
            format!(
                "one {} blob in {} PATCHes of {}, then PUT ?digest=",
                size_text(size),
                size.div_ceil(chunk),
                size_text(chunk.min(size))
            ),
            requests,
            1,
            elapsed,
        )
        .with_bytes(size))
    }

    async fn pull(&mut self) -> Result<ScenarioReport, BenchError> {
        let mut conn = self.target.connect().await?;
        let (repo, payload) = match &self.pushed {
            Some(pushed) => pushed.clone(),
            None => {
                let payload = self.prepare("pull").await?;
                let repo = self.repo("pull");
                push_monolithic(&mut conn, &repo, &payload, None).await?;
                (repo, payload)
            }
        };
        let size = payload.size();
        let pulls = u64::from(self.args.pulls);
        let progress = report::bar(size * pulls, true, "pull");
        let path = self
            .target
            .path(&format!("/v2/{repo}/blobs/{}", payload.digest()));
        // One read untimed first: what is measured is a blob being served
        // again, as to a fleet of nodes, whether or not the push left it in the
        // page cache (berth writes large blobs past it, with direct I/O).
        let warm_up = ProgressBar::hidden();
        let mut started = Instant::now();
        for i in 0..=pulls {
            let bar = if i == 0 { &warm_up } else { &progress };
            tokio::time::timeout(REQUEST_TIMEOUT, pull_once(&mut conn, &path, &payload, bar))
                .await
                .map_err(|_| BenchError::Timeout(format!("GET {path}")))??;
            if i == 0 {
                started = Instant::now();
            }
        }
        let elapsed = started.elapsed();
        progress.finish_and_clear();
        Ok(ScenarioReport::new(
            "pull",
            format!(
                "one {} blob, read once untimed, then {pulls} times, every byte checked",
                size_text(size)
            ),
            pulls,
            1,
            elapsed,
        )
        .with_bytes(size * pulls))
    }

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

    async fn manifest_get(&mut self) -> Result<ScenarioReport, BenchError> {
        let image = self.image().await?;
        let path = self
            .target
            .path(&format!("/v2/{}/manifests/latest", image.repo));
        let probe = Probe::Manifest { path, image };
        self.hammer("manifest-get", "GET a manifest by tag", probe)
            .await
    }

    async fn blob_head(&mut self) -> Result<ScenarioReport, BenchError> {
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

    async fn small_push(&mut self) -> Result<ScenarioReport, BenchError> {
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

    async fn catalog(&mut self) -> Result<ScenarioReport, BenchError> {
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

fn expect_length<T>(what: &str, r: &hyper::Response<T>, expected: u64) -> Result<(), BenchError> {
    let got = header_str(r, "content-length").and_then(|v| v.parse::<u64>().ok());
    if got != Some(expected) {
        return Err(BenchError::Content {
            what: what.to_owned(),
            detail: format!("Content-Length {got:?}, expected {expected}"),
        });
    }
    Ok(())
}

/// An OCI image manifest of a config and layers (digest, size).
fn manifest_json(config_digest: &str, config_len: usize, layers: &[(&str, usize)]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|(digest, size)| serde_json::json!({"mediaType": OCI_LAYER, "digest": digest, "size": size}))
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_len},
        "layers": layers,
    });
    manifest.to_string().into_bytes()
}

/// POST a session, PUT the whole payload with its digest.
async fn push_monolithic(
    conn: &mut Conn,
    repo: &str,
    payload: &Arc<Payload>,
    progress: Option<&ProgressBar>,
) -> Result<(), BenchError> {
    let path = conn.target().path(&format!("/v2/{repo}/blobs/uploads/"));
    let what = format!("POST {path}");
    let (r, body) = conn.call(Method::POST, &path, &[], ReqBody::Empty).await?;
    expect_status(&what, &r, &body, &[StatusCode::ACCEPTED])?;
    let put = location_with(&what, &r, &format!("digest={}", payload.digest()))?;
    let what = format!("PUT {put}");
    let (r, body) = conn
        .call(
            Method::PUT,
            &put,
            &[(header::CONTENT_TYPE, OCTET_STREAM)],
            ReqBody::payload(payload, 0, payload.size(), progress),
        )
        .await?;
    expect_status(&what, &r, &body, &[StatusCode::CREATED])?;
    expect_digest(&what, &r, payload.digest())
}

/// One small blob in a single `POST ?digest=`, or POST then PUT when the
/// registry answers the POST with a session. Returns the requests it took.
async fn push_small(
    conn: &mut Conn,
    target: &Target,
    repo: &str,
    bytes: &Bytes,
    digest: &str,
) -> Result<u64, BenchError> {
    let path = target.path(&format!("/v2/{repo}/blobs/uploads/?digest={digest}"));
    let what = format!("POST {path}");
    let headers: [(HeaderName, &str); 1] = [(header::CONTENT_TYPE, OCTET_STREAM)];
    let (r, body) = conn
        .call(Method::POST, &path, &headers, ReqBody::full(bytes.clone()))
        .await?;
    expect_status(
        &what,
        &r,
        &body,
        &[StatusCode::CREATED, StatusCode::ACCEPTED],
    )?;
    if r.status() == StatusCode::CREATED {
        expect_digest(&what, &r, digest)?;
        return Ok(1);
    }
    let put = location_with(&what, &r, &format!("digest={digest}"))?;
    let what = format!("PUT {put}");
    let (r, body) = conn
        .call(Method::PUT, &put, &headers, ReqBody::full(bytes.clone()))
        .await?;
    expect_status(&what, &r, &body, &[StatusCode::CREATED])?;
    expect_digest(&what, &r, digest)?;
    Ok(2)
}

/// Mounts a blob from `from`, pushing it when the registry will not mount.
async fn mount_or_push(
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

/// PUTs an OCI manifest under `reference`; returns its digest.
async fn put_manifest(
    conn: &mut Conn,
    target: &Target,
    repo: &str,
    reference: &str,
    manifest: &Bytes,
) -> Result<String, BenchError> {
    let digest = digest_of(manifest);
    let path = target.path(&format!("/v2/{repo}/manifests/{reference}"));
    let what = format!("PUT {path}");
    let (r, body) = conn
        .call(
            Method::PUT,
            &path,
            &[(header::CONTENT_TYPE, OCI_MANIFEST)],
            ReqBody::full(manifest.clone()),
        )
        .await?;
    expect_status(&what, &r, &body, &[StatusCode::CREATED])?;
    expect_digest(&what, &r, &digest)?;
    Ok(digest)
}

/// HEAD: the blob is there with its size and digest.
async fn check_stored(
    conn: &mut Conn,
    repo: &str,
    digest: &str,
    size: u64,
) -> Result<(), BenchError> {
    let path = conn.target().path(&format!("/v2/{repo}/blobs/{digest}"));
    let what = format!("HEAD {path}");
    let (r, body) = conn.call(Method::HEAD, &path, &[], ReqBody::Empty).await?;
    expect_status(&what, &r, &body, &[StatusCode::OK])?;
    expect_digest(&what, &r, digest)?;
    expect_length(&what, &r, size)
}

/// GETs the blob, comparing every byte with the payload as it streams in.
async fn pull_once(
    conn: &mut Conn,
    path: &str,
    payload: &Payload,
    progress: &ProgressBar,
) -> Result<(), BenchError> {
    let what = format!("GET {path}");
    let response = conn.send(Method::GET, path, &[], ReqBody::Empty).await?;
    if response.status() != StatusCode::OK {
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let r = hyper::Response::from_parts(parts, ());
        return expect_status(&what, &r, &body, &[StatusCode::OK]);
    }
    expect_digest(&what, &response, payload.digest())?;
    expect_length(&what, &response, payload.size())?;
    let mut body = response.into_body();
    let mut offset = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BenchError::Http(what.clone(), e))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if !payload.matches_at(offset, &data) {
            return Err(BenchError::Content {
                what,
                detail: format!("the bytes from offset {offset} are not the blob pushed"),
            });
        }
        offset += data.len() as u64;
        progress.inc(data.len() as u64);
    }
    if offset != payload.size() {
        return Err(BenchError::Content {
            what,
            detail: format!("{offset} bytes, expected {}", payload.size()),
        });
    }
    Ok(())
}

/// The page lists every repository the scenario created.
fn check_catalog(what: &str, body: &[u8], names: &[String]) -> Result<(), BenchError> {
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
