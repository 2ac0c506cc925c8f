//! berth on an object store, against a real S3 server (s3s-fs, see
//! tests/common/s3.rs): what only a bucket shared by several replicas shows.
//! The API, real-client and crash suites also run on S3 (`tests/run` runs
//! them with `BERTH_TEST_STORAGE=s3`).

mod common;

use common::api::*;
use common::s3::{BUCKET, S3};
use common::{Server, on_disk};

/// Two replicas of one registry: a bucket, and a berth on it for each.
struct Replicas {
    _dirs: tempfile::TempDir,
    s3: S3,
    servers: Vec<Server>,
}

const TOKEN: &str = "admin-token-for-tests";

impl Replicas {
    /// `count` replicas, each with the admin token [`TOKEN`].
    fn start(count: usize) -> Replicas {
        let dirs = tempfile::tempdir().unwrap();
        let s3 = S3::start(&dirs.path().join("s3"));
        let token = dirs.path().join("token");
        std::fs::write(&token, TOKEN).unwrap();
        let servers = (0..count)
            .map(|i| {
                let root = dirs.path().join(format!("replica-{i}"));
                Server::start_on(&root, &s3, &["--admin-token-file", token.to_str().unwrap()])
            })
            .collect();
        Replicas {
            _dirs: dirs,
            s3,
            servers,
        }
    }

    fn url(&self, replica: usize, path: &str) -> String {
        self.servers[replica].url(path)
    }

    /// Every object in the bucket under `prefix` (a folder of the layout).
    fn objects(&self, prefix: &str) -> Vec<std::path::PathBuf> {
        on_disk::files_under(&self.s3.bucket_dir(BUCKET).join(prefix))
    }

    /// What upload sessions left in the bucket, but their claims.
    fn upload_leftovers(&self) -> Vec<std::path::PathBuf> {
        on_disk::upload_leftovers(&self.s3.bucket_dir(BUCKET))
    }
}

/// A request body sent as the test says: each item it is given, then the
/// end once the sender drops.
fn held_body() -> (
    tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    reqwest::Body,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async {
        rx.recv().await.map(|item| (item, rx))
    }));
    (tx, body)
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn a_chunked_upload_moves_between_replicas_and_both_serve_the_image() {
    let replicas = Replicas::start(2);
    let http = client();
    // Past a part's size, so the middle chunk goes up as a multipart upload.
    let layer = data(20 << 20, 7);
    let (first, rest) = layer.split_at(3 << 20);
    let (second, third) = rest.split_at(12 << 20);

    let r = http
        .post(replicas.url(0, "/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = header(&r, "location");
    let mut offset = 0;
    for (replica, chunk) in [(0, first), (1, second), (0, third)] {
        let end = offset + chunk.len() - 1;
        let r = http
            .patch(replicas.url(replica, &location))
            .header("content-range", format!("{offset}-{end}"))
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            202,
            "chunk at {offset} through replica {replica}"
        );
        assert_eq!(header(&r, "range"), format!("0-{end}"));
        offset = end + 1;
        // The other replica sees the session where this one left it.
        let other = 1 - replica;
        let r = http
            .get(replicas.url(other, &location))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(header(&r, "range"), format!("0-{end}"));
    }
    // A chunk that does not start where the session ends is refused by
    // either replica, and changes nothing.
    let r = http
        .patch(replicas.url(1, &location))
        .header("content-range", "5-9")
        .body(vec![0u8; 5])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);

    // Replica 1 finishes: it never saw the first and last chunks, so it
    // hashes what the bucket holds.
    let d = digest(&layer);
    let r = http
        .put(replicas.url(1, &format!("{location}?digest={d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(
        replicas.upload_leftovers().is_empty(),
        "the session's chunks are gone: {:?}",
        replicas.upload_leftovers()
    );
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    push_blob(&http, &replicas.servers[1].url(""), "team/app", config).await;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &layer)],
    }))
    .unwrap();
    let r = http
        .put(replicas.url(0, "/v2/team/app/manifests/v1"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "replica 0 finds the blobs replica 1 committed"
    );

    for replica in [0, 1] {
        let r = http
            .get(replicas.url(replica, "/v2/team/app/manifests/v1"))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().as_ref(), manifest.as_slice());
        let r = http
            .get(replicas.url(replica, &format!("/v2/team/app/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(header(&r, "content-length"), layer.len().to_string());
        assert!(r.bytes().await.unwrap().as_ref() == layer.as_slice());
        let r = http
            .get(replicas.url(replica, &format!("/v2/team/app/blobs/{d}")))
            .header("range", "bytes=15728630-15728649")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(
            r.bytes().await.unwrap().as_ref(),
            &layer[15_728_630..15_728_650]
        );
        let r = http
            .get(replicas.url(replica, "/v2/_catalog"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            json(r).await["repositories"],
            serde_json::json!(["team/app"])
        );
    }
}

#[tokio::test]
async fn an_upload_cut_off_by_a_killed_replica_is_finished_on_the_other() {
    let mut replicas = Replicas::start(2);
    let http = client();
    let layer = data(1 << 20, 3);
    let r = http
        .post(replicas.url(0, "/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = header(&r, "location");
    let r = http
        .patch(replicas.url(0, &location))
        .header("content-range", "0-399999")
        .body(layer[..400_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // Replica 0 dies with its hash state, in the middle of a second chunk.
    let (tx, body) = held_body();
    tx.send(Ok(layer[400_000..500_000].to_vec())).await.unwrap();
    let cut = tokio::spawn(
        http.patch(replicas.url(0, &location))
            .header("content-range", "400000-599999")
            .body(body)
            .send(),
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    replicas.servers[0].stop();
    drop(tx);
    assert!(
        cut.await.unwrap().is_err(),
        "the cut chunk is not acknowledged"
    );

    // The client asks the other replica where the upload stands, and goes on.
    let r = http.get(replicas.url(1, &location)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        header(&r, "range"),
        "0-399999",
        "the cut chunk left nothing"
    );
    let r = http
        .patch(replicas.url(1, &location))
        .header("content-range", format!("400000-{}", layer.len() - 1))
        .body(layer[400_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // Replica 1 rebuilds the hash from the bucket's chunks.
    let d = digest(&layer);
    let r = http
        .put(replicas.url(1, &format!("{location}?digest={d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .get(replicas.url(1, &format!("/v2/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert!(r.bytes().await.unwrap().as_ref() == layer.as_slice());
}

/// What one replica writes, the other reads at once: no replica answers from
/// a memory of the bucket.
#[tokio::test]
async fn every_change_through_one_replica_is_seen_at_once_through_the_other() {
    let replicas = Replicas::start(2);
    let http = client();
    let (a, b) = (replicas.url(0, ""), replicas.url(1, ""));
    let get = |base: &str, path: &str| {
        http.get(format!("{base}{path}"))
            .header("accept", OCI_MANIFEST)
            .send()
    };

    let first = push_image(&http, &a, "team/app", "v1", "first").await;
    // Replica b reads the tag (and would keep it, were it caching).
    let r = get(&b, "/v2/team/app/manifests/v1").await.unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), first.as_slice());
    let r = get(&b, "/v2/_catalog").await.unwrap();
    assert_eq!(
        json(r).await["repositories"],
        serde_json::json!(["team/app"])
    );

    // The tag moves through a; b follows.
    let second = push_image(&http, &a, "team/app", "v1", "second").await;
    let r = get(&b, "/v2/team/app/manifests/v1").await.unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), second.as_slice());

    // A repository and a tag made through b show in a's catalog and lists.
    push_image(&http, &b, "team/api", "v2", "api").await;
    push_image(&http, &b, "team/app", "v2", "another").await;
    let r = get(&a, "/v2/_catalog").await.unwrap();
    assert_eq!(
        json(r).await["repositories"],
        serde_json::json!(["team/api", "team/app"])
    );
    let r = get(&a, "/v2/_catalog?n=1&last=team/api").await.unwrap();
    assert_eq!(
        json(r).await["repositories"],
        serde_json::json!(["team/app"])
    );
    let r = get(&a, "/v2/team/app/tags/list").await.unwrap();
    assert_eq!(json(r).await["tags"], serde_json::json!(["v1", "v2"]));

    // Deleted through b: gone through a, manifest, tag and blob alike.
    let d = digest(&second);
    let r = get(&a, &format!("/v2/team/app/manifests/{d}"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .delete(format!("{b}/v2/team/app/manifests/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    for path in [
        format!("/v2/team/app/manifests/{d}"),
        "/v2/team/app/manifests/v1".into(),
    ] {
        let r = get(&a, &path).await.unwrap();
        expect_error(r, 404, "MANIFEST_UNKNOWN").await;
    }
    let layer = "layer of first".repeat(100).into_bytes();
    let blob = format!("/v2/team/app/blobs/{}", digest(&layer));
    let r = http.head(format!("{a}{blob}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.delete(format!("{b}{blob}")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let r = http.head(format!("{a}{blob}")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = get(&a, "/v2/team/app/tags/list").await.unwrap();
    assert_eq!(json(r).await["tags"], serde_json::json!(["v2"]));
}

/// Collections run back to back, with no grace period and deleting untagged
/// manifests, through one replica then the other, while pushers push through
/// both (a manifest is untagged between its link and its tag): every image
/// either replica accepted stays whole, and a last collection takes exactly
/// what no manifest holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_through_two_replicas_racing_their_collections_never_lose_a_blob() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let replicas = Replicas::start(2);
    let http = client();
    let bases = [replicas.url(0, ""), replicas.url(1, "")];
    let shared: Vec<Vec<u8>> = (0..3)
        .map(|i| format!("shared layer {i} ").repeat(400).into_bytes())
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let urls = bases
            .clone()
            .map(|b| format!("{b}/berth/v1/gc?grace=0s&deleteUntagged=true"));
        let (http, stop) = (http.clone(), stop.clone());
        tokio::spawn(async move {
            let mut runs = [0usize, 0];
            while !stop.load(Ordering::SeqCst) {
                for (i, url) in urls.iter().enumerate() {
                    let r = http.post(url).bearer_auth(TOKEN).send().await.unwrap();
                    assert_eq!(r.status(), 200, "collection through replica {i}");
                    runs[i] += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
            runs
        })
    };

    let mut pushers = Vec::new();
    for task in 0..6 {
        let (http, bases, shared) = (http.clone(), bases.clone(), shared.clone());
        pushers.push(tokio::spawn(async move {
            let mut deleted = Vec::new();
            let mut live = Vec::new();
            for round in 0..12 {
                let name = format!("t{task}r{round}");
                let config = format!(r#"{{"image":"{name}"}}"#).into_bytes();
                let layer = format!("unique layer of {name} ").repeat(200).into_bytes();
                let layer_shared = shared[(task + round) % 3].clone();
                let manifest = image_manifest(&config, &[&layer_shared, &layer]);
                let blobs = vec![config, layer_shared, layer];
                let repo = format!("stress/{}", task % 3);
                // Blobs and manifest through one replica, the next image
                // through the other.
                let base = &bases[(task + round) % 2];
                push_racing(&http, base, &repo, &name, &blobs, &manifest).await;
                if round % 3 == 0 {
                    let other = &bases[(task + round + 1) % 2];
                    let r = http
                        .delete(format!("{other}/v2/{repo}/manifests/{}", digest(&manifest)))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202);
                    deleted.push((manifest, blobs));
                } else {
                    live.push((repo, name, manifest, blobs));
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
    // Each run takes a while (no cache: every manifest is read from the
    // bucket), so only a few fit in the pushes; at least one through each.
    assert!(
        runs.iter().all(|&n| n >= 1),
        "collections during the pushes: {runs:?}"
    );

    for (repo, tag, manifest, blobs) in &live {
        for base in &bases {
            let r = http
                .get(format!("{base}/v2/{repo}/manifests/{tag}"))
                .header("accept", OCI_MANIFEST)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{repo}:{tag}");
            assert_eq!(r.bytes().await.unwrap().as_ref(), manifest.as_slice());
            for blob in blobs {
                let r = http
                    .get(format!("{base}/v2/{repo}/blobs/{}", digest(blob)))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{repo}: blob {}", digest(blob));
                assert!(r.bytes().await.unwrap().as_ref() == blob.as_slice());
            }
        }
    }
    // A last collection takes the deleted images' own blobs, and only those,
    // once the pins of their commits have expired (after 20 minutes: here by
    // removing them from the S3 server's folder).
    for pin in replicas.objects("_pins") {
        std::fs::remove_file(pin).unwrap();
    }
    let r = http
        .post(format!(
            "{}/berth/v1/gc?grace=0s&deleteUntagged=true",
            bases[1]
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let stored: std::collections::BTreeSet<String> =
        on_disk::blobs(&replicas.s3.bucket_dir(BUCKET))
            .into_keys()
            .collect();
    let expected: std::collections::BTreeSet<String> = live
        .iter()
        .flat_map(|(_, _, m, blobs)| blobs.iter().chain([m]).map(|b| digest(b)))
        .collect();
    assert_eq!(stored, expected);
    assert!(
        replicas.objects("trash").is_empty(),
        "{:?}",
        replicas.objects("trash")
    );
    for (manifest, blobs) in &deleted {
        for blob in [manifest, &blobs[0], &blobs[2]] {
            assert!(
                !stored.contains(&digest(blob)),
                "a deleted image's blob survived"
            );
        }
    }
}

/// Two requests appending at one offset through two replicas: the one that
/// finishes second is refused, and the bytes it sent are never stored under
/// any digest.
#[tokio::test]
async fn a_second_chunk_at_the_same_offset_is_refused_and_never_stored() {
    let replicas = Replicas::start(2);
    let http = client();
    let slow_bytes = data(2 << 20, 1);
    let fast_bytes = data(2 << 20, 2);
    let r = http
        .post(replicas.url(0, "/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = header(&r, "location");
    // One chunk streams slowly through replica 0...
    let (tx, body) = held_body();
    let slow = tokio::spawn(
        http.patch(replicas.url(0, &location))
            .header("content-range", format!("0-{}", slow_bytes.len() - 1))
            .body(body)
            .send(),
    );
    tx.send(Ok(slow_bytes[..1 << 20].to_vec())).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // ...while another one, at the same offset, gets through replica 1.
    let r = http
        .patch(replicas.url(1, &location))
        .header("content-range", format!("0-{}", fast_bytes.len() - 1))
        .body(fast_bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    tx.send(Ok(slow_bytes[1 << 20..].to_vec())).await.unwrap();
    drop(tx);
    let r = slow.await.unwrap().unwrap();
    expect_error(r, 416, "BLOB_UPLOAD_INVALID").await;
    let r = http.get(replicas.url(0, &location)).send().await.unwrap();
    assert_eq!(header(&r, "range"), format!("0-{}", fast_bytes.len() - 1));

    // The refused bytes' digest is not what the session holds.
    let r = http
        .put(replicas.url(0, &format!("{location}?digest={}", digest(&slow_bytes))))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "DIGEST_INVALID").await;
    for replica in [0, 1] {
        let r = http
            .head(replicas.url(replica, &format!("/v2/app/blobs/{}", digest(&slow_bytes))))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    assert!(replicas.upload_leftovers().is_empty());

    // An empty blob sent in chunks, an empty PATCH and an empty PUT.
    let r = http
        .post(replicas.url(1, "/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = header(&r, "location");
    let r = http
        .patch(replicas.url(1, &location))
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http
        .put(replicas.url(0, &format!("{location}?digest={}", digest(b""))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn with_storage_redirect_a_blob_get_is_sent_to_a_signed_url_of_the_bucket() {
    let dirs = tempfile::tempdir().unwrap();
    let s3 = S3::start(&dirs.path().join("s3"));
    // Under a prefix, which the signed URLs must name too.
    let place = format!("{BUCKET}/team");
    let server = Server::start_under(
        &dirs.path().join("root"),
        &s3,
        &place,
        &["--storage-redirect"],
    );
    let http = client();
    let base = server.url("");
    let layer = data(3 << 20, 5);
    let d = push_blob(&http, &base, "app", &layer).await;
    let other = push_blob(&http, &base, "other", b"another repository's").await;

    let r = http
        .get(server.url(&format!("/v2/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(header(&r, "docker-content-digest"), d);
    // The URL expires: no cache may keep the redirect.
    assert_eq!(header(&r, "cache-control"), "no-store");
    assert!(r.headers().get("etag").is_none());
    let location = header(&r, "location");
    let hex = |d: &str| d.strip_prefix("sha256:").unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{}/{place}/blobs/sha256/", s3.endpoint()))
            && location.contains("X-Amz-Signature="),
        "{location}"
    );
    // The URL alone fetches the bytes, with no credentials and no registry,
    // whole or a range of them.
    let r = http.get(&location).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(digest(&r.bytes().await.unwrap()), d);
    let r = http
        .get(&location)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &layer[100..200]);
    // It names that object only: the same signature on another key fails.
    let forged = location.replace(&hex(&d), &hex(&other));
    assert!(forged.contains(&hex(&other)), "{forged}");
    assert_eq!(http.get(&forged).send().await.unwrap().status(), 403);

    // A client that holds the blob is told so, as without the redirect.
    let r = http
        .get(server.url(&format!("/v2/app/blobs/{d}")))
        .header("if-none-match", format!("\"{d}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    // HEAD is answered by the registry; nothing is signed for a blob the
    // repository does not hold.
    let r = http
        .head(server.url(&format!("/v2/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), layer.len().to_string());
    let r = http
        .get(server.url(&format!("/v2/app/blobs/{other}")))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "BLOB_UNKNOWN").await;

    // A real client follows the redirect: skopeo copies the image out.
    if !common::daemons::need("skopeo redirect", &["skopeo"]) {
        return;
    }
    push_image(&http, &base, "app", "v1", "redirected").await;
    let out = dirs.path().join("copied");
    common::daemons::run(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/app:v1", server.addr()),
            &format!("dir:{}", out.display()),
        ],
    );
    let layer = "layer of redirected".repeat(100).into_bytes();
    let copied = std::fs::read(out.join(hex(&digest(&layer)))).unwrap();
    assert_eq!(copied, layer);
}
