//! Blob reads, deletes and every way of uploading, over real HTTP.

mod common;

use common::api::*;
use common::{Server, TestRegistry, on_disk};
use sha2::{Digest as _, Sha512};

#[tokio::test]
async fn blob_get_head_range_and_etag() {
    let registry = TestRegistry::start();
    let (http, base) = registry.client();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let d = push_blob(&http, &base, "team/app", &data).await;
    let url = format!("{base}/v2/team/app/blobs/{d}");

    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), "100000");
    assert_eq!(header(&r, "content-type"), "application/octet-stream");
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert_eq!(header(&r, "etag"), format!("\"{d}\""));
    assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());

    let r = http.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), "100000");
    assert_eq!(header(&r, "docker-content-digest"), d);

    for (range, start, end) in [
        ("bytes=10-19", 10, 19),
        ("bytes=99990-", 99990, 99999),
        ("bytes=-5", 99995, 99999),
    ] {
        let r = http.get(&url).header("range", range).send().await.unwrap();
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(
            header(&r, "content-range"),
            format!("bytes {start}-{end}/100000")
        );
        assert_eq!(r.bytes().await.unwrap().as_ref(), &data[start..=end]);
    }
    let r = http
        .get(&url)
        .header("range", "bytes=100000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "content-range"), "bytes */100000");

    let r = http
        .get(&url)
        .header("if-none-match", format!("\"{d}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert!(r.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn blobs_are_visible_only_where_pushed_and_go_away_when_deleted() {
    let registry = TestRegistry::start();
    let (http, base) = registry.client();
    let d = push_blob(&http, &base, "a", b"private bytes").await;

    let r = http
        .get(format!("{base}/v2/b/blobs/{d}"))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "BLOB_UNKNOWN").await;

    let r = http
        .delete(format!("{base}/v2/a/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http
        .get(format!("{base}/v2/a/blobs/{d}"))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "BLOB_UNKNOWN").await;
    let r = http
        .delete(format!("{base}/v2/a/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let r = http
        .get(format!("{base}/v2/a/blobs/sha256:xyz"))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "DIGEST_INVALID").await;
}

#[tokio::test]
async fn chunked_upload_with_an_out_of_order_chunk() {
    let registry = TestRegistry::start();
    let (http, base) = registry.client();
    let data: Vec<u8> = (0..30_000u32).map(|i| (i * 7 % 256) as u8).collect();

    let r = http
        .post(format!("{base}/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-0");
    let location = header(&r, "location");
    assert!(location.starts_with("/v2/app/blobs/uploads/"), "{location}");
    assert_eq!(
        location.rsplit('/').next().unwrap(),
        header(&r, "docker-upload-uuid")
    );

    let patch = |range: String, body: Vec<u8>| {
        http.patch(format!("{base}{location}"))
            .header("content-range", range)
            .body(body)
            .send()
    };
    let r = patch("0-9999".into(), data[..10_000].to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-9999");

    // A gap, then an overlap: 416, and the session stays where it was.
    let r = patch("20000-29999".into(), data[20_000..].to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "range"), "0-9999");
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_INVALID");
    let r = patch("5000-14999".into(), data[5_000..15_000].to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), 416);

    let r = http.get(format!("{base}{location}")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "range"), "0-9999");

    let r = patch("10000-19999".into(), data[10_000..20_000].to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // The last chunk rides on the PUT.
    let d = digest(&data);
    let r = http
        .put(format!("{base}{location}?digest={d}"))
        .body(data[20_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "location"), format!("/v2/app/blobs/{d}"));
    assert_eq!(header(&r, "docker-content-digest"), d);
    let got = http
        .get(format!("{base}/v2/app/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), data.as_slice());

    // The session is gone once finished.
    let r = http.get(format!("{base}{location}")).send().await.unwrap();
    expect_error(r, 404, "BLOB_UPLOAD_UNKNOWN").await;
}

#[tokio::test]
async fn wrong_digest_stores_nothing() {
    let registry = TestRegistry::start();
    let (http, base) = registry.client();
    let wrong = digest(b"something else");

    let r = http
        .post(format!("{base}/v2/app/blobs/uploads/?digest={wrong}"))
        .body(b"the bytes".to_vec())
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "DIGEST_INVALID").await;

    let r = http
        .post(format!("{base}/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = header(&r, "location");
    http.patch(format!("{base}{location}"))
        .body(b"the bytes".to_vec())
        .send()
        .await
        .unwrap();
    let r = http
        .put(format!("{base}{location}?digest={wrong}"))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "DIGEST_INVALID").await;
    let r = http.get(format!("{base}{location}")).send().await.unwrap();
    assert_eq!(r.status(), 404, "a failed upload's session must be gone");

    for d in [wrong, digest(b"the bytes")] {
        let r = http
            .head(format!("{base}/v2/app/blobs/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    let uploads = on_disk::upload_leftovers(&registry.content());
    assert!(uploads.is_empty(), "upload data left behind: {uploads:?}");
    let stored = on_disk::files_under(&registry.content().join("blobs"));
    assert!(stored.is_empty(), "a blob was stored: {stored:?}");
    // The server's own staging folder stays, empty.
    let staged = on_disk::files_under(&registry.root().join("tmp"));
    assert!(staged.is_empty(), "staged files left behind: {staged:?}");
}

#[tokio::test]
async fn finishing_needs_a_digest_and_cancel_removes_the_session() {
    let registry = TestRegistry::start();
    let (http, base) = registry.client();
    let r = http
        .post(format!("{base}/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = header(&r, "location");

    let r = http.put(format!("{base}{location}")).send().await.unwrap();
    expect_error(r, 400, "DIGEST_INVALID").await;

    // A session belongs to its repository.
    let elsewhere = location.replace("/v2/app/", "/v2/other/");
    let r = http.get(format!("{base}{elsewhere}")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    let r = http
        .delete(format!("{base}{location}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = http
        .delete(format!("{base}{location}"))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "BLOB_UPLOAD_UNKNOWN").await;
    let r = http
        .get(format!("{base}/v2/app/blobs/uploads/not-a-uuid"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let uploads = on_disk::upload_leftovers(&registry.content());
    assert!(uploads.is_empty(), "upload data left behind: {uploads:?}");
}

#[tokio::test]
async fn cross_repository_mount() {
    let registry = TestRegistry::start();
    let (http, base) = registry.client();
    let d = push_blob(&http, &base, "base/os", b"a big shared layer").await;

    let r = http
        .post(format!(
            "{base}/v2/app/blobs/uploads/?mount={d}&from=base/os"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "location"), format!("/v2/app/blobs/{d}"));
    let r = http
        .get(format!("{base}/v2/app/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"a big shared layer");

    // Nothing to mount: a normal session instead.
    let missing = digest(b"not there");
    let r = http
        .post(format!(
            "{base}/v2/app/blobs/uploads/?mount={missing}&from=base/os"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(header(&r, "location").starts_with("/v2/app/blobs/uploads/"));
    // Stored once, linked twice.
    let stored: Vec<_> = on_disk::files_under(&registry.content().join("blobs"));
    assert_eq!(stored.len(), 1, "{stored:?}");
}

#[tokio::test]
async fn sha512_digests_are_accepted() {
    let registry = TestRegistry::start();
    let (http, base) = registry.client();
    let data = b"hashed the long way".repeat(1000);
    let d = format!("sha512:{}", hex::encode(Sha512::digest(&data)));
    let r = http
        .post(format!("{base}/v2/app/blobs/uploads/?digest={d}"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Chunked too, where the session hashed sha256 on the way.
    let r = http
        .post(format!("{base}/v2/app2/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = header(&r, "location");
    http.patch(format!("{base}{location}"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    let r = http
        .put(format!("{base}{location}?digest={d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for repo in ["app", "app2"] {
        let r = http
            .get(format!("{base}/v2/{repo}/blobs/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(header(&r, "docker-content-digest"), d);
        assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());
    }
}

#[tokio::test]
async fn uploads_resume_after_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path());
    let http = client();
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 13) as u8).collect();
    let r = http
        .post(server.url("/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = header(&r, "location");
    let r = http
        .patch(server.url(&location))
        .header("content-range", "0-19999")
        .body(data[..20_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    server.stop(); // SIGKILL: the hash state in memory is lost
    let server = Server::start(root.path());
    let r = http.get(server.url(&location)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "range"), "0-19999");
    let r = http
        .patch(server.url(&location))
        .header("content-range", "20000-49999")
        .body(data[20_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let d = digest(&data);
    let r = http
        .put(server.url(&format!("{location}?digest={d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .get(server.url(&format!("/v2/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());
}
