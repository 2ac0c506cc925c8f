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

impl Replicas {
    fn start(count: usize) -> Replicas {
        let dirs = tempfile::tempdir().unwrap();
        let s3 = S3::start(&dirs.path().join("s3"));
        let servers = (0..count)
            .map(|i| {
                let root = dirs.path().join(format!("replica-{i}"));
                Server::start_on(&root, &s3, &[])
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
        replicas.objects("uploads").is_empty(),
        "the session's chunks are gone: {:?}",
        replicas.objects("uploads")
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
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    tx.send(Ok(layer[400_000..500_000].to_vec())).await.unwrap();
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async {
        rx.recv().await.map(|item| (item, rx))
    }));
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
