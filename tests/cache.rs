//! The in-memory cache of tags, manifests and blob sizes never answers from
//! before a change: every test first reads (so the answer is cached), then
//! changes the store through the API or a collection, then reads again.
//! (distribution #1803: a HEAD that still said "exists" after GC.)

mod common;

use common::api::*;
use common::{Server, TestRegistry};

const TOKEN: &str = "admin-token-for-tests";

async fn status(http: &reqwest::Client, method: reqwest::Method, url: &str) -> u16 {
    http.request(method, url)
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn manifest_digest(http: &reqwest::Client, url: &str) -> String {
    let r = http
        .get(url)
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{url}");
    let d = header(&r, "docker-content-digest");
    assert_eq!(digest(&r.bytes().await.unwrap()), d);
    d
}

#[tokio::test]
async fn tags_and_manifests_follow_every_change() {
    let registry = TestRegistry::start();
    let (http, base) = registry.client();
    let tag_url = format!("{base}/v2/app/manifests/v1");

    let first = push_image(&http, &base, "app", "v1", "one").await;
    for _ in 0..2 {
        assert_eq!(manifest_digest(&http, &tag_url).await, digest(&first));
    }
    // The tag moves: the next read sees the new manifest.
    let second = push_image(&http, &base, "app", "v1", "two").await;
    assert_eq!(manifest_digest(&http, &tag_url).await, digest(&second));

    // A deleted tag is gone; its manifest stays by digest.
    let by_digest = format!("{base}/v2/app/manifests/{}", digest(&second));
    assert_eq!(manifest_digest(&http, &by_digest).await, digest(&second));
    let r = http.delete(&tag_url).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(status(&http, reqwest::Method::GET, &tag_url).await, 404);
    assert_eq!(status(&http, reqwest::Method::HEAD, &by_digest).await, 200);

    // A deleted manifest is gone by digest and from the tags that named it.
    push_image(&http, &base, "app", "v2", "two").await;
    let v2 = format!("{base}/v2/app/manifests/v2");
    assert_eq!(manifest_digest(&http, &v2).await, digest(&second));
    let r = http.delete(&by_digest).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(status(&http, reqwest::Method::GET, &by_digest).await, 404);
    assert_eq!(status(&http, reqwest::Method::GET, &v2).await, 404);

    // Another repository's entries are not disturbed, nor confused with these.
    push_image(&http, &base, "other", "v1", "one").await;
    let other = format!("{base}/v2/other/manifests/v1");
    assert_eq!(manifest_digest(&http, &other).await, digest(&first));
}

#[tokio::test]
async fn blob_heads_follow_deletes_and_collections() {
    let root = tempfile::tempdir().unwrap();
    let token_file = root.path().with_extension("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let data = root.path().join("data");
    let server = Server::start_with(&data, &["--admin-token-file", token_file.to_str().unwrap()]);
    let (http, base) = (client(), server.url(""));

    // Unlinked from its repository.
    let d = push_blob(&http, &base, "app", b"deleted by the API").await;
    let url = format!("{base}/v2/app/blobs/{d}");
    assert_eq!(status(&http, reqwest::Method::HEAD, &url).await, 200);
    assert_eq!(status(&http, reqwest::Method::HEAD, &url).await, 200);
    assert_eq!(http.delete(&url).send().await.unwrap().status(), 202);
    assert_eq!(status(&http, reqwest::Method::HEAD, &url).await, 404);

    // Swept by a collection (no manifest refers to it), then pushed again: the
    // HEAD a client makes before re-pushing must say it is missing.
    let d = push_blob(&http, &base, "app", b"collected").await;
    let url = format!("{base}/v2/app/blobs/{d}");
    assert_eq!(status(&http, reqwest::Method::HEAD, &url).await, 200);
    let r = http
        .post(server.url("/berth/v1/gc?grace=0s"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(json(r).await["blobsDeleted"].as_u64().unwrap() >= 1);
    assert_eq!(status(&http, reqwest::Method::HEAD, &url).await, 404);
    assert_eq!(status(&http, reqwest::Method::GET, &url).await, 404);
    push_blob(&http, &base, "app", b"collected").await;
    assert_eq!(status(&http, reqwest::Method::HEAD, &url).await, 200);
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"collected");
}

#[tokio::test]
async fn untagged_manifests_collected_are_gone() {
    let root = tempfile::tempdir().unwrap();
    let token_file = root.path().with_extension("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let data = root.path().join("data");
    let server = Server::start_with(&data, &["--admin-token-file", token_file.to_str().unwrap()]);
    let (http, base) = (client(), server.url(""));
    let m = push_image(&http, &base, "app", "v1", "one").await;
    let by_digest = format!("{base}/v2/app/manifests/{}", digest(&m));
    assert_eq!(manifest_digest(&http, &by_digest).await, digest(&m));
    let r = http
        .delete(format!("{base}/v2/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(manifest_digest(&http, &by_digest).await, digest(&m));
    let r = http
        .post(server.url("/berth/v1/gc?grace=0s&deleteUntagged=true"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["manifestsDeleted"], 1);
    assert_eq!(status(&http, reqwest::Method::GET, &by_digest).await, 404);
}
