//! Garbage collection over real HTTP: what goes and what stays, the admin token,
//! dry runs, the grace period, upload purging, `berth gc` in both modes, a
//! collection killed halfway, and pushes racing a collection in a loop.

mod common;

use common::api::*;
use common::{Server, on_disk};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

const TOKEN: &str = "admin-token-for-tests";

/// Starts a registry with an admin token; returns it and the token file.
fn start(root: &Path) -> (Server, std::path::PathBuf) {
    let token_file = root.with_extension("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let server = Server::start_with(root, &["--admin-token-file", token_file.to_str().unwrap()]);
    (server, token_file)
}

async fn gc(http: &reqwest::Client, server: &Server, query: &str) -> Value {
    let r = http
        .post(server.url(&format!("/berth/v1/gc?{query}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "gc {query}");
    json(r).await
}

/// The digests of every blob in the store.
fn stored_blobs(root: &Path) -> BTreeSet<String> {
    on_disk::blobs(root).into_keys().collect()
}

struct Image {
    manifest: Vec<u8>,
    blobs: Vec<Vec<u8>>,
}

impl Image {
    fn new(shared: &[u8], unique: &str) -> Image {
        let config = format!(r#"{{"image":"{unique}"}}"#).into_bytes();
        let layer = format!("unique layer of {unique} ")
            .repeat(200)
            .into_bytes();
        let manifest = image_manifest(&config, &[shared, &layer]);
        Image {
            manifest,
            blobs: vec![config, shared.to_vec(), layer],
        }
    }

    async fn push(&self, http: &reqwest::Client, base: &str, repo: &str, tag: &str) {
        for blob in &self.blobs {
            push_blob(http, base, repo, blob).await;
        }
        put_manifest(http, base, repo, tag, OCI_MANIFEST, &self.manifest).await;
    }

    /// Pulls the image by tag and checks every byte.
    async fn assert_pulls(&self, http: &reqwest::Client, base: &str, repo: &str, tag: &str) {
        let r = http
            .get(format!("{base}/v2/{repo}/manifests/{tag}"))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{repo}:{tag}");
        assert_eq!(r.bytes().await.unwrap(), self.manifest);
        for blob in &self.blobs {
            let r = http
                .get(format!("{base}/v2/{repo}/blobs/{}", digest(blob)))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{repo}: blob {}", digest(blob));
            assert_eq!(r.bytes().await.unwrap(), *blob);
        }
    }
}

#[tokio::test]
async fn deleting_a_tag_frees_exactly_the_blobs_only_it_used() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let (server, _) = start(&root);
    let (http, base) = (client(), server.url(""));
    let shared = b"shared base layer ".repeat(500);
    let (gone, kept) = (Image::new(&shared, "gone"), Image::new(&shared, "kept"));
    gone.push(&http, &base, "app", "old").await;
    kept.push(&http, &base, "app", "new").await;
    kept.push(&http, &base, "other", "v1").await;

    let r = http
        .delete(server.url("/v2/app/manifests/old"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let before = stored_blobs(&root);

    // Within the grace period nothing goes, even untagged.
    let report = gc(&http, &server, "deleteUntagged=true").await;
    assert_eq!(report["blobsDeleted"], 0, "{report}");
    assert_eq!(report["manifestsDeleted"], 0, "{report}");

    // A dry run past the grace counts and deletes nothing.
    let dry = gc(&http, &server, "deleteUntagged=true&grace=0s&dryRun=true").await;
    assert_eq!(stored_blobs(&root), before);

    let report = gc(&http, &server, "deleteUntagged=true&grace=0s").await;
    // The untagged manifest, its config, its unique layer: the shared layer stays.
    let expected: BTreeSet<String> = [&gone.manifest, &gone.blobs[0], &gone.blobs[2]]
        .iter()
        .map(|b| digest(b))
        .collect();
    let freed: u64 = [&gone.manifest, &gone.blobs[0], &gone.blobs[2]]
        .iter()
        .map(|b| b.len() as u64)
        .sum();
    assert_eq!(report["manifestsDeleted"], 1, "{report}");
    assert_eq!(report["blobsDeleted"], 3, "{report}");
    assert_eq!(report["bytesFreed"], freed, "{report}");
    assert_eq!(report["dryRun"], false);
    for key in ["manifestsDeleted", "blobsDeleted", "bytesFreed"] {
        assert_eq!(
            dry[key], report[key],
            "dry run predicted {key}: {dry} vs {report}"
        );
    }
    assert_eq!(dry["dryRun"], true);
    let after = stored_blobs(&root);
    assert_eq!(
        before.difference(&after).cloned().collect::<BTreeSet<_>>(),
        expected
    );

    kept.assert_pulls(&http, &base, "app", "new").await;
    kept.assert_pulls(&http, &base, "other", "v1").await;
    let r = http
        .get(server.url(&format!("/v2/app/manifests/{}", digest(&gone.manifest))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .head(server.url(&format!("/v2/app/blobs/{}", digest(&gone.blobs[2]))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Pushing the collected image again works from scratch.
    gone.push(&http, &base, "app", "old").await;
    gone.assert_pulls(&http, &base, "app", "old").await;
}

#[tokio::test]
async fn without_delete_untagged_a_deleted_manifest_frees_its_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let (server, _) = start(&root);
    let (http, base) = (client(), server.url(""));
    let shared = b"another shared layer ".repeat(300);
    let (gone, kept) = (Image::new(&shared, "a"), Image::new(&shared, "b"));
    gone.push(&http, &base, "repo", "a").await;
    kept.push(&http, &base, "repo", "b").await;
    // An untagged manifest is kept without deleteUntagged.
    let untagged = Image::new(&shared, "untagged");
    untagged
        .push(&http, &base, "repo", &digest(&untagged.manifest))
        .await;

    let r = http
        .delete(server.url(&format!("/v2/repo/manifests/{}", digest(&gone.manifest))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let report = gc(&http, &server, "grace=0s").await;
    assert_eq!(report["manifestsDeleted"], 0, "{report}");
    assert_eq!(report["blobsDeleted"], 3, "{report}");
    kept.assert_pulls(&http, &base, "repo", "b").await;
    let untagged_ref = digest(&untagged.manifest);
    untagged
        .assert_pulls(&http, &base, "repo", &untagged_ref)
        .await;
}

#[tokio::test]
async fn the_admin_api_wants_the_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = start(&dir.path().join("data"));
    let http = client();
    let url = server.url("/berth/v1/gc");
    let r = http.post(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        header(&r, "www-authenticate"),
        "Bearer realm=\"berth-admin\""
    );
    assert_eq!(error_code(r).await, "UNAUTHORIZED");
    for wrong in ["admin-token-for-test", "admin-token-for-testss", ""] {
        let r = http.post(&url).bearer_auth(wrong).send().await.unwrap();
        assert_eq!(r.status(), 401, "{wrong:?}");
    }
    let r = http
        .post(&url)
        .basic_auth("admin", Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(&url)
        .bearer_auth(TOKEN)
        .body("{\"grace\":\"soon\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(&url)
        .bearer_auth(TOKEN)
        .body("{\"dryRun\":true}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["dryRun"], true);

    // Without a token file the admin API is closed to everyone.
    let closed_dir = tempfile::tempdir().unwrap();
    let closed = Server::start(&closed_dir.path().join("data"));
    let r = http
        .post(closed.url("/berth/v1/gc"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "DENIED").await;
}

/// Sets a file's (or folder's) modification time `age` in the past.
fn age_file(path: &Path, age: Duration) {
    let file = std::fs::File::open(path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

#[tokio::test]
async fn stale_uploads_are_purged_and_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let (server, _) = start(&root);
    let http = client();
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let r = http
            .post(server.url("/v2/up/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let location = header(&r, "location");
        let r = http
            .patch(server.url(&location))
            .header("content-range", "0-4")
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        sessions.push((header(&r, "docker-upload-uuid"), header(&r, "location")));
    }
    let stale = root.join("uploads").join(&sessions[0].0);
    age_file(&stale.join("data"), Duration::from_secs(25 * 3600));
    age_file(&stale, Duration::from_secs(25 * 3600));

    let report = gc(&http, &server, "").await;
    assert_eq!(report["uploadsPurged"], 1, "{report}");
    assert!(!stale.exists());
    let r = http.get(server.url(&sessions[0].1)).send().await.unwrap();
    expect_error(r, 404, "BLOB_UPLOAD_UNKNOWN").await;

    // The live session carries on and completes.
    let data = b"hello world";
    let r = http
        .put(server.url(&format!("{}?digest={}", sessions[1].1, digest(data))))
        .header("content-range", "5-10")
        .body(&data[5..])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn the_gc_command_asks_a_registry_and_collects_a_stopped_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let (mut server, token_file) = start(&root);
    let (http, base) = (client(), server.url(""));
    let shared = b"cli shared ".repeat(100);
    let (a, b, c) = (
        Image::new(&shared, "a"),
        Image::new(&shared, "b"),
        Image::new(&shared, "c"),
    );
    a.push(&http, &base, "cli", "a").await;
    b.push(&http, &base, "cli", "b").await;
    c.push(&http, &base, "cli", "c").await;
    for tag in ["a", "b"] {
        let r = http
            .delete(server.url(&format!("/v2/cli/manifests/{tag}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    // As in the image, which has no system certificates: the client must not
    // need any (it once failed to build there, before sending anything).
    let no_certs = tempfile::tempdir().unwrap();
    let berth = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("gc")
            .args(args)
            .env("SSL_CERT_FILE", no_certs.path().join("none.pem"))
            .env("SSL_CERT_DIR", no_certs.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.success(),
            text,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let token = token_file.to_str().unwrap();

    let (ok, out, err) = berth(&[
        "--url",
        &base,
        "--token-file",
        token,
        "--dry-run",
        "--grace",
        "0s",
        "--delete-untagged",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("dry run") && out.contains("2 manifests would be deleted"),
        "{out}"
    );

    let (ok, out, err) = berth(&[
        "--url",
        &base,
        "--token-file",
        token,
        "--grace",
        "0s",
        "--delete-untagged",
        "--json",
    ]);
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["manifestsDeleted"], 2, "{report}");
    assert_eq!(report["blobsDeleted"], 6, "{report}");

    // A wrong token fails with the registry's message and a non-zero exit.
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "nope").unwrap();
    let (ok, _, err) = berth(&["--url", &base, "--token-file", wrong.to_str().unwrap()]);
    assert!(!ok && err.contains("admin bearer token required"), "{err}");
    // No registry there: non-zero too.
    let (ok, _, err) = berth(&["--url", "http://127.0.0.1:1", "--token-file", token]);
    assert!(!ok && err.contains("cannot reach"), "{err}");

    // Offline: delete c's tag, stop the registry, collect its folder.
    let r = http
        .delete(server.url("/v2/cli/manifests/c"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    server.stop();
    let (ok, out, err) = berth(&[
        "--root",
        root.to_str().unwrap(),
        "--grace",
        "0s",
        "--delete-untagged",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("1 manifests were deleted") && out.contains("4 blobs were deleted"),
        "{out}"
    );
    assert!(stored_blobs(&root).is_empty(), "{:?}", stored_blobs(&root));
    let (ok, _, err) = berth(&["--root", dir.path().join("typo").to_str().unwrap()]);
    assert!(!ok && err.contains("not a berth data folder"), "{err}");
    // A folder a registry serves is refused: what it commits would not be
    // pinned against this collection's sweep.
    let _serving = Server::start(&root);
    let (ok, _, err) = berth(&["--root", root.to_str().unwrap(), "--grace", "0s"]);
    assert!(
        !ok && err.contains("in use by a running berth serve"),
        "{err}"
    );
}

#[tokio::test]
async fn a_collection_killed_halfway_loses_nothing_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let (mut server, token_file) = start(&root);
    let (http, base) = (client(), server.url(""));
    let kept = Image::new(b"kept shared", "kept");
    kept.push(&http, &base, "k", "v1").await;
    // Many unreferenced blobs, so the sweep takes a while.
    for i in 0..600 {
        push_blob(&http, &base, "junk", format!("junk blob {i}").as_bytes()).await;
    }
    for entry in on_disk::files_under(&root.join("blobs")) {
        age_file(&entry, Duration::from_secs(7200));
    }
    let collect = {
        let (http, url) = (http.clone(), server.url("/berth/v1/gc"));
        tokio::spawn(async move { http.post(url).bearer_auth(TOKEN).send().await })
    };
    // Kill as soon as the sweep has made progress.
    let before = stored_blobs(&root).len();
    while stored_blobs(&root).len() > before - 50 {
        assert!(
            !collect.is_finished(),
            "the collection ended before the kill: {collect:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.stop();
    assert!(
        collect.await.unwrap().is_err(),
        "the collection should have been cut off"
    );
    let left = stored_blobs(&root).len();
    assert!(
        left > 4,
        "the kill came too late to test anything ({left} blobs left)"
    );

    let server = Server::start_with(&root, &["--admin-token-file", token_file.to_str().unwrap()]);
    let base = server.url("");
    kept.assert_pulls(&http, &base, "k", "v1").await;
    let report = gc(&http, &server, "").await;
    // The kept image's 4 blobs (manifest, config, two layers) are all that remain.
    assert!(report["blobsDeleted"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(stored_blobs(&root).len(), 4);
    kept.assert_pulls(&http, &base, "k", "v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_racing_collections_never_lose_a_blob() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let (server, _) = start(&root);
    let (http, base) = (client(), server.url(""));
    let shared: Vec<Vec<u8>> = (0..3)
        .map(|i| format!("shared layer {i} ").repeat(400).into_bytes())
        .collect();

    // Collections back to back, with no grace at all: the harshest timing.
    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let url = server.url("/berth/v1/gc?grace=0s&deleteUntagged=true");
        let (http, stop) = (http.clone(), stop.clone());
        tokio::spawn(async move {
            let mut runs = 0;
            while !stop.load(Ordering::SeqCst) {
                let r = http.post(&url).bearer_auth(TOKEN).send().await.unwrap();
                assert_eq!(r.status(), 200);
                runs += 1;
                // A breath between runs, or a push could starve: with no grace,
                // every run sweeps the blobs of pushes not yet committed.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            runs
        })
    };

    let mut pushers = Vec::new();
    for task in 0..6 {
        let (http, base, shared) = (http.clone(), base.clone(), shared.clone());
        pushers.push(tokio::spawn(async move {
            let mut deleted = Vec::new();
            let mut live = Vec::new();
            for round in 0..12 {
                let name = format!("t{task}r{round}");
                let image = Image::new(&shared[(task + round) % 3], &name);
                let repo = format!("stress/{}", task % 3);
                push_racing(&http, &base, &repo, &name, &image.blobs, &image.manifest).await;
                if round % 3 == 0 {
                    let r = http
                        .delete(format!("{base}/v2/{repo}/manifests/{name}"))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202);
                    deleted.push(image);
                } else {
                    live.push((repo, name, image));
                }
            }
            (live, deleted)
        }));
    }
    let mut live = Vec::new();
    let mut deleted = Vec::new();
    for pusher in pushers {
        let (l, d) = pusher.await.unwrap();
        live.extend(l);
        deleted.extend(d);
    }
    stop.store(true, Ordering::SeqCst);
    let runs = collector.await.unwrap();
    assert!(runs >= 3, "only {runs} collections ran during the pushes");

    // Every accepted manifest still has every blob (none missing).
    for (repo, tag, image) in &live {
        image.assert_pulls(&http, &base, repo, tag).await;
    }
    // A last collection takes the deleted images' own blobs, and only those.
    gc(&http, &server, "grace=0s&deleteUntagged=true").await;
    let stored = stored_blobs(&root);
    for image in &deleted {
        for blob in [&image.manifest, &image.blobs[0], &image.blobs[2]] {
            assert!(
                !stored.contains(&digest(blob)),
                "a deleted image's blob survived"
            );
        }
    }
    let expected: BTreeSet<String> = live
        .iter()
        .flat_map(|(_, _, i)| i.blobs.iter().chain([&i.manifest]).map(|b| digest(b)))
        .collect();
    assert_eq!(stored, expected);
}

#[tokio::test]
async fn retention_keeps_the_newest_tags_of_matching_repositories() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let config = dir.path().join("berth.yaml");
    std::fs::write(
        &config,
        "retention:\n  - repositories: \"ci/*\"\n    keepLast: 2\n    keepWithin: 30m\n",
    )
    .unwrap();
    let server = Server::start_with(
        &root,
        &[
            "--admin-token-file",
            token_file.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let (http, base) = (client(), server.url(""));
    let shared = b"retention shared ".repeat(50);
    // Tags v0 (oldest) to v3 (newest) in a matching and a non-matching repository,
    // all older than keepWithin except v3.
    let mut images = Vec::new();
    for (i, hours) in [(0, 5), (1, 4), (2, 3), (3, 0)] {
        let image = Image::new(&shared, &format!("v{i}"));
        for repo in ["ci/app", "prod/app"] {
            image.push(&http, &base, repo, &format!("v{i}")).await;
            let tag = root
                .join("repositories")
                .join(repo)
                .join("_tags")
                .join(format!("v{i}"));
            age_file(&tag, Duration::from_secs(hours * 3600));
        }
        images.push(image);
    }
    let report = gc(&http, &server, "grace=0s").await;
    // ci/app keeps v3 (newest and young) and v2 (second newest); v0 and v1 go,
    // with their manifests; their blobs stay, as prod/app still uses them.
    assert_eq!(report["tagsDeleted"], 2, "{report}");
    assert_eq!(report["manifestsDeleted"], 2, "{report}");
    assert_eq!(report["blobsDeleted"], 0, "{report}");
    let tags = |repo: &'static str| {
        let (http, url) = (http.clone(), server.url(&format!("/v2/{repo}/tags/list")));
        async move { json(http.get(url).send().await.unwrap()).await["tags"].clone() }
    };
    assert_eq!(tags("ci/app").await, serde_json::json!(["v2", "v3"]));
    assert_eq!(
        tags("prod/app").await,
        serde_json::json!(["v0", "v1", "v2", "v3"])
    );
    for (i, image) in images.iter().enumerate() {
        image
            .assert_pulls(&http, &base, "prod/app", &format!("v{i}"))
            .await;
    }
    let r = http
        .get(server.url(&format!(
            "/v2/ci/app/manifests/{}",
            digest(&images[0].manifest)
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
