//! `berth scrub` over the real binary: one byte flipped in one stored blob is
//! found (that blob and no other), moved aside, no longer served (GET nor the
//! cached HEAD), counted in the metrics, and healed by a push of the right
//! bytes. Online through the admin API (and `berth scrub --url`), and offline
//! with `berth scrub --root` on a stopped registry's folder.

mod common;

use common::api::*;
use common::{Server, on_disk};
use serde_json::Value;
use sha2::{Digest as _, Sha512};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const TOKEN: &str = "admin-token-for-scrub-tests";

/// Starts a registry with an admin token; returns it and the token file.
fn start(root: &Path) -> (Server, PathBuf) {
    let token_file = root.with_extension("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let server = Server::start_with(root, &["--admin-token-file", token_file.to_str().unwrap()]);
    (server, token_file)
}

fn blob_file(root: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').unwrap();
    root.join("blobs").join(alg).join(&hex[..2]).join(hex)
}

/// Flips one bit of the middle byte of a stored blob, in place, as rot would;
/// returns the bytes now stored.
fn flip(root: &Path, digest: &str) -> Vec<u8> {
    let path = blob_file(root, digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    bytes
}

fn sha512(bytes: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(bytes)))
}

/// The value of the sample `series`, which must be there.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in the metrics:\n{text}"))
        .parse()
        .unwrap()
}

async fn metrics(http: &reqwest::Client, server: &Server) -> String {
    let r = http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// Status and OCI error code of a GET and a HEAD of a blob (HEAD has no body:
/// its code is `None`).
async fn blob_status(http: &reqwest::Client, base: &str, repo: &str, digest: &str) -> [u16; 2] {
    let url = format!("{base}/v2/{repo}/blobs/{digest}");
    let get = http.get(&url).send().await.unwrap();
    let get_status = get.status().as_u16();
    if get_status == 404 {
        assert_eq!(error_code(get).await, "BLOB_UNKNOWN", "GET {repo} {digest}");
    }
    let head = http.head(&url).send().await.unwrap();
    [get_status, head.status().as_u16()]
}

async fn pull_blob(http: &reqwest::Client, base: &str, repo: &str, digest: &str) -> Vec<u8> {
    let r = http
        .get(format!("{base}/v2/{repo}/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "GET {repo} {digest}");
    r.bytes().await.unwrap().to_vec()
}

/// Pushes a blob in one request under a sha512 digest.
async fn push_sha512(http: &reqwest::Client, base: &str, repo: &str, data: &[u8]) -> String {
    push_blob_as(http, base, repo, data, sha512(data)).await
}

/// What the tests push: an image in `app` (config, layer, manifest), the same
/// layer in `other`, and blobs of `other` alone (one of them sha512).
struct Pushed {
    config: Vec<u8>,
    layer: Vec<u8>,
    manifest: Vec<u8>,
    extra: Vec<u8>,
    extra512: Vec<u8>,
}

impl Pushed {
    async fn push(http: &reqwest::Client, base: &str) -> Pushed {
        let config = br#"{"scrub":"test"}"#.to_vec();
        // Over a MiB, so that a scrub reads it in several pieces.
        let layer = b"layer bytes that will rot ".repeat(50_000);
        let extra = b"a blob of other alone ".repeat(300);
        let extra512 = b"a sha512 blob ".repeat(300);
        push_blob(http, base, "app", &config).await;
        push_blob(http, base, "app", &layer).await;
        let manifest = image_manifest(&config, &[&layer]);
        put_manifest(http, base, "app", "v1", OCI_MANIFEST, &manifest).await;
        push_blob(http, base, "other", &layer).await;
        push_blob(http, base, "other", &extra).await;
        push_sha512(http, base, "other", &extra512).await;
        Pushed {
            config,
            layer,
            manifest,
            extra,
            extra512,
        }
    }

    /// Everything but the layer still pulls, byte for byte.
    async fn assert_the_rest_pulls(&self, http: &reqwest::Client, base: &str) {
        let r = http
            .get(format!("{base}/v2/app/manifests/v1"))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap(), self.manifest);
        assert_eq!(
            pull_blob(http, base, "app", &digest(&self.config)).await,
            self.config
        );
        assert_eq!(
            pull_blob(http, base, "other", &digest(&self.extra)).await,
            self.extra
        );
        assert_eq!(
            pull_blob(http, base, "other", &sha512(&self.extra512)).await,
            self.extra512
        );
    }
}

/// Checks a report found exactly `bad` (stored now as `rotten`) among
/// `before`, the blobs stored when it ran; returns where it was moved.
fn assert_found_exactly(
    report: &Value,
    root: &Path,
    before: &BTreeMap<String, u64>,
    bad: &str,
    rotten: &[u8],
) -> PathBuf {
    assert_eq!(report["blobsChecked"], before.len() as u64, "{report}");
    assert_eq!(
        report["bytesChecked"],
        before.values().sum::<u64>(),
        "{report}"
    );
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    let corrupt = report["corrupt"].as_array().unwrap();
    assert_eq!(corrupt.len(), 1, "{report}");
    let found = &corrupt[0];
    assert_eq!(found["digest"], bad, "{report}");
    assert_eq!(found["size"], rotten.len() as u64);
    assert_eq!(found["computed"], digest(rotten));
    let moved = found["movedTo"].as_str().unwrap();
    assert!(moved.starts_with("quarantine/sha256/"), "{moved}");
    let moved = root.join(moved);
    assert_eq!(std::fs::read(&moved).unwrap(), rotten);
    assert!(!blob_file(root, bad).exists());
    // Every other blob is where it was.
    let mut expected = before.clone();
    expected.remove(bad);
    assert_eq!(on_disk::blobs(root), expected);
    moved
}

fn scrub_command(args: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("scrub")
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), report, stderr)
}

#[tokio::test]
async fn an_online_scrub_moves_exactly_the_rotten_blob_aside_and_a_push_heals_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let (server, token_file) = start(&root);
    let (http, base) = (client(), server.url(""));
    let pushed = Pushed::push(&http, &base).await;
    let bad = digest(&pushed.layer);
    // Sizes now in the registry's cache, as after any pull.
    for repo in ["app", "other"] {
        assert_eq!(blob_status(&http, &base, repo, &bad).await, [200, 200]);
    }

    // Only the admin may scrub.
    let r = http
        .post(server.url("/berth/v1/scrub"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let before = on_disk::blobs(&root);
    assert_eq!(before.len(), 5);
    let rotten = flip(&root, &bad);
    let r = http
        .post(server.url("/berth/v1/scrub?rate=0"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report = json(r).await;
    assert_found_exactly(&report, &root, &before, &bad, &rotten);

    let text = metrics(&http, &server).await;
    assert_eq!(metric(&text, "berth_scrub_corrupt_blobs"), 1.0);
    assert_eq!(metric(&text, "berth_scrub_quarantined_blobs_total"), 1.0);
    assert_eq!(metric(&text, "berth_scrub_runs_total{result=\"ok\"}"), 1.0);
    assert_eq!(
        metric(&text, "berth_scrub_verified_bytes_total"),
        before.values().sum::<u64>() as f64
    );
    assert_eq!(metric(&text, "berth_scrub_verified_blobs_total"), 5.0);
    assert!(metric(&text, "berth_scrub_last_run_timestamp_seconds") > 1.6e9);
    assert_eq!(metric(&text, "berth_storage_blobs"), 4.0);

    // Never served again, in either repository: no GET, and no HEAD from the
    // cached size (which would make a client skip the upload that heals it).
    for repo in ["app", "other"] {
        assert_eq!(blob_status(&http, &base, repo, &bad).await, [404, 404]);
    }
    pushed.assert_the_rest_pulls(&http, &base).await;

    // A push of the right bytes stores them anew, and both repositories, whose
    // links stayed, read them again.
    push_blob(&http, &base, "app", &pushed.layer).await;
    for repo in ["app", "other"] {
        assert_eq!(pull_blob(&http, &base, repo, &bad).await, pushed.layer);
        assert_eq!(blob_status(&http, &base, repo, &bad).await, [200, 200]);
    }
    assert_eq!(std::fs::read(blob_file(&root, &bad)).unwrap(), pushed.layer);

    // `berth scrub --url` finds it all well now, and the gauge clears.
    let (code, report, stderr) = scrub_command(&[
        "--url",
        &base,
        "--token-file",
        token_file.to_str().unwrap(),
        "--rate",
        "0",
    ]);
    assert_eq!(code, Some(0), "{report} {stderr}");
    assert_eq!(report["blobsChecked"], 5, "{report}");
    assert_eq!(report["corrupt"], serde_json::json!([]), "{report}");
    let text = metrics(&http, &server).await;
    assert_eq!(metric(&text, "berth_scrub_corrupt_blobs"), 0.0);
    assert_eq!(metric(&text, "berth_scrub_runs_total{result=\"ok\"}"), 2.0);
    assert_eq!(metric(&text, "berth_storage_blobs"), 5.0);
}

#[tokio::test]
async fn an_offline_scrub_of_a_stopped_registry_finds_exactly_the_rotten_blob() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let (mut server, _) = start(&root);
    let (http, base) = (client(), server.url(""));
    let pushed = Pushed::push(&http, &base).await;
    let bad = digest(&pushed.layer);
    server.stop();

    let before = on_disk::blobs(&root);
    let rotten = flip(&root, &bad);
    let data = root.to_str().unwrap();
    let (code, report, stderr) = scrub_command(&["--root", data]);
    assert_eq!(code, Some(2), "corruption must fail the command: {stderr}");
    let moved = assert_found_exactly(&report, &root, &before, &bad, &rotten);

    // Once moved, the store is clean; the moved copy stays for inspection.
    let (code, report, stderr) = scrub_command(&["--root", data]);
    assert_eq!(code, Some(0), "{report} {stderr}");
    assert_eq!(report["blobsChecked"], before.len() as u64 - 1);
    assert_eq!(report["corrupt"], serde_json::json!([]));
    assert!(moved.exists());
    // A folder that is no store is refused, not scrubbed as empty.
    let (code, _, stderr) =
        scrub_command(&["--root", dir.path().join("nothing").to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("not a berth data folder"), "{stderr}");

    // The registry started again does not serve it, and a push heals it.
    let (server, _) = start(&root);
    let base = server.url("");
    // Offline scrubbing of a folder a registry is serving is refused.
    let (code, _, stderr) = scrub_command(&["--root", data]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("in use by a running berth serve"),
        "{stderr}"
    );
    assert_eq!(on_disk::blobs(&root).len(), before.len() - 1);
    for repo in ["app", "other"] {
        assert_eq!(blob_status(&http, &base, repo, &bad).await, [404, 404]);
    }
    pushed.assert_the_rest_pulls(&http, &base).await;
    let text = metrics(&http, &server).await;
    assert_eq!(
        metric(&text, "berth_storage_blobs"),
        before.len() as f64 - 1.0
    );
    push_blob(&http, &base, "app", &pushed.layer).await;
    assert_eq!(pull_blob(&http, &base, "app", &bad).await, pushed.layer);
    assert_eq!(blob_status(&http, &base, "app", &bad).await, [200, 200]);
}
