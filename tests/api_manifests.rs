//! Manifests of every kind, content negotiation, validation, deletes, and the
//! referrers API, over real HTTP.

mod common;

use common::TestRegistry;
use common::api::*;
use serde_json::json;

#[tokio::test]
async fn every_manifest_kind_round_trips_byte_identical() {
    let registry = TestRegistry::start();
    let (http, base) = registry.client();
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = b"layer bytes".repeat(50);
    push_blob(&http, &base, "kinds", config).await;
    push_blob(&http, &base, "kinds", &layer).await;

    // Pushed with odd spacing: what comes back must be these exact bytes.
    let oci = image_manifest(config, &[&layer]);
    let docker = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor("application/vnd.docker.container.image.v1+json", config),
        "layers": [descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", &layer)],
    }))
    .unwrap();
    put_manifest(&http, &base, "kinds", "oci", OCI_MANIFEST, &oci).await;
    put_manifest(&http, &base, "kinds", "docker", DOCKER_MANIFEST, &docker).await;
    let list = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": digest(&docker), "size": docker.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    }))
    .unwrap();
    put_manifest(&http, &base, "kinds", "list", DOCKER_LIST, &list).await;

    for (tag, media_type, body) in [
        ("oci", OCI_MANIFEST, &oci),
        ("docker", DOCKER_MANIFEST, &docker),
        ("list", DOCKER_LIST, &list),
    ] {
        for reference in [tag.to_owned(), digest(body)] {
            let url = format!("{base}/v2/kinds/manifests/{reference}");
            let r = http
                .get(&url)
                .header("accept", media_type)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{reference}");
            assert_eq!(header(&r, "content-type"), media_type);
            assert_eq!(header(&r, "docker-content-digest"), digest(body));
            assert_eq!(header(&r, "etag"), format!("\"{}\"", digest(body)));
            assert_eq!(r.bytes().await.unwrap().as_ref(), body.as_slice());
            let r = http.head(&url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(header(&r, "content-length"), body.len().to_string());
            let r = http
                .get(&url)
                .header("if-none-match", format!("\"{}\"", digest(body)))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 304);
        }
    }
}

#[tokio::test]
async fn a_multi_arch_index_round_trips() {
    let registry = TestRegistry::start();
    let (http, base) = registry.client();
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let manifest = push_image(&http, &base, "multi", arch, arch).await;
        children.push((arch, manifest));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children.iter().map(|(arch, m)| json!({
            "mediaType": OCI_MANIFEST, "digest": digest(m), "size": m.len(),
            "platform": {"architecture": arch, "os": "linux"},
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    put_manifest(&http, &base, "multi", "v1", OCI_INDEX, &index).await;

    let r = http
        .get(format!("{base}/v2/multi/manifests/v1"))
        .header("accept", OCI_INDEX)
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), index.as_slice());
    for (_, child) in &children {
        let r = http
            .get(format!("{base}/v2/multi/manifests/{}", digest(child)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.bytes().await.unwrap().as_ref(), child.as_slice());
    }
}

#[tokio::test]
async fn content_negotiation_by_accept() {
    let registry = TestRegistry::start();
    let (http, base) = registry.client();
    push_image(&http, &base, "neg", "v1", "neg").await;
    let url = format!("{base}/v2/neg/manifests/v1");
    for accept in [
        None,
        Some("*/*"),
        Some(OCI_MANIFEST),
        Some(
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json;q=0.9",
        ),
    ] {
        let mut req = http.get(&url);
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        assert_eq!(req.send().await.unwrap().status(), 200, "Accept {accept:?}");
    }
    // Two Accept headers, the second naming the stored type.
    let r = http
        .get(&url)
        .header("accept", DOCKER_MANIFEST)
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A client that lists only other manifest types cannot read it.
    let r = http
        .get(&url)
        .header("accept", format!("{DOCKER_MANIFEST}, {DOCKER_LIST}"))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "MANIFEST_UNKNOWN").await;
}

#[tokio::test]
async fn manifest_put_checks_what_it_refers_to() {
    let registry = TestRegistry::start();
    let (http, base) = registry.client();
    let put = |reference: &str, media_type: &str, body: Vec<u8>| {
        http.put(format!("{base}/v2/checks/manifests/{reference}"))
            .header("content-type", media_type)
            .body(body)
            .send()
    };
    let config = b"{}".to_vec();
    let layer = b"a layer".to_vec();
    push_blob(&http, &base, "checks", &config).await;
    // A blob pushed elsewhere does not count.
    push_blob(&http, &base, "elsewhere", &layer).await;
    let r = put("v1", OCI_MANIFEST, image_manifest(&config, &[&layer]))
        .await
        .unwrap();
    expect_error(r, 400, "MANIFEST_BLOB_UNKNOWN").await;

    let absent_child = json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest(b"nope"), "size": 4}]});
    let r = put("idx", OCI_INDEX, serde_json::to_vec(&absent_child).unwrap())
        .await
        .unwrap();
    expect_error(r, 400, "MANIFEST_BLOB_UNKNOWN").await;

    let good = image_manifest(&config, &[]);
    let r = put(&digest(b"other bytes"), OCI_MANIFEST, good.clone())
        .await
        .unwrap();
    expect_error(r, 400, "DIGEST_INVALID").await;
    let r = put(&digest(&good), OCI_MANIFEST, good.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        header(&r, "location"),
        format!("/v2/checks/manifests/{}", digest(&good))
    );

    for body in [
        b"{not json".to_vec(),
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#.to_vec(),
    ] {
        let r = put("bad", OCI_MANIFEST, body).await.unwrap();
        expect_error(r, 400, "MANIFEST_INVALID").await;
    }
    let r = put("bad", OCI_INDEX, good.clone()).await.unwrap();
    assert_eq!(
        error_code(r).await,
        "MANIFEST_INVALID",
        "Content-Type disagrees with mediaType"
    );
    let v1 = String::from_utf8(good.clone())
        .unwrap()
        .replace("\"schemaVersion\":2", "\"schemaVersion\":1");
    let r = put("bad", OCI_MANIFEST, v1.into_bytes()).await.unwrap();
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");

    let r = put("huge", OCI_MANIFEST, vec![b' '; 4 * 1024 * 1024 + 1])
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = http
        .get(format!("{base}/v2/checks/manifests/bad"))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "MANIFEST_UNKNOWN").await;
    let r = http
        .get(format!("{base}/v2/nobody/manifests/latest"))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "NAME_UNKNOWN").await;
}

#[tokio::test]
async fn deleting_a_tag_or_a_manifest() {
    let registry = TestRegistry::start();
    let (http, base) = registry.client();
    let manifest = push_image(&http, &base, "del", "one", "x").await;
    put_manifest(&http, &base, "del", "two", OCI_MANIFEST, &manifest).await;
    let d = digest(&manifest);
    let get = |reference: String| {
        http.get(format!("{base}/v2/del/manifests/{reference}"))
            .send()
    };

    let r = http
        .delete(format!("{base}/v2/del/manifests/one"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(get("one".into()).await.unwrap().status(), 404);
    assert_eq!(
        get("two".into()).await.unwrap().status(),
        200,
        "only the tag goes"
    );
    assert_eq!(get(d.clone()).await.unwrap().status(), 200);

    let r = http
        .delete(format!("{base}/v2/del/manifests/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(get(d.clone()).await.unwrap().status(), 404);
    assert_eq!(
        get("two".into()).await.unwrap().status(),
        404,
        "tags of a deleted manifest go too"
    );
    let tags = json(
        http.get(format!("{base}/v2/del/tags/list"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(tags["tags"], json!([]));
    let r = http
        .delete(format!("{base}/v2/del/manifests/{d}"))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "MANIFEST_UNKNOWN").await;
}

#[tokio::test]
async fn referrers_list_filter_and_forget() {
    let registry = TestRegistry::start();
    let (http, base) = registry.client();
    let subject = push_image(&http, &base, "ref", "v1", "subject").await;
    let subject_desc =
        json!({"mediaType": OCI_MANIFEST, "digest": digest(&subject), "size": subject.len()});
    let empty = b"{}";
    push_blob(&http, &base, "ref", empty).await;
    let artifact = |artifact_type: &str, note: &str| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": descriptor("application/vnd.oci.empty.v1+json", empty),
            "layers": [descriptor("application/vnd.oci.empty.v1+json", empty)],
            "subject": subject_desc, "annotations": {"note": note},
        }))
        .unwrap()
    };
    let sig = artifact("application/vnd.example.signature", "signed");
    let sbom = artifact("application/spdx+json", "sbom");
    for a in [&sig, &sbom] {
        let r = http
            .put(format!("{base}/v2/ref/manifests/{}", digest(a)))
            .header("content-type", OCI_MANIFEST)
            .body(a.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(header(&r, "oci-subject"), digest(&subject));
    }

    let url = format!("{base}/v2/ref/referrers/{}", digest(&subject));
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), OCI_INDEX);
    assert!(r.headers().get("oci-filters-applied").is_none());
    let index = json(r).await;
    assert_eq!(index["mediaType"], OCI_INDEX);
    let listed = index["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let sig_entry = listed
        .iter()
        .find(|m| m["digest"] == digest(&sig).as_str())
        .unwrap();
    assert_eq!(
        sig_entry["artifactType"],
        "application/vnd.example.signature"
    );
    assert_eq!(sig_entry["size"], sig.len());
    assert_eq!(sig_entry["annotations"]["note"], "signed");

    let r = http
        .get(format!("{url}?artifactType=application/spdx%2Bjson"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let only = json(r).await;
    assert_eq!(only["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(only["manifests"][0]["digest"], digest(&sbom).as_str());

    http.delete(format!("{base}/v2/ref/manifests/{}", digest(&sig)))
        .send()
        .await
        .unwrap();
    let after = json(http.get(&url).send().await.unwrap()).await;
    assert_eq!(after["manifests"].as_array().unwrap().len(), 1);

    // No referrers, or a subject never pushed: an empty index, not a 404.
    let none = http
        .get(format!("{base}/v2/ref/referrers/{}", digest(b"nothing")))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 200);
    assert_eq!(json(none).await["manifests"], json!([]));
    let r = http
        .get(format!("{base}/v2/ref/referrers/sha256:bad"))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "DIGEST_INVALID").await;
}
