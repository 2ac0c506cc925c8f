//! `/metrics` after known traffic: every counter moved by exactly what was sent.

mod common;

use common::Server;
use common::api::*;

async fn scrape(http: &reqwest::Client, server: &Server) -> String {
    let r = http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("text/plain"));
    r.text().await.unwrap()
}

/// The value of the sample `series` (name with its labels, as printed).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn counters_move_by_exactly_the_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken").unwrap();
    let server = Server::start_with(&root, &["--admin-token-file", token.to_str().unwrap()]);
    let (http, base) = (client(), server.url(""));
    let config = br#"{"metrics":"test"}"#.to_vec();
    let layer = b"metrics layer ".repeat(1000);
    let manifest = image_manifest(&config, &[&layer]);

    let before = scrape(&http, &server).await;
    assert_eq!(value(&before, "berth_storage_blobs"), 0.0);
    push_blob(&http, &base, "team/app", &config).await;
    push_blob(&http, &base, "team/app", &layer).await;
    put_manifest(&http, &base, "team/app", "v1", OCI_MANIFEST, &manifest).await;
    let pushed = scrape(&http, &server).await;
    let delta = |a: &str, b: &str, s: &str| value(b, s) - value(a, s);
    let stored = (config.len() + layer.len() + manifest.len()) as f64;
    assert_eq!(
        delta(&before, &pushed, "berth_http_received_bytes_total"),
        stored
    );
    assert_eq!(value(&pushed, "berth_pushes_total{kind=\"blob\"}"), 2.0);
    assert_eq!(value(&pushed, "berth_pushes_total{kind=\"manifest\"}"), 1.0);
    assert_eq!(value(&pushed, "berth_storage_bytes"), stored);
    assert_eq!(value(&pushed, "berth_storage_blobs"), 3.0);

    // Pushing the same blob again stores nothing more.
    push_blob(&http, &base, "other", &layer).await;
    let again = scrape(&http, &server).await;
    assert_eq!(value(&again, "berth_storage_bytes"), stored);
    assert_eq!(value(&again, "berth_storage_blobs"), 3.0);

    let r = http
        .get(server.url("/v2/team/app/manifests/v1"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), manifest);
    for blob in [&config, &layer] {
        let r = http
            .get(server.url(&format!("/v2/team/app/blobs/{}", digest(blob))))
            .send()
            .await
            .unwrap();
        assert_eq!(r.bytes().await.unwrap(), *blob);
    }
    let pulled = scrape(&http, &server).await;
    // What was sent since the last scrape: that scrape's own body, then the pulls.
    assert_eq!(
        delta(&again, &pulled, "berth_http_sent_bytes_total"),
        (again.len() + manifest.len() + config.len() + layer.len()) as f64
    );
    assert_eq!(value(&pulled, "berth_pulls_total{kind=\"manifest\"}"), 1.0);
    assert_eq!(value(&pulled, "berth_pulls_total{kind=\"blob\"}"), 2.0);
    assert_eq!(
        value(
            &pulled,
            "berth_http_requests_total{method=\"GET\",route=\"/v2/<name>/manifests/<reference>\",status=\"200\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &pulled,
            "berth_http_request_duration_seconds_count{method=\"GET\",route=\"/v2/<name>/blobs/<digest>\"}"
        ),
        2.0
    );
    assert!(
        !pulled.contains("team/app") && !pulled.contains("sha256:"),
        "{pulled}"
    );

    // An open upload session counts until it is cancelled.
    let r = http
        .post(server.url("/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = header(&r, "location");
    assert_eq!(
        value(&scrape(&http, &server).await, "berth_uploads_in_progress"),
        1.0
    );
    let r = http.delete(server.url(&location)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        value(&scrape(&http, &server).await, "berth_uploads_in_progress"),
        0.0
    );

    // A wrong admin token is an auth failure; a collection is counted with what it freed.
    let r = http
        .post(server.url("/berth/v1/gc"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .delete(server.url(&format!("/v2/team/app/manifests/{}", digest(&manifest))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http
        .post(server.url("/berth/v1/gc?grace=0s"))
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap();
    let report = json(r).await;
    let collected = scrape(&http, &server).await;
    assert_eq!(
        value(
            &collected,
            "berth_auth_failures_total{reason=\"bad_credentials\"}"
        ),
        1.0
    );
    assert_eq!(value(&collected, "berth_gc_runs_total{result=\"ok\"}"), 1.0);
    assert_eq!(
        value(&collected, "berth_gc_freed_bytes_total"),
        report["bytesFreed"].as_f64().unwrap()
    );
    // Nothing refers to any blob any more (a link in "other" is not a reference).
    assert_eq!(report["bytesFreed"].as_f64().unwrap(), stored);
    assert_eq!(value(&collected, "berth_storage_bytes"), 0.0);
    assert_eq!(value(&collected, "berth_storage_blobs"), 0.0);
}
