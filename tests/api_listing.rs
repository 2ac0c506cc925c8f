//! Tag lists and the catalog with pagination, the base endpoint, the probes,
//! hostile repository names, and a restart that keeps everything.

mod common;

use common::api::*;
use common::{Server, TestRegistry};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;

#[tokio::test]
async fn base_endpoint_and_probes() {
    let registry = TestRegistry::start();
    let http = client();
    let r = http.get(registry.server.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "docker-distribution-api-version"),
        "registry/2.0"
    );
    assert_eq!(
        http.get(registry.server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(registry.server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = http
        .post(registry.server.url("/v2/x/tags/list"))
        .send()
        .await
        .unwrap();
    expect_error(r, 405, "UNSUPPORTED").await;
}

#[tokio::test]
async fn tags_are_sorted_and_paginated() {
    let registry = TestRegistry::start();
    let (http, base) = registry.client();
    let manifest = push_image(&http, &base, "team/app", "v3", "a").await;
    for tag in ["v1", "latest", "v2", "A-upper"] {
        put_manifest(&http, &base, "team/app", tag, OCI_MANIFEST, &manifest).await;
    }
    let all = json(
        http.get(format!("{base}/v2/team/app/tags/list"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        all,
        json!({"name": "team/app", "tags": ["A-upper", "latest", "v1", "v2", "v3"]})
    );

    let r = http
        .get(format!("{base}/v2/team/app/tags/list?n=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "link"),
        "</v2/team/app/tags/list?n=2&last=latest>; rel=\"next\""
    );
    assert_eq!(json(r).await["tags"], json!(["A-upper", "latest"]));
    let r = http
        .get(format!("{base}/v2/team/app/tags/list?n=2&last=latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["tags"], json!(["v1", "v2"]));
    let r = http
        .get(format!("{base}/v2/team/app/tags/list?n=2&last=v2"))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers().get("link").is_none(),
        "no Link on the last page"
    );
    assert_eq!(json(r).await["tags"], json!(["v3"]));

    let r = http
        .get(format!("{base}/v2/unknown/tags/list"))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "NAME_UNKNOWN").await;
}

#[tokio::test]
async fn catalog_is_sorted_and_paginated() {
    let registry = TestRegistry::start();
    let (http, base) = registry.client();
    for repo in ["b", "a/nested/deep", "c", "a"] {
        push_blob(&http, &base, repo, repo.as_bytes()).await;
    }
    let all = json(
        http.get(format!("{base}/v2/_catalog"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(all["repositories"], json!(["a", "a/nested/deep", "b", "c"]));
    let r = http
        .get(format!("{base}/v2/_catalog?n=3"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "link"),
        "</v2/_catalog?n=3&last=b>; rel=\"next\""
    );
    assert_eq!(
        json(r).await["repositories"],
        json!(["a", "a/nested/deep", "b"])
    );
    let r = http
        .get(format!("{base}/v2/_catalog?n=3&last=b"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("link").is_none());
    assert_eq!(json(r).await["repositories"], json!(["c"]));
}

/// A parameter given twice is ambiguous: refused, not settled by its last value.
#[tokio::test]
async fn a_repeated_query_parameter_is_refused() {
    let registry = TestRegistry::start();
    let (http, base) = registry.client();
    push_blob(&http, &base, "a", b"a").await;
    for path in [
        "/v2/_catalog?n=1&n=2",
        "/v2/a/tags/list?last=x&last=y",
        "/v2/a/blobs/uploads/?digest=sha256:0&digest=sha256:1",
    ] {
        let request = if path.contains("uploads") {
            http.post(format!("{base}{path}"))
        } else {
            http.get(format!("{base}{path}"))
        };
        expect_error(request.send().await.unwrap(), 400, "UNSUPPORTED").await;
    }
    let r = http
        .get(format!("{base}/v2/_catalog?n=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["repositories"], json!(["a"]));
}

/// Sends a raw request, so that `..` and `%2e` reach the server as written.
fn raw_status(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, answer)
}

#[tokio::test]
async fn hostile_names_never_leave_the_root() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("data");
    std::fs::write(outer.path().join("secret"), "do not serve me").unwrap();
    let server = Server::start(&root);
    let d = digest(b"do not serve me");
    let long = "a".repeat(256);
    for path in [
        format!("/v2/../blobs/{d}"),
        format!("/v2/../../secret/blobs/{d}"),
        format!("/v2/%2e%2e/blobs/{d}"),
        format!("/v2/%2e%2e%2f%2e%2e/blobs/{d}"),
        "/v2/..%2f..%2fsecret/manifests/latest".to_owned(),
        "/v2//etc/manifests/latest".to_owned(),
        "/v2/Upper/manifests/latest".to_owned(),
        format!("/v2/{long}/tags/list"),
        "/v2/a/manifests/..".to_owned(),
    ] {
        let (status, answer) = raw_status(server.addr(), &path);
        assert!(matches!(status, 400 | 404), "{path}: {status}");
        assert!(!answer.contains("do not serve me"), "{path} leaked a file");
        if status == 400 {
            assert!(
                answer.contains("NAME_INVALID") || answer.contains("MANIFEST_UNKNOWN"),
                "{path}: {answer}"
            );
        }
    }
    let mut entries: Vec<_> = std::fs::read_dir(outer.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        ["data", "secret"],
        "something was written outside the root"
    );
}

#[tokio::test]
async fn a_restart_keeps_everything() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path());
    let http = client();
    let base = server.url("");
    let one = push_image(&http, &base, "keep/one", "v1", "one").await;
    let two = push_image(&http, &base, "keep/two", "v2", "two").await;
    server.stop();

    let server = Server::start(root.path());
    let base = server.url("");
    for (repo, tag, manifest) in [("keep/one", "v1", &one), ("keep/two", "v2", &two)] {
        let r = http
            .get(format!("{base}/v2/{repo}/manifests/{tag}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.bytes().await.unwrap().as_ref(), manifest.as_slice());
        let parsed: serde_json::Value = serde_json::from_slice(manifest).unwrap();
        let layer = parsed["layers"][0]["digest"].as_str().unwrap();
        let r = http
            .get(format!("{base}/v2/{repo}/blobs/{layer}"))
            .send()
            .await
            .unwrap();
        assert_eq!(digest(&r.bytes().await.unwrap()), layer);
        let tags = json(
            http.get(format!("{base}/v2/{repo}/tags/list"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(tags["tags"], json!([tag]));
    }
    let catalog = json(
        http.get(format!("{base}/v2/_catalog"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(catalog["repositories"], json!(["keep/one", "keep/two"]));
}

/// The README's first command: `berth serve` with no flag keeps its data in
/// `./berth-data`, creating it (a relative folder with no parent given).
#[tokio::test]
async fn serve_with_no_flag_keeps_its_data_in_berth_data_of_the_working_folder() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path());
    let http = client();
    let r = http.get(server.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let digest = push_blob(&http, &server.url(""), "first/push", b"hello").await;
    let hex = digest.strip_prefix("sha256:").unwrap();
    let blob = dir
        .path()
        .join("berth-data/blobs/sha256")
        .join(&hex[..2])
        .join(hex);
    assert_eq!(std::fs::read(blob).unwrap(), b"hello");
}
